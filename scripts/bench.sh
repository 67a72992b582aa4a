#!/usr/bin/env bash
# Benchmark (`just bench`): seeds markets and 200 users into a database of its own, starts the
# release binary, drives it with wrk on this machine, and prints requests/s, p50/p99 latency,
# failures, the server's peak RSS per scenario, and each scenario's throughput as a share of
# /health/live's in the same run. On the server set (PostgreSQL, Redis) and on the embedded set
# (a SQLite file, the cache and limits in process). At the first size also search with a dead
# embedding provider (the text-search fallback), /health/live with request logging at info
# (the other scenarios log at warn), and a registration flood on the server set
# (bench/registration_burst.py): login latency while it lasts, and the server's RSS before, at
# its peak and after it. The sized scenarios search with the hashing embedder (embedding a
# million markets with the model would outlast the benchmark); search by meaning is measured on
# a data set of its own (BENCH_MODEL_MARKETS), on each set, with repeated queries (answered from
# the query-embedding cache) and with queries never sent before (each runs the model).
#
# Environment:
#   BENCH_MARKETS       markets to seed (default 10000)
#   BENCH_SIZES         comma-separated sizes, ascending (default BENCH_MARKETS): the read
#                       scenarios run at each, the same database grown between sizes (VACUUM
#                       ANALYZE after each growth); one table per size, then each scenario's
#                       throughput as a share of its figure at the first size
#   BENCH_EMBEDDED_MAX  the largest size run on the embedded set (default 100000)
#   BENCH_SEARCH_MAX    the most markets embedded, and the largest size search is measured at
#                       (default 100000; see bench/seed.sql)
#   BENCH_MODEL_MARKETS markets embedded by all-MiniLM-L6-v2 for the model's search scenarios
#                       (default 10000; 0 skips them)
#   BENCH_BIN           a prebuilt `markets` binary to measure instead of building this checkout
#   BENCH_DURATION (default 10s per scenario), BENCH_CONNECTIONS (default 32),
#   BENCH_PORT (default 18090)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"
port="${BENCH_PORT:-18090}"
sizes="${BENCH_SIZES:-${BENCH_MARKETS:-10000}}"
embedded_max="${BENCH_EMBEDDED_MAX:-100000}"
search_max="${BENCH_SEARCH_MAX:-100000}"
model_markets="${BENCH_MODEL_MARKETS:-10000}"
base="http://127.0.0.1:$port"
IFS=, read -r -a sizes <<<"$sizes"
for size in "${sizes[@]}"; do
	[[ $size =~ ^[1-9][0-9]*$ ]] || { echo "bench: not a size: $size" >&2; exit 2; }
done

source scripts/lib/bench.sh
bench_prepare bench

# A database of its own, recreated each run, on the same server as the tests.
bench_url="${DATABASE_URL%/*}/markets_bench"
psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS markets_bench WITH (FORCE)" -c "CREATE DATABASE markets_bench"
export DATABASE_URL="$bench_url" APP_ENV=production RUST_LOG=warn BIND_ADDR="127.0.0.1:$port"
# The hashing embedder unless a scenario says otherwise (see above).
export MARKETS__SEARCH__PROVIDER=local MARKETS_MODEL_DIR
# The load comes from one address: lift the per-client limits so they measure the service.
export RATE_LIMIT_SEARCH_PER_MINUTE=1000000000 RATE_LIMIT_LOGIN_PER_MINUTE=1000000
export MARKETS__RATE_LIMIT__REGISTER__LIMIT=1000000 MARKETS__RATE_LIMIT__WRITES__LIMIT=1000000000
# Production scrapes /metrics on a port of its own; keep the benchmark's on loopback beside it.
export MARKETS__METRICS__BIND_ADDR="127.0.0.1:$((port + 1))"
JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JWT_SECRET
export BENCH_PASSWORD="bench password $RANDOM$RANDOM"
"$markets" migrate 2>/dev/null
embedded_url="sqlite:bench/.embedded/markets.db"
rm -rf bench/.embedded

# Ids the get-by-id scenarios read: a random sample of the whole table (so uncached reads land
# anywhere in it), and the first 10,000 of them for the cached scenario, which fills the cache
# with all of them first.
sample=100000
cached_ids() { head -n 10000 bench/.ids.txt >bench/.cached-ids.txt; }

# reindex URL: embeds the pending markets (the seeded ones up to BENCH_SEARCH_MAX) at the
# indexer's best speed: larger batches than a serving instance uses.
reindex() {
	DATABASE_URL="$1" MARKETS__SEARCH__INDEX_BATCH=512 "$markets" reindex --resume 2>/dev/null
}

# grow_server FROM TO: adds markets FROM..TO to the PostgreSQL database, embeds the pending ones.
grow_server() {
	psql -q -v ON_ERROR_STOP=1 -v first="$1" -v last="$2" -v search_max="$search_max" \
		"$bench_url" -f bench/seed.sql
	if [[ $1 == 1 ]]; then
		"$markets" create-admin --email bench-admin@example.com --password-env BENCH_PASSWORD >/dev/null 2>&1
	fi
	reindex "$bench_url"
	# As autovacuum would soon: statistics that know about the rows and embeddings, and a fresh
	# visibility map for index-only scans.
	psql -q "$bench_url" -c "VACUUM ANALYZE users" -c "VACUUM ANALYZE markets"
	psql -Atq "$bench_url" -c "SELECT id FROM markets ORDER BY random() LIMIT $sample" >bench/.ids.txt
	cached_ids
	echo "bench: server set at $(psql -Atq "$bench_url" -c 'SELECT sum(count) FROM market_counts') markets ($(psql -Atq "$bench_url" -c 'SELECT count(*) FROM markets WHERE embedding IS NOT NULL') embedded)" >&2
}

# grow_embedded FROM TO: the same for the SQLite file.
grow_embedded() {
	if [[ $1 == 1 ]]; then
		DATABASE_URL="$embedded_url" "$markets" migrate 2>/dev/null
	fi
	python3 bench/seed_sqlite.py bench/.embedded/markets.db "$1" "$2" "$search_max" bench/.ids.txt "$sample"
	if [[ $1 == 1 ]]; then
		DATABASE_URL="$embedded_url" "$markets" create-admin --email bench-admin@example.com \
			--password-env BENCH_PASSWORD >/dev/null 2>&1
	fi
	reindex "$embedded_url"
	cached_ids
}

# sqlite SQL: runs SQL on the embedded database.
sqlite() {
	python3 -c "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); db.executescript(sys.argv[2]); db.commit()" \
		bench/.embedded/markets.db "$1"
}

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
server=
trap stop_server EXIT
: >bench/.server.log
results=bench/.results.tsv
: >"$results"

# run SET SIZE NAME SCRIPT PATH: one wrk run; appends "SET SIZE NAME rps p50 p99 failures
# rss_mb" (tab-separated) to the results.
run() {
	local set=$1 size=$2 name=$3 script=$4 path=$5 result rss
	echo 5 >"/proc/$server/clear_refs" # reset the peak-RSS counter
	result="$(wrk -t2 -c"$connections" -d"$duration" --latency -s "bench/$script" "$base$path" | grep '^RESULT')"
	rss="$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server/status")"
	result="$(sed -E 's/RESULT rps=([0-9]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+) non2xx=([0-9]+) socket_errors=([0-9]+).*/\1\t\2\t\3\t\4+\5/' <<<"$result")"
	printf '%s\t%s\t%s\t%s\t%s\n' "$set" "$size" "$name" "$result" "$rss" >>"$results"
}

login() {
	curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
		-d "{\"email\":\"bench-admin@example.com\",\"password\":\"$BENCH_PASSWORD\"}" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

# reads SET SIZE GET_NAME: the scenarios every size runs, on the server started last.
reads() {
	local set=$1 size=$2
	BENCH_TOKEN="$(login)"
	export BENCH_TOKEN
	wrk -t2 -c"$connections" -d2s -s bench/get_by_id.lua "$base" >/dev/null # warm-up, not reported
	run "$set" "$size" "GET /health/live" health.lua /health/live
	run "$set" "$size" "$3" get_by_id.lua /
	run "$set" "$size" "offset page (sort=-volume, pages 1-500)" list_page.lua /
	run "$set" "$size" "first page (status=open)" health.lua "/api/v1/markets?status=open"
	run "$set" "$size" "first cursor page (sort=-volume)" health.lua "/api/v1/markets?sort=-volume&limit=20"
	run "$set" "$size" "cursor walk (sort=-volume)" cursor_walk.lua /
	if ((size <= search_max)); then
		run "$set" "$size" "search (semantic, hashing)" search.lua /
	fi
	run "$set" "$size" "POST /api/v1/markets" create.lua /
}

# graph_ready: on the embedded set above 4,096 embeddings, has the server (started with
# markets_vectors' info lines in the log) build its vector graph and waits until it is ready:
# the first search starts the build and searches scan exactly until it is done, so without
# this the search would be measured before the graph exists and the build would run under the
# later scenarios. A finished graph is swapped in by the next search, so it searches until then.
graph_ready() {
	local before
	before=$(grep -c "vector graph ready" bench/.server.log || true)
	for _ in $(seq 1 1800); do
		curl -sf "$base/api/v1/markets/search?query=warm%20up" >/dev/null
		(($(grep -c "vector graph ready" bench/.server.log || true) > before)) && return
		sleep 0.5
	done
	echo "bench: the vector graph was not ready after 15 minutes; see bench/.server.log" >&2
	exit 1
}
graph_log=RUST_LOG=warn,markets_vectors=info

# What a POST scenario created goes again, so later scenarios see the seeded data set and no
# indexing backlog.
created="DELETE FROM markets WHERE name LIKE 'Benchmark market %'; DELETE FROM jobs;"

previous=0
for size in "${sizes[@]}"; do
	grow_server $((previous + 1)) "$size"
	# Uncached: the cache points at a closed port, so every read goes to PostgreSQL (the
	# breaker makes the dead cache cost next to nothing).
	start_server "redis://127.0.0.1:1"
	reads server "$size" "get by id (uncached)"
	stop_server
	psql -q "$bench_url" -c "$created"
	if ((previous == 0)); then
		# Search with a dead embedding provider (a closed port): every search falls back to
		# text search.
		start_server "$REDIS_URL" MARKETS__SEARCH__PROVIDER=openai OPENAI_API_KEY=bench \
			OPENAI_BASE_URL=http://127.0.0.1:1/v1
		run server "$size" "search (fallback)" search.lua /
		stop_server
		# The price of request logging: every request writes its completion line at info.
		start_server "$REDIS_URL" RUST_LOG=info
		run server "$size" "GET /health/live (RUST_LOG=info)" health.lua /health/live
		stop_server
	fi
	# Cached: Redis in front; a pass over every cached id fills it first.
	start_server "$REDIS_URL"
	BENCH_ID_ORDER=sequential BENCH_IDS=bench/.cached-ids.txt \
		wrk -t2 -c"$connections" -d5s -s bench/get_by_id.lua "$base" >/dev/null
	BENCH_IDS=bench/.cached-ids.txt run server "$size" "get by id (Redis-cached)" get_by_id.lua /
	stop_server
	if ((previous == 0)); then
		# A registration flood: 200 clients registering for 5 s while one client logs in again
		# and again; the server's RSS before, at its peak and 3 s after (argon2 needs 19 MiB per
		# hash).
		start_server "$REDIS_URL"
		burst="$(python3 bench/registration_burst.py "$base" "$server" bench-admin@example.com "$BENCH_PASSWORD" 200 5 3)"
		stop_server
		psql -q "$bench_url" -c "DELETE FROM users WHERE email LIKE 'burst-%'"
	fi
	previous=$size
done

# model_search SET SIZE DATABASE_URL REDIS_URL: search by meaning on a data set of its own,
# model_markets markets embedded by the model (`markets reindex` switches the index to its 384
# dimensions), reported in SIZE's table. Prints the indexing rate.
model_search() {
	local set=$1 size=$2 url=$3 started seconds
	started=$(date +%s.%N)
	MARKETS__SEARCH__PROVIDER=minilm reindex "$url"
	seconds=$(echo "$(date +%s.%N) - $started" | bc)
	printf 'bench: %s set: %d markets embedded by the model in %.0f s (%.0f/s)\n' \
		"$set" "$model_markets" "$seconds" "$(echo "$model_markets / $seconds" | bc -l)" >&2
	start_server "$4" DATABASE_URL="$url" MARKETS__SEARCH__PROVIDER=minilm "$graph_log"
	[[ $set == server ]] || ((model_markets < 4096)) || graph_ready
	run "$set" "$size" "search (model, repeated queries)" search.lua /
	run "$set" "$size" "search (model, unique queries)" search_unique.lua /
	stop_server
}

# The embedded set: the same data set in a SQLite file; the cache (moka) and limits in process.
previous=0
for size in "${sizes[@]}"; do
	((size <= embedded_max)) || break
	grow_embedded $((previous + 1)) "$size"
	start_server "" DATABASE_URL="$embedded_url" "$graph_log"
	((size < 4096)) || graph_ready
	# As the server set's cached scenario: the same 10,000 ids, read once first to fill the cache.
	BENCH_ID_ORDER=sequential BENCH_IDS=bench/.cached-ids.txt \
		wrk -t2 -c"$connections" -d5s -s bench/get_by_id.lua "$base" >/dev/null
	BENCH_IDS=bench/.cached-ids.txt reads embedded "$size" "get by id (moka cache)"
	stop_server
	sqlite "$created"
	if ((previous == 0)); then
		start_server "" DATABASE_URL="$embedded_url" MARKETS__SEARCH__PROVIDER=openai \
			OPENAI_API_KEY=bench OPENAI_BASE_URL=http://127.0.0.1:1/v1
		run embedded "$size" "search (fallback, FTS5)" search.lua /
		stop_server
	fi
	previous=$size
done

if ((model_markets > 0)); then
	model_url="${bench_url}_model"
	psql -q "$bench_url" -c "DROP DATABASE IF EXISTS markets_bench_model WITH (FORCE)" \
		-c "CREATE DATABASE markets_bench_model"
	DATABASE_URL="$model_url" "$markets" migrate 2>/dev/null
	psql -q -v ON_ERROR_STOP=1 -v first=1 -v last="$model_markets" -v search_max="$model_markets" \
		"$model_url" -f bench/seed.sql
	model_search server "${sizes[0]}" "$model_url" "$REDIS_URL"
	rm -rf bench/.embedded-model
	model_file=bench/.embedded-model/markets.db
	DATABASE_URL="sqlite:$model_file" "$markets" migrate 2>/dev/null
	python3 bench/seed_sqlite.py "$model_file" 1 "$model_markets" "$model_markets" /dev/null 0
	model_search embedded "${sizes[0]}" "sqlite:$model_file" ""
fi

# table SET SIZE: that run's results as a markdown table, each compared with /health/live's
# req/s.
table() {
	awk -F'\t' -v set="$1" -v size="$2" '
		BEGIN {
			print "| scenario | req/s | p50 ms | p99 ms | non-2xx+socket errors | peak RSS MB | vs /health/live |"
			print "|---|---:|---:|---:|---:|---:|---:|"
		}
		$1 == set && $2 == size {
			if ($3 == "GET /health/live") ceiling = $4
			printf "| %s | %d | %s | %s | %s | %s | %.0f%% |\n", $3, $4, $5, $6, $7, $8, 100 * $4 / ceiling
		}' "$results"
}

# ratios SET: each scenario's req/s at every size, and as a share of its figure at the first.
ratios() {
	awk -F'\t' -v set="$1" '
		$1 != set { next }
		!($2 in seen_size) { seen_size[$2] = 1; sizes[++size_count] = $2 }
		!($3 in seen_name) { seen_name[$3] = 1; names[++name_count] = $3 }
		{ rps[$3, $2] = $4 }
		END {
			header = "| scenario |"; rule = "|---|"
			for (s = 1; s <= size_count; s++) { header = header " " sizes[s] " |"; rule = rule "---:|" }
			print header; print rule
			for (n = 1; n <= name_count; n++) {
				row = "| " names[n] " |"; first = rps[names[n], sizes[1]]
				for (s = 1; s <= size_count; s++) {
					if (!((names[n], sizes[s]) in rps)) { row = row " |"; continue }
					cell = rps[names[n], sizes[s]]
					if (s > 1 && first > 0) cell = sprintf("%d (%.0f%%)", cell, 100 * cell / first)
					row = row " " cell " |"
				}
				print row
			}
		}' "$results"
}

# report SET TITLE: one table per size, then the ratios if there were several sizes.
report() {
	local measured
	measured="$(awk -F'\t' -v set="$1" '$1 == set && !seen[$2]++ { print $2 }' "$results")"
	for size in $measured; do
		echo
		echo "$2, $size markets"
		echo
		table "$1" "$size"
	done
	if (($(wc -w <<<"$measured") > 1)); then
		echo
		echo "$2: req/s by size, and as a share of the first size's"
		echo
		ratios "$1"
	fi
}

echo
echo "wrk -t2 -c$connections -d$duration, server, PostgreSQL, Redis and wrk on this machine ($(nproc) cores)"
report server "server set: PostgreSQL, Redis"
echo
echo "registration flood: 200 clients for 5 s (server set, default [auth.password_hashing])"
echo
echo "| figure | value |"
echo "|---|---|"
echo "$burst"
echo
report embedded "embedded set: SQLite (WAL), moka cache, in-process rate limits"
[[ ${BENCH_SUSTAINED:-1} == 0 ]] || bench/sustained.sh # sustained writes (issue 17); BENCH_SUSTAINED=0 skips
