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

# cputicks prints the CPU time (user + system, in clock ticks) process $1
# has used so far.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# machine prints "busy total": clock ticks of all CPUs spent working and in
# all, since boot. Two readings give the share of the machine a phase used.
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# stall prints the share of the next second in which some task waited for
# a CPU (the kernel's pressure figure), or nothing where it is missing.
stall() {
	[[ -r /proc/pressure/cpu ]] || return 0
	local t0 t1
	t0=$(awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu)
	sleep 1
	t1=$(awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu)
	echo $(((t1 - t0) / 10000))
}

# busy prints the load average and, where the kernel has it, the CPU stall
# of the last second: a neighbour, or the previous step still busy when a
# step starts, shows there at once (the load average lags by a minute).
busy() {
	local st
	st=$(stall)
	echo "$(cut -d' ' -f1-3 /proc/loadavg)${st:+, cpu stall $st%}"
}

# settle waits (at most 30 s) for a second in which no task waited for a
# CPU more than 5% of the time: each rate phase then starts on a machine as
# quiet as the direct run had, not in the wake of the previous store's
# closed-loop maximum (its proxy's exit, the server's vacuum or expiry of
# what that phase wrote).
settle() {
	[[ -r /proc/pressure/cpu ]] || { sleep 5; return; }
	for _ in $(seq 1 30); do
		(($(stall) < 5)) && return
	done
}

# store_url NAME REDIS_PREFIX prints the key store URL a bench store name
# stands for (SQLite in $OUT, PostgreSQL in $SCHEMA, Redis keys under the
# given prefix); an unknown name ends the run.
store_url() {
	local sep='?'
	[[ "$PG" == *\?* ]] && sep='&'
	case $1 in
	memory) echo "memory:" ;;
	sqlite) echo "sqlite:$OUT/keys.db" ;;
	postgres) echo "$PG${sep}search_path=$SCHEMA" ;;
	postgres-async-claims) echo "$PG${sep}search_path=$SCHEMA&async_claims=true" ;;
	postgres-async) echo "$PG${sep}search_path=$SCHEMA&synchronous_commit=off" ;;
	redis) echo "$REDIS?prefix=$2" ;;
	*) echo "unknown store $1" >&2; return 2 ;;
	esac
}
