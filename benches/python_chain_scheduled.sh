#!/usr/bin/env bash
# Benchmark: the chain of 20 PythonOperator tasks of benches/python_chain.sh, run by each
# engine's scheduler rather than by `dags test`: `gust standalone` against Airflow 3.3.2's
# scheduler, DAG processor and API server (LocalExecutor, SQLite), both forking each task's Task
# SDK supervisor from a process that has imported Airflow already (Gust's warm worker; set
# GUST__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER=true to measure a fresh interpreter per try). Each round triggers a run and measures, from each engine's own
# database, the time from the run being queued to its end.
#
#   benches/python_chain_scheduled.sh [PYTHON] [ROUNDS]
#
# PYTHON: a venv's python with apache-airflow==3.3.2 and dag-factory==1.1.0 (default
# target/airflow-venv/bin/python, which .ci/run makes). GUST_BIN: the binary (default
# target/release/gust, else target/debug/gust). Results go in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/python_chain.sh
. benches/lib/python_chain.sh
chain_setup "$@"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap stop_all EXIT

write_chain_dags "$work" "$tasks"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits for a run in an engine's SQLite database and prints its queued-to-end seconds; fails if
# the run does not succeed within the timeout.
wait_run() { # ENGINE DB DAG_ID RUN_ID
  python3 - "$@" <<'PY'
import sqlite3, sys, time
engine, db, dag_id, run_id = sys.argv[1:]
deadline = time.monotonic() + 600
sql = {
    "gust": "SELECT state, (end_date - queued_at) / 1e6 FROM dag_runs WHERE dag_id = ? AND run_id = ?",
    "airflow": "SELECT state, (julianday(end_date) - julianday(queued_at)) * 86400 FROM dag_run "
               "WHERE dag_id = ? AND run_id = ?",
}[engine]
while time.monotonic() < deadline:
    try:
        row = sqlite3.connect(db, timeout=5).execute(sql, (dag_id, run_id)).fetchone()
    except sqlite3.Error:
        row = None
    if row and row[0] in ("success", "failed"):
        if row[0] != "success":
            sys.exit(f"{engine}: run {run_id} ended {row[0]}")
        print(f"{row[1]:.3f}")
        sys.exit(0)
    time.sleep(0.2)
sys.exit(f"{engine}: run {run_id} did not end within 600 s")
PY
}

# Waits until a database holds the DAG (parsed and stored by the engine).
wait_dag() { # DB SQL
  python3 - "$@" <<'PY'
import sqlite3, sys, time
db, sql = sys.argv[1:]
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        if sqlite3.connect(db, timeout=5).execute(sql).fetchone():
            sys.exit(0)
    except sqlite3.Error:
        pass
    time.sleep(0.5)
sys.exit(f"the DAG never reached {db}")
PY
}

echo "gust: $gust ($("$gust" version))"
echo "python: $python"
dag="chain_$tasks"

# Gust: one `gust standalone` (scheduler, API and Execution API in one process).
gust_home="$work/gust-home"
mkdir -p "$gust_home"
GUST_HOME=$gust_home GUST__PYTHON__INTERPRETER=$python GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION=false \
  GUST__API__PORT=$(free_port) "$gust" standalone --dags-folder "$work/dags" >"$work/gust.log" 2>&1 &
pids+=($!)
wait_dag "$gust_home/gust.db" "SELECT 1 FROM dags WHERE dag_id = '$dag'" || { cat "$work/gust.log"; exit 1; }
gust_times=()
for round in $(seq 1 "$rounds"); do
  GUST_HOME=$gust_home "$gust" dags trigger "$dag" --run-id "bench_$round" --dags-folder "$work/dags" >/dev/null
  gust_times+=("$(wait_run gust "$gust_home/gust.db" "$dag" "bench_$round")") || { tail -50 "$work/gust.log"; exit 1; }
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

# Airflow: its scheduler (LocalExecutor), DAG processor and API server (serving the Execution
# API the workers call), sharing one JWT secret.
airflow_home="$work/airflow-home"
api_port=$(free_port)
export AIRFLOW_HOME=$airflow_home AIRFLOW__CORE__DAGS_FOLDER="$work/airflow-dags" \
  AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
  AIRFLOW__CORE__EXECUTOR=LocalExecutor AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False \
  AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$api_port/execution/" \
  AIRFLOW__API_AUTH__JWT_SECRET=benchmark-secret AIRFLOW__API__SECRET_KEY=benchmark-secret \
  AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL=5 AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT=30
"$python" -m airflow db migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; exit 1; }
"$python" -m airflow api-server --port "$api_port" >"$work/airflow-api.log" 2>&1 &
pids+=($!)
"$python" -m airflow dag-processor >"$work/airflow-dag-processor.log" 2>&1 &
pids+=($!)
"$python" -m airflow scheduler >"$work/airflow-scheduler.log" 2>&1 &
pids+=($!)
wait_dag "$airflow_home/airflow.db" "SELECT 1 FROM serialized_dag WHERE dag_id = '$dag'" \
  || { tail -30 "$work/airflow-dag-processor.log"; exit 1; }
airflow_times=()
for round in $(seq 1 "$rounds"); do
  "$python" -m airflow dags trigger "$dag" --run-id "bench_$round" >"$work/trigger.log" 2>&1 \
    || { cat "$work/trigger.log"; exit 1; }
  airflow_times+=("$(wait_run airflow "$airflow_home/airflow.db" "$dag" "bench_$round")") \
    || { tail -50 "$work/airflow-scheduler.log"; exit 1; }
done

for round in $(seq 1 "$rounds"); do
  i=$((round - 1))
  awk -v r="$round" -v g="${gust_times[$i]}" -v a="${airflow_times[$i]}" -v n="$tasks" \
    'BEGIN { printf "round %s: gust standalone %.1f s (%.2f s/task) | airflow scheduler %.1f s (%.2f s/task)\n", r, g, g / n, a, a / n }'
done
