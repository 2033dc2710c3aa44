#!/usr/bin/env bash
# Every table of the performance benchmark (issue 12), from one run of this one script, on
# this machine: the machine lines first, then one section after another, each line prefixed
# by a name column. Loopback (127.0.0.1) only; every run is bounded in requests and seconds
# (and by timeout(1)).
#
#   bash benches/perf.sh [REQUESTS=300000] [SECONDS=10]
#   SKIP_BUILD=1 bash benches/perf.sh ...     # use what is built already (no cargo, cc, make)
#   PARTIAL=1 ...                             # skip (and say so) what is not built, instead of
#                                             # stopping; for trying the script, not for results
#
# Sections:
#   server    the servers - coapio (examples/server, /hello), bare (bare_udp server, /hello),
#             libcoap (coap-server-notls, /time) - pinned to core 0, loaded by `bare_udp
#             client` pinned to core 1, window 1 and 64, a fresh server for each: requests/s,
#             p50/p99 latency, server and client CPU per request; and coapio's window-1
#             server once more at window 64 while it remembers the first run's exchanges
#             (coapio+mem).
#   syscalls  each server once more at window 1 and 64, its system calls counted by the
#             kernel's tracepoints (`perf stat -e syscalls:sys_enter_*`, which does not slow
#             it down, unlike strace): per answered request, all of them; receive = recvmsg +
#             recvmmsg + recvfrom (udp6's error-queue reads are recvmsg); send = sendmsg +
#             sendmmsg + sendto; epoll_wait + epoll_pwait; epoll_ctl; timerfd_settime; futex;
#             read; write.
#   client    the clients - bare (bare_udp client), libcoap (libcoap_client_load), coapio-rust
#             (benches/client_load.rs), coapio-c (examples-c/bench_client, the C ABI in mode
#             B) - pinned to core 1 against libcoap's coap-server-notls (/time) pinned to core
#             0, window 1 and 64; a fresh server for every client; then the same against the
#             bare responder, which is never the bottleneck.
#   workers   coapio's server with --workers 1, then 2 (SO_REUSEPORT), unpinned, loaded by
#             `bare_udp client --sockets 4 --window 64`, unpinned.
#   observe   benches/observe_fanout.rs, 10000 observers, 20 rounds (its own line).
#   alloc     benches/server_alloc.rs (its own lines).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-300000}
seconds=${2:-10}
skip_build=${SKIP_BUILD:-0}
partial=${PARTIAL:-0}
case $requests$seconds in *[!0-9]*) echo "usage: bash benches/perf.sh [REQUESTS] [SECONDS]" >&2; exit 2;; esac
# A run that does not end by itself within its bound plus this is killed (and counted failed).
limit=$((seconds + 30))

# ---- tools ----
missing=()
need() { command -v "$1" >/dev/null || missing+=("$1: $2"); }
need coap-server-notls "apt-get install libcoap3-bin"
need taskset "apt-get install util-linux"
need perf "apt-get install linux-perf"
need timeout "apt-get install coreutils"
need python3 "apt-get install python3"
if [ "$skip_build" != 1 ]; then
  need cargo "the Rust toolchain: https://rustup.rs"
  need cc "apt-get install build-essential"
  need make "apt-get install make"
  if ! command -v pkg-config >/dev/null; then
    missing+=("pkg-config: apt-get install pkg-config")
  elif ! pkg-config --exists libcoap-3-notls; then
    missing+=("libcoap-3-notls (headers, pkg-config module): apt-get install libcoap3-dev")
  fi
fi
if ((${#missing[@]})); then
  echo "perf.sh: missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "perf.sh: needs 2 CPUs (server on core 0, load on core 1); this machine has $(nproc)" >&2
  exit 1
fi

# ---- builds ----
if [ "$skip_build" != 1 ]; then
  cargo build -q --release --example server
  if [ "$partial" = 1 ]; then
    for b in client_load observe_fanout server_alloc loadgen; do
      cargo bench -q --bench "$b" --no-run 2>/dev/null || echo "perf.sh: cargo bench --bench $b --no-run failed" >&2
    done
  else
    cargo bench -q --no-run --bench client_load --bench observe_fanout --bench server_alloc \
      --bench loadgen
  fi
  mkdir -p target/peers
  cc -O2 -Wall -Wextra -std=c11 -o target/peers/bare_udp benches/peers/bare_udp.c
  # shellcheck disable=SC2046  # pkg-config's flags are meant to be split
  cc -O2 -Wall -Wextra -std=c11 -o target/peers/libcoap_client_load \
    benches/peers/libcoap_client_load.c $(pkg-config --cflags --libs libcoap-3-notls)
  if ! out=$(make -s -C examples-c build/bench_client 2>&1); then
    echo "$out" >&2
    [ "$partial" = 1 ] || exit 1
  fi
fi

# cargo's output (CARGO_TARGET_DIR when set); the C peers are always in target/peers.
cargo_target=${CARGO_TARGET_DIR:-target}
# The newest executable $cargo_target/release/deps/NAME-<hash> (cargo's bench binary), or nothing.
newest_bench() {
  local f
  for f in $(ls -t "$cargo_target"/release/deps/"$1"-* 2>/dev/null); do
    case $f in *.d) continue;; esac
    if [ -f "$f" ] && [ -x "$f" ]; then echo "$f"; return; fi
  done
}
server_bin=$cargo_target/release/examples/server
bare=target/peers/bare_udp
libcoap_client=target/peers/libcoap_client_load
capi_client=examples-c/build/bench_client
client_load=$(newest_bench client_load)
observe_fanout=$(newest_bench observe_fanout)
server_alloc=$(newest_bench server_alloc)

# Every binary, checked before anything runs: a missing one stops the run (PARTIAL=1: it is
# reported, and what needs it is skipped).
absent=()
have() { [ -n "$1" ] && [ -x "$1" ]; }
check() { have "$1" || absent+=("$2 (built by: $3)"); }
check "$server_bin" "$server_bin" "cargo build --release --example server"
check "$bare" "$bare" "cc ... benches/peers/bare_udp.c"
check "$libcoap_client" "$libcoap_client" "cc ... benches/peers/libcoap_client_load.c"
check "$capi_client" "$capi_client" "make -C examples-c build/bench_client"
check "$client_load" "$cargo_target/release/deps/client_load-*" "cargo bench --bench client_load --no-run"
check "$observe_fanout" "$cargo_target/release/deps/observe_fanout-*" "cargo bench --bench observe_fanout --no-run"
check "$server_alloc" "$cargo_target/release/deps/server_alloc-*" "cargo bench --bench server_alloc --no-run"
if ((${#absent[@]})); then
  if [ "$partial" != 1 ]; then
    echo "perf.sh: missing (or run without SKIP_BUILD=1; PARTIAL=1 skips them):" >&2
    printf '  - %s\n' "${absent[@]}" >&2
    exit 1
  fi
  printf 'perf.sh: PARTIAL=1, skipping what needs: %s\n' "${absent[@]}" >&2
fi

source benches/common.sh

# ---- background processes: every one still running is killed on exit ----
# (A process is taken off the list once waited for, so that no PID the kernel has given to
# another process since is killed.)
tmp=$(mktemp -d)
pids=()
forget() { # pid
  local p keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
name_col() { printf '%-12s ' "$1"; }
skip() { # name, what is missing
  name_col "$1"
  echo "missing: $2"
}

# Starts a server: CPUS ("" = unpinned), then the command. Sets server_pid.
start_server() {
  local cpus=$1
  shift
  if [ -n "$cpus" ]; then
    taskset -c "$cpus" "$@" >>"$tmp/servers.log" 2>&1 &
  else
    "$@" >>"$tmp/servers.log" 2>&1 &
  fi
  server_pid=$!
  pids+=("$server_pid")
  sleep 0.5
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "perf.sh: the server did not start: $*" >&2
    tail -n 5 "$tmp/servers.log" >&2
    exit 1
  fi
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  forget "$server_pid"
}

# Runs a command under timeout(1) with SECONDS, in the background, stdout into FILE ("-":
# this stdout), and waits for it: a signal then interrupts the wait, and the traps run at once.
bounded() { # seconds, file, command...
  local secs=$1 file=$2
  shift 2
  if [ "$file" = - ]; then
    timeout "$secs" "$@" &
  else
    timeout "$secs" "$@" >"$file" &
  fi
  local p=$! rc=0
  pids+=("$p")
  wait "$p" || rc=$?
  forget "$p"
  return "$rc"
}

# One bounded client run, its line prefixed by NAME; a failed run is said so and counted.
row() {
  local name=$1 out rc=0
  shift
  bounded "$limit" "$tmp/out" "$@" || rc=$?
  out=$(cat "$tmp/out")
  name_col "$name"
  if [ "$rc" -eq 0 ]; then
    echo "$out"
  else
    failures=$((failures + 1))
    echo "${out:+$out }FAILED (exit $rc)"
  fi
}

# The command of server NAME on PORT into srv, its resource into srv_path.
server_cmd() {
  case $1 in
    coapio) srv=("$server_bin" --bind "127.0.0.1:$2") srv_path=/hello ;;
    bare) srv=("$bare" server --bind "127.0.0.1:$2") srv_path=/hello ;;
    libcoap) srv=(coap-server-notls -A 127.0.0.1 -p "$2") srv_path=/time ;;
  esac
}
server_needs() { # the binary server NAME needs
  case $1 in coapio) echo "$server_bin" ;; bare) echo "$bare" ;; libcoap) command -v coap-server-notls ;; esac
}

machine_lines
echo "# cc: $(cc --version 2>/dev/null | head -n1 || echo unknown)"
echo "# perf: $(perf --version 2>/dev/null | head -n1)"
echo "# requests per run at most: $requests; seconds per run at most: $seconds"

# ---- a. server ----
echo
echo "# server: each server pinned to core 0, load: bare_udp client pinned to core 1"
for name in coapio bare libcoap; do
  if ! have "$bare"; then skip "$name" "$bare"; continue; fi
  if ! have "$(server_needs "$name")"; then skip "$name" "$(server_needs "$name")"; continue; fi
  for window in 1 64; do
    # A fresh server for each window, so that every row starts from the same state.
    port=$(free_port)
    server_cmd "$name" "$port"
    start_server 0 "${srv[@]}"
    row "$name" taskset -c 1 "$bare" client --target "127.0.0.1:$port" --path "$srv_path" \
      --window "$window" --requests "$requests" --seconds "$seconds" --server-pid "$server_pid"
    if [ "$name" = coapio ] && [ "$window" = 1 ]; then
      # The same server once more at window 64, while it still remembers the exchanges of
      # the window-1 run (RFC 7252 section 4.5: for EXCHANGE_LIFETIME, 247 s).
      row "coapio+mem" taskset -c 1 "$bare" client --target "127.0.0.1:$port" \
        --path "$srv_path" --window 64 --requests "$requests" --seconds "$seconds" \
        --server-pid "$server_pid"
    fi
    stop_server
  done
done

# ---- b. syscalls ----
echo
echo "# syscalls: per answered request, counted by the kernel's syscall tracepoints (perf stat:"
echo "# no slowdown) on the server while the bare client loads it as above, window 1 and 64"
events=raw_syscalls:sys_enter
for call in recvmmsg recvmsg recvfrom sendmmsg sendmsg sendto epoll_wait epoll_pwait epoll_ctl \
  timerfd_settime futex write read; do
  events="$events,syscalls:sys_enter_$call"
done
perf_counts() { # perf stat -x, file, answered: the compact line
  awk -F, -v n="$2" '
    $3 ~ /^(raw_)?syscalls:sys_enter/ { k = $3; sub(/.*sys_enter_?/, "", k); c[k == "" ? "all" : k] = $1 }
    function per(x) { return sprintf("%.3f", x / n) }
    END {
      printf "answered=%d syscalls/req=%s recv/req=%s send/req=%s epoll_wait/req=%s epoll_ctl/req=%s timerfd_settime/req=%s futex/req=%s read/req=%s write/req=%s\n",
        n, per(c["all"]), per(c["recvmmsg"] + c["recvmsg"] + c["recvfrom"]),
        per(c["sendmmsg"] + c["sendmsg"] + c["sendto"]),
        per(c["epoll_wait"] + c["epoll_pwait"]), per(c["epoll_ctl"]),
        per(c["timerfd_settime"]), per(c["futex"]), per(c["read"]), per(c["write"])
    }' "$1"
}
for name in coapio bare libcoap; do
  if ! have "$bare"; then skip "$name" "$bare"; continue; fi
  if ! have "$(server_needs "$name")"; then skip "$name" "$(server_needs "$name")"; continue; fi
  port=$(free_port)
  server_cmd "$name" "$port"
  start_server 0 "${srv[@]}"
  for window in 1 64; do
    counts="$tmp/perf-$name-$window.txt"
    perf stat -x, -o "$counts" -e "$events" -p "$server_pid" &
    perf_pid=$!
    pids+=("$perf_pid")
    sleep 0.3
    bounded "$limit" "$tmp/out" taskset -c 1 "$bare" client --target "127.0.0.1:$port" \
      --path "$srv_path" --window "$window" --requests "$requests" --seconds "$seconds" || true
    out=$(cat "$tmp/out")
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    forget "$perf_pid"
    answered=$(sed -n 's/.* answered=\([0-9]*\) .*/\1/p' <<<"$out")
    name_col "$name"
    printf 'window=%-2s ' "$window"
    if [ -n "$answered" ] && [ "$answered" -gt 0 ] && [ -s "$counts" ]; then
      perf_counts "$counts" "$answered"
    else
      failures=$((failures + 1))
      echo "FAILED (client: ${out:-no output}; counts: $([ -s "$counts" ] && echo written || echo missing))"
    fi
  done
  stop_server
done

# ---- c. client ----
for against in libcoap bare; do
echo
case $against in
  libcoap) echo "# client: against libcoap's coap-server-notls (/time, pinned to core 0, a fresh one for"
           echo "# each client), each client pinned to core 1" ;;
  bare) echo "# client: the same against the bare responder (/hello, pinned to core 0), which is"
        echo "# never the bottleneck: what each client itself can do" ;;
esac
for name in bare libcoap coapio-rust coapio-c; do
  case $name in
    bare) bin=$bare ;;
    libcoap) bin=$libcoap_client ;;
    coapio-rust) bin=$client_load ;;
    coapio-c) bin=$capi_client ;;
  esac
  if ! have "$bin"; then
    case $name in
      coapio-rust) skip "$name" "$cargo_target/release/deps/client_load-* (cargo bench --bench client_load --no-run)" ;;
      *) skip "$name" "$bin" ;;
    esac
    continue
  fi
  port=$(free_port)
  server_cmd "$against" "$port"
  start_server 0 "${srv[@]}"
  for window in 1 64; do
    case $name in
      coapio-c) # bench_client URI WINDOW SECONDS MAX_REQUESTS SERVER_PID
        row "$name" taskset -c 1 "$bin" "coap://127.0.0.1:$port$srv_path" "$window" "$seconds" \
          "$requests" "$server_pid" ;;
      *)
        cmd=("$bin")
        [ "$name" = bare ] && cmd+=(client)
        row "$name" taskset -c 1 "${cmd[@]}" --target "127.0.0.1:$port" --path "$srv_path" \
          --window "$window" --requests "$requests" --seconds "$seconds" \
          --server-pid "$server_pid" ;;
    esac
  done
  stop_server
done
done

# ---- d. workers ----
echo
echo "# workers: coapio's server with N SO_REUSEPORT workers, unpinned; load: bare_udp client,"
echo "# 4 sockets, window 64, unpinned"
for workers in 1 2; do
  if ! have "$server_bin" || ! have "$bare"; then skip "workers=$workers" "$server_bin or $bare"; continue; fi
  port=$(free_port)
  start_server "" "$server_bin" --bind "127.0.0.1:$port" --workers "$workers"
  row "workers=$workers" "$bare" client --target "127.0.0.1:$port" --path /hello --window 64 \
    --sockets 4 --requests "$requests" --seconds "$seconds" --server-pid "$server_pid"
  stop_server
done

# ---- e. observe ----
echo
echo "# observe: benches/observe_fanout.rs --observers 10000 --rounds 20"
if have "$observe_fanout"; then
  if ! bounded 300 - "$observe_fanout" --observers 10000 --rounds 20; then
    failures=$((failures + 1))
    echo "observe_fanout FAILED"
  fi
else
  skip observe "$cargo_target/release/deps/observe_fanout-* (cargo bench --bench observe_fanout --no-run)"
fi

# ---- f. alloc ----
echo
echo "# alloc: benches/server_alloc.rs"
if have "$server_alloc"; then
  if ! bounded 300 - "$server_alloc"; then
    failures=$((failures + 1))
    echo "server_alloc FAILED"
  fi
else
  skip alloc "$cargo_target/release/deps/server_alloc-* (cargo bench --bench server_alloc --no-run)"
fi

if [ "$failures" -gt 0 ]; then
  echo "perf.sh: $failures run(s) failed" >&2
  exit 1
fi
