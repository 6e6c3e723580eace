#!/usr/bin/env bash
# The XRPC proxy's overhead: one record read at the real PDS (e2e/, on loopback) directly, as a
# DPoP-bound call, and through atsso's /xrpc, p50/p99 of each (release build). Needs
# e2e/install.sh done (scripts/test.sh does it). ATSSO_BENCH_PROXY_READS sets the count (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/install.sh >/dev/null
ATSSO_E2E=1 cargo test --release --test e2e_real_pds bench_proxied_read_overhead -- --ignored --nocapture 2>&1 \
  | grep -E '^(proxied read|\||proxy overhead)'
