#!/usr/bin/env bash
# Throughput of a 100 MB HTTP download from a server behind the gateway to the
# phone, in network namespaces, in one run: directly; with phonehome run --spoof
# in the auditor forwarding port 80 (goal: at least 80% of direct); and with
# port 80 through the transparent proxy. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run XXX -bench SpoofThroughput -benchtime 1x ./cmd/phonehome | grep -E 'Benchmark|ok|FAIL'
