#!/usr/bin/env bash
# Installs (npm ci, pinned by each lockfile) and builds (next build) the Next.js example apps that
# tests/e2e_nextjs.rs runs with `next start`. Needs the system Node (>= 20.9) + npm and the npm
# registry. `npm ci` is skipped while node_modules matches the lockfile (a stamp holds its sha256);
# `next build` always runs (about 15 s each), so the test never runs a stale build.
set -euo pipefail
cd "$(dirname "$0")/.."

for app in examples/nextjs-sso examples/nextjs-authjs; do
  stamp="$app/node_modules/.atsso-install-stamp"
  lock_sha="$(sha256sum "$app/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sha" ]; then
    echo "[build-examples] npm ci in $app"
    (cd "$app" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sha" > "$stamp"
  fi
  echo "[build-examples] next build in $app"
  (cd "$app" && NEXT_TELEMETRY_DISABLED=1 npx --no-install next build > .next-build.log 2>&1) || {
    tail -n 40 "$app/.next-build.log" >&2
    echo "[build-examples] next build failed in $app (log: $app/.next-build.log)" >&2
    exit 1
  }
done
