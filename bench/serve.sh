#!/usr/bin/env bash
# bench/serve.sh — latency that `idem serve` adds, per key store, measured in
# one run: unique-key POSTs at a fixed rate (default 2,000 req/s for 20 s) to a
# small upstream, once directly and once through `idem serve` with each store;
# then replays of completed keys at the same rate, and the closed-loop maximum.
# Each store's rate phase comes right after a direct one of its own, which
# is the baseline its added latency is measured against.
# With PostgreSQL among the stores it also times single-row commits from
# the same client at the same rate (and pg_test_fsync's fdatasync when
# installed), the reference for that store's "two commits + 0.5 ms" target.
#
#   bash bench/serve.sh                 # RATE=2000 DURATION=20s
#   RATE=1000 DURATION=10s bash bench/serve.sh
#
# Environment (optional): IDEM_BENCH_POSTGRES (postgres://root@127.0.0.1:5432/test?sslmode=disable),
# IDEM_BENCH_REDIS (redis://127.0.0.1:6379/0), STORES (memory sqlite redis postgres postgres-async-claims
# postgres-async), REPLAY (5s), MAX (10s), CONCURRENCY (64), WARMUP (1s: sent before each rate and
# replay phase, at its rate, and not counted).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATE="${RATE:-2000}"
DURATION="${DURATION:-20s}"
REPLAY="${REPLAY:-5s}"
WARMUP="${WARMUP:-1s}"
MAX="${MAX:-10s}"
CONCURRENCY="${CONCURRENCY:-64}"
STORES="${STORES:-memory sqlite redis postgres postgres-async-claims postgres-async}"
OUT=bench/out/serve
SCHEMA=idem_bench_keys
# shellcheck source=bench/serve-common.sh
source bench/serve-common.sh
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/keys.db*

# measured LABEL PID CMD...: runs CMD and records the share of the machine
# busy meanwhile and, with a PID other than -, that process's CPU time. On
# two shared cores the latency of a phase that filled the machine is
# mostly waiting for a CPU, which the latency figures alone do not show.
measured() {
	local label=$1 pid=$2 m0 m1 c0=0 c1=0
	shift 2
	m0=$(machine)
	[[ $pid != - ]] && c0=$(cputicks "$pid")
	"$@"
	m1=$(machine)
	[[ $pid != - ]] && c1=$(cputicks "$pid")
	read -r b0 t0 <<<"$m0"
	read -r b1 t1 <<<"$m1"
	echo "{\"label\":\"$label\",\"busy\":$((b1 - b0)),\"total\":$((t1 - t0)),\"proxy_ticks\":$((c1 - c0))}" >>"$OUT/cpu.json"
}

# walsync prints PostgreSQL's WAL flushes so far and the milliseconds they
# took (0 unless timed; PostgreSQL 14 and later), or nothing.
walsync() { psql "$PG" -Atc "SELECT wal_sync || ' ' || wal_sync_time FROM pg_stat_wal" 2>/dev/null || true; }

# The flushes' own time is recorded only where track_wal_io_timing is on,
# which only a superuser may set for a session.
wal_timing=
[[ $(psql "$PG" -Atc "SELECT rolsuper FROM pg_roles WHERE rolname = current_user" 2>/dev/null) == t ]] && wal_timing='&track_wal_io_timing=on'

echo "building idem and loadgen ($(git rev-parse --short HEAD)$(git diff --quiet -- . ':!bench' || echo ' +uncommitted changes'))" >&2
CGO_ENABLED=0 go build -o "$OUT/idem" ./cmd/idem
go build -o "$OUT/loadgen" ./bench/loadgen
go build -o "$OUT/storelat" ./bench/storelat

"$OUT/loadgen" -upstream "$UP" &
pids+=($!)
wait_port "$UP"

load() { # label url mode extra...
	local label=$1 url=$2 mode=$3; shift 3
	echo "  $label: $mode" >&2
	# Rate and replay phases first send for WARMUP uncounted, directly as
	# through the proxy: connections and caches of a process just started.
	[[ $mode != max ]] && set -- -warmup "$WARMUP" "$@"
	"$OUT/loadgen" -url "$url" -mode "$mode" -label "$label" "$@" >>"$OUT/results.json"
}

: >"$OUT/results.json"
settle
echo "load average before: $(busy) on $(nproc) cores" | tee "$OUT/load.txt" >&2
echo "direct to the upstream" >&2
measured direct - load direct "http://$UP/charge" rate -rate "$RATE" -duration "$DURATION"
load direct "http://$UP/charge" max -concurrency "$CONCURRENCY" -duration "$MAX"

PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
if [[ " $STORES " == *" postgres "* ]]; then
	# The PostgreSQL target is "two commits + 0.5 ms": what one commit
	# costs this client at this rate is measured here, in the same run.
	echo "reference: single-row commits to PostgreSQL" >&2
	"$OUT/storelat" -commit -store "$(store_url postgres)" -rate "$RATE" -duration 5s -label commit >"$OUT/commit.json"
	fsync=$(ls /usr/lib/postgresql/*/bin/pg_test_fsync 2>/dev/null | head -1 || true)
	if [[ -n "$fsync" ]]; then
		"$fsync" -s 1 -f "$OUT/fsync.out" 2>/dev/null | awk '/^[[:space:]]+fdatasync .*usecs\/op/ {print $(NF-1); exit}' >"$OUT/fdatasync.txt" || true
		rm -f "$OUT/fsync.out"
	fi
fi
for s in $STORES; do
	url=$(store_url "$s" "idembench:$RUN:")
	[[ $s == postgres* ]] && url+=$wal_timing
	# Each PostgreSQL variant starts on an empty table, as the first did.
	[[ $s == postgres* ]] && PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >/dev/null
	echo "through idem serve, store $s" >&2
	settle
	echo "  before $s: $(busy)" >>"$OUT/load.txt"
	# The store's own direct baseline, right before it: a run takes
	# minutes, and the machine's speed drifts more than the targets.
	load "direct-$s" "http://$UP/charge" rate -rate "$RATE" -duration "$DURATION"
	"$OUT/idem" serve --listen "$PROXY" --upstream "http://$UP" --store "$url" --ttl 1h 2>"$OUT/serve-$s.log" &
	pid=$!
	pids+=($pid)
	wait_port "$PROXY"
	w0=$(walsync)
	measured "$s" "$pid" load "$s" "http://$PROXY/charge" rate -rate "$RATE" -duration "$DURATION"
	if [[ $s == postgres* && -n $w0 ]]; then
		read -r f0 ms0 <<<"$w0"
		read -r f1 ms1 <<<"$(walsync)"
		echo "{\"label\":\"$s\",\"flushes\":$((f1 - f0)),\"flush_ms\":$(python3 -c "print($ms1 - $ms0)")}" >>"$OUT/wal.json"
	fi
	load "$s" "http://$PROXY/charge" replay -rate "$RATE" -duration "$REPLAY"
	load "$s" "http://$PROXY/charge" max -concurrency "$CONCURRENCY" -duration "$MAX"
	kill -TERM "$pid"
	wait "$pid" || true
done

echo "load average after: $(busy)" | tee -a "$OUT/load.txt" >&2
cat "$OUT/load.txt"
python3 - "$OUT/results.json" "$RATE" "$DURATION" "$OUT" "$(getconf CLK_TCK)" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = {c["label"]: c for c in map(json.loads, open(os.path.join(sys.argv[4], "cpu.json")))}
tck = int(sys.argv[5])
by = {(r["label"], r["mode"]): r for r in rows}
d = by[("direct", "rate")]
print(f"\nunique-key POSTs at {sys.argv[2]} req/s for {sys.argv[3]}; latency in ms; 'added' = through idem serve minus")
print("the direct run just before that store's (its p50/p99 in brackets)")
print(f"{'path':<34}{'p50':>7}{'p99':>7}{'p99.9':>7}{'+p50':>7}{'+p99':>7}{'achieved':>10}{'non-2xx':>9}{'replay p50':>11}{'replay p99':>11}{'max req/s':>10}{'busy %':>7}{'µs/req':>7}")
for label in ["direct"] + [l for l, m in by if m == "rate" and not l.startswith("direct")]:
    r = by[(label, "rate")]
    rp = by.get((label, "replay"))
    mx = by.get((label, "max"))
    base = by.get(("direct-" + label, "rate"), d)  # the direct run just before this store's
    bad = sum(v for k, v in r["status"].items() if not k.startswith("2"))
    add50 = "" if label == "direct" else f"{r['p50_ms'] - base['p50_ms']:+.2f}"
    add99 = "" if label == "direct" else f"{r['p99_ms'] - base['p99_ms']:+.2f}"
    if label != "direct":
        label += f" ({base['p50_ms']:.2f}/{base['p99_ms']:.2f})"
    rp50 = f"{rp['p50_ms']:.2f}" if rp else ""
    rp99 = f"{rp['p99_ms']:.2f}" if rp else ""
    if rp and rp["replayed"] != rp["sent"]:
        rp50 += "!"
    c = cpu.get(r["label"])
    busy = f"{100 * c['busy'] / c['total']:.0f}" if c and c["total"] else ""
    us = f"{c['proxy_ticks'] * 1e6 / tck / (r['sent'] + r.get('warmup_sent', 0)):.0f}" if c and c["proxy_ticks"] and r["sent"] else ""
    print(f"{label:<34}{r['p50_ms']:>7.2f}{r['p99_ms']:>7.2f}{r['p999_ms']:>7.2f}{add50:>7}{add99:>7}{r['achieved_rps']:>10.0f}{bad:>9}{rp50:>11}{rp99:>11}{(mx['achieved_rps'] if mx else 0):>10.0f}{busy:>7}{us:>7}")
print("\n'!' after a replay figure: not every replay request was answered from the store.")
print("busy %: share of all CPUs in use during the rate phase (loadgen, upstream, proxy, store and")
print("anything else); µs/req: the proxy's own CPU time per request in that phase.")
ref = os.path.join(sys.argv[4], "commit.json")
if os.path.exists(ref):
    c = json.load(open(ref))["commit"]
    line = f"PostgreSQL reference: one single-row commit from this client at {sys.argv[2]}/s, p50 {c['p50']:.2f} ms (p99 {c['p99']:.2f})"
    fd = os.path.join(sys.argv[4], "fdatasync.txt")
    if os.path.exists(fd) and open(fd).read().strip():
        line += f"; pg_test_fsync fdatasync {float(open(fd).read()) / 1000:.3f} ms"
    print(line)
    target = 2 * c["p50"] + 0.5
    wp = os.path.join(sys.argv[4], "wal.json")
    wal = {w["label"]: w for w in map(json.loads, open(wp))} if os.path.exists(wp) else {}
    for label in ("postgres", "postgres-async-claims", "postgres-async"):
        r = by.get((label, "rate"))
        if r:
            base = by.get(("direct-" + label, "rate"), d)
            line = f"  {label}: +p50 {r['p50_ms'] - base['p50_ms']:+.2f} ms against two commits + 0.5 = {target:.2f} ms"
            w = wal.get(label)
            if w and w["flushes"]:
                n = r["sent"] + r.get("warmup_sent", 0)
                line += f"; {w['flushes'] / n:.2f} WAL flushes a request"
                if w["flush_ms"]:
                    line += f", {w['flush_ms'] / w['flushes']:.3f} ms each"
            print(line)
PY
