#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, on 127.0.0.1 only, trust auth, data in a temp dir.
#
# Sourced (what .ci/run does):   source .ci/postgres.sh; archscout_pg_start; ...; archscout_pg_stop
# By hand:                       eval "$(bash .ci/postgres.sh)"     # start, export the URL
#                                bash .ci/postgres.sh stop          # stop it, delete its data
#
# archscout_pg_start never fails: if the server cannot be set up it prints one loud warning and leaves
# ARCHSCOUT_TEST_POSTGRES_URL unset, so the PostgreSQL tests skip (with their message) and the rest runs.

ARCHSCOUT_PG_DB=archscout_test
ARCHSCOUT_PG_USER=archscout          # the cluster's superuser (a role inside PostgreSQL, not a system user)

_pg_log() { echo "postgres.sh: $*" >&2; }
_pg_fail() { ARCHSCOUT_PG_FAILURE="$*"; return 1; }   # the reason, for the warning banner

# Directory holding initdb and pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<version>/bin (newest).
_pg_find_bindir() {
    local initdb pg_ctl dir
    initdb=$(command -v initdb 2>/dev/null) && pg_ctl=$(command -v pg_ctl 2>/dev/null) \
        && [ "$(dirname "$initdb")" = "$(dirname "$pg_ctl")" ] && { dirname "$initdb"; return 0; }
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    return 1
}

_pg_install() {
    command -v apt-get >/dev/null || { _pg_log "no PostgreSQL binaries, and no apt-get to install them"; return 1; }
    [ "$(id -u)" = 0 ] || { _pg_log "no PostgreSQL binaries, and installing them needs root"; return 1; }
    _pg_log "installing PostgreSQL from Debian packages..."
    apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# Run a command as the unprivileged owner of the cluster (initdb and postgres refuse to run as root).
_pg_as_owner() {
    if [ "$(id -u)" != 0 ]; then
        (cd "$ARCHSCOUT_PG_DIR" && "$@")
    elif command -v runuser >/dev/null; then
        (cd "$ARCHSCOUT_PG_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$ARCHSCOUT_PG_DIR" && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
}

_pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Every step checks its own status: this runs inside `if`, where `set -e` does not apply.
_pg_try_start() {
    local bindir port psql attempt
    bindir=$(_pg_find_bindir) || { _pg_install && bindir=$(_pg_find_bindir); } \
        || _pg_fail "cannot find or install the PostgreSQL server (initdb, pg_ctl)" || return 1
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres \
            || _pg_fail "cannot create the 'postgres' system user" || return 1
    fi
    # Under /tmp, not $TMPDIR: the owner must reach it, and a socket path has to stay under ~100 bytes.
    ARCHSCOUT_PG_DIR=$(mktemp -d /tmp/archscout-pg.XXXXXX) || _pg_fail "cannot make a temp dir in /tmp" || return 1
    export ARCHSCOUT_PG_DIR ARCHSCOUT_PG_BINDIR=$bindir
    chmod 755 "$ARCHSCOUT_PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$ARCHSCOUT_PG_DIR" || _pg_fail "cannot chown $ARCHSCOUT_PG_DIR" || return 1
    fi
    _pg_as_owner "$bindir/initdb" -D "$ARCHSCOUT_PG_DIR/data" -U "$ARCHSCOUT_PG_USER" --auth=trust \
        --encoding=UTF8 --no-locale --no-sync >"$ARCHSCOUT_PG_DIR/initdb.log" 2>&1 \
        || _pg_fail "initdb failed: $(tail -n 3 "$ARCHSCOUT_PG_DIR/initdb.log" | tr '\n' ' ')" || return 1
    # A free port can be taken between the probe and the start: try a few. fsync off: the data is thrown away.
    for attempt in 1 2 3; do
        port=$(_pg_free_port) || _pg_fail "cannot find a free port" || return 1
        _pg_as_owner "$bindir/pg_ctl" -D "$ARCHSCOUT_PG_DIR/data" -l "$ARCHSCOUT_PG_DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k '$ARCHSCOUT_PG_DIR' -c fsync=off -c full_page_writes=off" \
            start >/dev/null 2>&1 && break
        [ "$attempt" = 3 ] && { _pg_fail "the server did not start:" \
            "$(grep -oE '(FATAL|ERROR): .*' "$ARCHSCOUT_PG_DIR/server.log" 2>/dev/null | tail -n 1)"; return 1; }
    done
    psql=$bindir/psql; [ -x "$psql" ] || psql=$(command -v psql) || _pg_fail "no psql found" || return 1
    _pg_as_owner "$psql" -q -X -h 127.0.0.1 -p "$port" -U "$ARCHSCOUT_PG_USER" -d postgres \
        -c "CREATE DATABASE $ARCHSCOUT_PG_DB" >/dev/null \
        || _pg_fail "cannot create database $ARCHSCOUT_PG_DB" || return 1
    export ARCHSCOUT_TEST_POSTGRES_URL="postgresql+psycopg://$ARCHSCOUT_PG_USER@127.0.0.1:$port/$ARCHSCOUT_PG_DB"
}

archscout_pg_start() {
    local t0=$SECONDS
    ARCHSCOUT_PG_FAILURE=
    if _pg_try_start; then
        _pg_log "PostgreSQL $("$ARCHSCOUT_PG_BINDIR/pg_ctl" --version | awk '{print $3}')" \
            "ready in $((SECONDS - t0)) s: ARCHSCOUT_TEST_POSTGRES_URL=$ARCHSCOUT_TEST_POSTGRES_URL"
    else
        _pg_cleanup
        unset ARCHSCOUT_TEST_POSTGRES_URL
        {
            echo "################################################################################"
            echo "## WARNING: no PostgreSQL server for the tests: ${ARCHSCOUT_PG_FAILURE:-see above}"
            echo "## The PostgreSQL storage tests will be SKIPPED; everything else still runs."
            echo "################################################################################"
        } >&2
    fi
    return 0
}

# Stop the server (fast shutdown) and delete its data; safe to call twice or when nothing started.
# After a failed start it repeats the warning, so that it is also the last thing in the CI log.
archscout_pg_stop() {
    [ -z "${ARCHSCOUT_PG_FAILURE:-}" ] \
        || _pg_log "WARNING (repeated): the PostgreSQL tests were SKIPPED: $ARCHSCOUT_PG_FAILURE"
    _pg_cleanup
}

_pg_cleanup() {
    local dir=${ARCHSCOUT_PG_DIR:-}
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    if [ -f "$dir/data/postmaster.pid" ]; then
        local bindir=${ARCHSCOUT_PG_BINDIR:-$(_pg_find_bindir)}
        _pg_as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || _pg_log "could not stop the server in $dir"
    fi
    rm -rf "$dir"
    unset ARCHSCOUT_PG_DIR ARCHSCOUT_PG_BINDIR
    return 0
}

# Run as a script: `start` (default) prints export lines for eval; `stop [DIR]` stops a server started so.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-start}" in
        start)
            archscout_pg_start
            [ -n "${ARCHSCOUT_TEST_POSTGRES_URL:-}" ] || exit 1
            echo "export ARCHSCOUT_TEST_POSTGRES_URL=$ARCHSCOUT_TEST_POSTGRES_URL"
            echo "export ARCHSCOUT_PG_DIR=$ARCHSCOUT_PG_DIR ARCHSCOUT_PG_BINDIR=$ARCHSCOUT_PG_BINDIR"
            _pg_log "stop it with: bash .ci/postgres.sh stop $ARCHSCOUT_PG_DIR"
            ;;
        stop)
            ARCHSCOUT_PG_DIR=${2:-${ARCHSCOUT_PG_DIR:-}}
            [ -n "$ARCHSCOUT_PG_DIR" ] || { _pg_log "usage: bash .ci/postgres.sh stop DIR"; exit 2; }
            archscout_pg_stop
            ;;
        *) _pg_log "usage: bash .ci/postgres.sh [start | stop [DIR]]"; exit 2 ;;
    esac
fi
