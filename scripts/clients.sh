#!/usr/bin/env bash
# The service as its clients see it: the binary (MARKETS_BIN) is served on each adapter set in turn
# (PostgreSQL + Redis, then the embedded SQLite set), and driven through its own OpenAPI
# document by
#   1. schemathesis (every check, every phase: examples, coverage, fuzzing, stateful; a fixed
#      seed; tests/clients/hooks.py supplies an administrator's token);
#   2. a Python client generated from /openapi.json by openapi-python-client
#      (tests/clients/generated_client.py);
#   3. headless Chromium on /docs, with every host but the service unreachable
#      (tests/clients/docs_page.py).
# Any failure fails the script. scripts/test.sh runs it after the test build, on its binary.
#
# Environment: DATABASE_URL and REDIS_URL (from `scripts/services.sh up`) for the server set;
# MARKETS_BIN (default target/release/markets); MARKETS_CLIENTS_EXAMPLES (cases per operation
# and phase, default 100); MARKETS_CLIENTS_SEED (default 18); MARKETS_CLIENTS_SETS (default
# "server embedded").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

BIN="${MARKETS_BIN:-$PWD/target/release/markets}"
EXAMPLES="${MARKETS_CLIENTS_EXAMPLES:-100}"
SEED="${MARKETS_CLIENTS_SEED:-18}"
SETS="${MARKETS_CLIENTS_SETS:-server embedded}"
[[ -x $BIN ]] || { echo "clients: no binary at $BIN (cargo build --release)" >&2; exit 1; }
: "${DATABASE_URL:?DATABASE_URL (scripts/services.sh up) is needed for the server set}"
: "${REDIS_URL:?REDIS_URL (scripts/services.sh up) is needed for the server set}"

eval "$(scripts/services.sh clients)"
VENV="$MARKETS_CLIENTS_VENV"
PY="$VENV/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/markets-clients.XXXXXX")"
SERVER_PID=""
CLIENT_DB="markets_clients_$$"

log() { printf 'clients: %s\n' "$*" >&2; }

cleanup() {
	stop_server
	psql -X -q "$(admin_url)" -c "DROP DATABASE IF EXISTS $CLIENT_DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf -- "$WORK"
}
trap cleanup EXIT

# DATABASE_URL with its database replaced by `$1`.
database_url() { sed -E "s#/[^/?]*(\?|$)#/$1\1#" <<<"$DATABASE_URL"; }
admin_url() { database_url postgres; }

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop_server() {
	if [[ -n $SERVER_PID ]]; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=""
	fi
}

# The environment of the served binary for adapter set `$1`, one NAME=value a line.
server_env() {
	local set="$1" port="$2"
	printf '%s\n' APP_ENV=test "BIND_ADDR=127.0.0.1:$port" "JWT_SECRET=$JWT_SECRET" \
		LOG_FORMAT=text RUST_LOG=warn \
		MARKETS__RATE_LIMIT__SEARCH__LIMIT=1000000 MARKETS__RATE_LIMIT__LOGIN__LIMIT=1000000 \
		MARKETS__RATE_LIMIT__REGISTER__LIMIT=1000000 MARKETS__RATE_LIMIT__WRITES__LIMIT=1000000 \
		MARKETS__RATE_LIMIT__ACCOUNT_TOKENS__LIMIT=1000000 \
		MARKETS__RATE_LIMIT__PASSWORD_RESET_EMAIL__LIMIT=1000000
	if [[ $set == server ]]; then
		printf '%s\n' "DATABASE_URL=$(database_url "$CLIENT_DB")" "REDIS_URL=$REDIS_URL" \
			"MARKETS__REDIS__KEY_PREFIX=clients:$$:"
	else
		printf '%s\n' "DATABASE_URL=sqlite:$WORK/$set/markets.db"
	fi
}

# The arguments to `env` that give the binary adapter set `$1`'s environment, one a line.
set_env() {
	printf '%s\n' -u DATABASE_URL -u REDIS_URL
	server_env "$1" "$2"
}

# Runs the binary with adapter set `$1`'s environment and the arguments after it.
markets() {
	local vars
	mapfile -t vars < <(set_env "$1" "$2")
	shift 2
	env "${vars[@]}" "$BIN" "$@"
}

wait_ready() {
	local base="$1"
	for _ in $(seq 1 300); do
		if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
			"$base/health/ready" >/dev/null 2>&1; then
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || { log "the server exited"; return 1; }
		sleep 0.1
	done
	log "the server never became ready"
	return 1
}

# Registers a user through the API; prints its id.
register() {
	"$PY" - "$1" "$2" <<-'EOF'
		import json, os, sys, urllib.request
		base, email = sys.argv[1], sys.argv[2]
		body = json.dumps({"email": email, "password": os.environ["MARKETS_STAND_IN_PASSWORD"],
		                   "display_name": "Stand-in"})
		request = urllib.request.Request(base + "/api/v1/auth/register", body.encode(),
		                                 {"Content-Type": "application/json"})
		print(json.load(urllib.request.urlopen(request, timeout=30))["data"]["id"])
	EOF
}

# The id of the user logged in as `$2` with password `$3`.
user_id() {
	"$PY" - "$1" "$2" "$3" <<-'EOF'
		import json, sys, urllib.request
		base, email, password = sys.argv[1:4]
		login = urllib.request.Request(base + "/api/v1/auth/login",
		                               json.dumps({"email": email, "password": password}).encode(),
		                               {"Content-Type": "application/json"})
		token = json.load(urllib.request.urlopen(login, timeout=30))["data"]["access_token"]
		me = urllib.request.Request(base + "/api/v1/users/me", headers={"Authorization": "Bearer " + token})
		print(json.load(urllib.request.urlopen(me, timeout=30))["data"]["id"])
	EOF
}

run_set() {
	local set="$1" port base started
	started=$SECONDS
	mkdir -p "$WORK/$set"
	port="$(free_port)"
	base="http://127.0.0.1:$port"
	if [[ $set == server ]]; then
		psql -X -q -v ON_ERROR_STOP=1 "$(admin_url)" \
			-c "DROP DATABASE IF EXISTS $CLIENT_DB WITH (FORCE)" -c "CREATE DATABASE $CLIENT_DB" >/dev/null
	fi
	markets "$set" "$port" migrate >/dev/null
	ADMIN_PASSWORD="$MARKETS_ADMIN_PASSWORD" \
		markets "$set" "$port" create-admin --email admin@clients.example.com \
		--password-env ADMIN_PASSWORD >/dev/null
	# Not through `markets`: a function in the background runs in a subshell of its own, and
	# SERVER_PID must be the server's, which stop_server signals (the subshell would die alone
	# and leave the server running).
	local vars
	mapfile -t vars < <(set_env "$set" "$port")
	env "${vars[@]}" "$BIN" serve --no-migrate >"$WORK/$set/server.log" 2>&1 &
	SERVER_PID=$!
	wait_ready "$base"

	export MARKETS_BASE="$base" MARKETS_ADMIN_EMAIL=admin@clients.example.com
	export MARKETS_STAND_IN_EMAIL=stand-in@clients.example.com MARKETS_ADMIN_ID MARKETS_STAND_IN_ID
	MARKETS_ADMIN_ID="$(user_id "$base" "$MARKETS_ADMIN_EMAIL" "$MARKETS_ADMIN_PASSWORD")"
	MARKETS_STAND_IN_ID="$(register "$base" "$MARKETS_STAND_IN_EMAIL")"

	log "schemathesis: $EXAMPLES examples per operation and phase, seed $SEED"
	local rc=0
	# The document is read from a copy: given its URL, schemathesis leaves that operation
	# (GET /openapi.json) out of the run.
	"$PY" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=30).read())' \
		"$base/openapi.json" >"$WORK/$set/openapi.json"
	# From the set's own folder, where schemathesis keeps its state.
	(cd "$WORK/$set" && SCHEMATHESIS_HOOKS=tests.clients.hooks PYTHONPATH="$ROOT" \
		"$VENV/bin/st" --config-file "$ROOT/tests/clients/schemathesis.toml" run "$WORK/$set/openapi.json" \
		--url "$base" --checks all --phases examples,coverage,fuzzing,stateful \
		--max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
		--generation-database none --no-color) || rc=$?

	log "a client generated from /openapi.json"
	"$VENV/bin/openapi-python-client" generate --url "$base/openapi.json" \
		--output-path "$WORK/$set/client" --meta none \
		--config "$ROOT/tests/clients/openapi-python-client.yaml" >"$WORK/$set/generate.log" 2>&1 ||
		{ cat "$WORK/$set/generate.log" >&2; rc=1; }
	PYTHONPATH="$WORK/$set" "$PY" tests/clients/generated_client.py "$base" || rc=1

	log "/docs in headless Chromium"
	"$PY" tests/clients/docs_page.py "$MARKETS_CHROMIUM" "$base" || rc=1

	stop_server
	if ((rc != 0)); then
		log "FAILED; the server's log:"
		tail -n 50 "$WORK/$set/server.log" >&2
		return "$rc"
	fi
	log "passed in $((SECONDS - started)) s"
}

JWT_SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')"
export MARKETS_ADMIN_PASSWORD MARKETS_STAND_IN_PASSWORD
MARKETS_ADMIN_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
MARKETS_STAND_IN_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
# The sets run side by side, each with a server, port, database and scratch folder of its own
# (one at a time, the client and its debug-built server leave a core idle); every line is
# prefixed with its set's name.
pids=()
for set in $SETS; do
	{ (trap stop_server EXIT; run_set "$set") 2>&1 | sed -u "s/^/[$set] /" >&2; } &
	pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do
	wait "$pid" || failed=1
done
((failed == 0))
