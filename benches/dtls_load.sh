#!/usr/bin/env bash
# DTLS (pre-shared key) against coapio's example server and libcoap's coap-server-openssl, one
# after the other in one run: handshakes per second, then requests per second over one
# established session at window 1 and 64 (benches/dtls_load.rs), server and load generator
# pinned to separate cores. Loopback only; every run is bounded in count and seconds.
#
#   bash benches/dtls_load.sh [HANDSHAKES] [REQUESTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
handshakes=${1:-2000}
requests=${2:-100000}
seconds=${3:-10}
command -v coap-server-openssl >/dev/null || { echo "coap-server-openssl missing: apt-get install libcoap3-bin" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset missing: apt-get install util-linux" >&2; exit 1; }

cargo build -q --release --features dtls --example server
cargo bench -q --features dtls --bench dtls_load --no-run 2>/dev/null
loadgen=$(ls -t target/release/deps/dtls_load-* | grep -v '\.d$' | head -n 1)

source benches/common.sh

machine_lines

run() { # name, path, DTLS port offset from PORT, command with PORT in it
  local name=$1 path=$2 offset=$3 command=$4
  local port; port=$(free_port)
  taskset -c 0 bash -c "exec ${command//PORT/$port}" >/dev/null 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  sleep 0.5
  for window in 1 64; do
    printf '%-8s ' "$name"
    taskset -c 1 "$loadgen" --target "127.0.0.1:$((port + offset))" --path "$path" \
      --identity bench --key bench-key-0123456789 --window "$window" \
      --handshakes "$handshakes" --requests "$requests" --seconds "$seconds" --server-pid "$pid" \
      | paste -sd ' '
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run coapio /hello 1 "target/release/examples/server --bind 127.0.0.1:PORT --psk-identity bench --psk-key bench-key-0123456789"
run libcoap /time 1 "coap-server-openssl -A 127.0.0.1 -p PORT -k bench-key-0123456789"
