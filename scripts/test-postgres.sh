#!/usr/bin/env bash
# Starts a throwaway PostgreSQL on 127.0.0.1 (Debian's postgresql package), runs the given command
# with ATSSO_TEST_DATABASE_URL pointing at it, then stops it.
set -euo pipefail
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PG_BIN" ]; then echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; fi
PGDATA=$(mktemp -d /tmp/atsso-pg.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chown postgres "$PGDATA" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
as_pg "$PG_BIN/initdb -D $PGDATA -U postgres -A trust >/dev/null"
as_pg "$PG_BIN/pg_ctl -D $PGDATA -o '-p $PORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off' -l $PGDATA/log -w start >/dev/null"
trap 'as_pg "$PG_BIN/pg_ctl -D $PGDATA -m immediate stop >/dev/null" || true; rm -rf "$PGDATA"' EXIT
export ATSSO_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
echo "PostgreSQL on 127.0.0.1:$PORT"
"$@"
