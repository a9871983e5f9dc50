#!/usr/bin/env bash
# Installs what building and testing cnikit needs on Debian 12 (run as root):
# Debian packages for the tests (iproute2 and ping to observe, nftables to
# inspect rules, the reference CNI plugins to compare against) and Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null; then
	echo "setup: Go is not installed (expected in /usr/local/go); install Go 1.26 first" >&2
	exit 1
fi

packages=(iproute2 iputils-ping nftables containernetworking-plugins procps)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
go mod download
