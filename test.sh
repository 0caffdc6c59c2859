#!/usr/bin/env bash
# test.sh is the project's single test command: it installs what the tests
# need (idempotently), then runs the format check, go vet, the race-enabled
# tests, the ts-mls driver's self-test and a short smoke run of every fuzz
# target. It runs every check even after one fails, prints a summary, and
# exits non-zero if anything failed.
#
# Environment: FUZZTIME (default 10000x) is each fuzz target's budget. It is a
# count of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure when the
# time runs out on a loaded machine (golang/go#75804, fixed in Go 1.27).
set -euo pipefail

cd "$(dirname "$0")"
root=$(pwd)
fuzztime=${FUZZTIME:-10000x}
tsmls=mls/interop/tsmls

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# ---- install -------------------------------------------------------------

# go test -race needs cgo, so a C compiler; calls need libopus; the call
# tests speak with espeak-ng.
need_build_deps
need_apt espeak-ng

command -v node >/dev/null 2>&1 || { echo "test.sh: error: node (20 or later) is not installed" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "test.sh: error: npm is not installed" >&2; exit 1; }
if [[ ! -d $tsmls/node_modules || $tsmls/package-lock.json -nt $tsmls/node_modules/.package-lock.json ]]; then
	log "npm ci in $tsmls"
	(cd "$tsmls" && npm ci --no-audit --no-fund >&2)
fi

# ---- checks --------------------------------------------------------------

passed=()
failed=()

# check NAME CMD... runs one check and records its outcome.
check() {
	local name=$1 start=$SECONDS
	shift
	log "$name"
	if "$@"; then
		passed+=("$name")
		log "ok: $name ($((SECONDS - start)) s)"
	else
		failed+=("$name")
		log "FAIL: $name ($((SECONDS - start)) s)"
	fi
}

# go_files lists the Go files outside node_modules, testdata and hidden dirs.
go_files() {
	find . \( -name node_modules -o -name testdata -o -name '.?*' \) -prune -o -type f -name '*.go' -print
}

gofmt_clean() {
	local out
	out=$(go_files | xargs -r gofmt -l)
	[[ -z $out ]] && return 0
	echo "test.sh: files not gofmt'd (run gofmt -w on them):" >&2
	echo "$out" >&2
	return 1
}

check gofmt gofmt_clean
check "go vet" go vet ./...
# Package mls runs from its own directory so that go test shows what it prints:
# the count of official test vector cases that ran.
mls_race() { (cd mls && go test -race -count=1); }
# Tests that run on a real-time clock (calls: audio is said and heard at its
# own pace; the link emulator's timing) run in a step of their own, one package
# at a time, so that other packages' tests do not starve their clock. Every
# test runs once: the main step skips exactly what the real-time step runs.
# The real-time tests, by name: each name is unique in the repository.
realtime='^(TestCallOneToOne|TestGroupCallThreeParties|TestCallRemovedMemberLosesTheAudio|TestCallSurvivesAConnectionDrop|TestCallOnPoorLinks|TestCallCLI)$'
check "go test -race" go test -race -count=1 -skip "$realtime" $(go list ./... | grep -vx -e 'mahfooz/mls' -e 'mahfooz/internal/linkem')
realtime_tests() {
	go test -race -count=1 -p 1 ./internal/linkem &&
		go test -race -count=1 -p 1 -run "$realtime" ./device ./internal/systemtest
}
check "go test -race, real-time (calls, link emulator)" realtime_tests
check "go test -race mls" mls_race
check "tsmls selftest" node "$tsmls/selftest.mjs"

# Fuzz smoke: every func FuzzXxx in every package's _test.go files. go test
# -fuzz takes one package and one target at a time.
nfuzz=0
while IFS= read -r dir; do
	pkg=./${dir#./}
	[[ $dir == . ]] && pkg=.
	targets=$(grep -hoE '^func Fuzz[A-Za-z0-9_]*\(' "$dir"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(/\1/' | sort -u)
	for t in $targets; do
		nfuzz=$((nfuzz + 1))
		check "fuzz $t ($pkg)" go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg"
	done
done < <(find . \( -name node_modules -o -name testdata -o -name '.?*' \) -prune -o -type f -name '*_test.go' -print |
	xargs -r grep -lE '^func Fuzz[A-Za-z0-9_]*\(' | xargs -r -n1 dirname | sort -u)

# ---- summary -------------------------------------------------------------

echo
echo "test.sh: gofmt, go vet, go test -race (real-time tests on their own), tsmls selftest, $nfuzz fuzz targets (${fuzztime} each) in $root"
for f in "${failed[@]}"; do
	echo "FAIL: $f"
done
echo "checks: ${#passed[@]} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
