#!/usr/bin/env bash
# bench/run.sh — time `idem load` against `psql \copy` on PostgreSQL, on the
# same generated orders data, and print idem/reference ratios measured in this
# one run. See bench/README.md for what each step measures.
#
#   bash bench/run.sh [ROWS]            # default 1000000 rows
#   BENCH_10M=1 bash bench/run.sh       # also the 10M-row peak-memory step (minutes)
#
# Environment (all optional): PGHOST (127.0.0.1), PGPORT (5432), PGUSER (root),
# PGDATABASE (test), BENCH_10M=1, BENCH_KEEP=1 (keep the idem_bench schema),
# F_REPEAT (3: step f and its reference run this many times; the median counts),
# AB_REPEAT (3: the same for steps a and b, each into a fresh schema).
set -euo pipefail

ROWS="${1:-1000000}"
if ! [[ "$ROWS" =~ ^[0-9]+$ ]] || (( ROWS < 30 )); then
	echo "usage: bash bench/run.sh [ROWS]   (ROWS >= 30, default 1000000)" >&2
	exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=bench/out
IDEM="$OUT/idem"
SCHEMA=idem_bench
DAYS=30
PART_DATE=2024-01-15 # the 15th of the 30 order dates (genorders starts at 2024-01-01)
ORIG="$OUT/orders.csv"
CHANGED="$OUT/orders_changed.csv"
PART="$OUT/orders_part.csv" # the original rows of PART_DATE, with the header
PART_CHANGED="$OUT/orders_part_changed.csv" # its rows in the 1%-changed file
BIG="$OUT/orders_10m.csv"

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-root}" PGDATABASE="${PGDATABASE:-test}"
export PGOPTIONS="-c search_path=$SCHEMA -c client_min_messages=warning"
URL="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${PGDATABASE}?sslmode=disable&search_path=${SCHEMA}"

DDL_COLS='(order_id bigint primary key, customer_id bigint, amount numeric(12,2), status text, order_date date, note text)'

TMP="$(mktemp -d)"
FAILED=0

pq() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
	local rc=$?
	rm -f "$BIG"
	rm -rf "$TMP"
	if [[ "${BENCH_KEEP:-0}" != 1 ]]; then
		psql -X -q -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
say() { printf '\n== %s\n' "$*"; }

# show CMD ARGS...: print a command line, each argument shell-quoted when needed.
show() {
	local a q="'" out="  \$"
	for a in "$@"; do
		if [[ "$a" =~ ^[A-Za-z0-9_./=:,@+%-]+$ ]]; then out+=" $a"; else out+=" '${a//$q/$q\\$q$q}'"; fi
	done
	echo "$out"
}

TIMEBIN=""
[[ -x /usr/bin/time ]] && TIMEBIN=/usr/bin/time

# settle: untimed, between timed steps, the same for both tables: finish the
# background work a bulk load leaves (hint bits, visibility map, statistics,
# dirty buffers) so it is not billed to whichever step happens to come next.
settle() {
	local t
	for t in "$@"; do pq -c "VACUUM (ANALYZE) $t"; done
	pq -c "CHECKPOINT" 2>/dev/null || true
}

# Timed runs. Each sets T[key] (seconds); idem runs also set MB[key] (max
# RSS), LINE[key] (the result line) and ERR[key] on failure.
declare -A T MB LINE ERR

# time_psql KEY ARGS...: psql ARGS, timed.
time_psql() {
	local key=$1 t0 t1 rc=0
	shift
	show psql "$@"
	t0=$(now)
	pq "$@" >"$TMP/$key.log" 2>&1 || rc=$?
	t1=$(now)
	sed 's/^/    /' "$TMP/$key.log"
	T[$key]=$(elapsed "$t0" "$t1")
	echo "    (${T[$key]} s)"
	if ((rc != 0)); then
		ERR[$key]="psql exit $rc"
		FAILED=1
		echo "  !! psql failed with exit $rc" >&2
	fi
}

# time_idem KEY ARGS...: idem load ARGS, timed; prints idem's output.
time_idem() {
	local key=$1 t0 t1 rc=0 kb
	shift
	show idem load "$@"
	t0=$(now)
	if [[ -n "$TIMEBIN" ]]; then
		"$TIMEBIN" -f '%M' -o "$TMP/$key.rss" "$IDEM" load "$@" >"$TMP/$key.log" 2>&1 || rc=$?
	else
		"$IDEM" load "$@" >"$TMP/$key.log" 2>&1 || rc=$?
	fi
	t1=$(now)
	sed 's/^/    /' "$TMP/$key.log"
	T[$key]=$(elapsed "$t0" "$t1")
	echo "    (${T[$key]} s wall)"
	LINE[$key]="$(grep -E ' in · ' "$TMP/$key.log" | tail -n 1 || true)"
	if [[ -n "$TIMEBIN" && -s "$TMP/$key.rss" ]]; then
		kb=$(tail -n 1 "$TMP/$key.rss")
		[[ "$kb" =~ ^[0-9]+$ ]] && MB[$key]=$(awk -v k="$kb" 'BEGIN { printf "%.0f", k / 1024 }')
	fi
	if ((rc != 0)); then
		ERR[$key]="idem exit $rc"
		FAILED=1
		echo "  !! idem failed with exit $rc (output above)" >&2
	fi
}

# field LINE WORD: the number before WORD in an idem result line ("10023 updated").
field() { grep -oE "[0-9]+ $2" <<<"$1" | head -n 1 | cut -d' ' -f1 || true; }

# Correctness: both tables hold the same rows (same DDL, so same text).
CHECKS=()
compare_tables() {
	local what=$1 a b
	a=$(pq -At -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY order_id)), '-') FROM orders t")
	b=$(pq -At -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY order_id)), '-') FROM orders_idem t")
	if [[ "$a" == "$b" ]]; then
		CHECKS+=("OK        $what: orders = orders_idem ($a)")
	else
		CHECKS+=("MISMATCH  $what: orders ($a) != orders_idem ($b)")
		FAILED=1
	fi
	echo "  check: ${CHECKS[-1]}"
}

# ---------------------------------------------------------------- setup
mkdir -p "$OUT"
say "build: CGO_ENABLED=0 go build -o $IDEM ./cmd/idem"
CGO_ENABLED=0 go build -o "$IDEM" ./cmd/idem
# The tree may be mid-edit: say which source the numbers belong to.
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- . ':!bench' 2>/dev/null)" ]]; then REV+="+uncommitted changes"; fi
echo "  idem from $REV"

say "generate $ROWS rows ($DAYS days)"
go run ./bench/genorders -rows "$ROWS" -days "$DAYS" >"$ORIG"
go run ./bench/genorders -rows "$ROWS" -days "$DAYS" -change 0.01 >"$CHANGED"
awk -F, -v d="$PART_DATE" 'NR == 1 || $5 == d' "$ORIG" >"$PART"
awk -F, -v d="$PART_DATE" 'NR == 1 || $5 == d' "$CHANGED" >"$PART_CHANGED"
PART_ROWS=$(($(wc -l <"$PART") - 1))
CHANGED_ROWS=$(paste -d'|' <(cut -d, -f1-4 "$ORIG") <(cut -d, -f1-4 "$CHANGED") | awk -F'|' '$1 != $2 { n++ } END { print n + 0 }')
ls -l "$ORIG" "$CHANGED" "$PART" | sed 's/^/  /'
echo "  partition $PART_DATE: $PART_ROWS rows; rows changed in $CHANGED: $CHANGED_ROWS"
((PART_ROWS > 0)) || { echo "no rows for $PART_DATE" >&2; exit 1; }

# median KEY N: T[KEY] = the median of T[KEY1..N] (a 0.2 s step is at the
# mercy of one scheduler hiccup; the median of a few is not); MB and ERR
# are the worst of them.
median() {
	local key=$1 n=$2 i
	T[$key]=$(for ((i = 1; i <= n; i++)); do echo "${T[$key$i]:-0}"; done | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	for ((i = 1; i <= n; i++)); do
		[[ -n "${ERR[$key$i]:-}" ]] && ERR[$key]=${ERR[$key$i]}
		[[ -n "${MB[$key$i]:-}" ]] && ((${MB[$key$i]} > ${MB[$key]:-0})) && MB[$key]=${MB[$key$i]}
	done
	LINE[$key]=${LINE[${key}1]:-}
	echo "  median of $n: ${T[$key]} s"
}

# a and b run AB_REPEAT times, each time into a freshly created schema, and
# their medians count: a 5 s COPY moves by +-20% from one run to the next
# here, which one sample would hand to the ratio. Later steps use the
# tables the last repeat left.
AB_REPEAT="${AB_REPEAT:-3}"
for ((r = 1; r <= AB_REPEAT; r++)); do
	say "schema $SCHEMA (dropped and recreated); tables orders (psql) and orders_idem (idem), same DDL"
	pq -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" -c "CREATE SCHEMA $SCHEMA"
	for t in orders orders_idem; do
		pq -c "CREATE TABLE $t $DDL_COLS" -c "CREATE INDEX ON $t (order_date)"
	done
	settle orders orders_idem

	say "a ($r/$AB_REPEAT). reference: psql \\copy into the empty table"
	time_psql "a$r" -c "\\copy orders from '$ORIG' csv header"
	settle orders orders_idem

	say "b ($r/$AB_REPEAT). idem first load (upsert) into the empty table"
	time_idem "b$r" "$ORIG" --to "$URL" --table orders_idem --key order_id --strategy upsert
	compare_tables "after b $r (original data)"
	settle orders orders_idem
done
median a "$AB_REPEAT"
median b "$AB_REPEAT"

# ---------------------------------------------------------------- c, d, e
# idem_step KEY "LABEL" FILE STRATEGY: one timed idem load of orders_idem.
idem_step() {
	say "$2"
	time_idem "$1" "$3" --to "$URL" --table orders_idem --key order_id --strategy "$4"
	settle orders_idem
}
idem_step c "c. identical rerun, upsert" "$ORIG" upsert
idem_step m "merge, first run on the same data (another strategy, so not a rerun: no fast path)" "$ORIG" merge
idem_step d "d. identical rerun, merge" "$ORIG" merge
idem_step e "e. 1%-changed file, merge (the table holds the original)" "$CHANGED" merge

# ---------------------------------------------------------------- f
# Both tables now get the changed data (psql: untimed reload), then both
# replace partition PART_DATE with its original rows: a real replace (~1% of
# the partition's rows differ), not a fast-path skip.
# The reference table gets the changed rows the way idem's did in e, by
# updating them in place (hand-written staging + UPDATE ... IS DISTINCT
# FROM), so that both tables reach f with the same physical history: a
# freshly reloaded table deletes and inserts faster than one whose rows
# were updated, and f would then measure that, not the tools.
cat >"$TMP/update.sql" <<EOF
BEGIN;
CREATE TEMP TABLE chg (LIKE orders) ON COMMIT DROP;
\\copy chg from '$CHANGED' csv header
UPDATE orders o SET customer_id = c.customer_id, amount = c.amount, status = c.status, order_date = c.order_date, note = c.note
  FROM chg c WHERE o.order_id = c.order_id
  AND (o.customer_id, o.amount, o.status, o.order_date, o.note) IS DISTINCT FROM (c.customer_id, c.amount, c.status, c.order_date, c.note);
COMMIT;
EOF
say "reference update to the changed file (psql staging + UPDATE; setup for f, not a target)"
time_psql upd -f "$TMP/update.sql"
compare_tables "after e (1%-changed data)"
settle orders orders_idem

cat >"$TMP/partition.sql" <<EOF
BEGIN;
DELETE FROM orders WHERE order_date = '$PART_DATE';
\\copy orders from '$PART' csv header
COMMIT;
EOF


F_REPEAT="${F_REPEAT:-3}"
for ((r = 1; r <= F_REPEAT; r++)); do
	if ((r > 1)); then
		say "f setup $r: both tables get the 1%-changed partition back (untimed)"
		pq -c "BEGIN" -c "DELETE FROM orders WHERE order_date = '$PART_DATE'" -c "\\copy orders from '$PART_CHANGED' csv header" -c "COMMIT"
		"$IDEM" load "$PART_CHANGED" --to "$URL" --table orders_idem --partition "order_date=$PART_DATE" --strategy replace-partition | sed 's/^/    /'
		settle orders orders_idem
	fi
	say "f ($r/$F_REPEAT). partition replace $PART_DATE ($PART_ROWS rows), reference: psql DELETE + \\copy in one transaction"
	time_psql "fref$r" -f "$TMP/partition.sql"
	settle orders

	say "f ($r/$F_REPEAT). partition replace $PART_DATE, idem replace-partition"
	time_idem "f$r" "$PART" --to "$URL" --table orders_idem --partition "order_date=$PART_DATE" --strategy replace-partition
	compare_tables "after f $r (partition $PART_DATE replaced)"
	settle orders_idem
done
median fref "$F_REPEAT"
median f "$F_REPEAT"

# fw: the same partition replace with the scope swapped whole (--no-digest:
# delete every old row, copy every input row), the path idem takes when it
# cannot compare rows in the client (scopes over 1M rows, partitioned
# PostgreSQL tables). Informational: f is the row-by-row default.
for ((r = 1; r <= F_REPEAT; r++)); do
	say "fw setup $r: the 1%-changed partition back (untimed)"
	"$IDEM" load "$PART_CHANGED" --to "$URL" --table orders_idem --partition "order_date=$PART_DATE" --strategy replace-partition | sed 's/^/    /'
	settle orders_idem
	say "fw ($r/$F_REPEAT). partition replace $PART_DATE, idem replace-partition --no-digest (whole swap)"
	time_idem "fw$r" "$PART" --to "$URL" --table orders_idem --partition "order_date=$PART_DATE" --strategy replace-partition --no-digest
	compare_tables "after fw $r"
	settle orders_idem
done
median fw "$F_REPEAT"

say "f2. identical partition rerun"
time_idem f2 "$PART" --to "$URL" --table orders_idem --partition "order_date=$PART_DATE" --strategy replace-partition

# ---------------------------------------------------------------- g
if [[ "${BENCH_10M:-0}" == 1 ]]; then
	say "g. peak memory of a 10M-row load"
	if [[ ! -x /usr/bin/time ]]; then
		echo "  /usr/bin/time missing: apt-get install -y time"
		apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
	fi
	go run ./bench/genorders -rows 10000000 -days "$DAYS" >"$BIG"
	ls -l "$BIG" | sed 's/^/  /'
	pq -c "DROP TABLE IF EXISTS orders_10m" -c "DROP TABLE orders" -c "DROP TABLE orders_idem" -c "CHECKPOINT" 2>/dev/null || true
	echo "  (table created by idem)"
	show /usr/bin/time -v idem load "$BIG" --to "$URL" --table orders_10m --key order_id --strategy upsert
	rc=0
	t0=$(now)
	/usr/bin/time -v "$IDEM" load "$BIG" --to "$URL" --table orders_10m --key order_id --strategy upsert >"$TMP/g.log" 2>&1 || rc=$?
	t1=$(now)
	grep -vE '^\s' "$TMP/g.log" | sed 's/^/    /' || true
	grep -E 'Maximum resident set size|Elapsed \(wall' "$TMP/g.log" | sed 's/^\s*/    /' || true
	T[g]=$(elapsed "$t0" "$t1")
	LINE[g]="$(grep -E ' in · ' "$TMP/g.log" | tail -n 1 || true)"
	kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/g.log")
	[[ "$kb" =~ ^[0-9]+$ ]] && MB[g]=$(awk -v k="$kb" 'BEGIN { printf "%.0f", k / 1024 }')
	if ((rc != 0)); then
		ERR[g]="idem exit $rc"
		FAILED=1
		echo "  !! idem failed with exit $rc" >&2
		cat "$TMP/g.log" >&2
	fi
	rm -f "$BIG"
	pq -c "DROP TABLE IF EXISTS orders_10m" || true
fi

# ---------------------------------------------------------------- report
# row LABEL REFKEY IDEMKEY TARGET: TARGET is a max ratio, "" (informational)
# or "mem:N" (max RSS in MB).
row() {
	local label=$1 rk=$2 ik=$3 target=$4 ref="-" idem="-" ratio="-" tgt="-" res="info" mb
	[[ -n "$rk" ]] && ref="${T[$rk]:--}"
	[[ -n "$ik" ]] && idem="${T[$ik]:--}"
	mb="-"
	[[ -n "$ik" ]] && mb="${MB[$ik]:--}"
	if [[ "$ref" != - && "$idem" != - ]]; then
		ratio=$(awk -v r="$ref" -v i="$idem" 'BEGIN { printf "%.3f", (r > 0 ? i / r : 0) }')
	fi
	if [[ "$target" == mem:* ]]; then
		tgt="<=${target#mem:} MB"
		if [[ "$mb" != - ]]; then
			res=$(awk -v m="$mb" -v t="${target#mem:}" 'BEGIN { print (m <= t ? "PASS" : "MISS") }')
		fi
	elif [[ -n "$target" ]]; then
		tgt="<=$target"
		[[ "$ratio" != - ]] && res=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r <= t ? "PASS" : "MISS") }')
	fi
	if [[ -n "$ik" && -n "${ERR[$ik]:-}" ]] || [[ -n "$rk" && -n "${ERR[$rk]:-}" ]]; then res="ERROR"; fi
	printf '%-44s %9s %9s %7s %10s %6s %7s\n' "$label" "$ref" "$idem" "$ratio" "$tgt" "$res" "$mb"
}

say "results: $ROWS rows, PostgreSQL, idem $REV, wall seconds, ratio = idem / reference"
printf '%-44s %9s %9s %7s %10s %6s %7s\n' step "ref s" "idem s" ratio target result "idem MB"
printf '%s\n' "---------------------------------------------------------------------------------------------------"
row "a. psql \\copy into empty table (median of $AB_REPEAT)" a "" ""
row "b. idem first load, upsert (median of $AB_REPEAT)" a b 1.15
row "c. identical rerun, upsert" a c 0.25
row "   first merge, same data (not a rerun)" a m ""
row "d. identical rerun, merge" a d 0.25
row "e. 1% changed, merge" a e 0.4
row "f. partition replace ($PART_ROWS rows, median of $F_REPEAT)" fref f 1.2
row "fw. the same, swapped whole (--no-digest)" fref fw ""
row "f2. identical partition rerun" fref f2 ""
if [[ "${BENCH_10M:-0}" == 1 ]]; then
	row "g. 10M-row load, peak RSS" "" g mem:150
fi
echo
echo "(reference update to the changed file, psql staging + UPDATE ... IS DISTINCT FROM: ${T[upd]:--} s; idem's e did the same)"
echo
echo "idem result lines:"
for k in b c m d e f fw f2 g; do
	[[ -n "${LINE[$k]:-}" ]] && printf '  %-3s %s\n' "$k" "${LINE[$k]}"
done
if [[ -n "${LINE[e]:-}" ]]; then
	echo "  e: $(field "${LINE[e]}" updated) updated (the changed file differs in $CHANGED_ROWS rows)"
fi
echo
echo "correctness:"
printf '  %s\n' "${CHECKS[@]}"

if ((FAILED)); then
	echo
	echo "FAILED: an idem/psql step failed or the tables differ (see above)" >&2
	exit 1
fi
