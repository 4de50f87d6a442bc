#!/usr/bin/env bash
# The store on PostgreSQL beside SQLite, in one run: starts a throwaway
# PostgreSQL cluster (Debian's postgresql package; as the postgres user when
# run as root) with the server's default durability (fsync on, every commit
# flushed), on a loopback port in a temporary directory, then
#   - BenchmarkIngest: one sensor storing the example's flows as a live
#     capture does (a commit every 1,000 flows), flows/s for SQLite and
#     PostgreSQL (goal: PostgreSQL at least 20,000 flows/s);
#   - BenchmarkReadLean: a report's read of 50,000 flows, ns/flow for both;
#   - bench/report-1m.sh with PG_URL: the 1,000,000-flow report from SQLite
#     and from PostgreSQL (goal: within 1.5 times SQLite's time, same memory
#     bound).
# The cluster is stopped and removed at the end.
#   bench/store-pg.sh            (N=100000 for a quicker report run)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || bin=$(dirname "$(command -v initdb)")
dir=$(mktemp -d)
chmod 755 "$dir"
as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  as=(runuser -u postgres --)
fi
port=$(go run ./bench/bulkload -freeport)
stop() {
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
"${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U ph -E UTF8 --locale=C >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=4GB" start >/dev/null
url="postgres://ph@127.0.0.1:$port/postgres?sslmode=disable"
echo "--- PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, default durability"
PHONEHOME_TEST_POSTGRES=$url go test -run '^$' -bench 'BenchmarkIngest' -benchtime 100000x ./internal/store/ | grep -E '^Benchmark'
PHONEHOME_TEST_POSTGRES=$url go test -run '^$' -bench 'BenchmarkReadLean' -benchtime 5x ./internal/store/ | grep -E '^Benchmark'
"${as[@]}" "$bin/psql" -h "$dir" -p "$port" -U ph -d postgres -qc 'CREATE DATABASE report_bench'
PG_URL="postgres://ph@127.0.0.1:$port/report_bench?sslmode=disable" bench/report-1m.sh
