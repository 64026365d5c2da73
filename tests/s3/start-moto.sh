#!/usr/bin/env bash
# Starts moto's S3 server on a free loopback port for the artifact tests, in the background, and
# prints the lines that point the tests at it:
#
#   eval "$(tests/s3/start-moto.sh)"      # exports GUST_TEST_S3_ENDPOINT=http://127.0.0.1:PORT
#   cargo nextest run -p gust-artifacts
#   tests/s3/start-moto.sh stop           # stops it
#
# Two servers are started: one that accepts any request (GUST_TEST_S3_ENDPOINT), and one that
# checks signatures against its IAM users (INITIAL_NO_AUTH_ACTION_COUNT=0; it has none, so every
# request is refused with 403), GUST_TEST_S3_AUTH_ENDPOINT, for the permission-denied tests.
#
# moto (pinned below) is installed into its own virtual environment,
# ${CARGO_TARGET_DIR:-target}/s3-venv, made on first use (PyPI access needed once). The server's
# pid is kept in ${CARGO_TARGET_DIR:-target}/s3-moto[-auth].pid, its port and log beside it; a
# server already started by this script and still answering is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."

MOTO_VERSION=5.2.5
target=${CARGO_TARGET_DIR:-target}
venv=$target/s3-venv

answers() { python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
PY
}

if [ "${1:-}" = stop ]; then
  for name in s3-moto s3-moto-auth; do
    if [ -s "$target/$name.pid" ]; then
      kill "$(cat "$target/$name.pid")" 2>/dev/null || true
      rm -f "$target/$name.pid" "$target/$name.port"
    fi
  done
  exit 0
fi

mkdir -p "$target"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if [ "$(cat "$venv/.moto-version" 2>/dev/null)" != "$MOTO_VERSION" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  echo "$MOTO_VERSION" >"$venv/.moto-version"
fi

# start NAME VARIABLE [ENV=VALUE...]: starts (or reuses) one server, prints `export VARIABLE=URL`.
start() {
  local name=$1 variable=$2
  shift 2
  local pidfile=$target/$name.pid portfile=$target/$name.port log=$target/$name.log
  if [ -s "$pidfile" ] && [ -s "$portfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers "$(cat "$portfile")"; then
    echo "export $variable=http://127.0.0.1:$(cat "$portfile")"
    return
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # Detached (its own session), so a caller's `eval "$(...)"` does not wait on it.
  env "$@" setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$port" >"$portfile"
  for _ in $(seq 1 150); do
    if answers "$port"; then
      echo "export $variable=http://127.0.0.1:$port"
      return
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.2
  done
  cat "$log" >&2
  echo "moto_server ($name) did not answer on 127.0.0.1:$port (log above)" >&2
  exit 1
}

start s3-moto GUST_TEST_S3_ENDPOINT
start s3-moto-auth GUST_TEST_S3_AUTH_ENDPOINT INITIAL_NO_AUTH_ACTION_COUNT=0
