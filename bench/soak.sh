#!/usr/bin/env bash
# Soak: phonehome run under a moderate, steady load for DURATION: answers of
# 1 KiB to 1 MiB, HTTP and HTTPS, keep-alive and a new connection per request,
# some request bodies (bench/soak against bench/bulkload -serve, all on
# 127.0.0.1). Every 10 s it samples the proxy's RSS (VmRSS), open descriptors
# (/proc/PID/fd) and goroutines (from --debug-listen's pprof when phonehome
# run has that flag, n/a otherwise), prints them as a table, and says for each
# whether it stayed flat (the last third's max within 10%, or a small absolute
# slack, of the first third's max after warm-up) or grew. At the end, the
# requests made are compared with the flows stored.
#   bench/soak.sh [DURATION] [RATE]   (default 10m, 40 requests/s)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10m}
rate=${2:-40}
. bench/lib.sh

go build -o "$tmp/phonehome" ./cmd/phonehome
go build -o "$tmp/bulkload" ./bench/bulkload
go build -o "$tmp/soak" ./bench/soak

start_upstream
port=$("$tmp/bulkload" -freeport)
args=(--listen "127.0.0.1:$port" --db "$tmp/x.db" --ca-dir "$tmp/ca" --upstream-ca "$tmp/upstream.pem")
debug=
if "$tmp/phonehome" run --help 2>&1 | grep -q -- '--debug-listen'; then
	debug=127.0.0.1:$("$tmp/bulkload" -freeport)
	args+=(--debug-listen "$debug")
fi
"$tmp/phonehome" run "${args[@]}" > "$tmp/ph.out" 2> "$tmp/ph.err" & ph=$!; pids+=($ph)
wait_listening "$ph" "127.0.0.1:$port" ${debug:+"$debug"}

"$tmp/soak" -proxy "http://127.0.0.1:$port" -cacert "$tmp/ca/ca.pem" -http "$H" -https "$S" \
	-pid "$ph" ${debug:+-debug "$debug"} -d "$dur" -rate "$rate" -every 10s | tee "$tmp/soak.out"

stop_phonehome "$ph" 5

"$tmp/phonehome" report --db "$tmp/x.db" --format json | "$tmp/bulkload" -tally > "$tmp/tally"
made=$(sed -n 's/^requests made: //p' "$tmp/soak.out")
stored=$(sed -n 's/^flows stored by path:.* \/bytes \([0-9]*\),.*/\1/p' "$tmp/tally")
notan=$(sed -n 's/.*with a note that something was not analysed: \([0-9]*\) .*/\1/p' "$tmp/tally")
echo
echo "requests made: $made; flows of them stored: $stored; flows noted as not analysed: $notan"
grep -h 'not analysed' "$tmp/ph.err" || echo "phonehome printed no 'not analysed' line"
echo "phonehome run exited ${exit_s} s after SIGINT; database $(du -m "$tmp/x.db" | cut -f1) MiB"
