#!/usr/bin/env bash
# bench/serve-ab.sh — A/B comparison of two (or more) `idem serve` binaries
# on one key store, alternating within one invocation so both see the same
# machine: each round runs the upstream directly, then every binary in turn
# (the order rotates each round), each with a fresh store.
#
#   go build -o /tmp/idem-a ./cmd/idem   # e.g. at main
#   go build -o /tmp/idem-b ./cmd/idem   # with the change
#   STORE=redis ROUNDS=3 bash bench/serve-ab.sh /tmp/idem-a /tmp/idem-b
#
# Environment: STORE (memory sqlite redis postgres), RATE (2000), DURATION
# (10s), ROUNDS (3), REPLAY (0s: off; replays of 1,000 completed keys at
# RATE), MAX (0s: off; closed loop with 64 workers, the ceiling), WARMUP (1s: sent uncounted before
# each rate and replay phase), TRACE (1: keep per-request traces in
# bench/out/ab/), plus IDEM_BENCH_POSTGRES / IDEM_BENCH_REDIS as in serve.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $# -ge 1 ]] || { echo "usage: bench/serve-ab.sh IDEM_BINARY..." >&2; exit 2; }

STORE="${STORE:-memory}"
RATE="${RATE:-2000}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
REPLAY="${REPLAY:-0s}"
MAX="${MAX:-0s}"
WARMUP="${WARMUP:-1s}"
OUT=bench/out/ab
SCHEMA=idem_bench_ab
# shellcheck source=bench/serve-common.sh
source bench/serve-common.sh
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/cpu.json "$OUT"/*.csv "$OUT"/keys.db*
go build -o "$OUT/loadgen" ./bench/loadgen

# voluntary context switches of all the proxy's threads: each is a thread
# that went to sleep and must be woken (and scheduled) again.
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n}'; }
wait_free() { for _ in $(seq 1 100); do (echo >"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null || return 0; sleep 0.1; done; }

"$OUT/loadgen" -upstream "$UP" &
pids+=($!)
wait_port "$UP"

load() { # label round url mode
	local tr=()
	[[ "${TRACE:-}" == 1 ]] && tr=(-trace "$OUT/$1-$2-$4.csv")
	local d=$DURATION
	[[ $4 == replay ]] && d=$REPLAY
	[[ $4 == max ]] && d=$MAX
	[[ $4 != max ]] && tr+=(-warmup "$WARMUP")
	"$OUT/loadgen" -url "$3" -mode "$4" -label "$1" -rate "$RATE" -concurrency 64 -duration "$d" "${tr[@]}" |
		sed "s/^{/{\"round\":$2,/" >>"$OUT/results.json"
}

bins=("$@")
echo "load average before: $(busy)" >&2
for r in $(seq 1 "$ROUNDS"); do
	load direct "$r" "http://$UP/charge" rate
	n=${#bins[@]}
	for i in $(seq 0 $((n - 1))); do
		b=${bins[$(((i + r - 1) % n))]}
		label=$(basename "$b")
		# A fresh store for every binary and round.
		case $STORE in
		sqlite) rm -f "$OUT"/keys.db* ;;
		postgres*) PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null ;;
		esac
		url=$(store_url "$STORE" "idembench:$RUN:$r:$label:")
		"$b" serve --listen "$PROXY" --upstream "http://$UP" --store "$url" --ttl 1h 2>"$OUT/serve-$label.log" &
		pid=$!
		pids+=($pid)
		wait_port "$PROXY"
		c0=$(cputicks "$pid") s0=$(ctxsw "$pid")
		load "$label" "$r" "http://$PROXY/charge" rate
		c1=$(cputicks "$pid") s1=$(ctxsw "$pid")
		# The proxy's CPU per request (user + system, from /proc): unlike
		# the latency tail it hardly moves with what else runs.
		echo "{\"round\":$r,\"label\":\"$label\",\"cpu_ticks\":$((c1 - c0)),\"ctxsw\":$((s1 - s0))}" >>"$OUT/cpu.json"
		[[ "$REPLAY" != 0s ]] && load "$label" "$r" "http://$PROXY/charge" replay
		[[ "$MAX" != 0s ]] && load "$label" "$r" "http://$PROXY/charge" max
		kill -TERM "$pid"
		wait "$pid" || true
		wait_free "$PROXY"
	done
done
echo "load average after: $(busy)" >&2
python3 - "$OUT/results.json" "$STORE" "$RATE" "$DURATION" "$OUT/cpu.json" "$(getconf CLK_TCK)" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
cpus = [json.loads(l) for l in open(sys.argv[5])]
cpu = {(c["round"], c["label"]): c["cpu_ticks"] / int(sys.argv[6]) for c in cpus}
csw = {(c["round"], c["label"]): c["ctxsw"] for c in cpus}
direct = {r["round"]: r for r in rows if r["label"] == "direct"}
print(f"store {sys.argv[2]}, unique-key POSTs at {sys.argv[3]} req/s for {sys.argv[4]} per run; ms; + = minus direct of the same round")
print(f"{'round':>5} {'binary':<16}{'mode':<8}{'p50':>7}{'p99':>8}{'p99.9':>8}{'max':>8}{'+p50':>8}{'+p99':>8}{'non-2xx':>8}{'cpu µs/req':>11}{'cs/req':>7}{'req/s':>8}")
agg = {}
for r in rows:
    d = direct[r["round"]]
    bad = sum(v for k, v in r["status"].items() if not k.startswith("2"))
    plus = r["label"] != "direct" and r["mode"] == "rate"
    a50 = f"{r['p50_ms'] - d['p50_ms']:+.2f}" if plus else ""
    a99 = f"{r['p99_ms'] - d['p99_ms']:+.2f}" if plus else ""
    us = cpu.get((r["round"], r["label"])) if plus else None
    n = r["sent"] + r.get("warmup_sent", 0)  # the proxy served the warm-up too
    cus = f"{us * 1e6 / n:.0f}" if us is not None else ""
    cs = f"{csw[(r['round'], r['label'])] / n:.2f}" if plus else ""
    if plus:
        agg.setdefault(r["label"], []).append((r['p50_ms'] - d['p50_ms'], r['p99_ms'] - d['p99_ms'], us * 1e6 / n, csw[(r['round'], r['label'])] / n))
    print(f"{r['round']:>5} {r['label']:<16}{r['mode']:<8}{r['p50_ms']:>7.2f}{r['p99_ms']:>8.2f}{r['p999_ms']:>8.2f}{r['max_ms']:>8.1f}{a50:>8}{a99:>8}{bad:>8}{cus:>11}{cs:>7}{r['achieved_rps']:>8.0f}")
def med(label, mode, f):
    v = [f(r) for r in rows if r["label"] == label and r["mode"] == mode]
    return statistics.median(v) if v else float("nan")
print("\nmedian over rounds:")
for k, v in agg.items():
    print(f"  {k:<16} replay p50/p99 {med(k, 'replay', lambda r: r['p50_ms']):.2f}/{med(k, 'replay', lambda r: r['p99_ms']):.2f}  max {med(k, 'max', lambda r: r['achieved_rps']):.0f} req/s")
    print(f"  {k:<16} +p50 {statistics.median(x[0] for x in v):+.2f}  +p99 {statistics.median(x[1] for x in v):+.2f}  cpu {statistics.median(x[2] for x in v):.0f} µs/req, {statistics.median(x[3] for x in v):.2f} context switches/req  (+p99 per round: {', '.join(f'{x[1]:+.2f}' for x in v)})")
PY
