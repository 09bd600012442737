#!/usr/bin/env bash
# The whole test suite: `cargo test`, plus the ignored tests when Tansu
# (an Apache-Kafka-compatible broker: `cargo install tansu --features
# dynostore,libsql --locked`) is installed: the real-broker tests, the
# promtool checks (Debian package prometheus) and the full-disk test (root).
# Tansu runs on 127.0.0.1 with SQLite storage in a temporary folder and is
# stopped on exit. `.ci/run` installs everything.
set -euo pipefail
cd "$(dirname "$0")/.."

tansu_bin="${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
if [ ! -x "$tansu_bin" ]; then
  echo "test.sh: tansu not found: the real-broker tests are skipped (listed as ignored)" >&2
  exec cargo test --locked "$@"
fi

if ! command -v promtool >/dev/null; then
  echo "test.sh: promtool not found (apt-get install prometheus): its checks will fail" >&2
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
work="$(mktemp -d)"
( cd "$work" && exec "$tansu_bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "sqlite://tansu.db" >"$work/tansu.log" 2>&1 ) &
tansu_pid=$!
trap 'kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# Wait (bounded) for the broker to accept connections.
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$tansu_pid" 2>/dev/null; then
    echo "test.sh: tansu exited:" >&2; cat "$work/tansu.log" >&2; exit 1
  fi
  sleep 0.1
done
echo "test.sh: Tansu at 127.0.0.1:$port; running every test, the real-broker ones included" >&2
LEADSCORE_TEST_BROKER="127.0.0.1:$port" cargo test --locked "$@" -- --include-ignored
