#!/usr/bin/env bash
# Starts the service with nothing else installed: builds the release binary and serves on
# BIND_ADDR (default 127.0.0.1:8080) from an embedded SQLite file (./data/markets.db, created
# with its folder), with the cache and rate limits in process, and search by meaning with
# all-MiniLM-L6-v2 in process (scripts/model.sh provisions it once; unless OPENAI_API_KEY is set,
# when the API embeds instead). Extra arguments go to `markets serve`.
#
# With `--services`, it first provisions PostgreSQL (with pgvector) and Redis
# (scripts/services.sh) and serves from those instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

if [[ ${1:-} == --services ]]; then
	shift
	eval "$(scripts/services.sh up)"
	export DATABASE_URL REDIS_URL
fi

eval "$(scripts/model.sh)"
export MARKETS_MODEL_DIR

cargo build --release --locked -p markets-app --bin markets
exec target/release/markets serve "$@"
