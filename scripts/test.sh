#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh machine: provisions PostgreSQL (with
# pgvector) and Redis, then checks formatting, lints, docs, and runs every test, the API suite
# once on each adapter set, and the fleet tests on a fleet of its own. `.ci/run` calls exactly
# this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

# services.sh prints DATABASE_URL=..., REDIS_URL=..., MARKETS_NGINX=..., MARKETS_PROMETHEUS=...,
# MARKETS_PROMTOOL=... and MARKETS_MODEL_DIR=... (the embedding model) for the tests to use.
eval "$(scripts/services.sh up)"
export DATABASE_URL REDIS_URL MARKETS_NGINX MARKETS_PROMETHEUS MARKETS_PROMTOOL MARKETS_MODEL_DIR

# A clean build gains nothing from incremental compilation's caches, and writing them costs time.
export CARGO_INCREMENTAL=0

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

# One build of everything the tests run: the test binaries and, beside them, the `markets`
# binary that the client, embedded, fault and fleet tests serve (the dev profile, with the
# password hash's and the model's crates optimised: see Cargo.toml). A second, release build
# would double the build time for the same code.
cargo test --workspace --locked --no-run
export MARKETS_BIN="$PWD/target/debug/markets"
# The served binary as its clients see it, on both adapter sets: schemathesis, a generated
# Python client, /docs in headless Chromium.
scripts/clients.sh

# Every crate; the API suite on PostgreSQL and Redis.
cargo test --workspace --locked
# The API suite again on the embedded set: SQLite, in-process cache and rate limits.
MARKETS_TEST_ADAPTERS=embedded cargo test --workspace --locked --test api

# The fleet (scripts/fleet.sh: two instances behind nginx, a PostgreSQL primary and replica, a
# Redis Cluster), from fresh data, and its tests through nginx; stopped however they end.
scripts/fleet.sh reset >&2
trap 'scripts/fleet.sh down >&2' EXIT
eval "$(scripts/fleet.sh up)"
cargo test --workspace --locked --test fleet -- --nocapture
