#!/usr/bin/env bash
# Time to fetch a 1 MiB resource with 1024-byte blocks (RFC 7959) from coapio's example server,
# libcoap's coap-server-notls and an aiocoap server, with coapio's client and libcoap's
# coap-client-notls, in one run. Loopback only; every fetch is bounded (coap-client -B 60).
#
#   bash benches/blockwise_fetch.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-5}
for tool in coap-client-notls coap-server-notls python3; do
  command -v "$tool" >/dev/null || { echo "$tool missing (apt-get install libcoap3-bin / python3)" >&2; exit 1; }
done
python3 -c 'import aiocoap' 2>/dev/null || { echo "aiocoap missing: pip install aiocoap" >&2; exit 1; }
cargo build -q --release --example server --example client
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
source benches/common.sh

p1=$(free_port); target/release/examples/server --bind "127.0.0.1:$p1" >/dev/null & pids+=($!)
p2=$(free_port); coap-server-notls -A 127.0.0.1 -p "$p2" -d 4 >/dev/null 2>&1 & pids+=($!)
p3=$(free_port); python3 benches/peers/aiocoap_large_server.py 127.0.0.1 "$p3" >/dev/null 2>&1 & pids+=($!)
sleep 1.5
python3 - "$tmp/large" <<'PY'
import sys
open(sys.argv[1], "wb").write(bytes((0x0A if i % 64 == 63 else 0x61 + i % 26) for i in range(1 << 20)))
PY
coap-client-notls -B 60 -b 1024 -m put -f "$tmp/large" "coap://127.0.0.1:$p2/large" >/dev/null 2>&1

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # label, command...
  local label=$1; shift
  local times=()
  for _ in $(seq "$repeats"); do
    local start end
    start=$(date +%s.%N)
    "$@" > "$tmp/out" 2>/dev/null
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc)")
  done
  # coap-client adds a newline to the payload; coapio's client prints the code line first.
  local bytes; bytes=$(wc -c < "$tmp/out")
  printf '%-44s median %6.3f s  (%s runs, last output %s bytes)\n' "$label" \
    "$(printf '%s\n' "${times[@]}" | median)" "$repeats" "$bytes"
}

echo "# date: $(date -u '+%F %T UTC'); machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) CPUs"
echo "# libcoap $(dpkg-query -W -f '${Version}' libcoap3-bin 2>/dev/null), aiocoap $(python3 -c 'import aiocoap.meta as m; print(m.version)' 2>/dev/null || echo '?')"
for server in "coapio:$p1" "libcoap:$p2" "aiocoap:$p3"; do
  name=${server%%:*}; port=${server##*:}
  measure "coap-client-notls -b 1024 <- $name" coap-client-notls -B 60 -b 1024 -m get "coap://127.0.0.1:$port/large"
  measure "coapio client <- $name" target/release/examples/client "coap://127.0.0.1:$port/large"
done
