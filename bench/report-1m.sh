#!/usr/bin/env bash
# Report over a store of 1,000,000 flows: builds the store once (bench/genstore),
# then times `phonehome report` in text and HTML and prints wall time and peak
# memory. Goal: under 10 s and 1 GB RSS (text and HTML; JSON also writes
# every flow and finding as a line).
# With PG_URL (a postgres:// URL of a database phonehome may write), the
# session is also copied there (phonehome store copy, once: it is idempotent)
# and the same reports are timed from PostgreSQL, beside SQLite's in the same
# run. Goal: within 1.5 times SQLite's time, memory in the same bound.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
DB=${DB:-${TMPDIR:-/tmp}/phonehome-report-bench-$N.db}
bin=${TMPDIR:-/tmp}/phonehome-bench
go build -o "$bin" ./cmd/phonehome
if [ ! -f "$DB" ]; then
  go run ./bench/genstore -n "$N" -o "$DB"
fi
dbs=("$DB")
if [ -n "${PG_URL:-}" ]; then
  /usr/bin/time -f "store copy into PostgreSQL: %e s wall, %M KiB max RSS" "$bin" store copy "$DB" "$PG_URL"
  dbs+=("$PG_URL")
fi
for format in text html json; do
  for db in "${dbs[@]}"; do
    engine=sqlite
    case $db in postgres*) engine=postgres ;; esac
    /usr/bin/time -f "report --format $format from $engine: %e s wall, %M KiB max RSS" \
      "$bin" report --db "$db" --format "$format" -o /dev/null
  done
done
