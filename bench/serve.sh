#!/usr/bin/env bash
# bench/serve.sh — latency that `idem serve` adds, per key store, measured in
# one run: unique-key POSTs at a fixed rate (default 2,000 req/s for 20 s) to a
# small upstream, once directly and once through `idem serve` with each store;
# then replays of completed keys at the same rate, and the closed-loop maximum.
#
#   bash bench/serve.sh                 # RATE=2000 DURATION=20s
#   RATE=1000 DURATION=10s bash bench/serve.sh
#
# Environment (optional): IDEM_BENCH_POSTGRES (postgres://root@127.0.0.1:5432/test?sslmode=disable),
# IDEM_BENCH_REDIS (redis://127.0.0.1:6379/0), STORES (memory sqlite redis postgres postgres-async-claims
# postgres-async), REPLAY (5s), MAX (10s), CONCURRENCY (64).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATE="${RATE:-2000}"
DURATION="${DURATION:-20s}"
REPLAY="${REPLAY:-5s}"
MAX="${MAX:-10s}"
CONCURRENCY="${CONCURRENCY:-64}"
STORES="${STORES:-memory sqlite redis postgres postgres-async-claims postgres-async}"
OUT=bench/out/serve
SCHEMA=idem_bench_keys
# shellcheck source=bench/serve-common.sh
source bench/serve-common.sh
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/keys.db*

echo "building idem and loadgen ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench' || echo ' +uncommitted changes'))" >&2
CGO_ENABLED=0 go build -o "$OUT/idem" ./cmd/idem
go build -o "$OUT/loadgen" ./bench/loadgen

"$OUT/loadgen" -upstream "$UP" &
pids+=($!)
wait_port "$UP"

load() { # label url mode extra...
	local label=$1 url=$2 mode=$3; shift 3
	echo "  $label: $mode" >&2
	"$OUT/loadgen" -url "$url" -mode "$mode" -label "$label" "$@" >>"$OUT/results.json"
}

: >"$OUT/results.json"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" | tee "$OUT/load.txt" >&2
echo "direct to the upstream" >&2
load direct "http://$UP/charge" rate -rate "$RATE" -duration "$DURATION"
load direct "http://$UP/charge" max -concurrency "$CONCURRENCY" -duration "$MAX"

PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
sep='?'; [[ "$PG" == *\?* ]] && sep='&'
for s in $STORES; do
	case $s in
	memory) url="memory:" ;;
	sqlite) url="sqlite:$OUT/keys.db" ;;
	postgres) url="$PG${sep}search_path=$SCHEMA" ;;
	postgres-async-claims) url="$PG${sep}search_path=$SCHEMA&async_claims=true" ;;
	postgres-async) url="$PG${sep}search_path=$SCHEMA&synchronous_commit=off" ;;
	redis) url="$REDIS?prefix=idembench:$RUN:" ;;
	*) echo "unknown store $s" >&2; exit 2 ;;
	esac
	echo "through idem serve, store $s" >&2
	"$OUT/idem" serve --listen "$PROXY" --upstream "http://$UP" --store "$url" --ttl 1h 2>"$OUT/serve-$s.log" &
	pid=$!
	pids+=($pid)
	wait_port "$PROXY"
	load "$s" "http://$PROXY/charge" rate -rate "$RATE" -duration "$DURATION"
	load "$s" "http://$PROXY/charge" replay -rate "$RATE" -duration "$REPLAY"
	load "$s" "http://$PROXY/charge" max -concurrency "$CONCURRENCY" -duration "$MAX"
	kill -TERM "$pid"
	wait "$pid" || true
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt" >&2
cat "$OUT/load.txt"
python3 - "$OUT/results.json" "$RATE" "$DURATION" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["label"], r["mode"]): r for r in rows}
d = by[("direct", "rate")]
print(f"\nunique-key POSTs at {sys.argv[2]} req/s for {sys.argv[3]}; latency in ms; 'added' = through idem serve minus direct, same run")
print(f"{'path':<16}{'p50':>7}{'p99':>7}{'p99.9':>7}{'+p50':>7}{'+p99':>7}{'achieved':>10}{'non-2xx':>9}{'replay p50':>11}{'replay p99':>11}{'max req/s':>10}")
for label in ["direct"] + [l for l, m in by if m == "rate" and l != "direct"]:
    r = by[(label, "rate")]
    rp = by.get((label, "replay"))
    mx = by.get((label, "max"))
    bad = sum(v for k, v in r["status"].items() if not k.startswith("2"))
    add50 = "" if label == "direct" else f"{r['p50_ms'] - d['p50_ms']:+.2f}"
    add99 = "" if label == "direct" else f"{r['p99_ms'] - d['p99_ms']:+.2f}"
    rp50 = f"{rp['p50_ms']:.2f}" if rp else ""
    rp99 = f"{rp['p99_ms']:.2f}" if rp else ""
    if rp and rp["replayed"] != rp["sent"]:
        rp50 += "!"
    print(f"{label:<16}{r['p50_ms']:>7.2f}{r['p99_ms']:>7.2f}{r['p999_ms']:>7.2f}{add50:>7}{add99:>7}{r['achieved_rps']:>10.0f}{bad:>9}{rp50:>11}{rp99:>11}{(mx['achieved_rps'] if mx else 0):>10.0f}")
print("\n'!' after a replay figure: not every replay request was answered from the store.")
PY
