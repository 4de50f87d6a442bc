#!/usr/bin/env bash
# Throughput of a 20 MB HTTPS download from a server behind the gateway to the
# phone, in network namespaces, in one run: directly; through a plain
# wireguard-go <-> wireguard-go tunnel to the auditor (the reference); and
# through phonehome run --wireguard, decrypted, analysed and stored (goal: at
# least 50% of the same download through a tunnel without phonehome). Needs
# root, wireguard-go and wg.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run XXX -bench WireGuardThroughput -benchtime 1x ./cmd/phonehome | grep -E 'Benchmark|ok|FAIL|SKIP'
