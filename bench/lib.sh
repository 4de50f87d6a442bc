# Shared by bench/bulk.sh and bench/soak.sh, sourced from the repository root
# (bash, set -euo pipefail): a temporary directory $tmp, removed at exit with
# every process whose PID is in pids; the upstream servers of bench/bulkload;
# waiting for phonehome run to listen and to exit.
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# start_upstream: runs $tmp/bulkload -serve (its certificate in
# $tmp/upstream.pem) and sets H and S to its HTTP and HTTPS base URLs.
start_upstream() {
	"$tmp/bulkload" -serve -cert "$tmp/upstream.pem" > "$tmp/urls" & pids+=($!)
	for _ in $(seq 100); do [ -s "$tmp/urls" ] && break; sleep 0.1; done
	read -r H S < "$tmp/urls"
}

# wait_listening PID ADDR...: waits (up to 20 s) until every ADDR
# (HOST:PORT) takes connections; exits, showing $tmp/ph.err, if phonehome run
# (PID) ends first.
wait_listening() {
	local pid=$1 a up
	shift
	for _ in $(seq 200); do
		up=yes
		for a in "$@"; do (exec 3<> "/dev/tcp/${a/://}") 2>/dev/null || { up=no; break; }; done
		[ "$up" = yes ] && break
		kill -0 "$pid" 2>/dev/null || { echo "phonehome run did not start:" >&2; cat "$tmp/ph.err" >&2; exit 1; }
		sleep 0.1
	done
}

# stop_phonehome PID MINUTES: SIGINT, then up to MINUTES for phonehome run to
# exit (killed after that); sets exit_s to the seconds it took.
stop_phonehome() {
	local pid=$1 mins=$2 t0
	kill -INT "$pid"
	t0=$(date +%s.%N)
	for _ in $(seq $((mins * 600))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then echo "phonehome run had not exited $mins min after SIGINT; killing it" >&2; kill -9 "$pid"; fi
	wait "$pid" 2>/dev/null || echo "phonehome run exited with status $?"
	exit_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
}
