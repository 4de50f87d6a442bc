#!/usr/bin/env bash
# Report over a store of 1,000,000 flows: builds the store once (bench/genstore),
# then times `phonehome report` in text and HTML and prints wall time and peak
# memory. Goal: under 10 s and 1 GB RSS (text and HTML; JSON also writes
# every flow and finding as a line).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
DB=${DB:-${TMPDIR:-/tmp}/phonehome-report-bench-$N.db}
go build -o "${TMPDIR:-/tmp}/phonehome-bench" ./cmd/phonehome
if [ ! -f "$DB" ]; then
  go run ./bench/genstore -n "$N" -o "$DB"
fi
for format in text html json; do
  /usr/bin/time -f "report --format $format: %e s wall, %M KiB max RSS" \
    "${TMPDIR:-/tmp}/phonehome-bench" report --db "$DB" --format "$format" -o /dev/null
done
