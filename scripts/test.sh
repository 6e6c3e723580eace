#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests on SQLite (including the admin UI in
# headless Chromium), the end-to-end tests against a real PDS (@atproto/dev-env on loopback, and the Next.js
# examples in headless Chromium beside it),
# the benchmark driver's own tests, the integration tests again on PostgreSQL, and the cluster
# test (three nodes on PostgreSQL behind HAProxy, with faults); before them,
# the gates CI enforces: `cargo fmt --check` and clippy with warnings denied.
# Needs: cargo (with rustfmt and clippy), Node 20 + npm (e2e/install.sh fetches the pinned npm
# packages, Node 22 among them), and the Debian packages below: run as root, it installs the
# missing ones itself; otherwise it prints the one `apt-get install` line to run and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(pkg-config libssl-dev postgresql haproxy chromium g++ make)

echo "== system packages"
if command -v dpkg >/dev/null; then
  missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "missing Debian packages; install them as root, then run $0 again:" >&2
      echo "  apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
else
  echo "(not Debian: make sure these are installed: ${DEBIAN_PACKAGES[*]})"
fi

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features bench-seam -- -D warnings

if [ "${ATSSO_SKIP_E2E:-}" != "1" ]; then
  echo "== installing the end-to-end harness (e2e/, pinned by its lockfile)"
  e2e/install.sh
  echo "== installing and building the Next.js examples (npm ci from their lockfiles, next build)"
  scripts/build-examples.sh
  export ATSSO_E2E=1
fi

echo "== unit + integration tests (SQLite), end-to-end tests against a real PDS"
cargo test --workspace --all-targets -- --test-threads=4

echo "== benchmark driver (bench/, its own workspace): its HTTP client against scripted responses"
cargo test --manifest-path bench/Cargo.toml

echo "== integration tests (PostgreSQL)"
scripts/test-postgres.sh cargo test --test api -- --test-threads=4

echo "== cluster test: three nodes on one PostgreSQL behind HAProxy, with faults"
scripts/cluster.sh
