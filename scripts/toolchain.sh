# Sourced by the scripts: makes sure cargo is on PATH (rustup installs it under ~/.cargo/bin,
# which a non-login shell such as CI's may not have on its PATH).
if ! command -v cargo >/dev/null 2>&1 && [ -f "${CARGO_HOME:-$HOME/.cargo}/env" ]; then
	# shellcheck disable=SC1091
	source "${CARGO_HOME:-$HOME/.cargo}/env"
fi
command -v cargo >/dev/null 2>&1 || {
	echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2
	exit 1
}
