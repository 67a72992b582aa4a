#!/usr/bin/env bash
# Fleet benchmark (`just bench-fleet`, issue 22): the same data served by the fleet through nginx
# (two instances on a PostgreSQL primary and its streaming replica, a Redis Cluster) and by one
# of those instances directly, driven by wrk from this machine: get by id (Redis-cached), an
# offset list page, search (hashing embedder) and create. For every run it also reads the CPU
# time each part of the fleet spent (the markets instances, nginx, the primary, the replica,
# Redis) and prints it per request: the measured costs behind README's estimate of the
# instances and replicas 10,000 and 100,000 requests per second need. On two shared cores this
# shows what the extra hops cost, not how the fleet scales.
#
# Runs its own fleet (FLEET_DIR=/var/tmp/markets-fleet-bench on ports of its own, so a test
# fleet may stay up) and stops it at the end unless BENCH_KEEP_FLEET=1.
#
# Environment: BENCH_MARKETS (default 10000), BENCH_DURATION (default 10s per run),
# BENCH_CONNECTIONS (default 32), BENCH_BIN (a prebuilt binary; default: build the release one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

markets_count="${BENCH_MARKETS:-10000}"
duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"
[[ $markets_count =~ ^[1-9][0-9]*$ ]] || { echo "fleet-bench: not a size: $markets_count" >&2; exit 2; }

source scripts/lib/bench.sh
bench_prepare fleet-bench

export MARKETS_BIN="$markets" FLEET_DIR="${FLEET_DIR:-/var/tmp/markets-fleet-bench}"
export FLEET_PG_PRIMARY_PORT=5451 FLEET_PG_REPLICA_PORT=5452 FLEET_REDIS_PORT=7101
export FLEET_INSTANCE_PORTS="8281 8282" FLEET_NGINX_PORT=8280
# One client address drives the load: lift the per-client limits so they measure the service.
FLEET_SETTINGS="$(printf '%s\n' MARKETS__RATE_LIMIT__SEARCH__LIMIT=1000000000 \
	MARKETS__RATE_LIMIT__LOGIN__LIMIT=1000000 MARKETS__RATE_LIMIT__WRITES__LIMIT=1000000000 \
	MARKETS__SEARCH__PROVIDER=local MARKETS__CACHE__WARM_ON_START=false)"
export FLEET_SETTINGS
export BENCH_PASSWORD="bench password $RANDOM$RANDOM"
scripts/fleet.sh reset >&2
eval "$(scripts/fleet.sh up)"
[[ ${BENCH_KEEP_FLEET:-0} == 1 ]] || trap 'scripts/fleet.sh down >&2' EXIT
direct="${FLEET_INSTANCES%%,*}"

# The benchmark's data set (bench/seed.sql), embedded, on the primary; the replica replays it.
psql -q -v ON_ERROR_STOP=1 -v first=1 -v last="$markets_count" -v search_max="$markets_count" \
	"$FLEET_PRIMARY_URL" -f bench/seed.sql
DATABASE_URL="$FLEET_PRIMARY_URL" "$markets" create-admin --email bench-admin@example.com \
	--password-env BENCH_PASSWORD >/dev/null 2>&1
DATABASE_URL="$FLEET_PRIMARY_URL" MARKETS__SEARCH__PROVIDER=local MARKETS__SEARCH__INDEX_BATCH=512 \
	"$markets" reindex --resume 2>/dev/null
psql -q "$FLEET_PRIMARY_URL" -c "VACUUM ANALYZE users" -c "VACUUM ANALYZE markets"
psql -Atq "$FLEET_PRIMARY_URL" -c "SELECT id FROM markets ORDER BY random() LIMIT 10000" >bench/.fleet-ids.txt
export BENCH_IDS=bench/.fleet-ids.txt
wanted="$(psql -Atq "$FLEET_PRIMARY_URL" -c 'SELECT count(*) FROM markets WHERE embedding IS NOT NULL')"
for _ in $(seq 1 600); do
	[[ "$(psql -Atq "$FLEET_REPLICA_URL" -c 'SELECT count(*) FROM markets WHERE embedding IS NOT NULL')" == "$wanted" ]] && break
	sleep 0.1
done
echo "fleet-bench: $markets_count markets ($wanted embedded) on the primary and the replica" >&2

# The PIDs of each part of the fleet, from its pid files, as "PART PID PID ...".
parts() {
	local pids="$FLEET_DIR/pids"
	echo "markets $(cat "$pids"/serve-*.pid | tr '\n' ' ')"
	echo "nginx $(cat "$pids/nginx.pid")"
	echo "primary $(cat "$pids/pg-primary.pid")"
	echo "replica $(cat "$pids/pg-replica.pid")"
	echo "redis $(cat "$pids"/redis-*.pid | tr '\n' ' ')"
}

# cpu_seconds PID...: user + system CPU seconds of these processes and all their descendants
# (PostgreSQL's backends, nginx's workers), those still running and those reaped by them.
cpu_seconds() {
	local tick
	tick="$(getconf CLK_TCK)"
	ps -eo pid=,ppid= | awk -v roots="$*" -v tick="$tick" '
		{ parent[$1] = $2 }
		END {
			split(roots, list, " ")
			for (i in list) wanted[list[i]] = 1
			total = 0
			for (pid in parent) {
				p = pid
				while (p != "" && p > 1 && !(p in wanted)) p = parent[p]
				if (!(p in wanted)) continue
				file = "/proc/" pid "/stat"
				if ((getline line < file) > 0) {
					sub(/^.*\) /, "", line)
					split(line, f, " ")
					total += f[12] + f[13] + f[14] + f[15]
				}
				close(file)
			}
			printf "%.3f\n", total / tick
		}'
}

# cpu_snapshot: "PART SECONDS" per part.
cpu_snapshot() {
	local part pids
	while read -r part pids; do
		# shellcheck disable=SC2086 # one PID per word
		echo "$part $(cpu_seconds $pids)"
	done < <(parts)
}

login() {
	curl -sf "$1/api/v1/auth/login" -H 'Content-Type: application/json' \
		-d "{\"email\":\"bench-admin@example.com\",\"password\":\"$BENCH_PASSWORD\"}" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

results=bench/.fleet-results.tsv
: >"$results"

# run TARGET BASE NAME SCRIPT PATH: one wrk run; appends the result and the CPU milliseconds
# per request of each part (tab-separated) to the results.
run() {
	local target=$1 url=$2 name=$3 script=$4 path=$5 before after result requests
	before="$(cpu_snapshot)"
	result="$(wrk -t2 -c"$connections" -d"$duration" --latency -s "bench/$script" "$url$path" | grep '^RESULT')"
	after="$(cpu_snapshot)"
	requests="$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")"
	result="$(sed -E 's/RESULT rps=([0-9]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+) non2xx=([0-9]+) socket_errors=([0-9]+).*/\1\t\2\t\3\t\4+\5/' <<<"$result")"
	printf '%s\t%s\t%s\t%s\n' "$name" "$target" "$result" \
		"$(paste -d' ' <(echo "$before") <(echo "$after") |
			awk -v n="$requests" '{ printf "%s%.3f", (NR > 1 ? "\t" : ""), ($4 - $2) * 1000 / (n > 0 ? n : 1) }')" >>"$results"
}

for target in "nginx $FLEET_URL" "direct $direct"; do
	read -r name url <<<"$target"
	BENCH_TOKEN="$(login "$url")"
	export BENCH_TOKEN
	# Fill the instances' shared cache with the ids read, then warm up; neither is reported.
	BENCH_ID_ORDER=sequential wrk -t2 -c"$connections" -d5s -s bench/get_by_id.lua "$url" >/dev/null
	run "$name" "$url" "get by id (Redis-cached)" get_by_id.lua /
	run "$name" "$url" "offset page (sort=-volume, pages 1-500)" list_page.lua /
	run "$name" "$url" "search (semantic, hashing)" search.lua /
	run "$name" "$url" "POST /api/v1/markets" create.lua /
done

echo
echo "Fleet benchmark: $markets_count markets, wrk -t2 -c$connections -d$duration, one machine (2 cores shared by everything)"
echo
echo "| scenario | via | req/s | p50 ms | p99 ms | failed | CPU ms/request: markets | nginx | primary | replica | Redis |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$results"
