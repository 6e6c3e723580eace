#!/usr/bin/env bash
# What one grant costs the database on PostgreSQL (default durability): transactions, rows and
# WAL bytes per refresh and per authorize + code exchange cycle, measured from pg_stat_database
# and pg_stat_wal around a run of the benchmark driver. Feeds the capacity arithmetic in
# BENCHMARKS.md. Needs the release builds scripts/bench.sh makes, and Debian's postgresql.
#
#   scripts/pg-cost.sh            (PG_COST_SECONDS=5 per scenario by default)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECONDS_PER=${PG_COST_SECONDS:-5}
DRIVER=$ROOT/bench/target/release/atsso-bench
ATSSO=$ROOT/target/release/atsso
[ -x "$DRIVER" ] && [ -x "$ATSSO" ] || { echo "build first: scripts/bench.sh builds both" >&2; exit 1; }
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
WORK=$(mktemp -d /tmp/atsso-pgcost.XXXXXX)
PGDATA=$WORK/pg
mkdir -p "$PGDATA" "$WORK/data"
chown postgres "$WORK" "$PGDATA" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
PORT=$("$DRIVER" free-port)
as_pg "$PG_BIN/initdb -D $PGDATA -U postgres -A trust >/dev/null"
as_pg "$PG_BIN/pg_ctl -D $PGDATA -o '-p $PORT -k $PGDATA -c listen_addresses=127.0.0.1' -l $PGDATA/log -w start >/dev/null"
ATSSO_PID=
cleanup() {
  [ -n "$ATSSO_PID" ] && kill "$ATSSO_PID" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl -D $PGDATA -m immediate stop >/dev/null" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
psql_q() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -X -q -A -t -F ' ' -d postgres -c "$1"; }
psql_q "CREATE DATABASE atsso_cost" >/dev/null
APORT=$("$DRIVER" free-port)
export ATSSO_DATA_DIR=$WORK/data ATSSO_BIND=127.0.0.1:$APORT ATSSO_PUBLIC_URL=http://127.0.0.1:$APORT ATSSO_LOG=warn \
  ATSSO_DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/atsso_cost
"$ATSSO" bench-setup | sed -n 's/^PEER_READY //p' > "$WORK/target.json"
"$ATSSO" serve > "$WORK/atsso.log" 2>&1 &
ATSSO_PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$APORT/readyz" 2>/dev/null && break; sleep 0.1; done

# CPU seconds (user + system) of every PostgreSQL process: the server's share of the work.
pg_cpu() {
  local total=0 pid fields
  for pid in $(pgrep -u postgres); do
    fields=$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null) || continue
    total=$((total + $(echo "$fields" | awk '{print $12 + $13}')))
  done
  echo "$total $(getconf CLK_TCK)"
}
counters() {
  echo "$(psql_q "SELECT d.xact_commit, d.tup_inserted, d.tup_updated, d.tup_fetched, w.wal_records, w.wal_bytes, w.wal_fpi
          FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = 'atsso_cost'") $(pg_cpu)"
}
printf '| scenario | requests | commits/req | rows inserted/req | rows updated/req | WAL records/req | WAL bytes/req | full-page images/req | PostgreSQL CPU µs/req |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for scenario in refresh cycle; do
  # Warm the caches and let a checkpoint's full-page images settle outside the measurement.
  "$DRIVER" --target "$WORK/target.json" --scenario "$scenario" --concurrency 32 --duration 2s --warmup 500ms --json "$WORK/warm.json" >/dev/null 2>&1
  psql_q "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
  sleep 1
  read -r c0 i0 u0 _ r0 b0 f0 cpu0 hz < <(counters)
  "$DRIVER" --target "$WORK/target.json" --scenario "$scenario" --concurrency 32 --duration "${SECONDS_PER}s" --warmup 0s --json "$WORK/$scenario.json" >/dev/null 2>&1
  sleep 1
  read -r c1 i1 u1 _ r1 b1 f1 cpu1 hz < <(counters)
  # (The driver's untimed set-up — one grant per connection — is counted too: under 1 %.)
  requests=$(python3 -c "import json; print(json.load(open('$WORK/$scenario.json'))['scenarios'][0]['count'])")
  python3 - "$scenario" "$requests" "$c0" "$c1" "$i0" "$i1" "$u0" "$u1" "$r0" "$r1" "$b0" "$b1" "$f0" "$f1" "$cpu0" "$cpu1" "$hz" <<'PY'
import sys
s, n, *v = sys.argv[1:]
n = int(n)
c0, c1, i0, i1, u0, u1, r0, r1, b0, b1, f0, f1, cpu0, cpu1, hz = map(float, v)
per = lambda a, b: (b - a) / n if n else float('nan')
print(f"| {s} | {n} | {per(c0,c1):.2f} | {per(i0,i1):.2f} | {per(u0,u1):.2f} | {per(r0,r1):.1f} | {per(b0,b1):.0f} | {per(f0,f1):.2f} | {per(cpu0,cpu1) / hz * 1e6:.0f} |")
PY
done
