#!/bin/sh
# Run every fuzz target (the spec library's parsers, host-local's config
# parser) for a short time each.
#
#   scripts/fuzz.sh [duration]        e.g. scripts/fuzz.sh 1m
#
# The duration per target is the argument, else $FUZZTIME, else 10s.
#
# A failure leaves the crashing input in <package>/testdata/fuzz/<Target>/;
# commit it with the fix so that `go test` replays it from then on.
set -eu

duration=${1:-${FUZZTIME:-10s}}
cd "$(dirname "$0")/.."

# package:target pairs
targets="./cni:FuzzParseConfigList ./cni:FuzzParsePluginConfig ./cni:FuzzParseResult
./cni:FuzzParseObject ./cni:FuzzParseArgs ./plugins/host-local:FuzzParseConfig"
for pair in $targets; do
	pkg=${pair%%:*}
	target=${pair#*:}
	echo "== $pkg $target ($duration)"
	# -parallel 2: the machines this runs on are small and shared.
	go test "$pkg" -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$duration" -parallel 2
done
