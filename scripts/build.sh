#!/usr/bin/env bash
# Builds the cnikit binary (the CLI and every plugin) as a static executable:
# without cgo the binary needs no dynamic loader, which saves milliseconds on
# every plugin execution. Usage: scripts/build.sh [OUTPUT] (default bin/cnikit).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
out="${1:-bin/cnikit}"
version="$(git describe --always --dirty 2>/dev/null || echo dev)"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.Version=$version" -o "$out" ./cmd/cnikit
