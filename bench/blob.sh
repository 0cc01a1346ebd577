#!/usr/bin/env bash
# bench/blob.sh — idem load into file: and s3:// targets: one Parquet
# partition per order date (30 partitions) of the generated 1M-row orders,
# first write, identical rerun and forced rerun, with peak memory, in two
# forms: 30 processes (one `--partition order_date=DAY` load per day) and
# one process (one load of the whole file into a partition_by=order_date
# target). Prints the numbers and the ratios of this one run. See
# bench/README.md.
#
#   bash bench/blob.sh [ROWS]          # default 1000000
#
# S3: set IDEM_TEST_S3 (e.g. s3://idem-test?endpoint=http://127.0.0.1:7070)
# and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; without it only file: runs.
# The bucket must exist (.ci/run's tests create it).
set -euo pipefail

ROWS="${1:-1000000}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=bench/out
IDEM="$OUT/idem"
DAYS=30
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

TIMEBIN=""
[[ -x /usr/bin/time ]] && TIMEBIN=/usr/bin/time

CGO_ENABLED=0 go build -o "$IDEM" ./cmd/idem
echo "idem built from $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench' || echo ' +uncommitted changes')"

ORIG="$OUT/orders.csv"
if [[ ! -s "$ORIG" || "$(($(wc -l <"$ORIG") - 1))" != "$ROWS" ]]; then
	go run ./bench/genorders -rows "$ROWS" -days "$DAYS" >"$ORIG"
fi
# One file per order date (untimed): the unit a daily pipeline loads.
SPLIT="$TMP/days"
mkdir -p "$SPLIT"
awk -F, -v dir="$SPLIT" 'NR == 1 { h = $0; next }
	{ d = $5; f = dir "/" d ".csv"; if (!(f in seen)) { print h > f; seen[f] = 1 } print >> f }' "$ORIG"
mapfile -t DATES < <(ls "$SPLIT" | sed 's/\.csv$//' | sort)
echo "${#DATES[@]} partitions of ~$((ROWS / ${#DATES[@]})) rows from $ORIG"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# loop URL [EXTRA...]: loads every date into URL; sets SECS (wall time of
# the 30 processes, nothing else in the timed loop) and INPROC (sum of the
# loads' own duration_ms, i.e. without process start-up).
loop() {
	local url="$1"; shift
	local t0 d
	: >"$TMP/lines"
	t0=$(now)
	for d in "${DATES[@]}"; do
		"$IDEM" load "$SPLIT/$d.csv" --to "$url" --table orders --partition "order_date=$d" --execution-date "$d" --json "$@" >>"$TMP/lines"
	done
	SECS=$(elapsed "$t0" "$(now)")
	INPROC=$(sed -n 's/.*"duration_ms":\([0-9]*\).*/\1/p' "$TMP/lines" | awk '{ s += $1 } END { printf "%.3f", s / 1000 }')
	LAST=$(tail -1 "$TMP/lines")
}

# peak URL [EXTRA...]: the same loads, untimed, each under /usr/bin/time -v;
# sets PEAK_MB to the largest maximum RSS.
peak() {
	local url="$1"; shift
	local d kb max=0
	PEAK_MB="n/a"
	[[ -n "$TIMEBIN" ]] || return 0
	for d in "${DATES[@]}"; do
		"$TIMEBIN" -v -o "$TMP/time" "$IDEM" load "$SPLIT/$d.csv" --to "$url" --table orders --partition "order_date=$d" --execution-date "$d" "$@" >/dev/null
		kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/time")
		((kb > max)) && max=$kb
	done
	PEAK_MB=$((max / 1024))
}

declare -a REPORT
run_target() {
	local name="$1" url="$2" memurl="$3"
	echo
	echo "== $name: $url"
	loop "$url"
	local first=$SECS first_in=$INPROC
	echo "  first write: ${first}s, $(awk -v r="$ROWS" -v s="$first" 'BEGIN { printf "%.0f", r / s }') rows/s (in-process ${first_in}s)"
	echo "  last result: $LAST"
	loop "$url"
	local rerun=$SECS rerun_in=$INPROC
	echo "  identical rerun: ${rerun}s (in-process ${rerun_in}s)"
	loop "$url" --force
	local forced=$SECS
	echo "  forced rerun (reads, re-encodes, uploads nothing): ${forced}s"
	# Peak memory, on a second target so the timed loops above ran bare.
	local pk=0
	peak "$memurl"; echo "  peak RSS, first write: $PEAK_MB MB"; [[ "$PEAK_MB" =~ ^[0-9]+$ ]] && ((PEAK_MB > pk)) && pk=$PEAK_MB
	peak "$memurl"; echo "  peak RSS, identical rerun: $PEAK_MB MB"; [[ "$PEAK_MB" =~ ^[0-9]+$ ]] && ((PEAK_MB > pk)) && pk=$PEAK_MB
	peak "$memurl" --force; echo "  peak RSS, forced rerun: $PEAK_MB MB"; [[ "$PEAK_MB" =~ ^[0-9]+$ ]] && ((PEAK_MB > pk)) && pk=$PEAK_MB
	local ratio fratio inratio
	inratio=$(awk -v a="$rerun_in" -v b="$first_in" 'BEGIN { printf "%.3f", a / b }')
	ratio=$(awk -v a="$rerun" -v b="$first" 'BEGIN { printf "%.3f", a / b }')
	fratio=$(awk -v a="$forced" -v b="$first" 'BEGIN { printf "%.3f", a / b }')
	REPORT+=("$(printf '%-5s per partition: %7.0f rows/s  first %6ss  rerun %6ss (%.3fx, target <= 0.2x: %s; in-process %.3fx)  forced %6ss (%.3fx)  peak %3d MB (target <= 200: %s)' \
		"$name" "$(awk -v r="$ROWS" -v s="$first" 'BEGIN { print r / s }')" "$first" "$rerun" "$ratio" \
		"$(awk -v x="$ratio" 'BEGIN { print (x <= 0.2) ? "ok" : "MISS" }')" "$inratio" "$forced" "$fratio" "$pk" \
		"$( ((pk <= 200)) && echo ok || echo MISS)")")
}

# one URL: the single-process form, one `idem load orders.csv` writing
# every date's partition (the target's partition_by=order_date partitions
# the new table; --strategy replace: the table is exactly the file).
# First write, identical rerun, forced rerun, each timed and under
# /usr/bin/time -v for its maximum RSS (one process: no separate pass).
one() {
	local name="$1" url="$2"
	local t0 f r x kb pk=0
	run1() {
		local t0
		t0=$(now)
		if [[ -n "$TIMEBIN" ]]; then
			"$TIMEBIN" -v -o "$TMP/time1" "$IDEM" load "$ORIG" --to "$url" --table orders --strategy replace --json "$@" >"$TMP/one.json"
			kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/time1")
			((kb / 1024 > pk)) && pk=$((kb / 1024))
		else
			"$IDEM" load "$ORIG" --to "$url" --table orders --strategy replace --json "$@" >"$TMP/one.json"
		fi
		SECS=$(elapsed "$t0" "$(now)")
	}
	echo
	echo "== $name, one process: $url"
	run1; f=$SECS
	echo "  first write: ${f}s, $(awk -v r="$ROWS" -v s="$f" 'BEGIN { printf "%.0f", r / s }') rows/s; $(cat "$TMP/one.json")"
	run1; r=$SECS
	echo "  identical rerun: ${r}s; $(cat "$TMP/one.json")"
	run1 --force; x=$SECS
	echo "  forced rerun: ${x}s"
	echo "  peak RSS (largest of the three): $pk MB"
	local ratio
	ratio=$(awk -v a="$r" -v b="$f" 'BEGIN { printf "%.3f", a / b }')
	REPORT+=("$(printf '%-5s one process:   %7.0f rows/s  first %6ss  rerun %6ss (%.3fx, target <= 0.2x: %s)  forced %6ss (%.3fx)  peak %3d MB (target <= 200: %s)' \
		"$name" "$(awk -v r="$ROWS" -v s="$f" 'BEGIN { print r / s }')" "$f" "$r" "$ratio" \
		"$(awk -v x="$ratio" 'BEGIN { print (x <= 0.2) ? "ok" : "MISS" }')" "$x" "$(awk -v a="$x" -v b="$f" 'BEGIN { printf "%.3f", a / b }')" "$pk" \
		"$( ((pk <= 200)) && echo ok || echo MISS)")")
}

# withopt URL K=V: adds a URL option.
withopt() { if [[ "$1" == *\?* ]]; then echo "$1&$2"; else echo "$1?$2"; fi; }

FILEDIR="$TMP/warehouse"
run_target file "file:$FILEDIR" "file:$TMP/warehouse-mem"
echo "  on disk: $(du -sh "$FILEDIR/orders" | cut -f1) in $(find "$FILEDIR/orders" -name 'part-*' | wc -l) data files"
one file "file:$TMP/warehouse-one?partition_by=order_date"

if [[ -n "${IDEM_TEST_S3:-}" ]]; then
	S3URL=$(IDEM_TEST_S3="$IDEM_TEST_S3" python3 - <<'PY' 2>/dev/null || true
import os, urllib.parse, time
u = urllib.parse.urlsplit(os.environ["IDEM_TEST_S3"])
print(urllib.parse.urlunsplit((u.scheme, u.netloc, u.path.rstrip("/") + "/bench-%d" % int(time.time()), u.query, "")))
PY
)
	[[ -n "$S3URL" ]] || S3URL="${IDEM_TEST_S3%%\?*}/bench-$(date +%s)?${IDEM_TEST_S3#*\?}"
	run_target s3 "$S3URL" "${S3URL/\/bench-//bench-mem-}"
	one s3 "$(withopt "${S3URL/\/bench-//bench-one-}" partition_by=order_date)"
else
	echo
	echo "== s3: skipped (IDEM_TEST_S3 is not set)"
fi

echo
echo "== results ($ROWS rows, ${#DATES[@]} partitions; per partition: 30 idem processes, one per date; one process: one idem load of the whole file; load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${REPORT[@]}"
