#!/usr/bin/env bash
# The cluster test by hand: a throwaway PostgreSQL, three atsso nodes started together on the
# empty database and HAProxy in front, on loopback; then the checks of tests/cluster/main.rs
# (first start, cross-node flows, key rotation, client disable, single logout, kill -9 of a node
# during a refresh burst, PostgreSQL restarted, deliveries surviving restarts). Each step prints
# a `cluster:` line with what it measured. Needs the Debian packages postgresql and haproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
ATSSO_CLUSTER=1 exec cargo test --test cluster -- --nocapture "$@"
