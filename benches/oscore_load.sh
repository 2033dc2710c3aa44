#!/usr/bin/env bash
# OSCORE (RFC 8613) against plain CoAP on the same servers, in one run: coapio's example server
# plain and with `--oscore` (every request verified and decrypted, every answer protected), and
# aiocoap's server plain (tests/peers/aiocoap_server.py) and with its site wrapped for OSCORE
# (tests/peers/oscore_server.py), loaded by benches/loadgen.rs (with `--oscore`, it protects each
# request and verifies each answer itself) at window 1 and 64, server and load generator pinned
# to separate cores. libcoap 4.3.1 (Debian's) has no OSCORE; its plain numbers are in
# server_load.sh's runs. Loopback only; every run is bounded in requests and seconds.
#
#   bash benches/oscore_load.sh [REQUESTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
seconds=${2:-10}
command -v taskset >/dev/null || { echo "taskset missing: apt-get install util-linux" >&2; exit 1; }
python3 -c 'import aiocoap.oscore, cbor2, cryptography' 2>/dev/null ||
  { echo "aiocoap with OSCORE missing: pip install 'aiocoap[oscore]'" >&2; exit 1; }

cargo build -q --release --features oscore --example server
cargo bench -q --features oscore --bench loadgen --no-run 2>/dev/null
loadgen=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -n 1)

source benches/common.sh

machine_lines
echo "# aiocoap: $(python3 -c 'import aiocoap.meta as m; print(m.version)' 2>/dev/null || echo '?')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # name, path, "oscore" or "", command with PORT (and SERVERCTX) in it
  local name=$1 path=$2 oscore=$3 command=$4
  local port; port=$(free_port)
  # Fresh copies of the sample contexts for each server (both sides write sequence.json).
  rm -rf "$work/ctx"; cp -r tests/peers/oscore-ctx "$work/ctx"
  command=${command//PORT/$port}
  taskset -c 0 bash -c "exec ${command//SERVERCTX/$work/ctx/server}" >/dev/null 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  sleep 2
  for window in 1 64; do
    printf '%-15s ' "$name"
    local args=()
    if [ -n "$oscore" ]; then
      # A new client directory each time: the server's replay window is per client ID, and
      # each run starts where the previous one's stored sequence number left it.
      args=(--oscore "$work/ctx/client")
    fi
    taskset -c 1 "$loadgen" --target "127.0.0.1:$port" --path "$path" --window "$window" \
      --requests "$requests" --seconds "$seconds" --server-pid "$pid" "${args[@]}"
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run coapio /hello "" "target/release/examples/server --bind 127.0.0.1:PORT"
run coapio-oscore /hello oscore "target/release/examples/server --bind 127.0.0.1:PORT --oscore SERVERCTX"
run aiocoap /hello "" "python3 tests/peers/aiocoap_server.py 127.0.0.1 PORT"
run aiocoap-oscore /hello oscore "python3 tests/peers/oscore_server.py 127.0.0.1 PORT SERVERCTX"
