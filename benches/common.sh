# Shared by the benchmark scripts (sourced, not run): a free UDP port on 127.0.0.1, and the
# lines that say on what the numbers were measured.

free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

machine_lines() {
  echo "# date: $(date -u '+%F %T UTC')"
  echo "# machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1), $(nproc) CPUs, $(uname -sr)"
  echo "# rustc: $(rustc --version)"
  echo "# libcoap: $(dpkg-query -W -f '${Version}' libcoap3-bin 2>/dev/null || echo unknown)"
}
