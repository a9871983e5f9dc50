#!/usr/bin/env bash
# Disk and memory footprint, cnikit vs the reference plugins: the size of
# everything installed in a plugin directory, and the peak RSS of one plugin
# execution (a bridge ADD with host-local IPAM, in throw-away namespaces).
# Run as root from the repository root.
set -euo pipefail
export PATH="/usr/local/go/bin:$PATH"
ref=${REFERENCE_DIR:-/usr/lib/cni}
work=$(mktemp -d /tmp/cnikit-footprint.XXXXXX)
host=cnikit-fp-host-$$
cleanup() {
	for ns in "$host" "$host-c1" "$host-c2"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

./scripts/build.sh "$work/bin/cnikit"
"$work/bin/cnikit" install --bin-dir "$work/bin" >/dev/null
# du -L counts a link's target once per link; the links cost nothing on disk.
cnikit_bytes=$(stat -c %s "$work/bin/cnikit")
ref_bytes=$(du -cb "$ref"/* | tail -1 | cut -f1)

ip netns add "$host"
ip netns add "$host-c1"
ip netns add "$host-c2"
rss() { # plugin-dir container-netns -> peak RSS (KiB) of one bridge ADD
	local conf
	conf='{"cniVersion":"1.0.0","name":"fp","type":"bridge","bridge":"fpbr0","isGateway":true,"ipMasq":true,
	       "ipam":{"type":"host-local","dataDir":"'"$work"'/ipam","ranges":[[{"subnet":"10.210.0.0/24"}]]}}'
	ip netns exec "$host" env CNI_COMMAND=ADD CNI_CONTAINERID="c-$2" CNI_NETNS="/run/netns/$2" CNI_IFNAME=eth0 \
		CNI_PATH="$1" CNIKIT_STATE_DIR="$work/state" /usr/bin/time -f %M "$1/bridge" <<<"$conf" 2>&1 >/dev/null | tail -1
}
cnikit_rss=$(rss "$work/bin" "$host-c1")
ref_rss=$(rss "$ref" "$host-c2")

printf '| | plugins on disk | peak RSS of one bridge ADD (host-local IPAM, ipMasq) |\n|---|---:|---:|\n'
printf '| reference (%s) | %.1f MB (%d files) | %d KiB |\n' "$ref" "$(echo "$ref_bytes/1000000" | bc -l)" "$(ls "$ref" | wc -l)" "$ref_rss"
printf '| cnikit | %.1f MB (one binary, %d links) | %d KiB |\n' "$(echo "$cnikit_bytes/1000000" | bc -l)" "$(($(ls "$work/bin" | wc -l) - 1))" "$cnikit_rss"
