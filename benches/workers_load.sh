#!/usr/bin/env bash
# coapio's example server with 1 and with 2 SO_REUSEPORT workers under the load generator
# (4 sockets, so that the kernel can spread them over the workers), one after the other in
# one run. Loopback only; every run is bounded in requests and seconds.
#
#   bash benches/workers_load.sh [REQUESTS] [SECONDS] [WINDOW]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-300000}
seconds=${2:-10}
window=${3:-64}
cargo build -q --release --example server
cargo bench -q --bench loadgen --no-run 2>/dev/null
loadgen=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -n 1)
source benches/common.sh
echo "# date: $(date -u '+%F %T UTC'); machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) CPUs"
for workers in 1 2; do
  port=$(free_port)
  target/release/examples/server --bind "127.0.0.1:$port" --workers "$workers" >/dev/null &
  pid=$!
  sleep 0.5
  printf 'workers=%s ' "$workers"
  "$loadgen" --target "127.0.0.1:$port" --path /hello --window "$window" --sockets 4 \
    --requests "$requests" --seconds "$seconds" --server-pid "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
