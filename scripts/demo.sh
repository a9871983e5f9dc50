#!/usr/bin/env bash
# Builds cnikit and shows its main job: a network namespace attached to the
# built-in default network (bridge cnikit0, 10.77.0.0/16, masquerade), with its
# address and routes, a ping to the gateway, and a ping out through NAT to
# another namespace that has no route back to the container subnet.
#
# Everything happens in two throw-away namespaces, "demo-host" (playing this
# machine) and "demo-outside" (playing the world beyond it), so the machine's
# own network is left exactly as it was. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

./scripts/setup.sh
echo "== building cnikit"
./scripts/build.sh bin/cnikit
cnikit=$PWD/bin/cnikit

host=cnikit-demo-host
outside=cnikit-demo-outside
state=$(mktemp -d /tmp/cnikit-demo.XXXXXX)
cleanup() {
	"$cnikit" netns del "$host" "$outside" 2>/dev/null || true
	rm -rf "$state"
}
trap cleanup EXIT

echo "== sandbox: namespace $host plays this host, $outside plays the outside world (198.51.100.2)"
"$cnikit" netns add "$host" >/dev/null
"$cnikit" netns add "$outside" >/dev/null
ip link add uplink netns "$host" type veth peer name downlink netns "$outside"
ip -n "$host" addr add 198.51.100.1/24 dev uplink
ip -n "$host" link set uplink up
ip -n "$host" route add default via 198.51.100.2
ip -n "$outside" addr add 198.51.100.2/24 dev downlink
ip -n "$outside" link set downlink up
ip -n "$outside" link set lo up

echo "== cnikit run: a new namespace on the built-in network \"cnikit\""
# Inside the sandbox host, cnikit works as it would on the real one; only its
# state goes to a temp dir instead of /var/lib/cni.
ip netns exec "$host" "$cnikit" --cache-dir "$state/cache" --conf-dir "$state/conf" \
	run --verbose -- sh -c '
		set -e
		echo "-- inside the container namespace: address and routes"
		ip -4 addr show eth0
		ip route
		echo "-- ping the gateway (the cnikit0 bridge)"
		ping -c 2 -W 2 10.77.0.1
		echo "-- ping the outside namespace, which has no route back to 10.77.0.0/16:"
		echo "   a reply proves the host masqueraded the container to 198.51.100.1"
		ping -c 2 -W 2 198.51.100.2
	'
echo "== after cnikit run: the container namespace is gone, and so is its veth"
ip -n "$host" -br link show type veth | grep -v uplink || echo "(no container veth left)"
ip netns exec "$host" "$cnikit" --cache-dir "$state/cache" ls
echo "== demo OK"
