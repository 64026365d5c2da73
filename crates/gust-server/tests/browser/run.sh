#!/usr/bin/env bash
# The web UI's browser test: the real `gust standalone` on the example DAGs in a throwaway
# GUST_HOME, a user made with `gust users create`, headless Chromium driven by chromedriver
# (Debian's `chromium` and `chromium-driver`), and ui_test.py (Python's standard library only).
#
#   bash crates/gust-server/tests/browser/run.sh             # from the workspace root
#   SCREENSHOTS=docs/images bash crates/gust-server/tests/browser/run.sh   # screenshots there
#                                   (default: target/browser-screenshots, the test's artifacts)
#   GUST_UI_BENCH_HOME=DIR ...  # also time the drawing of the 5,000-task DAG the `ui` bench kept
#
# GUST_BIN names the gust binary (default: target/debug/gust, built first).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../../.." && pwd)
cd "$root"
if [ -n "${GUST_BIN:-}" ]; then
  gust=$GUST_BIN
else
  cargo build -q -p gust
  gust=${CARGO_TARGET_DIR:-$root/target}/debug/gust
fi
command -v chromedriver >/dev/null || { echo "chromedriver is missing: apt-get install -y chromium chromium-driver" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "nothing answered at $1" >&2
  return 1
}

export GUST_HOME=$work/home GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION=false GUST__KUBERNETES__RUNTIME=local
port=$(free_port)
"$gust" db migrate >/dev/null
"$gust" users create --username browser --password browser-password --role op >/dev/null
# The examples, plus the test's own DAGs: one whose task writes for six seconds (a log to
# tail), one with no description and a single task, one with a mapped task.
cp -r examples/dags "$work/dags"
cp crates/gust-server/tests/browser/slow_log.yaml crates/gust-server/tests/browser/bare.yaml \
  crates/gust-server/tests/browser/mapped.yaml crates/gust-server/tests/browser/late.yaml "$work/dags/"
"$gust" standalone --host 127.0.0.1 --port "$port" --dags-folder "$work/dags" >"$work/standalone.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/api/v2/monitor/health" || { cat "$work/standalone.log" >&2; exit 1; }

big=()
if [ -n "${GUST_UI_BENCH_HOME:-}" ]; then
  big_port=$(free_port)
  GUST_HOME=$GUST_UI_BENCH_HOME GUST__DATABASE__URL="sqlite://$GUST_UI_BENCH_HOME/gust.db" \
    "$gust" api-server --host 127.0.0.1 --port "$big_port" >"$work/big.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$big_port/api/v2/monitor/health" || { cat "$work/big.log" >&2; exit 1; }
  big=(--big-base "http://127.0.0.1:$big_port" --big-user bench --big-password bench-password)
fi

driver_port=$(free_port)
# The browser's own timezone is not UTC, so the UI's timezone selector is tested for real.
TZ=America/New_York chromedriver --port="$driver_port" >"$work/chromedriver.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$driver_port/status"

# Screenshots are the test's artifacts: target/browser-screenshots unless SCREENSHOTS names
# another folder (docs/images refreshes the documentation's pictures).
SCREENSHOTS=${SCREENSHOTS:-${CARGO_TARGET_DIR:-$root/target}/browser-screenshots}
mkdir -p "$SCREENSHOTS"
shots=(--screenshots "$SCREENSHOTS")
python3 crates/gust-server/tests/browser/ui_test.py --base "http://127.0.0.1:$port" \
  --webdriver "http://127.0.0.1:$driver_port" --user browser --password browser-password --gust "$gust" \
  "${shots[@]}" "${big[@]}" || { echo "--- gust standalone's log:" >&2; tail -40 "$work/standalone.log" >&2; exit 1; }
