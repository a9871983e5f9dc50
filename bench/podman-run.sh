#!/usr/bin/env bash
# Measures a whole container start and stop by a real runtime:
#   podman run --rm --network N IMAGE true
# (Podman 4.3, CNI backend, the network made by `podman network create`:
# bridge, portmap, firewall, tuning) with cnikit's plugins and with the
# reference plugins in /usr/lib/cni, and prints the median, fastest and
# slowest of RUNS runs each (after one warm-up run), and the same for
# `--network none` (Podman's own share, no CNI at all). The three alternate,
# run by run, so that a busy machine slows all alike.
#
# Usage (root; podman, runc and busybox-static installed, see scripts/setup.sh):
#   bench/podman-run.sh [RUNS]        (default 10)
#
# Nothing of the machine is touched: the measurement runs in `unshare --net
# --mount --pid` (a throw-away network namespace as the host; /run, /var/tmp,
# /etc/cni/net.d and /var/lib/cni private; each Podman's config, image store
# and CNI conf dir in a temp dir), so every process Podman leaves dies with it.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
	# The measurement itself, inside the namespaces: --inside WORK RUNS
	work="$2" runs="$3"
	ip link set lo up
	mount -t tmpfs tmpfs /run
	mount -t tmpfs tmpfs /var/tmp
	if [ -d /etc/cni/net.d ]; then mount -t tmpfs tmpfs /etc/cni/net.d; fi
	# libcni's cache and host-local's state go to /var/lib/cni: a private overlay
	# over /var/lib gives that directory without creating it on the machine.
	mkdir -p "$work/overlay/upper" "$work/overlay/work"
	mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$work/overlay/upper,workdir=$work/overlay/work" /var/lib

	setup() { # NAME PLUGIN_DIR SUBNET: a Podman configuration and network of its own
		local dir="$work/$1"
		mkdir -p "$dir/net.d" "$dir/storage" "$dir/tmp"
		cat >"$dir/containers.conf" <<-EOF
			[containers]
			default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
			log_driver = "k8s-file"
			[engine]
			cgroup_manager = "cgroupfs"
			events_logger = "file"
			runtime = "runc"
			image_copy_tmp_dir = "$dir/tmp"
			tmp_dir = "/run/libpod-$1"
			[network]
			network_backend = "cni"
			cni_plugin_dirs = ["$2"]
			network_config_dir = "$dir/net.d"
		EOF
		printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "/run/storage-%s"\n' "$dir/storage" "$1" >"$dir/storage.conf"
		in_config "$1" podman import -q --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$work/rootfs.tar" localhost/bench:1 >/dev/null
		# No dnsname plugin: cnikit has none, and the chains must be the same.
		in_config "$1" podman network create --disable-dns --subnet "$3" bench >/dev/null
		run "$1" # warm-up: the first run sets up Podman's state, and the bridge
	}
	in_config() { # NAME COMMAND...
		local dir="$work/$1"
		shift
		CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf" "$@"
	}
	run() { # NAME: the "none" configuration is cnikit's, without any network
		local config="$1" network=bench
		[ "$1" = none ] && config=cnikit network=none
		in_config "$config" podman run --rm --network "$network" --cgroup-parent /cnikit-bench-podman localhost/bench:1 true
	}
	setup cnikit "$work/cnikit" 10.133.0.0/24
	setup reference /usr/lib/cni 10.134.0.0/24
	mkdir -p "$work/none"
	# Alternate, so that the load of a shared machine weighs on all alike.
	for _ in $(seq "$runs"); do
		for name in cnikit reference none; do
			start=$(date +%s%N)
			run "$name"
			echo $((($(date +%s%N) - start) / 1000)) >>"$work/$name/times.unsorted"
		done
	done
	for name in cnikit reference none; do sort -n "$work/$name/times.unsorted" >"$work/$name/times"; done
	exit 0
fi

cd "$(dirname "$0")/.."
runs="${1:-10}"
if [ "$(id -u)" != 0 ]; then
	echo "podman-run: run as root (namespaces, mounts)" >&2
	exit 1
fi
for cmd in podman runc unshare; do
	command -v "$cmd" >/dev/null || { echo "podman-run: $cmd is not installed (scripts/setup.sh)" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "podman-run: reference plugins missing (containernetworking-plugins)" >&2; exit 1; }

work="$(mktemp -d /tmp/cnikit-podman-bench.XXXXXX)"
cleanup() {
	# Containers' cgroups stay when Podman is killed mid-run.
	find /sys/fs/cgroup/*/cnikit-bench-podman -depth -type d -exec rmdir {} + 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

./scripts/build.sh "$work/cnikit/cnikit" >/dev/null
"$work/cnikit/cnikit" install --bin-dir "$work/cnikit" >/dev/null

# The image: busybox-static and a link per applet.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .

unshare --net --mount --pid --fork --mount-proc --propagation private "$(realpath "$0")" --inside "$work" "$runs"

ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
median() { # a sorted file of numbers
	awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }' "$1"
}
# The version from dpkg: any podman command outside the sandbox would set up
# storage and lock files on the machine.
echo "podman run --rm --network N IMAGE true: $runs runs each (Podman $(dpkg-query -W -f '${Version}' podman), CNI backend)"
printf '%-28s %10s %10s %10s\n' "plugins" "median ms" "min ms" "max ms"
for name in cnikit reference none; do
	f="$work/$name/times"
	label="$name"
	[ "$name" = reference ] && label="reference (/usr/lib/cni)"
	[ "$name" = none ] && label="--network none (no CNI)"
	printf '%-28s %10s %10s %10s\n' "$label" "$(ms "$(median "$f")")" "$(ms "$(head -1 "$f")")" "$(ms "$(tail -1 "$f")")"
done
