#!/usr/bin/env bash
# Installs what building and testing cnikit needs on Debian 12 (run as root):
# Debian packages for the tests (iproute2 and ping to observe, nftables to
# inspect rules, the reference CNI plugins to compare against, QEMU for the
# guest of scripts/guest-test.sh) and Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null; then
	echo "setup: Go is not installed (expected in /usr/local/go); install Go 1.26 first" >&2
	exit 1
fi

packages=(iproute2 iputils-ping nftables containernetworking-plugins procps)
# scripts/guest-test.sh: QEMU for its guest, xz to unpack the guest kernel (a faster boot).
packages+=(qemu-system-x86 xz-utils)
# test/interop: real container runtimes drive cnikit (each in a private sandbox),
# busybox-static makes their image.
packages+=(podman runc conmon containerd docker.io busybox-static)
# plugins/firewall: iptables (nft and legacy flavours) for its iptables backend,
# a real firewalld on a private D-Bus bus for its firewalld backend.
packages+=(iptables firewalld dbus-daemon)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# Installing containerd and docker.io must not start their daemons on the
	# machine (a docker0 bridge, iptables rules): deny service starts meanwhile.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# firewalld's package enables its service: the tests start their own, in
	# a throw-away namespace; the machine's firewall must stay as it was.
	if [[ " ${missing[*]} " == *" firewalld "* ]] && command -v systemctl >/dev/null; then
		systemctl disable firewalld.service >/dev/null 2>&1 || true
	fi
fi
# run-in-guest.sh apt-get downloads the guest's kernel and busybox: it needs the package lists.
if ! apt-cache show --no-all-versions linux-image-amd64 >/dev/null 2>&1; then
	apt-get update -qq
fi
go mod download
