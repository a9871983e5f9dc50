#!/usr/bin/env bash
# Runs the tests of kernel features this machine's kernel may lack (bridge VLAN
# filtering and 802.1Q today; ipvlan, dummy, vrf later) inside one throw-away
# QEMU guest that boots Debian's stock kernel (../shared/tools/run-in-guest.sh,
# see /work/shared/docs/kernel-guest.md). Everything is built static on the
# host: a test binary per package of GUEST_PACKAGES and the cnikit binary (the
# tests' IPAM delegate, found through CNIKIT_BIN_DIR); the guest gets them,
# the source tree (tests run in their package directory), read-only over 9p,
# and the host's ip, bridge, tc, nft and ping.
#
# Exit status: 0 when every test passed and none skipped (a skip in the guest
# means a kernel feature or tool is missing there, which is a failure here);
# 1 when a test failed or skipped; 2 when the tests could not run at all
# (no run-in-guest.sh, no QEMU, guest setup error, timeout, guest crash).
#
# Usage: scripts/guest-test.sh [TEST BINARY FLAGS...], e.g. -test.run=Vlan
# Environment: RUN_IN_GUEST (default ../shared/tools/run-in-guest.sh from the
# project root); GUEST_TIMEOUT in seconds (default 900); GUEST_LOG, where the
# full verbose output goes (default a temp file, kept and printed on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

# Packages whose tests need kernel features the host may lack. Add one here;
# its test binary is built and run in the same guest boot.
GUEST_PACKAGES=(
	./internal/link
	./plugins/bridge
)

root=$PWD
start=$SECONDS
could_not_run() {
	echo "guest-test: $*" >&2
	echo "guest-test: FAILED: the kernel-feature tests (${GUEST_PACKAGES[*]}) could NOT run" >&2
	exit 2
}

run_in_guest=${RUN_IN_GUEST:-../shared/tools/run-in-guest.sh}
[ -x "$run_in_guest" ] || could_not_run "run-in-guest.sh not found at $run_in_guest (set RUN_IN_GUEST)"
command -v qemu-system-x86_64 >/dev/null ||
	could_not_run "qemu-system-x86_64 is not installed (scripts/setup.sh installs qemu-system-x86)"
[ "$(id -u)" = 0 ] || could_not_run "run as root (run-in-guest.sh keeps its cache in /var/cache/kvm-guest)"
# The host's observation tools, so that tests see the same ones as on the
# host (the guest has busybox's ip, tc and ping, which lack options they use).
tools=()
for t in /usr/sbin/ip /usr/sbin/bridge /usr/sbin/tc /usr/sbin/nft /usr/bin/ping; do
	[ -x "$t" ] || could_not_run "$t is not installed (scripts/setup.sh installs iproute2, nftables and iputils-ping)"
	tools+=(-b "$t")
done

work=$(mktemp -d "${TMPDIR:-/tmp}/cnikit-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"   # plugin lookup refuses group/other-writable paths as root

# Build static: the binaries then need nothing from the guest.
echo "guest-test: building cnikit and ${#GUEST_PACKAGES[@]} test binaries" >&2
./scripts/build.sh "$work/cnikit" || could_not_run "building cnikit failed"
runner=$work/run.sh
{
	echo 'rc=0'
	for pkg in "${GUEST_PACKAGES[@]}"; do
		bin=$(echo "${pkg#./}" | tr / _).test
		CGO_ENABLED=0 go test -c -o "$work/$bin" "$pkg" || could_not_run "building the tests of $pkg failed"
		printf 'echo "guest-test: == %s"\n' "$pkg"
		printf 'cd %q && %q -test.v -test.count=1 -test.timeout=10m "$@" || { echo "guest-test: FAIL %s"; rc=1; }\n' \
			"$root/${pkg#./}" "$work/$bin" "$pkg"
	done
	echo 'exit $rc'
} > "$runner"

shares=(-9 "$work:ro" -9 "$root:ro")
# The reference plugins, for tests that compare against them (they link
# libc, which the guest gets along with ip and nft).
if [ -d /usr/lib/cni ]; then shares+=(-9 /usr/lib/cni:ro); fi

log=${GUEST_LOG:-$(mktemp "${TMPDIR:-/tmp}/cnikit-guest-log.XXXXXX")}
echo "guest-test: running in a QEMU guest (full output: $log)" >&2
rc=0
"$run_in_guest" -t "${GUEST_TIMEOUT:-900}" "${shares[@]}" "${tools[@]}" \
	-e PATH=/usr/sbin:/usr/bin:/sbin:/bin -e CNIKIT_BIN_DIR="$work" \
	-c "sh $runner${*:+ $(printf '%q ' "$@")}" 2>&1 | tr -d '\r' | tee "$log" |
	grep -Ev '^=== (RUN|PAUSE|CONT|NAME)' || rc=${PIPESTATUS[0]}
case $rc in
0 | 1) ;;
124) could_not_run "the guest timed out" ;;
125) could_not_run "the guest died without reporting a status (see $log)" ;;
126 | 127) could_not_run "run-in-guest.sh could not set up the guest (see above)" ;;
*) echo "guest-test: the guest command exited with $rc" >&2; rc=1 ;;
esac
if ! grep -q '^guest-test: == ' "$log"; then
	could_not_run "the test runner never started in the guest (see $log)"
fi

skipped=$(grep -E -A1 '^ *--- SKIP' "$log" || true)
if [ -n "$skipped" ]; then
	echo "guest-test: FAIL: tests skipped in the guest, which has every kernel feature and tool they need:" >&2
	echo "$skipped" >&2
	rc=1
fi
if [ "$rc" != 0 ]; then
	echo "guest-test: FAIL: kernel-feature tests failed in the guest after $((SECONDS - start)) s (full output: $log)" >&2
	exit 1
fi
[ -n "${GUEST_LOG:-}" ] || rm -f "$log"
echo "guest-test: ok: ${GUEST_PACKAGES[*]} passed in the guest, none skipped ($((SECONDS - start)) s)" >&2
