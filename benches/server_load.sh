#!/usr/bin/env bash
# Loads coapio's example server and libcoap's coap-server-notls with benches/loadgen.rs, one
# after the other in one run, at window 1 and window 64, server and load generator pinned to
# separate cores. Prints one line per run (requests/s, p50/p99 latency, server CPU per
# request). Loopback only; every run is bounded in requests and seconds.
#
#   bash benches/server_load.sh [REQUESTS] [SECONDS]
#   BEFORE=REV bash benches/server_load.sh ...   # also the example server of git revision REV,
#                                                # in the same run ("before" and "after")
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
seconds=${2:-10}
command -v coap-server-notls >/dev/null || { echo "coap-server-notls missing: apt-get install libcoap3-bin" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset missing: apt-get install util-linux" >&2; exit 1; }

cargo build -q --release --example server
before_server=""
if [ -n "${BEFORE:-}" ]; then
  # The older server, built from a clean worktree with its own target directory.
  before_dir=$(mktemp -d)
  git worktree add -q --detach "$before_dir/src" "$BEFORE"
  trap 'git worktree remove --force "$before_dir/src" >/dev/null 2>&1 || true' EXIT
  CARGO_TARGET_DIR="$before_dir/target" cargo build -q --release --example server \
    --manifest-path "$before_dir/src/Cargo.toml"
  before_server="$before_dir/target/release/examples/server"
fi
cargo bench -q --bench loadgen --no-run 2>/dev/null
loadgen=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -n 1)

source benches/common.sh

machine_lines

run() { # name, path, command with PORT in it
  local name=$1 path=$2 command=$3
  local port; port=$(free_port)
  taskset -c 0 bash -c "exec ${command//PORT/$port}" >/dev/null 2>&1 &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  sleep 0.5
  for window in 1 64; do
    printf '%-8s ' "$name"
    taskset -c 1 "$loadgen" --target "127.0.0.1:$port" --path "$path" --window "$window" \
      --requests "$requests" --seconds "$seconds" --server-pid "$pid"
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run coapio /hello "target/release/examples/server --bind 127.0.0.1:PORT"
if [ -n "$before_server" ]; then
  run "before" /hello "$before_server --bind 127.0.0.1:PORT"
fi
run libcoap /time "coap-server-notls -A 127.0.0.1 -p PORT"
