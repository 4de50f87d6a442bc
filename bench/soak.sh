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
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/phonehome" ./cmd/phonehome
go build -o "$tmp/bulkload" ./bench/bulkload
go build -o "$tmp/soak" ./bench/soak

"$tmp/bulkload" -serve -cert "$tmp/upstream.pem" > "$tmp/urls" & pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/urls" ] && break; sleep 0.1; done
read -r H S < "$tmp/urls"
port=$("$tmp/bulkload" -freeport)
args=(--listen "127.0.0.1:$port" --db "$tmp/x.db" --ca-dir "$tmp/ca" --upstream-ca "$tmp/upstream.pem")
debug=
if "$tmp/phonehome" run --help 2>&1 | grep -q -- '--debug-listen'; then
	debug=127.0.0.1:$("$tmp/bulkload" -freeport)
	args+=(--debug-listen "$debug")
fi
"$tmp/phonehome" run "${args[@]}" > "$tmp/ph.out" 2> "$tmp/ph.err" & ph=$!; pids+=($ph)
for _ in $(seq 200); do
	(exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null && { [ -z "$debug" ] || (exec 3<> "/dev/tcp/${debug/://}") 2>/dev/null; } && break
	kill -0 "$ph" 2>/dev/null || { echo "phonehome run did not start:" >&2; cat "$tmp/ph.err" >&2; exit 1; }
	sleep 0.1
done

"$tmp/soak" -proxy "http://127.0.0.1:$port" -cacert "$tmp/ca/ca.pem" -http "$H" -https "$S" \
	-pid "$ph" ${debug:+-debug "$debug"} -d "$dur" -rate "$rate" -every 10s | tee "$tmp/soak.out"

kill -INT "$ph"
t0=$(date +%s.%N)
for _ in $(seq 3000); do kill -0 "$ph" 2>/dev/null || break; sleep 0.1; done # at most 5 min
if kill -0 "$ph" 2>/dev/null; then echo "phonehome run had not exited 5 min after SIGINT; killing it" >&2; kill -9 "$ph"; fi
wait "$ph" 2>/dev/null || echo "phonehome run exited with status $?"
exit_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

"$tmp/phonehome" report --db "$tmp/x.db" --format json | "$tmp/bulkload" -tally > "$tmp/tally"
made=$(sed -n 's/^requests made: //p' "$tmp/soak.out")
stored=$(sed -n 's/^flows stored by path:.* \/bytes \([0-9]*\),.*/\1/p' "$tmp/tally")
notan=$(sed -n 's/.*with a note that something was not analysed: \([0-9]*\) .*/\1/p' "$tmp/tally")
echo
echo "requests made: $made; flows of them stored: $stored; flows noted as not analysed: $notan"
grep -h 'not analysed' "$tmp/ph.err" || echo "phonehome printed no 'not analysed' line"
echo "phonehome run exited ${exit_s} s after SIGINT; database $(du -m "$tmp/x.db" | cut -f1) MiB"
