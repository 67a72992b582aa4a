# The everyday loop. `just` is optional: every recipe is a plain command you can run yourself
# (install it with `cargo install just --locked`).

# Start PostgreSQL (with pgvector) and Redis if they are not up.
services:
    scripts/services.sh up

# Serve the API on 127.0.0.1:8080 from an embedded SQLite file: nothing else needed.
run:
    scripts/start.sh

# Serve the API from PostgreSQL and Redis (provisioned if not up).
run-services:
    scripts/start.sh --services

# The whole suite, as CI runs it.
test:
    scripts/test.sh

# Search quality on the labelled set (tests/search_eval/set.json): recall@10 and nDCG@10 of the
# model, the hashing embedder and the text fallback, printed as a table.
search-eval:
    eval "$(scripts/model.sh)" && export MARKETS_MODEL_DIR && cargo test -p markets-app --test search_eval -- --nocapture

# Formatting and lints only.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply pending migrations to DATABASE_URL (or the local default).
migrate:
    cargo run -p markets-app --bin markets -- migrate

# Stop the local PostgreSQL cluster started by `just services`.
down:
    scripts/services.sh down

# Benchmark: seeds 10k markets (BENCH_MARKETS; BENCH_SIZES=10000,100000,1000000 for one run per
# size), serves the release build, drives it with wrk, prints tables (see scripts/bench.sh).
bench:
    scripts/bench.sh

# The fleet (scripts/fleet.sh: two instances behind nginx, a PostgreSQL replica, a Redis
# Cluster) against one of its instances direct, with each part's CPU per request.
bench-fleet:
    scripts/fleet-bench.sh

# Bring the fleet up and run its tests through nginx (what CI does).
test-fleet:
    cargo build --workspace --bin markets
    eval "$(MARKETS_BIN=target/debug/markets scripts/fleet.sh up)" && cargo test --workspace --test fleet -- --nocapture
