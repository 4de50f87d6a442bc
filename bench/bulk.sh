#!/usr/bin/env bash
# The bulk case: 16 keep-alive connections download 1 MiB files through
# phonehome run (half video/mp4, half application/octet-stream; half HTTP,
# half HTTPS) for SECONDS while one app sends 600 small tracker POSTs (forms
# and JSON carrying an IMEI with a valid Luhn digit and an android_id) spread
# over the same time. Then, from the stored session (phonehome report --format
# json): tracker flows stored, how many have the IMEI found, flows noted as
# not analysed; the proxy's peak RSS; the download throughput. Around it, the
# HTTPS keep-alive req/s of bench/proxyload (1 KiB, 64 connections, 3 s) on
# the fresh proxy and right after the bulk phase on the same proxy.
# Goal: every tracker request stored with its finding, nothing noted as not
# analysed, peak RSS under 400 MiB, the two req/s figures equal.
# All servers run on 127.0.0.1.
#   bench/bulk.sh [SECONDS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
trackers=600
. bench/lib.sh

go build -o "$tmp/phonehome" ./cmd/phonehome
go build -o "$tmp/proxyload" ./bench/proxyload
go build -o "$tmp/bulkload" ./bench/bulkload

start_upstream
port=$("$tmp/bulkload" -freeport)
proxy=http://127.0.0.1:$port
# PH_ARGS: more flags for phonehome run (e.g. "--ui off" to weigh the web UI)
"$tmp/phonehome" run --listen "127.0.0.1:$port" --db "$tmp/x.db" --ca-dir "$tmp/ca" --upstream-ca "$tmp/upstream.pem" ${PH_ARGS:-} \
	> "$tmp/ph.out" 2> "$tmp/ph.err" & ph=$!; pids+=($ph)
wait_listening "$ph" "127.0.0.1:$port"

# VmHWM is the peak RSS so far; a background loop keeps the last value read
# (it only grows, so the last read before exit is the peak, give or take 0.1 s).
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$ph/status" 2>/dev/null || true; }
mib() { awk -v k="${1:-0}" 'BEGIN {printf "%.0f", k / 1024}'; }
( while kill -0 "$ph" 2>/dev/null; do
	v=$(kib VmHWM); [ -n "$v" ] && echo "$v" > "$tmp/hwm.new" && mv "$tmp/hwm.new" "$tmp/hwm"
	sleep 0.1
done ) & pids+=($!)

https_rps() { "$tmp/proxyload" -proxy "$proxy" -cacert "$tmp/ca/ca.pem" -mode keepalive -c 64 -d 3s -target "$S/1k" 2>> "$tmp/proxyload.err"; }

echo "== fresh proxy: HTTPS keep-alive, 1 KiB, 64 connections, 3 s"
fresh=$(https_rps)
echo "$fresh req/s"
sleep 3 # let analysis and the store catch up before the bulk phase
hwm_fresh=$(kib VmHWM)
reset=no
if echo 5 > "/proc/$ph/clear_refs" 2>/dev/null; then reset=yes; fi # restart the peak from here

echo
echo "== bulk: 16 connections downloading 1 MiB for ${secs} s, $trackers tracker requests spread over it"
"$tmp/bulkload" -proxy "$proxy" -cacert "$tmp/ca/ca.pem" -http "$H" -https "$S" -c 16 -d "${secs}s" -tracker "$trackers" | tee "$tmp/bulk.out"
hwm_bulk=$(kib VmHWM)
rss_end=$(kib VmRSS)

echo
echo "== right after the bulk phase, same proxy: HTTPS keep-alive, 1 KiB, 64 connections, 3 s"
after=$(https_rps)
echo "$after req/s"

stop_phonehome "$ph" 10
hwm_exit=$(cat "$tmp/hwm" 2>/dev/null || echo 0)

"$tmp/phonehome" report --db "$tmp/x.db" --format json > "$tmp/report.jsonl"
"$tmp/bulkload" -tally < "$tmp/report.jsonl" > "$tmp/tally"

answered=$(sed -n 's/^tracker requests answered: \([0-9]*\) of.*/\1/p' "$tmp/bulk.out")
throughput=$(sed -n 's/^download throughput: \([0-9.]*\) MiB.*/\1/p' "$tmp/bulk.out")
stored=$(sed -n 's/.*tracker flows stored: \([0-9]*\) .*/\1/p' "$tmp/tally")
found=$(sed -n 's/.*with the IMEI found: \([0-9]*\).*/\1/p' "$tmp/tally")
notan=$(sed -n 's/.*with a note that something was not analysed: \([0-9]*\).*/\1/p' "$tmp/tally")
stored_1k=$(sed -n 's/^flows stored by path:.* \/1k \([0-9]*\),.*/\1/p' "$tmp/tally")
dropped=$(grep -h 'not analysed' "$tmp/ph.err" | head -1 || true)
case ${dropped%% *} in
'') dropped=0 ;;
*[!0-9]*) ;;        # worded otherwise: shown whole
*) dropped=${dropped%% *} ;;
esac

echo
echo "== stored session"
cat "$tmp/tally"
grep -h 'not analysed' "$tmp/ph.err" || echo "phonehome printed no 'not analysed' line"
echo "phonehome run exited ${exit_s} s after SIGINT; database $(du -m "$tmp/x.db" | cut -f1) MiB"
[ -s "$tmp/proxyload.err" ] && { echo "proxyload errors:"; sort "$tmp/proxyload.err" | uniq -c | head; }

if [ "$reset" = yes ]; then peak_what="from the bulk phase to exit (VmHWM, reset after the fresh measurement, which peaked at $(mib "$hwm_fresh") MiB)"
else peak_what="over the whole run (VmHWM; it could not be reset after the fresh measurement, which peaked at $(mib "$hwm_fresh") MiB)"; fi
echo
echo "| measure | this run | goal |"
echo "|---|---:|---:|"
echo "| tracker requests answered | $answered of $trackers | $trackers |"
echo "| tracker flows stored | $stored | $trackers |"
echo "| ... with the IMEI found | $found | $trackers |"
echo "| flows noted as not analysed (all flows) | $notan | 0 |"
echo "| flows phonehome says were not analysed (its exit message) | $dropped | 0 |"
echo "| 1 KiB requests of the two req/s measurements: made / stored | ~$(( (${fresh:-0} + ${after:-0}) * 3 )) / $stored_1k | equal |"
echo "| peak RSS during the bulk phase | $(mib "$hwm_bulk") MiB | < 400 MiB |"
echo "| peak RSS to exit | $(mib "$hwm_exit") MiB | < 400 MiB |"
echo "| RSS at the end of the bulk phase | $(mib "$rss_end") MiB | |"
echo "| download throughput (16 connections) | $throughput MiB/s | |"
echo "| HTTPS keep-alive req/s: fresh / after bulk | $fresh / $after | equal |"
echo
echo "peak RSS to exit: $peak_what"
