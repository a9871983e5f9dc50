#!/bin/sh
# Run every fuzz target of the spec library for a short time each.
#
#   scripts/fuzz.sh [duration]        e.g. scripts/fuzz.sh 1m
#
# The duration per target is the argument, else $FUZZTIME, else 10s.
#
# A failure leaves the crashing input in cni/testdata/fuzz/<Target>/; commit it
# with the fix so that `go test ./cni` replays it from then on.
set -eu

duration=${1:-${FUZZTIME:-10s}}
cd "$(dirname "$0")/.."

targets="FuzzParseConfigList FuzzParsePluginConfig FuzzParseResult FuzzParseObject FuzzParseArgs"
for target in $targets; do
	echo "== $target ($duration)"
	# -parallel 2: the machines this runs on are small and shared.
	go test ./cni -run "^${target}\$" -fuzz "^${target}\$" -fuzztime "$duration" -parallel 2
done
