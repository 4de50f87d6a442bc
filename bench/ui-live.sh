#!/usr/bin/env bash
# The web UI's live stream against the proxy's keep-alive rate, in one run:
# HTTP keep-alive requests/s through phonehome run (64 connections, 1 KiB)
# with the UI off, and with the UI on and four browser tabs' worth of
# Server-Sent-Events streams reading (curl -N). Each stream must receive
# every flow the proxy completed (none dropped), and the proxy's rate must
# not fall. The two alternate, ROUNDS times, as the machine's rate drifts.
#   bench/ui-live.sh [SECONDS] [ROUNDS]   (default 5 s per measurement, 2 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-2}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/phonehome" ./cmd/phonehome
go build -o "$work/proxyload" ./bench/proxyload
"$work/proxyload" -serve -http 127.0.0.1:18110 -cert "$work/upstream.pem" > "$work/urls" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/urls" ] && break; sleep 0.1; done
read -r H _ < "$work/urls"

measure() { # ui-flag tabs
	local ui=$1 tabs=$2 db="$work/run-$2.db" ph rate stored
	rm -f "$db" "$db-wal" "$db-shm"
	"$work/phonehome" run --listen 127.0.0.1:18111 --ui "$ui" --db "$db" --ca-dir "$work/ca" > /dev/null 2> "$work/ph-$tabs.err" & ph=$!
	for _ in $(seq 100); do (exec 3<> /dev/tcp/127.0.0.1/18111) 2>/dev/null && break; sleep 0.1; done
	local tabpids=()
	for i in $(seq "$tabs"); do
		curl -sN "http://$ui/api/events" > "$work/tab-$tabs-$i" & tabpids+=($!)
	done
	sleep 0.5
	rate=$("$work/proxyload" -proxy http://127.0.0.1:18111 -mode keepalive -d "${secs}s" -target "$H/")
	sleep 1
	for p in "${tabpids[@]}"; do kill "$p" 2>/dev/null || true; done
	kill -INT "$ph"; wait "$ph" 2>/dev/null || true
	stored=$("$work/phonehome" report --db "$db" --format json | tail -1 | grep -o '"flows":[0-9]*' | head -1 | cut -d: -f2)
	local got="-"
	if [ "$tabs" -gt 0 ]; then
		got=""
		for i in $(seq "$tabs"); do got="$got $(grep -c '^event: flow' "$work/tab-$tabs-$i" || true)"; done
		grep -h '^event: dropped' "$work/tab-$tabs"-* >/dev/null && got="$got (a stream was dropped)"
		grep -q "fell behind" "$work/ph-$tabs.err" && got="$got (the UI index fell behind)"
	fi
	echo "| $([ "$ui" = off ] && echo "UI off" || echo "UI on, $tabs streams") | $rate | $stored | $got |"
}
echo "| run | HTTP keep-alive req/s (64 connections) | flows stored | flow events each stream received |"
echo "|---|---:|---:|---|"
for _ in $(seq "$rounds"); do
	measure off 0
	measure 127.0.0.1:18112 4
done
