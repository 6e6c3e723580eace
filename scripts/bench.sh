#!/usr/bin/env bash
# Side-by-side benchmark: atsso (SQLite and PostgreSQL, RS256 and ES256
# access tokens) vs. panva's oidc-provider (RS256 JWT and opaque access
# tokens) vs. Better Auth (oauth-provider plugin, SQLite), same machine, same
# run, same load, with the targets of issue 14 computed by the report.
#
#   scripts/bench.sh
#
# Equal-work pairs (same RSA signatures per token response):
#   atsso RS256 access tokens  vs oidc-provider JWT(RS256)  (2 RSA signatures)
#   atsso ES256 access tokens  vs oidc-provider opaque      (1 RSA signature)
# atsso RS256 and oidc-provider opaque run every scenario; atsso ES256 and
# oidc-provider JWT only the token path (BENCH_TOKEN_SCENARIOS). oidc-provider
# cannot serve userinfo/introspection with its resource-server JWTs, so those
# compare with the opaque configuration.
#
# Postgres: a throwaway server (Debian's postgresql; initdb as the postgres
# user when root) with default durability (fsync and synchronous_commit on),
# on 127.0.0.1, one database per atsso run, stopped and removed on exit.
#
# Environment:
#   BENCH_CONCURRENCY  concurrent keep-alive connections        (default 32)
#   BENCH_DURATION     measured time per scenario               (default 10s)
#   BENCH_WARMUP       unmeasured warm-up per scenario          (default 2s)
#   BENCH_SCENARIOS    all | comma list (see atsso-bench --help) (default all)
#   BENCH_TOKEN_SCENARIOS  scenarios of the atsso ES256 and oidc-provider JWT
#                      runs                                     (default token,refresh,cycle)
#   BENCH_PEERS        peers to run                             (default "oidc-provider better-auth")
#   BENCH_OIDC_PROVIDER_FORMATS  oidc-provider access-token formats to run
#                      (ACCESS_TOKEN_FORMAT of its start.mjs)   (default "jwt opaque")
#   BENCH_STORES       atsso stores                             (default "sqlite postgres")
#   BENCH_ATSSO_ALGS   atsso access-token algorithms            (default "RS256 ES256")
#   BENCH_SKIP_ATSSO=1 run the peers only (e.g. to test the harness)
#   BENCH_GROWTH=1     also run refresh + userinfo on each store's atsso database
#                      (RS256) seeded with `atsso bench-seed` with
#                      BENCH_SEED_USERS users (100000) and
#                      BENCH_SEED_REFRESH_TOKENS refresh tokens (1000000)
#   BENCH_OUT          results directory                        (default bench/results)
#   BENCH_LATENCY_CONCURRENCY  atsso token + refresh again at these
#                      concurrencies, to separate service time from queueing
#                      (atsso SQLite RS256 only; default "1 4 8"; empty to skip)
#   BENCH_PG_PORT      port of the throwaway Postgres            (default: a free one)
#
# Writes $BENCH_OUT/latest.md and latest.json (plus the raw per-server JSON in
# $BENCH_OUT/raw/). Servers run one after the other, each alone with the
# driver; every server this script starts (and the Postgres data directory)
# is stopped and removed on exit, also on Ctrl-C or a failing step.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CONC=${BENCH_CONCURRENCY:-32}
DUR=${BENCH_DURATION:-10s}
WARM=${BENCH_WARMUP:-2s}
SCENARIOS=${BENCH_SCENARIOS:-all}
TOKEN_SCENARIOS=${BENCH_TOKEN_SCENARIOS:-token,refresh,cycle}
PEERS=${BENCH_PEERS:-"oidc-provider better-auth"}
OP_FORMATS=${BENCH_OIDC_PROVIDER_FORMATS:-"jwt opaque"}
STORES=${BENCH_STORES:-"sqlite postgres"}
ALGS=${BENCH_ATSSO_ALGS:-"RS256 ES256"}
SKIP_ATSSO=${BENCH_SKIP_ATSSO:-0}
GROWTH=${BENCH_GROWTH:-0}
SEED_USERS=${BENCH_SEED_USERS:-100000}
SEED_RT=${BENCH_SEED_REFRESH_TOKENS:-1000000}
LAT_CONC=${BENCH_LATENCY_CONCURRENCY-1 4 8}
OUT=${BENCH_OUT:-$ROOT/bench/results}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/atsso-bench.XXXXXX")
DRIVER=$ROOT/bench/target/release/atsso-bench
ATSSO=$ROOT/target/release/atsso

for s in $STORES; do
  case $s in sqlite|postgres) ;; *) echo "bench.sh: BENCH_STORES: unknown store $s (sqlite, postgres)" >&2; exit 2 ;; esac
done
for a in $ALGS; do
  case $a in RS256|ES256) ;; *) echo "bench.sh: BENCH_ATSSO_ALGS: unknown algorithm $a (RS256, ES256)" >&2; exit 2 ;; esac
done
for f in $OP_FORMATS; do
  case $f in jwt|opaque) ;; *) echo "bench.sh: BENCH_OIDC_PROVIDER_FORMATS: unknown format $f (jwt, opaque)" >&2; exit 2 ;; esac
done

PIDS=()
PGDATA=
PG_BIN=
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "$PGDATA" ] && [ -d "$PGDATA" ]; then
    as_pg "$PG_BIN/pg_ctl -D $PGDATA -m fast -w stop >/dev/null 2>&1" \
      || as_pg "$PG_BIN/pg_ctl -D $PGDATA -m immediate -w stop >/dev/null 2>&1" || true
    rm -rf "$PGDATA"
  fi
  # Databases go; the servers' logs stay when something failed.
  if [ "$rc" = 0 ]; then
    rm -rf "$WORK"
  else
    rm -rf "$WORK"/*-data
    printf 'bench.sh: exit %s; server logs kept in %s\n' "$rc" "$WORK" >&2
  fi
}
# On Ctrl-C/TERM exit (which runs the EXIT trap) instead of carrying on.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '\n=== %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# ---- build ---------------------------------------------------------------
log "building atsso-bench (bench/, its own workspace)"
cargo build --release --manifest-path bench/Cargo.toml

if [ "$SKIP_ATSSO" != 1 ]; then
  log "building atsso with the bench seam (cargo build --release --features bench-seam)"
  cargo build --release --features bench-seam
  "$ATSSO" bench-setup --help >/dev/null 2>&1 \
    || die "target/release/atsso has no 'bench-setup' command (the bench seam); set BENCH_SKIP_ATSSO=1 to run the peers only"
fi

# ---- peers: install from the npm registry with their lockfiles ------------
command -v node >/dev/null || die "node is required for the peers"
for peer in $PEERS; do
  dir=$ROOT/bench/peers/$peer
  [ -f "$dir/package-lock.json" ] || die "no such peer: $dir"
  stamp=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)-$(node --version)
  if [ "$(cat "$dir/node_modules/.bench-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "npm ci in bench/peers/$peer"
    (cd "$dir" && npm ci --no-audit --no-fund)
    echo "$stamp" > "$dir/node_modules/.bench-stamp"
  fi
done

# ---- helpers -------------------------------------------------------------
# wait_ready NAME PID OUTFILE: wait for `PEER_READY {json}` on OUTFILE, write
# the JSON to $WORK/NAME.target.json.
wait_ready() {
  local name=$1 pid=$2 out=$3 i
  for i in $(seq 1 600); do
    if grep -q '^PEER_READY ' "$out" 2>/dev/null; then
      grep -m1 '^PEER_READY ' "$out" | sed 's/^PEER_READY //' > "$WORK/$name.target.json"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$out" "$out.err" >&2 || true; die "$name exited before it was ready"; }
    sleep 0.5
  done
  die "$name: no PEER_READY after 300s"
}

wait_http() {
  local url=$1 i
  for i in $(seq 1 240); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.5
  done
  die "no answer from $url"
}

# slug "atsso Postgres RS256" -> atsso-postgres-rs256
slug() { printf '%s' "$1" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9' '-' | sed 's/--*/-/g; s/^-//; s/-$//'; }

RESULTS=()
GROWTH_FILES=()
LAT_FILES=()
RSS_ARGS=()
COMMANDS=()

# run_driver KEY DISPLAY-NAME SCENARIOS META...: the scenarios against
# $WORK/KEY.target.json, results in $OUT/raw/KEY.json.
run_driver() {
  local key=$1 name=$2 scen=$3
  shift 3
  local cmd=("$DRIVER" --target "$WORK/$key.target.json" --name "$name" --scenario "$scen"
    --concurrency "$CONC" --duration "$DUR" --warmup "$WARM" --json "$OUT/raw/$key.json")
  local m
  for m in "$@"; do cmd+=(--meta "$m"); done
  log "driving $name: ${cmd[*]}"
  "${cmd[@]}"
}

peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

mkdir -p "$OUT/raw"

# ---- Postgres: a throwaway server, default durability ------------------------
PG_PORT=
PG_DB_N=0
PG_URL=
pg_sql() { "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -A -t "$@"; }
if [ "$SKIP_ATSSO" != 1 ] && [[ " $STORES " == *" postgres "* ]]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$PG_BIN" ] || die "PostgreSQL is not installed (apt-get install postgresql), or set BENCH_STORES=sqlite"
  PGDATA=$(mktemp -d "${TMPDIR:-/tmp}/atsso-bench-pg.XXXXXX")
  PG_PORT=${BENCH_PG_PORT:-$("$DRIVER" free-port)}
  chown postgres "$PGDATA" 2>/dev/null || true
  log "PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT, data in $PGDATA (fsync on, synchronous_commit on)"
  as_pg "$PG_BIN/initdb -D $PGDATA -U postgres -A trust >/dev/null" || die "initdb failed"
  as_pg "$PG_BIN/pg_ctl -D $PGDATA -o '-p $PG_PORT -k $PGDATA -c listen_addresses=127.0.0.1 -c max_connections=300' -l $PGDATA/log -w start >/dev/null" \
    || { cat "$PGDATA/log" >&2 || true; die "postgres did not start"; }
  pg_sql -d postgres -c 'show fsync' -c 'show synchronous_commit' -c 'select version()' \
    > "$WORK/pg-settings.txt" || die "psql failed"
  PG_VERSION=$(sed -n 3p "$WORK/pg-settings.txt")
  [ "$(sed -n 1p "$WORK/pg-settings.txt")" = on ] && [ "$(sed -n 2p "$WORK/pg-settings.txt")" = on ] \
    || die "postgres is not at default durability: $(cat "$WORK/pg-settings.txt")"
fi

# new_pg_database: create a fresh database atsso_bench_N (N = PG_DB_N + 1),
# its URL in PG_URL.
new_pg_database() {
  PG_DB_N=$((PG_DB_N + 1))
  local db=atsso_bench_$PG_DB_N
  pg_sql -d postgres -c "CREATE DATABASE $db" || die "CREATE DATABASE $db failed"
  PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/$db
}

# ---- atsso -----------------------------------------------------------------
# start_atsso KEY STORE ALG [seed]: a fresh database on STORE (SQLite file in
# $WORK/KEY-data, or a new Postgres database), bench-seed if asked,
# bench-setup, then serve with ATSSO_ACCESS_TOKEN_ALG=ALG. Sets ATSSO_PID.
start_atsso() {
  local key=$1 store=$2 alg=$3 seed=${4:-}
  local port data=$WORK/$key-data
  port=$("$DRIVER" free-port)
  mkdir -p "$data"
  export ATSSO_DATA_DIR=$data ATSSO_BIND=127.0.0.1:$port ATSSO_PUBLIC_URL=http://127.0.0.1:$port \
    ATSSO_LOG=${ATSSO_LOG:-warn} ATSSO_ACCESS_TOKEN_ALG=$alg
  if [ "$store" = postgres ]; then
    new_pg_database
    export ATSSO_DATABASE_URL=$PG_URL
  else
    unset ATSSO_DATABASE_URL
  fi
  if [ -n "$seed" ]; then
    log "seeding $key: $SEED_USERS users, $SEED_RT refresh tokens"
    "$ATSSO" bench-seed --users "$SEED_USERS" --refresh-tokens "$SEED_RT" || die "atsso bench-seed failed"
  fi
  "$ATSSO" bench-setup > "$WORK/$key.setup.out" || die "atsso bench-setup failed"
  grep -q '^PEER_READY ' "$WORK/$key.setup.out" || die "atsso bench-setup printed no PEER_READY line"
  "$ATSSO" serve > "$WORK/$key.out" 2> "$WORK/$key.out.err" &
  ATSSO_PID=$!
  PIDS+=("$ATSSO_PID")
  cp "$WORK/$key.setup.out" "$WORK/$key.ready"
  wait_ready "$key" "$ATSSO_PID" "$WORK/$key.ready"
  wait_http "http://127.0.0.1:$port/.well-known/openid-configuration"
  unset ATSSO_DATA_DIR ATSSO_BIND ATSSO_PUBLIC_URL ATSSO_ACCESS_TOKEN_ALG ATSSO_DATABASE_URL
}

# check_store STORE NAME DB: show that the run really used its Postgres
# database (tables and rows inserted), for the report.
PG_CHECKS=()
check_store() {
  local store=$1 name=$2 db=$3 tables rows
  [ "$store" = postgres ] || return 0
  tables=$(pg_sql -d "$db" -c "select count(*) from information_schema.tables where table_schema = 'public'") \
    || die "$name: cannot read its Postgres database $db"
  # The cumulative statistics are flushed by each backend about once a second.
  sleep 1.2
  rows=$(pg_sql -d "$db" -c "select coalesce(sum(n_tup_ins), 0) from pg_stat_user_tables")
  [ "${tables:-0}" -gt 0 ] && [ "${rows:-0}" -gt 0 ] || die "$name: its Postgres database $db has no rows ($tables tables)"
  PG_CHECKS+=("$name: Postgres database $db has $tables tables, $rows rows inserted")
}

store_label() { if [ "$1" = postgres ]; then echo Postgres; else echo SQLite; fi; }

if [ "$SKIP_ATSSO" != 1 ]; then
  for store in $STORES; do
    for alg in $ALGS; do
      name="atsso $(store_label "$store") $alg"
      key=$(slug "$name")
      pair=$(echo "$alg" | tr 'A-Z' 'a-z')
      # RS256 runs everything; ES256 (the cheaper signature) only the token path.
      scen=$SCENARIOS
      [ "$alg" = RS256 ] || scen=$TOKEN_SCENARIOS
      log "$name: empty database"
      start_atsso "$key" "$store" "$alg"
      run_driver "$key" "$name" "$scen" role=atsso "store=$store" "pair=$pair" "access_token_alg=$alg"
      RSS_ARGS+=(--rss "$name=$(peak_rss_kb "$ATSSO_PID")")
      RESULTS+=("$OUT/raw/$key.json")
      # Latency at lower concurrency (same server, same database): with a closed loop of N
      # connections, mean latency = N ÷ throughput, so at 32 it is mostly waiting for a core.
      if [ ${#RESULTS[@]} = 1 ]; then
        for c in $LAT_CONC; do
          log "$name: token + refresh at concurrency $c"
          "$DRIVER" --target "$WORK/$key.target.json" --name "$name" --scenario token,refresh --concurrency "$c" \
            --duration "$DUR" --warmup "$WARM" --json "$OUT/raw/$key-c$c.json"
          LAT_FILES+=("$OUT/raw/$key-c$c.json")
        done
      fi
      stop "$ATSSO_PID"
      check_store "$store" "$name" "atsso_bench_$PG_DB_N"
    done
  done
  COMMANDS+=("cargo build --release --features bench-seam && cargo build --release --manifest-path bench/Cargo.toml"
    "ATSSO_DATA_DIR=\$D ATSSO_BIND=127.0.0.1:\$P ATSSO_PUBLIC_URL=http://127.0.0.1:\$P [ATSSO_ACCESS_TOKEN_ALG=ES256] [ATSSO_DATABASE_URL=postgres://postgres@127.0.0.1:\$PG/\$DB] target/release/atsso bench-setup  # prints PEER_READY {target}"
    "ATSSO_DATA_DIR=\$D ATSSO_BIND=127.0.0.1:\$P ATSSO_PUBLIC_URL=http://127.0.0.1:\$P [ATSSO_ACCESS_TOKEN_ALG=ES256] [ATSSO_DATABASE_URL=…] target/release/atsso serve")
  if [[ " $STORES " == *" postgres "* ]]; then
    COMMANDS+=("initdb -D \$PGDATA -U postgres -A trust && pg_ctl -D \$PGDATA -o '-p \$PG -c listen_addresses=127.0.0.1 -c max_connections=300' start  # default durability ($PG_VERSION)")
  fi
fi

# ---- peers -----------------------------------------------------------------
# start_peer KEY PEER [ENV=VALUE...]: start bench/peers/PEER, wait for PEER_READY. Sets PEER_PID.
start_peer() {
  local key=$1 peer=$2 port
  shift 2
  port=$("$DRIVER" free-port)
  mkdir -p "$WORK/$key-data"
  (cd "$ROOT/bench/peers/$peer" && exec env "$@" NODE_ENV=production PORT="$port" SESSIONS="$CONC" \
     DATA_DIR="$WORK/$key-data" node start.mjs > "$WORK/$key.out" 2> "$WORK/$key.out.err") &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  wait_ready "$key" "$PEER_PID" "$WORK/$key.out"
}

for peer in $PEERS; do
  if [ "$peer" = oidc-provider ]; then
    for fmt in $OP_FORMATS; do
      if [ "$fmt" = jwt ]; then name="oidc-provider JWT(RS256)" pair=rs256 scen=$TOKEN_SCENARIOS
      else name="oidc-provider opaque" pair=es256 scen=$SCENARIOS; fi
      key=$(slug "$name")
      log "$name"
      start_peer "$key" "$peer" "ACCESS_TOKEN_FORMAT=$fmt"
      run_driver "$key" "$name" "$scen" role=peer "pair=$pair" "access_token_format=$fmt"
      RSS_ARGS+=(--rss "$name=$(peak_rss_kb "$PEER_PID")")
      RESULTS+=("$OUT/raw/$key.json")
      stop "$PEER_PID"
    done
    COMMANDS+=("(cd bench/peers/oidc-provider && npm ci && ACCESS_TOKEN_FORMAT=jwt|opaque NODE_ENV=production PORT=\$P SESSIONS=$CONC node start.mjs)  # prints PEER_READY {target}")
    continue
  fi
  log "$peer"
  start_peer "$peer" "$peer"
  run_driver "$peer" "$peer" "$SCENARIOS" role=peer
  RSS_ARGS+=(--rss "$peer=$(peak_rss_kb "$PEER_PID")")
  RESULTS+=("$OUT/raw/$peer.json")
  stop "$PEER_PID"
  COMMANDS+=("(cd bench/peers/$peer && npm ci && NODE_ENV=production PORT=\$P SESSIONS=$CONC node start.mjs)  # prints PEER_READY {target}")
done

# ---- growth: atsso (RS256) on a seeded database, each store --------------------
if [ "$GROWTH" = 1 ] && [ "$SKIP_ATSSO" != 1 ]; then
  for store in $STORES; do
    name="atsso $(store_label "$store") RS256 (seeded)"
    key=$(slug "$name")
    log "$name: growth"
    start_atsso "$key" "$store" RS256 seed
    run_driver "$key" "$name" refresh,userinfo role=growth "store=$store" pair=rs256 access_token_alg=RS256
    RSS_ARGS+=(--rss "$name=$(peak_rss_kb "$ATSSO_PID")")
    GROWTH_FILES+=("$OUT/raw/$key.json")
    stop "$ATSSO_PID"
    check_store "$store" "$name" "atsso_bench_$PG_DB_N"
  done
  COMMANDS+=("ATSSO_DATA_DIR=\$D2 [ATSSO_DATABASE_URL=…] target/release/atsso bench-seed --users $SEED_USERS --refresh-tokens $SEED_RT")
fi

# ---- signing limit -------------------------------------------------------------
log "signing limit: openssl speed rsa2048 and ecdsap256 on all cores"
"$DRIVER" rsa --multi "$(nproc)" --seconds 3 --json "$OUT/raw/rsa.json"

COMMANDS+=("BENCH_CONCURRENCY=$CONC BENCH_DURATION=$DUR BENCH_WARMUP=$WARM BENCH_STORES=\"$STORES\" BENCH_PEERS=\"$PEERS\" scripts/bench.sh"
  "bench/target/release/atsso-bench --target T.json --name NAME --scenario $SCENARIOS --concurrency $CONC --duration $DUR --warmup $WARM --json OUT.json --meta role=… --meta store=… --meta pair=…"
  "bench/target/release/atsso-bench rsa --multi $(nproc) --seconds 3  # openssl speed -multi $(nproc) -seconds 3 rsa2048 / ecdsap256")

[ ${#RESULTS[@]} -gt 0 ] || die "no results"
log "report"
REPORT=("$DRIVER" report --results "${RESULTS[@]}" --rsa "$OUT/raw/rsa.json" "${RSS_ARGS[@]}")
[ "${#GROWTH_FILES[@]}" -gt 0 ] && REPORT+=(--growth "${GROWTH_FILES[@]}"
  --growth-label "$SEED_RT grant families (one refresh token each) and $SEED_USERS users")
[ "${#LAT_FILES[@]}" -gt 0 ] && REPORT+=(--latency "${LAT_FILES[@]}")
for c in "${COMMANDS[@]}"; do REPORT+=(--command "$c"); done
REPORT+=(--md "$OUT/latest.md" --json "$OUT/latest.json")
"${REPORT[@]}"
{
  if [ -n "$PG_PORT" ]; then
    printf '\n### PostgreSQL\n\n%s on 127.0.0.1, fsync = %s, synchronous_commit = %s (defaults), one database per atsso run.\n\n' \
      "$PG_VERSION" "$(sed -n 1p "$WORK/pg-settings.txt")" "$(sed -n 2p "$WORK/pg-settings.txt")"
    for c in "${PG_CHECKS[@]}"; do printf -- '- %s\n' "$c"; done
  fi
  if [ "$SKIP_ATSSO" != 1 ]; then
    # The same limit measured with atsso's own signing code (josekit over OpenSSL), RS256 and ES256.
    printf '\n### Signing rate with atsso'"'"'s own code (josekit)\n\n'
    printf '`target/release/atsso bench-sign --threads %s --seconds 3`:\n\n```json\n' "$(nproc)"
    "$ATSSO" bench-sign --threads "$(nproc)" --seconds 3
    printf '```\n'
  fi
} >> "$OUT/latest.md"
log "wrote $OUT/latest.md and $OUT/latest.json"
