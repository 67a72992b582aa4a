#!/usr/bin/env bash
# Starts the service on a fresh machine: provisions PostgreSQL (with pgvector) and Redis,
# builds the release binary and serves on BIND_ADDR (default 127.0.0.1:8080), migrating first.
# Extra arguments go to `markets serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

eval "$(scripts/services.sh up)"
export DATABASE_URL REDIS_URL

cargo build --release --locked -p markets-app --bin markets
exec target/release/markets serve "$@"
