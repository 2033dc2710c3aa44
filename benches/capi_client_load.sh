#!/usr/bin/env bash
# The C client in mode B under load: examples-c/bench_client (coapio's C ABI driven by a
# poll(2) loop, NSTART = WINDOW) against coapio's example server and libcoap's
# coap-server-notls, one after the other in one run, at window 1 and window 64; server pinned
# to core 0, client to core 1. Prints one line per run (answered, failed, unanswered,
# seconds, requests/s, p50/p99 latency). Loopback only; every run is bounded in requests and
# seconds.
#
#   bash benches/capi_client_load.sh [SECONDS] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
requests=${2:-200000}
command -v coap-server-notls >/dev/null || { echo "coap-server-notls missing: apt-get install libcoap3-bin" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset missing: apt-get install util-linux" >&2; exit 1; }

cargo build -q --release --example server
out=$(make -s -C examples-c build/bench_client 2>&1) || { echo "$out" >&2; exit 1; }
client=examples-c/build/bench_client

source benches/common.sh

machine_lines
echo "# cc: $(cc --version | head -n1)"

run() { # name, path, command with PORT in it
  local name=$1 path=$2 command=$3
  local port; port=$(free_port)
  taskset -c 0 bash -c "exec ${command//PORT/$port}" >/dev/null 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  sleep 0.5
  for window in 1 64; do
    printf '%-8s ' "$name"
    taskset -c 1 "$client" "coap://127.0.0.1:$port$path" "$window" "$seconds" "$requests"
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run coapio /hello "target/release/examples/server --bind 127.0.0.1:PORT"
run libcoap /time "coap-server-notls -A 127.0.0.1 -p PORT"
