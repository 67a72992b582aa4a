# shellcheck shell=bash disable=SC2034
# (SC2034: `markets` is set for the scripts that source this.)
# Sourced by the benchmarks (scripts/bench.sh, scripts/fleet-bench.sh, bench/sustained.sh), from
# the checkout's root: what each needs before it measures anything.

# bench_prepare NAME: brings the test services up (DATABASE_URL, REDIS_URL, ... set as
# scripts/services.sh prints them), installs wrk if it is missing, and sets `markets` to the
# binary to measure: BENCH_BIN, or this checkout's release build, built now.
bench_prepare() {
	eval "$(scripts/services.sh up)"
	if ! command -v wrk >/dev/null 2>&1; then
		echo "$1: installing wrk" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
	fi
	if [[ -n ${BENCH_BIN:-} ]]; then
		markets="$BENCH_BIN"
	else
		cargo build --release --locked -q -p markets-app --bin markets
		markets="$PWD/target/release/markets"
	fi
}
