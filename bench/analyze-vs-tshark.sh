#!/usr/bin/env bash
# Times `phonehome analyze` against tshark on the same generated pcap of mixed
# HTTP/DNS/TLS traffic, both pinned to one core (best of three runs each), and checks that every HTTP
# request in the file is found. Needs Debian's tshark.
#   bench/analyze-vs-tshark.sh [SIZE_MB]      (default 512)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-512}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v tshark >/dev/null || { echo "tshark is needed: apt-get install tshark" >&2; exit 1; }

go build -o "$work/phonehome" ./cmd/phonehome
go build -o "$work/genpcap" ./bench/genpcap
echo "generating a ${size} MB capture..." >&2
gen=$("$work/genpcap" -o "$work/bench.pcap" -size "$size")
want=$(sed -E 's/.*http_requests=([0-9]+).*/\1/' <<<"$gen")
bytes=$(stat -c %s "$work/bench.pcap")
echo "$gen" >&2

# timed NAME OUT CMD...: the best wall time of three runs (seconds) and the
# largest peak RSS (KiB) of CMD, pinned to core 0 (to cores 0 and 1 when
# CORES=0,1), its output in OUT.
timed() {
  local name=$1 out=$2; shift 2
  local best="" rss=0
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/$name.run" taskset -c "${CORES:-0}" "$@" > "$out"
    read -r s kb < "$work/$name.run"
    if [ -z "$best" ] || awk -v a="$s" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$s; fi
    [ "$kb" -gt "$rss" ] && rss=$kb
  done
  echo "$best $rss" > "$work/$name.time"
}

cat "$work/bench.pcap" > /dev/null # same page cache state for both
timed ph_flows "$work/ph-flows.txt" env GOMAXPROCS=1 "$work/phonehome" analyze --no-progress --no-detect "$work/bench.pcap"
timed ph_text "$work/ph.txt" env GOMAXPROCS=1 "$work/phonehome" analyze --no-progress "$work/bench.pcap"
timed ph_json "$work/ph.jsonl" env GOMAXPROCS=1 "$work/phonehome" analyze --no-progress --format json "$work/bench.pcap"
CORES=0,1 timed ph_two "$work/ph2.txt" env GOMAXPROCS=2 "$work/phonehome" analyze --no-progress "$work/bench.pcap"
timed tshark "$work/tshark.txt" tshark -r "$work/bench.pcap" -Y http.request -T fields -e http.host -e http.request.uri

ph_found=$(grep '^{"type":"flow"' "$work/ph.jsonl" | grep -c '"method"' || true)
ts_found=$(wc -l < "$work/tshark.txt")
read -r pf_s pf_kb < "$work/ph_flows.time"
read -r ph_s ph_kb < "$work/ph_text.time"
read -r pj_s pj_kb < "$work/ph_json.time"
read -r p2_s p2_kb < "$work/ph_two.time"
read -r ts_s ts_kb < "$work/tshark.time"
mb=$(awk -v b="$bytes" 'BEGIN{printf "%.0f", b/1e6}')
rate() { awk -v b="$bytes" -v s="$1" 'BEGIN{printf "%.1f", b/1e6/s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.0f", b/a}'; }
echo
echo "| ${mb} MB pcap, one core | time | throughput | peak RSS | HTTP requests found (of $want) |"
echo "|---|---:|---:|---:|---:|"
echo "| phonehome analyze --no-detect (who talked to whom) | ${pf_s} s | $(rate "$pf_s") MB/s | $((pf_kb / 1024)) MiB | (same reader as below) |"
echo "| phonehome analyze (table, with detection) | ${ph_s} s | $(rate "$ph_s") MB/s | $((ph_kb / 1024)) MiB | (same reader as below) |"
echo "| phonehome analyze (table, with detection), two cores | ${p2_s} s | $(rate "$p2_s") MB/s | $((p2_kb / 1024)) MiB | (same reader as below) |"
echo "| phonehome analyze --format json | ${pj_s} s | $(rate "$pj_s") MB/s | $((pj_kb / 1024)) MiB | $ph_found |"
echo "| tshark -Y http.request -T fields | ${ts_s} s | $(rate "$ts_s") MB/s | $((ts_kb / 1024)) MiB | $ts_found |"
echo
echo "phonehome reads flows at $(ratio "$pf_s" "$ts_s")x tshark's throughput; with detection $(ratio "$ph_s" "$ts_s")x (table), $(ratio "$p2_s" "$ts_s")x (table, phonehome on two cores) and $(ratio "$pj_s" "$ts_s")x (JSON)."

if [ "$ph_found" != "$want" ]; then
  echo "FAIL: phonehome found $ph_found of $want HTTP requests" >&2; exit 1
fi
