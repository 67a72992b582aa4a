#!/usr/bin/env bash
# Benchmark (`just bench`): seeds 10,000 markets and 200 users into a database of its own,
# starts the release binary, drives it with wrk on this machine, and prints requests/s,
# p50/p99 latency, failures, the server's peak RSS per scenario, and each scenario's
# throughput as a share of /health/live's in the same run. Twice: on the server set
# (PostgreSQL, Redis) and on the embedded set (a SQLite file, the cache and limits in process).
# Then a registration flood on the server set (bench/registration_burst.py): login latency
# while it lasts, and the server's RSS before, at its peak and after it.
#
# Environment: BENCH_DURATION (default 10s per scenario), BENCH_CONNECTIONS (default 32),
# BENCH_PORT (default 18090).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"
port="${BENCH_PORT:-18090}"
base="http://127.0.0.1:$port"

eval "$(scripts/services.sh up)"
if ! command -v wrk >/dev/null 2>&1; then
	echo "bench: installing wrk" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
fi

cargo build --release --locked -q -p markets-app --bin markets
markets=target/release/markets

# A database of its own, recreated each run, on the same server as the tests.
bench_url="${DATABASE_URL%/*}/markets_bench"
psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS markets_bench WITH (FORCE)" -c "CREATE DATABASE markets_bench"
export DATABASE_URL="$bench_url" APP_ENV=production RUST_LOG=warn BIND_ADDR="127.0.0.1:$port"
# The load comes from one address: lift the per-client limits so they measure the service.
export RATE_LIMIT_SEARCH_PER_MINUTE=1000000000 RATE_LIMIT_LOGIN_PER_MINUTE=1000000
export MARKETS__RATE_LIMIT__REGISTER__LIMIT=1000000 MARKETS__RATE_LIMIT__WRITES__LIMIT=1000000000
# Production scrapes /metrics on a port of its own; keep the benchmark's on loopback beside it.
export MARKETS__METRICS__BIND_ADDR="127.0.0.1:$((port + 1))"
JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JWT_SECRET
"$markets" migrate 2>/dev/null
psql -q "$bench_url" -f bench/seed.sql
export BENCH_PASSWORD="bench password $RANDOM$RANDOM"
"$markets" create-admin --email bench-admin@example.com --password-env BENCH_PASSWORD >/dev/null 2>&1
psql -Atq "$bench_url" -c "SELECT id FROM markets" >bench/.ids.txt
# Embed every market with the local embedder, as the background indexer would.
"$markets" reindex 2>/dev/null
# As autovacuum would soon: statistics that know about the embeddings, and a fresh visibility map.
psql -q "$bench_url" -c "VACUUM ANALYZE markets"
echo "bench: seeded $(psql -Atq "$bench_url" -c 'SELECT count(*) FROM markets') markets, $(psql -Atq "$bench_url" -c 'SELECT count(*) FROM users') users" >&2

# start_server REDIS_URL [VAR=value...]: serves the bench database with the cache in REDIS_URL
# (in process when it is empty).
start_server() {
	local redis=(REDIS_URL="$1")
	[[ -n $1 ]] || redis=(-u REDIS_URL)
	shift
	env "${redis[@]}" MARKETS__CACHE__WARM_ON_START=false "$@" "$markets" serve --no-migrate 2>>bench/.server.log &
	server=$!
	for _ in $(seq 1 100); do
		curl -sf "$base/health/live" >/dev/null && return
		sleep 0.1
	done
	echo "bench: the server did not start; see bench/.server.log" >&2
	exit 1
}
stop_server() {
	kill "$server" 2>/dev/null || true
	wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
: >bench/.server.log

# run NAME SCRIPT PATH: one wrk run; prints "NAME rps p50 p99 failures rss_mb".
run() {
	local name=$1 script=$2 path=$3 result rss
	echo 5 >"/proc/$server/clear_refs" # reset the peak-RSS counter
	result="$(wrk -t2 -c"$connections" -d"$duration" --latency -s "bench/$script" "$base$path" | grep '^RESULT')"
	rss="$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status")"
	echo "$name $(sed -E 's/RESULT rps=([0-9]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+) non2xx=([0-9]+) socket_errors=([0-9]+).*/\1 \2 \3 \4+\5/' <<<"$result") $rss"
}

login() {
	curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
		-d "{\"email\":\"bench-admin@example.com\",\"password\":\"$BENCH_PASSWORD\"}" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# Uncached: the cache points at a closed port, so every read goes to PostgreSQL (the breaker
# makes the dead cache cost next to nothing).
start_server "redis://127.0.0.1:1"
BENCH_TOKEN="$(login)"
export BENCH_TOKEN
wrk -t2 -c"$connections" -d2s -s bench/get_by_id.lua "$base" >/dev/null # warm-up, not reported
uncached="$(
	run "GET /health/live" health.lua /health/live
	run "GET /api/v1/markets/{id} (uncached)" get_by_id.lua /
	run "GET /api/v1/markets?page=N" list_page.lua /
	run "cursor walk (sort=-volume)" cursor_walk.lua /
	run "GET /api/v1/markets/search (semantic, local)" search.lua /
	run "POST /api/v1/markets" create.lua /
)"
stop_server
# Drop what the POST scenario created, so later scenarios see the seeded data set and no
# indexing backlog.
psql -q "$bench_url" -c "DELETE FROM markets WHERE name LIKE 'Benchmark market %'" -c "DELETE FROM jobs"

# Search with a dead embedding provider (a closed port): every search falls back to text search.
start_server "$REDIS_URL" MARKETS__SEARCH__PROVIDER=openai OPENAI_API_KEY=bench \
	OPENAI_BASE_URL=http://127.0.0.1:1/v1
fallback="$(run "GET /api/v1/markets/search (fallback)" search.lua /)"
stop_server

# Cached: Redis in front; a warm-up pass over every id fills it first.
start_server "$REDIS_URL"
wrk -t2 -c"$connections" -d5s -s bench/get_by_id.lua "$base" >/dev/null # fills the cache
cached="$(
	run "GET /health/live (cached run)" health.lua /health/live
	run "GET /api/v1/markets/{id} (cached)" get_by_id.lua /
)"
stop_server

# A registration flood: 200 clients registering for 5 s while one client logs in again and again;
# the server's RSS before, at its peak and 3 s after (argon2 needs 19 MiB per hash).
start_server "$REDIS_URL"
burst="$(python3 bench/registration_burst.py "$base" "$server" bench-admin@example.com "$BENCH_PASSWORD" 200 5 3)"
stop_server
psql -q "$bench_url" -c "DELETE FROM users WHERE email LIKE 'burst-%'"

# The embedded set: the same data set in a SQLite file; the cache (moka) and limits in process.
embedded_url="sqlite:bench/.embedded/markets.db"
rm -rf bench/.embedded
DATABASE_URL="$embedded_url" "$markets" migrate 2>/dev/null
python3 bench/seed_sqlite.py bench/.embedded/markets.db bench/.ids.txt
DATABASE_URL="$embedded_url" "$markets" create-admin --email bench-admin@example.com \
	--password-env BENCH_PASSWORD >/dev/null 2>&1
DATABASE_URL="$embedded_url" "$markets" reindex 2>/dev/null
start_server "" DATABASE_URL="$embedded_url"
BENCH_TOKEN="$(login)"
wrk -t2 -c"$connections" -d2s -s bench/get_by_id.lua "$base" >/dev/null # warm-up, not reported
embedded="$(
	run "GET /health/live (embedded)" health.lua /health/live
	run "GET /api/v1/markets/{id} (moka cache)" get_by_id.lua /
	run "GET /api/v1/markets?page=N" list_page.lua /
	run "cursor walk (sort=-volume)" cursor_walk.lua /
	run "GET /api/v1/markets/search (semantic, local)" search.lua /
	run "POST /api/v1/markets" create.lua /
)"
stop_server
python3 -c "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); \
db.execute(\"DELETE FROM markets WHERE name LIKE 'Benchmark market %'\"); \
db.execute('DELETE FROM jobs'); db.commit()" bench/.embedded/markets.db
start_server "" DATABASE_URL="$embedded_url" MARKETS__SEARCH__PROVIDER=openai OPENAI_API_KEY=bench \
	OPENAI_BASE_URL=http://127.0.0.1:1/v1
embedded_fallback="$(run "GET /api/v1/markets/search (fallback, FTS5)" search.lua /)"
stop_server

# table ROWS: prints ROWS as a markdown table, each compared with the first row's req/s.
table() {
	local ceiling
	ceiling="$(head -n1 <<<"$1" | awk '{ print $(NF-4) }')"
	echo "| scenario | req/s | p50 ms | p99 ms | non-2xx+socket errors | peak RSS MB | vs /health/live |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	while read -r line; do
		awk -v ceiling="$ceiling" '{
			rss = $NF; failures = $(NF-1); p99 = $(NF-2); p50 = $(NF-3); rps = $(NF-4);
			name = $1; for (i = 2; i <= NF - 5; i++) name = name " " $i;
			printf "| %s | %d | %s | %s | %s | %s | %.0f%% |\n", name, rps, p50, p99, failures, rss, 100 * rps / ceiling
		}' <<<"$line"
	done <<<"$1"
}

echo
echo "wrk -t2 -c$connections -d$duration, server, PostgreSQL, Redis and wrk on this machine ($(nproc) cores)"
echo
table "$uncached"$'\n'"$fallback"
echo
table "$cached"
uncached_rps="$(sed -n 2p <<<"$uncached" | awk '{ print $(NF-4) }')"
cached_rps="$(sed -n 2p <<<"$cached" | awk '{ print $(NF-4) }')"
echo
awk -v c="$cached_rps" -v u="$uncached_rps" 'BEGIN { printf "cached get-by-id: %.1fx the uncached throughput\n", c / u }'
echo
echo "registration flood: 200 clients for 5 s (server set, default [auth.password_hashing])"
echo
echo "| figure | value |"
echo "|---|---|"
echo "$burst"
echo
echo "embedded set: SQLite (WAL), moka cache, in-process rate limits"
echo
table "$embedded"$'\n'"$embedded_fallback"
[[ ${BENCH_SUSTAINED:-1} == 0 ]] || bench/sustained.sh # sustained writes (issue 17); BENCH_SUSTAINED=0 skips
