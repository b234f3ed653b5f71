#!/usr/bin/env bash
# The servers of the distributed deployment, for tests and benchmarks on this machine: installs
# them from Debian packages if missing (PostgreSQL 15 with pgvector built from Debian's own
# source package, Redis, RabbitMQ) and starts or stops throwaway instances on 127.0.0.1 under
# .services/.
#
#   scripts/services.sh install       install the packages (needs root)
#   scripts/services.sh start         start them (if not running); prints the environment to use them
#   scripts/services.sh stop          stop them and delete their data
#   scripts/services.sh start-redis   start only Redis (if not running), e.g. again after stop-redis
#   scripts/services.sh stop-redis    stop only Redis, e.g. to test an outage; PostgreSQL keeps running
#   scripts/services.sh start-rabbitmq  start only RabbitMQ (if not running), e.g. again after stop-rabbitmq
#   scripts/services.sh stop-rabbitmq   stop only RabbitMQ, keeping its data: durable queues and
#                                       persistent messages survive a stop-rabbitmq/start-rabbitmq
#
# Ports: CONTEXTIQ_TEST_PG_PORT, CONTEXTIQ_TEST_REDIS_PORT, CONTEXTIQ_TEST_RABBITMQ_PORT (and
# CONTEXTIQ_TEST_RABBITMQ_DIST_PORT, _NODE, _DIR for a second, private RabbitMQ node).
#
# Test-only settings: PostgreSQL runs with fsync=off and trust authentication on loopback; Redis
# without password or persistence; RabbitMQ with its guest/guest user (loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD/.services"
PG_PORT="${CONTEXTIQ_TEST_PG_PORT:-55432}"
PG_BIN=/usr/lib/postgresql/15/bin
REDIS_PORT="${CONTEXTIQ_TEST_REDIS_PORT:-56379}"
RABBITMQ_PORT="${CONTEXTIQ_TEST_RABBITMQ_PORT:-55672}"
# Erlang distribution (rabbitmqctl talks to the node through it); the usual AMQP port + 20000
# would be past 65535 here.
RABBITMQ_DIST_PORT="${CONTEXTIQ_TEST_RABBITMQ_DIST_PORT:-$((RABBITMQ_PORT + 1))}"
# A test may run a private node (to restart it without disturbing others): its own node name,
# ports and directory.
RABBITMQ_NODE="${CONTEXTIQ_TEST_RABBITMQ_NODE:-rabbit@localhost}"
RABBITMQ_DIR="${CONTEXTIQ_TEST_RABBITMQ_DIR:-$ROOT/rabbitmq}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The Debian mirror and keyring this machine's own apt sources use (deb822 `.sources` files or
# one-line `sources.list` entries), for the base suite of its release: pgvector's source package
# comes from the same place as every other package.
debian_mirror() {
    local codename keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    local found
    found="$(awk -v codename="$codename" -v keyring="$keyring" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " codename " ") && uris != "" && !done) {
                split(uris, list, " "); print list[1], (signed != "" ? signed : keyring); done = 1
            }
            types = ""; suites = ""; uris = ""; signed = ""
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[[:space:]]*$/) { flush(); next }
            if (tolower($1) == "types:") { $1 = ""; types = $0 }
            if (tolower($1) == "suites:") { $1 = ""; suites = $0 }
            if (tolower($1) == "uris:") { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            if (tolower($1) == "signed-by:") { signed = $2 }
            next
        }
        FILENAME ~ /\.list$/ && $1 == "deb" && !done {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == codename) { print $i, keyring; done = 1 }
        }
        END { flush() }
    ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)" \
        || true # awk fails on the files a machine lacks, after reading those it has
    if [ -z "$found" ]; then
        echo "no Debian source for $codename in /etc/apt/sources.list or /etc/apt/sources.list.d" >&2
        exit 1
    fi
    echo "$found"
}

install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    local packages=()
    if [ ! -x "$PG_BIN/postgres" ] || [ ! -f /usr/include/postgresql/15/server/postgres.h ]; then
        packages+=(postgresql postgresql-server-dev-15 dpkg-dev make gcc)
    fi
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        packages+=(redis-server)
    fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        packages+=(rabbitmq-server)
    fi
    if [ "${#packages[@]}" -gt 0 ]; then
        echo "installing ${packages[*]}" >&2
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    fi
    if [ ! -f "$("$PG_BIN/pg_config" --sharedir)/extension/vector.control" ]; then
        echo "building pgvector from Debian's source package" >&2
        local work sources
        work="$(mktemp -d)"
        sources="$work/sources"
        mkdir -p "$sources"
        # Debian's own trixie source of pgvector (bookworm has no build for PostgreSQL 15),
        # through a private sources list: the machine's apt sources stay as they are.
        local mirror keyring
        read -r mirror keyring < <(debian_mirror)
        cat >"$sources/trixie-src.sources" <<SOURCES
Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: $keyring
SOURCES
        local apt_options=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$sources"
            -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
        mkdir -p "$work/lists/partial"
        as_root apt-get "${apt_options[@]}" update -qq
        (cd "$work" && as_root apt-get "${apt_options[@]}" source --download-only -qq pgvector >/dev/null)
        (cd "$work" && dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null)
        (cd "$work/src" && make -s PG_CONFIG="$PG_BIN/pg_config" OPTFLAGS="" >/dev/null \
            && as_root make -s PG_CONFIG="$PG_BIN/pg_config" install >/dev/null)
        rm -rf "$work"
    fi
}

start() {
    install_packages
    mkdir -p "$ROOT"
    if [ ! -f "$ROOT/pg/PG_VERSION" ]; then
        mkdir -p "$ROOT/pg" "$ROOT/pg-socket"
        chown -R postgres:postgres "$ROOT/pg" "$ROOT/pg-socket" 2>/dev/null || true
        run_as_postgres "$PG_BIN/initdb" -D "$ROOT/pg" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    if ! run_as_postgres "$PG_BIN/pg_ctl" -D "$ROOT/pg" status >/dev/null 2>&1; then
        run_as_postgres "$PG_BIN/pg_ctl" -D "$ROOT/pg" -l "$ROOT/pg-socket/postgres.log" -w start \
            -o "-p $PG_PORT -k $ROOT/pg-socket -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
            >/dev/null
    fi
    echo "CONTEXTIQ_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    start_redis
    echo "CONTEXTIQ_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    start_rabbitmq
    echo "CONTEXTIQ_TEST_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$RABBITMQ_PORT/%2f"
}

redis_running() {
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}

start_redis() {
    if redis_running; then
        return
    fi
    mkdir -p "$ROOT/redis"
    redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$ROOT/redis" \
        --pidfile "$ROOT/redis/redis.pid" --logfile "$ROOT/redis/redis.log" --save '' --appendonly no
    # The daemon detaches before it listens.
    for _ in $(seq 50); do
        if redis_running; then
            return
        fi
        sleep 0.1
    done
    echo "Redis did not start on port $REDIS_PORT; see $ROOT/redis/redis.log" >&2
    exit 1
}

stop_redis() {
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

# rabbitmq-server and rabbitmqctl as the rabbitmq user, with this instance's node and files.
run_rabbitmq() {
    local env=(HOME=/var/lib/rabbitmq RABBITMQ_NODENAME="$RABBITMQ_NODE"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
        RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT" RABBITMQ_MNESIA_BASE="$RABBITMQ_DIR/mnesia"
        RABBITMQ_LOG_BASE="$RABBITMQ_DIR/log" RABBITMQ_PID_FILE="$RABBITMQ_DIR/rabbit.pid")
    if [ "$(id -u)" = 0 ]; then
        (cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c "$(printf '%q ' env "${env[@]}" "$@")")
    else
        (cd /var/lib/rabbitmq && env "${env[@]}" "$@")
    fi
}

rabbitmq_running() {
    [ -f "$RABBITMQ_DIR/rabbit.pid" ] && run_rabbitmq rabbitmqctl -n "$RABBITMQ_NODE" status >/dev/null 2>&1
}

start_rabbitmq() {
    if rabbitmq_running; then
        return
    fi
    mkdir -p "$RABBITMQ_DIR/mnesia" "$RABBITMQ_DIR/log"
    chown -R rabbitmq:rabbitmq "$RABBITMQ_DIR" 2>/dev/null || true
    # A stale pid file (of a node that died) would make the wait below look at the wrong process.
    rm -f "$RABBITMQ_DIR/rabbit.pid"
    run_rabbitmq rabbitmq-server -detached
    if ! run_rabbitmq rabbitmqctl -n "$RABBITMQ_NODE" wait --timeout 120 "$RABBITMQ_DIR/rabbit.pid" >/dev/null; then
        echo "RabbitMQ did not start on port $RABBITMQ_PORT; see $RABBITMQ_DIR/log" >&2
        exit 1
    fi
}

stop_rabbitmq() {
    if [ -f "$RABBITMQ_DIR/rabbit.pid" ]; then
        run_rabbitmq rabbitmqctl -n "$RABBITMQ_NODE" stop "$RABBITMQ_DIR/rabbit.pid" >/dev/null 2>&1 || true
    fi
    epmd -kill >/dev/null 2>&1 || true
}

run_as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        # initdb and postgres refuse to run as root.
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

stop() {
    stop_redis
    stop_rabbitmq
    if [ -f "$ROOT/pg/PG_VERSION" ]; then
        run_as_postgres "$PG_BIN/pg_ctl" -D "$ROOT/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$ROOT"
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    start-redis) start_redis ;;
    stop-redis) stop_redis ;;
    start-rabbitmq) start_rabbitmq ;;
    stop-rabbitmq) stop_rabbitmq ;;
    *) echo "usage: $0 install|start|stop|start-redis|stop-redis|start-rabbitmq|stop-rabbitmq" >&2; exit 2 ;;
esac
