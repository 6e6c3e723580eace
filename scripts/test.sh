#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests on SQLite, the same integration tests on
# PostgreSQL, and the end-to-end tests against a real PDS (@atproto/dev-env on loopback).
# Needs: cargo, Debian's postgresql, Node 20 + npm (e2e/install.sh fetches Node 22 from npm).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== unit + integration tests (SQLite)"
cargo test --workspace --all-targets

echo "== integration tests (PostgreSQL)"
scripts/test-postgres.sh cargo test --test api

if [ "${ATSSO_SKIP_E2E:-}" = "1" ]; then
  echo "== end-to-end tests against a real PDS: skipped (ATSSO_SKIP_E2E=1)"
  exit 0
fi
echo "== end-to-end tests against a real PDS"
e2e/install.sh
ATSSO_E2E=1 cargo test --test e2e_real_pds -- --test-threads=1
