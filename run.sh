#!/usr/bin/env bash
# run.sh builds and runs the mahfooz command after installing what the build
# needs (libopus for calls; as root it installs it with apt-get, idempotently).
# With no arguments it runs the demo: ./run.sh is ./run.sh demo.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
need_build_deps
(($#)) || set -- demo
exec go run ./cmd/mahfooz "$@"
