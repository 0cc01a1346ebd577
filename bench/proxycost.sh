#!/usr/bin/env bash
# bench/proxycost.sh — what forwarding alone costs: a bare reverse proxy
# (bench/proxycost, no idempotency middleware, no store) in three builds,
# alternating for ROUNDS rounds, each at RATE req/s for DURATION through
# loadgen, with the proxy's CPU per request from /proc.
#
#   bash bench/proxycost.sh            # RATE=2000 DURATION=10s ROUNDS=2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE="${RATE:-2000}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
OUT=bench/out/proxycost
SCHEMA=idem_bench_proxycost
# shellcheck source=bench/serve-common.sh
source bench/serve-common.sh
mkdir -p "$OUT"
CGO_ENABLED=0 go build -o "$OUT/proxycost" ./bench/proxycost
go build -o "$OUT/loadgen" ./bench/loadgen
"$OUT/loadgen" -upstream "$UP" &
pids+=($!)
wait_port "$UP"
LISTEN=127.0.0.1:19081
echo "mode   p50 ms  p99 ms  cpu µs/req"
for r in $(seq 1 "$ROUNDS"); do
	for m in std fast full; do
		"$OUT/proxycost" -mode "$m" -upstream "$UP" -listen "$LISTEN" &
		p=$!
		wait_port "$LISTEN"
		c0=$(awk '{print $14 + $15}' "/proc/$p/stat")
		res=$("$OUT/loadgen" -url "http://$LISTEN/charge" -rate "$RATE" -duration "$DURATION")
		c1=$(awk '{print $14 + $15}' "/proc/$p/stat")
		kill "$p"
		wait "$p" 2>/dev/null || true
		python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{sys.argv[2]:<6}{r['p50_ms']:>7.2f}{r['p99_ms']:>8.2f}{(int(sys.argv[3]) / int(sys.argv[4])) * 1e6 / r['sent']:>12.0f}\")" \
			"$res" "$m" "$((c1 - c0))" "$(getconf CLK_TCK)"
	done
done
