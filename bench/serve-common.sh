# bench/serve-common.sh — sourced by bench/serve.sh and bench/serve-ab.sh
# once they have set OUT and SCHEMA: the stores' URLs, the upstream's and
# the proxy's addresses, cleanup of what a run leaves in the stores, and
# waiting for a port.
PG="${IDEM_BENCH_POSTGRES:-postgres://root@127.0.0.1:5432/test?sslmode=disable}"
REDIS="${IDEM_BENCH_REDIS:-redis://127.0.0.1:6379/0}"
UP=127.0.0.1:19000
PROXY=127.0.0.1:19080
RUN=$(date +%s)

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	PGOPTIONS="-c client_min_messages=warning" psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
	redis-cli -u "$REDIS" --scan --pattern "idembench:$RUN:*" 2>/dev/null | xargs -r -d '\n' -n 500 redis-cli -u "$REDIS" DEL >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_port() { for _ in $(seq 1 100); do (echo >"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

# busy prints the load average and, where the kernel has it, the share of
# the last 10 s in which something waited for a CPU: a neighbour, or the
# previous step, still busy when a step starts shows there.
busy() {
	local psi=""
	[[ -r /proc/pressure/cpu ]] && psi=$(awk '/^some/ {sub("avg10=", "", $2); print ", cpu pressure " $2 "%"}' /proc/pressure/cpu)
	echo "$(cut -d' ' -f1-3 /proc/loadavg)$psi"
}
