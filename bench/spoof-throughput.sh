#!/usr/bin/env bash
# Throughput of a 100 MB HTTP download from a server behind the gateway to the
# phone, in network namespaces: directly, then with phonehome run --spoof in
# the auditor (the download then passes the transparent proxy), in one run.
# Goal: the spoofed path keeps at least 80% of the direct one. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run XXX -bench SpoofThroughput -benchtime 1x ./cmd/phonehome | grep -E 'Benchmark|ok|FAIL'
