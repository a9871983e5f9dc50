#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, vet, every test (unit, privileged
# in throw-away network namespaces, end-to-end with the built binary), the
# interop module (the reference library and plugins, real runtimes), then a
# short run of each fuzz target. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

./scripts/setup.sh
if [ "$(id -u)" != 0 ]; then
	echo "test: run as root: the privileged tests create network namespaces" >&2
	exit 1
fi
go vet ./...
go test -count=1 -timeout 20m ./...
# Tests of kernel features this kernel may lack (bridge VLAN filtering, 8021q, ...), in a QEMU guest.
./scripts/guest-test.sh
(cd test/interop && go vet ./... && go test -count=1 -timeout 20m ./...)
FUZZTIME="${FUZZTIME:-10s}" ./scripts/fuzz.sh
