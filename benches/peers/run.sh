#!/usr/bin/env bash
# The codec benchmark with its peers, in one run: coapio (benches/codec.rs), libcoap 3 (C) and
# aiocoap (Python) decode and encode the same two datagrams, one after another, on this machine.
#
#   bash benches/peers/run.sh
#
# The datagrams come from one place: `cargo bench --bench codec -- --print-cases` prints them
# as hex, and both peers take that hex, check that they decode it to the expected fields and
# that their own encoders produce exactly these bytes, and only then time the cases.
# Needs: a C compiler, pkg-config, libcoap 3's headers and library, Python 3 with aiocoap.
# Results (with the machine lines) are printed at the end and kept in target/peers/results.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/target/peers"
cd "$root"

# ---- check the peers before spending time on anything ----
missing=()
command -v cargo >/dev/null || missing+=("cargo (the Rust toolchain: https://rustup.rs)")
command -v cc >/dev/null || missing+=("a C compiler: apt-get install -y build-essential")
command -v pkg-config >/dev/null || missing+=("pkg-config: apt-get install -y pkg-config")
coap_pc=""
if command -v pkg-config >/dev/null; then
    # Upstream names the module libcoap-3; Debian ships one per TLS backend.
    for m in libcoap-3 libcoap-3-notls libcoap-3-openssl libcoap-3-gnutls libcoap-3-mbedtls; do
        if pkg-config --exists "$m"; then coap_pc=$m; break; fi
    done
    [[ -n $coap_pc ]] || missing+=("libcoap 3 (headers + library): apt-get install -y libcoap3-dev (Debian/Ubuntu)")
fi
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    missing+=("Python 3: apt-get install -y python3")
elif ! "$python" -c 'import aiocoap' 2>/dev/null; then
    missing+=("aiocoap for $python: $python -m pip install aiocoap")
fi
if ((${#missing[@]})); then
    echo "run.sh: cannot run the peer benchmarks; missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi

# ---- build the C peer ----
mkdir -p "$out"
# shellcheck disable=SC2046  # pkg-config's flags are meant to be split
cc -O2 -Wall -Wextra -std=c11 -o "$out/libcoap_codec" "$here/libcoap_codec.c" \
    $(pkg-config --cflags --libs "$coap_pc")

# ---- the cases, from the Rust bench (this also builds it) ----
cases=$(cargo bench --quiet --bench codec -- --print-cases)
get_hex=$(awk '$1 == "get" { print $2 }' <<<"$cases")
response_hex=$(awk '$1 == "response" { print $2 }' <<<"$cases")
[[ -n $get_hex && -n $response_hex ]] || { echo "run.sh: --print-cases printed no cases" >&2; exit 1; }

# ---- the machine ----
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
[[ -n $cpu ]] || cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -n1)
results="$out/results.txt"
{
    echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "# machine: $cpu, $(nproc) CPUs, $(uname -sr)"
    echo "# $(rustc --version)"
    echo "# $(cc --version | head -n1), -O2, pkg-config $coap_pc $(pkg-config --modversion "$coap_pc")"
} >"$results"

# ---- run them one after another ----
echo "== coapio" >&2
cargo bench --quiet --bench codec | tee -a "$results"
echo "== libcoap" >&2
"$out/libcoap_codec" "$get_hex" "$response_hex" | tee -a "$results"
echo "== aiocoap" >&2
"$python" "$here/aiocoap_codec.py" "$get_hex" "$response_hex" | tee -a "$results"

echo
echo "==== results ($results)"
cat "$results"
