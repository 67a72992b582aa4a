#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh machine: provisions PostgreSQL (with
# pgvector) and Redis, then checks formatting, lints, docs, and runs every test.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/toolchain.sh

# services.sh prints DATABASE_URL=... and REDIS_URL=... for the tests to use.
eval "$(scripts/services.sh up)"
export DATABASE_URL REDIS_URL

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
cargo test --workspace --locked
