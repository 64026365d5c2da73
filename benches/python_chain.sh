#!/usr/bin/env bash
# Benchmark: a chain of 20 PythonOperator tasks, the same dag-factory file run by
# `gust dags test` (each task in Airflow's Task SDK, through Gust's Execution API), forked from
# Gust's warm worker (the default) and, for comparison, in a fresh interpreter per try
# (`[core] execute_tasks_new_python_interpreter`), and by `airflow dags test` (Airflow 3.3.2
# runs every task in its one process). Also measures starting the Task SDK's task runner once
# (Python, Airflow's imports): what a fresh interpreter per try pays every time.
#
#   benches/python_chain.sh [PYTHON] [ROUNDS]
#
# PYTHON: a venv's python with apache-airflow==3.3.2 and dag-factory==1.1.0 (default
# target/airflow-venv/bin/python, which .ci/run makes). GUST_BIN: the binary (default
# target/release/gust, else target/debug/gust). Results go in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/python_chain.sh
. benches/lib/python_chain.sh
chain_setup "$@"
trap 'rm -rf "$work"' EXIT

write_chain_dags "$work" "$tasks"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
per_task() { awk -v t="$1" -v n="$2" -v f="${3:-0}" 'BEGIN { printf "%.3f", (t - n * f) / n }'; }
export AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False AIRFLOW__CORE__LOAD_EXAMPLES=False

echo "gust: $gust ($("$gust" version))"
echo "python: $python"
airflow_home="$work/airflow-home"
AIRFLOW_HOME=$airflow_home "$python" -m airflow db migrate >"$work/migrate.log" 2>&1 \
  || { cat "$work/migrate.log"; exit 1; }

for round in $(seq 1 "$rounds"); do
  start=$(now)
  "$python" -c 'import airflow.sdk.execution_time.task_runner, dagfactory' >/dev/null 2>&1
  floor=$(elapsed "$start" "$(now)")

  start=$(now)
  GUST_HOME="$work/gust-$round" GUST__PYTHON__INTERPRETER=$python \
    "$gust" dags test "chain_$tasks" --dags-folder "$work/dags" >"$work/gust-$round.log" 2>&1
  gust_wall=$(elapsed "$start" "$(now)")
  grep -q "t$tasks: success" "$work/gust-$round.log" || { cat "$work/gust-$round.log"; exit 1; }

  start=$(now)
  GUST_HOME="$work/gust-cold-$round" GUST__PYTHON__INTERPRETER=$python \
    GUST__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER=true \
    "$gust" dags test "chain_$tasks" --dags-folder "$work/dags" >"$work/gust-cold-$round.log" 2>&1
  cold_wall=$(elapsed "$start" "$(now)")
  grep -q "t$tasks: success" "$work/gust-cold-$round.log" || { cat "$work/gust-cold-$round.log"; exit 1; }

  start=$(now)
  AIRFLOW_HOME=$airflow_home AIRFLOW__CORE__DAGS_FOLDER="$work/airflow-dags" \
    "$python" -m airflow dags test "chain_$tasks" "2024-01-0${round}" >"$work/airflow-$round.log" 2>&1 \
    || { tail -20 "$work/airflow-$round.log"; exit 1; }
  airflow_wall=$(elapsed "$start" "$(now)")

  printf 'round %s: task runner start-up %.2f s | gust warm %.1f s (%.2f s/task) | gust fresh interpreter %.1f s (%.2f s/task) | airflow %.1f s (%.2f s/task)\n' \
    "$round" "$floor" "$gust_wall" "$(per_task "$gust_wall" "$tasks")" \
    "$cold_wall" "$(per_task "$cold_wall" "$tasks")" \
    "$airflow_wall" "$(per_task "$airflow_wall" "$tasks")"
done
