#!/usr/bin/env bash
# Sustained writes (issue 17): creates markets through the API at the highest rate the server
# takes (wrk, bench/create.lua, 32 connections) for BENCH_SUSTAINED_SECS, then stays idle until
# every job is done and every market embedded (at most BENCH_DRAIN_LIMIT seconds), and prints
# creates/s, the largest index backlog, the drain time after the last create, notification wait
# p50/p99 (log notifier line minus the market's created_at), embeddings/s and embedding work per
# market (bench/sustained.py says how each is measured). The jobs run in the server's own worker,
# as production is configured by default ([jobs] run_in_serve); BENCH_SUSTAINED_WORKER=separate
# runs them in a `markets worker` process beside a server that runs none.
#
# Runs, in BENCH_SUSTAINED_SETS (default "postgres sqlite openai"): the server set (PostgreSQL,
# Redis) with the local embedder; the embedded set (SQLite) with the local embedder; the server
# set with the OpenAI adapter against bench/embeddings_mock.py, a local counting mock, which
# gives the texts embedded and the requests made per market.
#
# Environment: BENCH_SUSTAINED_SECS (60), BENCH_DRAIN_LIMIT (300), BENCH_CONNECTIONS (32),
# BENCH_SUSTAINED_PORT (18190; the metrics listener one above, the mock two above),
# BENCH_BIN (a markets binary to measure instead of building this checkout's),
# BENCH_SUSTAINED_OUT (a file the JSON results are appended to).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

secs="${BENCH_SUSTAINED_SECS:-60}"
drain_limit="${BENCH_DRAIN_LIMIT:-300}"
connections="${BENCH_CONNECTIONS:-32}"
port="${BENCH_SUSTAINED_PORT:-18190}"
sets="${BENCH_SUSTAINED_SETS:-postgres sqlite openai}"
worker_mode="${BENCH_SUSTAINED_WORKER:-serve}"
base="http://127.0.0.1:$port"
metrics="http://127.0.0.1:$((port + 1))/metrics"
mock_port=$((port + 2))

source scripts/lib/bench.sh
bench_prepare sustained

pg_url="${DATABASE_URL%/*}/markets_sustained"
sqlite_path=bench/.sustained/markets.db
log=bench/.sustained.log
results="$(mktemp)"
export APP_ENV=production LOG_FORMAT=json RUST_LOG="warn,markets_smtp=info"
export BIND_ADDR="127.0.0.1:$port" MARKETS__METRICS__BIND_ADDR="127.0.0.1:$((port + 1))"
# The load comes from one address: lift the per-client write limit so it measures the service.
export MARKETS__RATE_LIMIT__WRITES__LIMIT=1000000000 RATE_LIMIT_LOGIN_PER_MINUTE=1000000
JWT_SECRET="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export JWT_SECRET BENCH_PASSWORD="sustained password $RANDOM$RANDOM"

pids=()
stop_all() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	pids=()
}
trap stop_all EXIT

# fresh_database: an empty, migrated database for DATABASE_URL, with an admin to create as.
fresh_database() {
	if [[ $DATABASE_URL == postgres* ]]; then
		psql -q "${pg_url%/*}/markets" -c "DROP DATABASE IF EXISTS markets_sustained WITH (FORCE)" \
			-c "CREATE DATABASE markets_sustained"
		"$markets" migrate 2>/dev/null
		# Counts the embeddings the indexer writes (a statement that sets the column fires it,
		# a duplicate computation included); the benchmark's own, not the schema's.
		psql -q "$DATABASE_URL" <<-'SQL'
			CREATE UNLOGGED TABLE bench_embedding_writes (market uuid NOT NULL);
			CREATE FUNCTION bench_count_embedding_write() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
			    INSERT INTO bench_embedding_writes VALUES (NEW.id);
			    RETURN NULL;
			END
			$$;
			CREATE TRIGGER bench_count_embedding_write AFTER UPDATE OF embedding ON markets
			    FOR EACH ROW EXECUTE FUNCTION bench_count_embedding_write();
		SQL
	else
		rm -rf bench/.sustained
		"$markets" migrate 2>/dev/null
	fi
	"$markets" create-admin --email bench-admin@example.com --password-env BENCH_PASSWORD \
		>/dev/null 2>&1
}

# start VAR=value...: the server (and with BENCH_SUSTAINED_WORKER=separate, a worker beside it).
start() {
	if [[ $worker_mode == separate ]]; then
		env "$@" MARKETS__JOBS__RUN_IN_SERVE=false "$markets" serve --no-migrate 2>>"$log" &
		pids+=($!)
		env "$@" MARKETS__METRICS__BIND_ADDR="127.0.0.1:$((port + 3))" "$markets" worker 2>>"$log" &
		pids+=($!)
	else
		env "$@" "$markets" serve --no-migrate 2>>"$log" &
		pids+=($!)
	fi
	for _ in $(seq 1 100); do
		curl -sf "$base/health/live" >/dev/null && return
		sleep 0.1
	done
	echo "sustained: the server did not start; see $log" >&2
	exit 1
}

# measure NAME DB [--mock URL]: one run against the started server.
measure() {
	local name=$1 db=$2
	shift 2
	BENCH_TOKEN="$(curl -sf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
		-d "{\"email\":\"bench-admin@example.com\",\"password\":\"$BENCH_PASSWORD\"}" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/')"
	echo "sustained: $name: ${secs}s of creates, then up to ${drain_limit}s to drain" >&2
	BENCH_TOKEN="$BENCH_TOKEN" python3 bench/sustained.py run --name "$name" --base "$base" \
		--metrics "$metrics" --db "$db" --log "$log" --secs "$secs" --drain-limit "$drain_limit" \
		--connections "$connections" "$@" | tee -a "$results" "${BENCH_SUSTAINED_OUT:-/dev/null}" >&2
}

for set in $sets; do
	: >"$log"
	case $set in
	postgres)
		export DATABASE_URL="$pg_url"
		fresh_database
		start REDIS_URL="$REDIS_URL" MARKETS__SEARCH__PROVIDER=local
		measure "PostgreSQL+Redis, local" "$pg_url"
		;;
	sqlite)
		export DATABASE_URL="sqlite:$sqlite_path"
		fresh_database
		start -u REDIS_URL MARKETS__SEARCH__PROVIDER=local
		measure "SQLite, local" "$sqlite_path"
		;;
	openai)
		export DATABASE_URL="$pg_url"
		fresh_database
		python3 bench/embeddings_mock.py "$mock_port" &
		pids+=($!)
		for _ in $(seq 1 50); do
			curl -sf "http://127.0.0.1:$mock_port/count" >/dev/null && break
			sleep 0.1
		done
		start REDIS_URL="$REDIS_URL" MARKETS__SEARCH__PROVIDER=openai OPENAI_API_KEY=bench \
			OPENAI_BASE_URL="http://127.0.0.1:$mock_port/v1"
		measure "PostgreSQL+Redis, OpenAI mock" "$pg_url" --mock "http://127.0.0.1:$mock_port"
		;;
	*)
		echo "sustained: unknown set $set (postgres, sqlite, openai)" >&2
		exit 1
		;;
	esac
	stop_all
done

echo
echo "sustained writes: ${secs}s of creates (wrk -t2 -c$connections), then idle; jobs in the" \
	"$([[ $worker_mode == separate ]] && echo "separate \`markets worker\`" || echo "server's own worker"); $(nproc) cores"
echo
python3 bench/sustained.py table "$results"
rm -f "$results"
