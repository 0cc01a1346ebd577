#!/usr/bin/env bash
# bench/proof.sh — issue 3's figures: `idem checksum` of a PostgreSQL table
# against `psql \copy orders to /dev/null`, and `idem diff` of two tables that
# differ in 100 rows against one checksum. Ratios are measured in this one
# run: each command runs REPEAT times (default 3) and the median counts.
#
#   bash bench/proof.sh [ROWS]        # default 1000000
#
# Environment (optional): PGHOST (127.0.0.1), PGPORT (5432), PGUSER (root),
# PGDATABASE (test), REPEAT (3), BENCH_KEEP=1 keeps the idem_proof schema.
set -euo pipefail

ROWS="${1:-1000000}"
REPEAT="${REPEAT:-3}"
if ! [[ "$ROWS" =~ ^[0-9]+$ ]] || (( ROWS < 100000 )); then
	echo "usage: bash bench/proof.sh [ROWS]   (ROWS >= 100000, default 1000000)" >&2
	exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=bench/out
IDEM="$OUT/idem"
SCHEMA=idem_proof
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-root}" PGDATABASE="${PGDATABASE:-test}"
export PGOPTIONS="-c search_path=$SCHEMA -c client_min_messages=warning"
URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${PGDATABASE}?sslmode=disable&search_path=${SCHEMA}"
pq() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
	local rc=$?
	if [[ "${BENCH_KEEP:-0}" != 1 ]]; then
		psql -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
	fi
	exit "$rc"
}
trap cleanup EXIT

mkdir -p "$OUT"
echo "== build: $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench' || echo ' +uncommitted changes')"
CGO_ENABLED=0 go build -o "$IDEM" ./cmd/idem
echo "== data: $ROWS rows"
go run ./bench/genorders -rows "$ROWS" -days 30 >"$OUT/proof.csv"
pq -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" -c "CREATE SCHEMA $SCHEMA" \
	-c "CREATE TABLE orders (order_id bigint primary key, customer_id bigint, amount numeric(12,2), status text, order_date date, note text)" \
	-c "CREATE INDEX ON orders (order_date)" \
	-c "\\copy orders from '$OUT/proof.csv' csv header"
# orders_b: the same rows with exactly 100 differences, spread over the key
# range: 60 changed amounts, 20 deleted rows, 20 new rows.
STEP=$(( ROWS / 100 ))
pq -c "CREATE TABLE orders_b AS SELECT * FROM orders" -c "ALTER TABLE orders_b ADD PRIMARY KEY (order_id)" \
	-c "UPDATE orders_b SET amount = amount + 1 WHERE order_id % $STEP = 7 AND order_id <= $(( STEP * 60 ))" \
	-c "DELETE FROM orders_b WHERE order_id % $STEP = 11 AND order_id > $(( STEP * 80 ))" \
	-c "INSERT INTO orders_b SELECT order_id + $ROWS, customer_id, amount, status, order_date, note FROM orders WHERE order_id % $STEP = 13 AND order_id > $(( STEP * 80 ))" \
	-c "VACUUM ANALYZE orders" -c "VACUUM ANALYZE orders_b" -c "CHECKPOINT"
rm -f "$OUT/proof.csv"

# median SECONDS...: the middle value.
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# timeit CMD...: runs CMD once; LAST is its wall seconds, RC its exit code,
# $OUT/proof.last its output.
timeit() {
	local t0 t1
	t0=$(date +%s.%N)
	RC=0
	"$@" >"$OUT/proof.last" 2>&1 || RC=$?
	t1=$(date +%s.%N)
	LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

declare -a REF CK DF
for _ in $(seq "$REPEAT"); do
	timeit psql -X -q -c "\\copy orders to /dev/null"
	REF+=("$LAST")
	timeit "$IDEM" checksum --to "$URL" --table orders
	[[ $RC == 0 ]] || { cat "$OUT/proof.last"; exit 1; }
	CK+=("$LAST")
	timeit "$IDEM" diff --to "$URL" --table orders --with-table orders_b --key order_id --json
	DF+=("$LAST")
	[[ $RC == 3 ]] || { echo "diff should exit 3, got $RC"; cat "$OUT/proof.last"; exit 1; }
done
DIFFJSON=$(grep -E '^\{' "$OUT/proof.last")
echo "== diff found: $(grep -oE '"(added|removed|changed)":[0-9]+' <<<"$DIFFJSON" | tr '\n' ' ')"
ok=$(grep -c '"added":20,"removed":20,"changed":60' <<<"$DIFFJSON" || true)
r=$(median "${REF[@]}"); c=$(median "${CK[@]}"); d=$(median "${DF[@]}")
verdict() { awk -v x="$1" -v t="$2" 'BEGIN { print (x <= t) ? "PASS" : "MISS" }'; }
rc=$(awk -v a="$c" -v b="$r" 'BEGIN { printf "%.2f", a / b }')
rd=$(awk -v a="$d" -v b="$c" 'BEGIN { printf "%.2f", a / b }')
echo
printf '%-52s %8s %8s %8s\n' "step (median of $REPEAT)" seconds ratio target
printf '%-52s %8s %8s %8s\n' "psql \\copy orders to /dev/null" "$r" "" ""
printf '%-52s %8s %8s %8s %s\n' "idem checksum orders (vs psql)" "$c" "$rc" "1.30" "$(verdict "$rc" 1.30)"
printf '%-52s %8s %8s %8s %s\n' "idem diff orders orders_b, 100 rows differ (vs checksum)" "$d" "$rd" "3.00" "$(verdict "$rd" 3.00)"
echo "all runs: psql ${REF[*]} | checksum ${CK[*]} | diff ${DF[*]}"
if [[ "$ok" != 1 ]]; then
	echo "MISMATCH: the diff did not find exactly 60 changed, 20 removed, 20 added"
	exit 1
fi
echo "OK        diff found exactly the 100 planted differences"
