#!/usr/bin/env bash
# Measures phonehome run against Debian's mitmdump and the direct path, in one
# run, on loopback with 1 KiB responses: requests/s over 64 keep-alive
# connections (HTTP and intercepted HTTPS), new TLS connections/s, and latency
# p50/p99 at concurrency 1. Needs Debian's mitmproxy. The load generator
# (bench/proxyload) speaks HTTP/1.1 itself, as wrk does; -nethttp makes it
# use Go's net/http client, whose own cost then takes a larger share of the
# two cores.
#   bench/proxy-vs-mitmdump.sh [SECONDS] [-nethttp]   (default 5 s per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
client=${2:-}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
command -v mitmdump >/dev/null || { echo "mitmdump is needed: apt-get install mitmproxy" >&2; exit 1; }

go build -o "$work/phonehome" ./cmd/phonehome
go build -o "$work/proxyload" ./bench/proxyload
"$work/proxyload" -serve -cert "$work/upstream.pem" > "$work/urls" & pids+=($!)
sleep 1
read -r H S < "$work/urls"
"$work/phonehome" run --listen 127.0.0.1:18102 --db "$work/run.db" --ca-dir "$work/ca" --upstream-ca "$work/upstream.pem" > "$work/ph.out" 2> "$work/ph.err" & ph=$!; pids+=($ph)
mitmdump -q --listen-host 127.0.0.1 -p 18103 --ssl-insecure --set confdir="$work/mitm" > /dev/null 2>&1 & pids+=($!)
sleep 4

load() { "$work/proxyload" -d "${secs}s" $client "$@" 2>>"$work/errors"; }
row() { # name proxy-url ca
  local name=$1 px=$2 ca=$3
  local args=()
  [ -n "$px" ] && args+=(-proxy "$px")
  local kh ks hs lat
  kh=$(load "${args[@]}" -mode keepalive -target "$H/")
  ks=$(load "${args[@]}" -mode keepalive -cacert "$ca" -target "$S/")
  hs=$(load "${args[@]}" -mode handshake -c 16 -cacert "$ca" -target "$S/")
  lat=$(load "${args[@]}" -mode latency -target "$H/")
  echo "| $name | $kh | $ks | $hs | ${lat% *} | ${lat#* } |"
}
echo "| path | HTTP req/s (64 keep-alive) | HTTPS req/s (64 keep-alive) | new TLS conn/s | p50 ms (c=1) | p99 ms (c=1) |"
echo "|---|---:|---:|---:|---:|---:|"
row direct "" "$work/upstream.pem"
row "phonehome run" http://127.0.0.1:18102 "$work/ca/ca.pem"
row "mitmdump 8.1.1" http://127.0.0.1:18103 "$work/mitm/mitmproxy-ca-cert.pem"
# every request through phonehome must have been analysed and stored
kill -INT "$ph"; wait "$ph" 2>/dev/null || true
echo
echo "phonehome stored $("$work/phonehome" report --db "$work/run.db" --format json | tail -1 | grep -o '"flows":[0-9]*' | head -1 | cut -d: -f2) flows; $(grep -h 'not analysed' "$work/ph.err" || echo 'none was dropped by the analysis queue')"
if [ -s "$work/errors" ]; then echo; echo "errors:"; sort "$work/errors" | uniq -c | head; fi
