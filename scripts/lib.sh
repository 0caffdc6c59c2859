# shellcheck shell=bash
# scripts/lib.sh holds what run.sh and test.sh share. Source it; it defines
# log and need_apt.

log() { printf '== %s\n' "$*" >&2; }

# need_apt installs the given Debian packages that are not installed yet,
# running apt-get update at most once per run. It does nothing when not
# root, so a developer's own machine is never changed behind their back.
apt_updated=
need_apt() {
	local missing=() p
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]]; then
		log "not root: skipping apt-get install ${missing[*]}"
		return 0
	fi
	if [[ -z $apt_updated ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
		apt_updated=1
	fi
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# need_build_deps installs what building Mahfooz needs beyond Go: libopus (the
# reference Opus codec, used through cgo) and pkg-config to find it.
need_build_deps() {
	need_apt gcc libc6-dev pkg-config libopus-dev
	if ! pkg-config --exists opus 2>/dev/null; then
		echo "error: libopus is not installed and this user cannot install it" >&2
		echo "hint: as root: apt-get install -y pkg-config libopus-dev" >&2
		return 1
	fi
}

