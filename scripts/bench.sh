#!/usr/bin/env bash
# Side-by-side benchmark: atsso vs. panva's oidc-provider vs. Better Auth
# (oauth-provider plugin, SQLite), same machine, same run, same load.
#
#   scripts/bench.sh
#
# Environment:
#   BENCH_CONCURRENCY  concurrent keep-alive connections        (default 32)
#   BENCH_DURATION     measured time per scenario               (default 10s)
#   BENCH_WARMUP       unmeasured warm-up per scenario          (default 2s)
#   BENCH_SCENARIOS    all | comma list (see atsso-bench --help) (default all)
#   BENCH_PEERS        peers to run                             (default "oidc-provider better-auth")
#   BENCH_SKIP_ATSSO=1 run the peers only (e.g. to test the harness)
#   BENCH_GROWTH=1     also run refresh + userinfo on an atsso database seeded
#                      with BENCH_SEED_USERS users (100000) and
#                      BENCH_SEED_REFRESH_TOKENS refresh tokens (1000000)
#   BENCH_OUT          results directory                        (default bench/results)
#   BENCH_LATENCY_CONCURRENCY  atsso token + refresh again at these
#                      concurrencies, to separate service time from queueing
#                      (default "1 4 8"; empty to skip)
#
# Writes $BENCH_OUT/latest.md and latest.json (plus the raw per-server JSON in
# $BENCH_OUT/raw/). Servers run one after the other, each alone with the
# driver; every server this script starts is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CONC=${BENCH_CONCURRENCY:-32}
DUR=${BENCH_DURATION:-10s}
WARM=${BENCH_WARMUP:-2s}
SCENARIOS=${BENCH_SCENARIOS:-all}
PEERS=${BENCH_PEERS:-"oidc-provider better-auth"}
SKIP_ATSSO=${BENCH_SKIP_ATSSO:-0}
GROWTH=${BENCH_GROWTH:-0}
SEED_USERS=${BENCH_SEED_USERS:-100000}
SEED_RT=${BENCH_SEED_REFRESH_TOKENS:-1000000}
LAT_CONC=${BENCH_LATENCY_CONCURRENCY-1 4 8}
OUT=${BENCH_OUT:-$ROOT/bench/results}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/atsso-bench.XXXXXX")
DRIVER=$ROOT/bench/target/release/atsso-bench
ATSSO=$ROOT/target/release/atsso

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT INT TERM

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

RESULTS=()
LAT_FILES=()
RSS_ARGS=()
COMMANDS=()

# run_driver NAME [scenarios]: all scenarios against $WORK/NAME.target.json
run_driver() {
  local name=$1 scen=${2:-$SCENARIOS}
  local cmd=("$DRIVER" --target "$WORK/$name.target.json" --scenario "$scen"
    --concurrency "$CONC" --duration "$DUR" --warmup "$WARM" --json "$OUT/raw/$name.json")
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

# ---- atsso -----------------------------------------------------------------
# start_atsso NAME DATADIR [seed]: bench-setup (+ bench-seed), then serve.
start_atsso() {
  local name=$1 data=$2 seed=${3:-}
  local port
  port=$("$DRIVER" free-port)
  export ATSSO_DATA_DIR=$data ATSSO_BIND=127.0.0.1:$port ATSSO_PUBLIC_URL=http://127.0.0.1:$port ATSSO_LOG=${ATSSO_LOG:-warn}
  mkdir -p "$data"
  if [ -n "$seed" ]; then
    log "seeding $name: $SEED_USERS users, $SEED_RT refresh tokens"
    "$ATSSO" bench-seed --users "$SEED_USERS" --refresh-tokens "$SEED_RT"
  fi
  "$ATSSO" bench-setup > "$WORK/$name.setup.out" || die "atsso bench-setup failed"
  grep -q '^PEER_READY ' "$WORK/$name.setup.out" || die "atsso bench-setup printed no PEER_READY line"
  "$ATSSO" serve > "$WORK/$name.out" 2> "$WORK/$name.out.err" &
  ATSSO_PID=$!
  PIDS+=("$ATSSO_PID")
  cp "$WORK/$name.setup.out" "$WORK/$name.ready"
  wait_ready "$name" "$ATSSO_PID" "$WORK/$name.ready"
  wait_http "http://127.0.0.1:$port/.well-known/openid-configuration"
  unset ATSSO_DATA_DIR ATSSO_BIND ATSSO_PUBLIC_URL
}

if [ "$SKIP_ATSSO" != 1 ]; then
  log "atsso: empty database"
  start_atsso atsso "$WORK/atsso-data"
  run_driver atsso
  RSS_ARGS+=(--rss "atsso=$(peak_rss_kb "$ATSSO_PID")")
  RESULTS+=("$OUT/raw/atsso.json")
  # Latency at lower concurrency (same server, same database): with a closed loop of N
  # connections, mean latency = N ÷ throughput, so at 32 it is mostly waiting for a core.
  LAT_FILES=()
  for c in $LAT_CONC; do
    log "atsso: token + refresh at concurrency $c"
    "$DRIVER" --target "$WORK/atsso.target.json" --scenario token,refresh --concurrency "$c" \
      --duration "$DUR" --warmup "$WARM" --json "$OUT/raw/atsso-c$c.json"
    LAT_FILES+=("$OUT/raw/atsso-c$c.json")
  done
  stop "$ATSSO_PID"
  COMMANDS+=("cargo build --release --features bench-seam && cargo build --release --manifest-path bench/Cargo.toml"
    "ATSSO_DATA_DIR=\$D ATSSO_BIND=127.0.0.1:\$P ATSSO_PUBLIC_URL=http://127.0.0.1:\$P target/release/atsso bench-setup  # prints PEER_READY {target}"
    "ATSSO_DATA_DIR=\$D ATSSO_BIND=127.0.0.1:\$P ATSSO_PUBLIC_URL=http://127.0.0.1:\$P target/release/atsso serve")
fi

# ---- peers -----------------------------------------------------------------
for peer in $PEERS; do
  log "$peer"
  port=$("$DRIVER" free-port)
  dir=$ROOT/bench/peers/$peer
  (cd "$dir" && NODE_ENV=production PORT=$port SESSIONS=$CONC DATA_DIR="$WORK/$peer-data" \
     exec node start.mjs > "$WORK/$peer.out" 2> "$WORK/$peer.out.err") &
  pid=$!
  PIDS+=("$pid")
  mkdir -p "$WORK/$peer-data"
  wait_ready "$peer" "$pid" "$WORK/$peer.out"
  run_driver "$peer"
  RSS_ARGS+=(--rss "$peer=$(peak_rss_kb "$pid")")
  RESULTS+=("$OUT/raw/$peer.json")
  stop "$pid"
  COMMANDS+=("(cd bench/peers/$peer && npm ci && NODE_ENV=production PORT=\$P SESSIONS=$CONC node start.mjs)  # prints PEER_READY {target}")
done

# ---- growth: atsso on a seeded database --------------------------------------
GROWTH_ARGS=()
if [ "$GROWTH" = 1 ] && [ "$SKIP_ATSSO" != 1 ]; then
  log "atsso: seeded database (growth)"
  start_atsso atsso-seeded "$WORK/atsso-seeded-data" seed
  run_driver atsso-seeded refresh,userinfo
  RSS_ARGS+=(--rss "atsso (seeded)=$(peak_rss_kb "$ATSSO_PID")")
  stop "$ATSSO_PID"
  GROWTH_ARGS=(--growth "$OUT/raw/atsso-seeded.json"
    --growth-label "$SEED_RT refresh tokens and $SEED_USERS users in SQLite")
  COMMANDS+=("ATSSO_DATA_DIR=\$D2 ... target/release/atsso bench-seed --users $SEED_USERS --refresh-tokens $SEED_RT")
fi

# ---- signing limit -------------------------------------------------------------
log "RS256 signing limit"
"$DRIVER" rsa --multi "$(nproc)" --seconds 3 --json "$OUT/raw/rsa.json"

COMMANDS+=("BENCH_CONCURRENCY=$CONC BENCH_DURATION=$DUR BENCH_WARMUP=$WARM scripts/bench.sh"
  "bench/target/release/atsso-bench --target T.json --scenario $SCENARIOS --concurrency $CONC --duration $DUR --warmup $WARM --json OUT.json"
  "bench/target/release/atsso-bench rsa --multi $(nproc) --seconds 3")

[ ${#RESULTS[@]} -gt 0 ] || die "no results"
log "report"
REPORT=("$DRIVER" report --results "${RESULTS[@]}" --rsa "$OUT/raw/rsa.json" "${RSS_ARGS[@]}" "${GROWTH_ARGS[@]}")
[ "${#LAT_FILES[@]}" -gt 0 ] && REPORT+=(--latency "${LAT_FILES[@]}")
for c in "${COMMANDS[@]}"; do REPORT+=(--command "$c"); done
REPORT+=(--md "$OUT/latest.md" --json "$OUT/latest.json")
"${REPORT[@]}"
if [ "$SKIP_ATSSO" != 1 ]; then
  # The same limit measured with atsso's own signing code (josekit over OpenSSL), RS256 and ES256.
  {
    printf '\n### Signing rate with atsso'"'"'s own code (josekit)\n\n'
    printf '`target/release/atsso bench-sign --threads %s --seconds 3`:\n\n```json\n' "$(nproc)"
    "$ATSSO" bench-sign --threads "$(nproc)" --seconds 3
    printf '```\n'
  } >> "$OUT/latest.md"
fi
log "wrote $OUT/latest.md and $OUT/latest.json (work dir: $WORK)"
