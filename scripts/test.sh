#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests on SQLite (including the admin UI in
# headless Chromium), the end-to-end tests against a real PDS (@atproto/dev-env on loopback),
# the benchmark driver's own tests, and the integration tests again on PostgreSQL.
# Needs: cargo, Debian's postgresql and chromium, Node 20 + npm (e2e/install.sh fetches the
# pinned npm packages, Node 22 among them). .ci/run installs the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${ATSSO_SKIP_E2E:-}" != "1" ]; then
  echo "== installing the end-to-end harness (e2e/, pinned by its lockfile)"
  e2e/install.sh
  export ATSSO_E2E=1
fi

echo "== unit + integration tests (SQLite), end-to-end tests against a real PDS"
cargo test --workspace --all-targets -- --test-threads=4

echo "== benchmark driver (bench/, its own workspace): its HTTP client against scripted responses"
cargo test --manifest-path bench/Cargo.toml

echo "== integration tests (PostgreSQL)"
scripts/test-postgres.sh cargo test --test api -- --test-threads=4
