# Sourced by the Python-chain benchmarks (run from the workspace root).
#
#   chain_setup [PYTHON] [ROUNDS]
#
# Sets `python` (a venv's python with apache-airflow==3.3.2 and dag-factory==1.1.0; default
# target/airflow-venv/bin/python, which .ci/run makes), `rounds` (default 3), `gust` (GUST_BIN,
# else target/release/gust, else target/debug/gust), `tasks` (20) and `work` (a fresh folder).
chain_setup() {
  # Absolute, but not resolved: a venv's python is a symlink whose target is not the venv.
  python=${1:-target/airflow-venv/bin/python}
  python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"
  rounds=${2:-3}
  gust=${GUST_BIN:-}
  if [ -z "$gust" ]; then
    if [ -x target/release/gust ]; then gust=target/release/gust; else gust=target/debug/gust; fi
  fi
  gust=$(realpath "$gust")
  tasks=20
  work=$(mktemp -d)
}

#   write_chain_dags WORK TASKS
#
# WORK/dags/chain.yaml: a dag-factory file, DAG `chain_TASKS`, TASKS PythonOperator tasks in a
# chain (each returns n + 1, its callable in WORK/callables.py); WORK/airflow-dags/load.py: the
# Airflow DAG file that builds it with dag-factory, so both engines read the same file.
write_chain_dags() {
  local work=$1 tasks=$2 i
  mkdir -p "$work/dags" "$work/airflow-dags"
  cat >"$work/callables.py" <<'PY'
def step(n, ti=None):
    return n + 1
PY
  {
    echo "chain_$tasks:"
    echo "  schedule: null"
    echo "  start_date: 2024-01-01"
    echo "  catchup: false"
    echo "  tasks:"
    for i in $(seq 1 "$tasks"); do
      echo "    t$i:"
      echo "      operator: airflow.providers.standard.operators.python.PythonOperator"
      echo "      python_callable_name: step"
      echo "      python_callable_file: $work/callables.py"
      echo "      op_kwargs: {n: $i}"
      if [ "$i" -gt 1 ]; then echo "      dependencies: [t$((i - 1))]"; fi
    done
  } >"$work/dags/chain.yaml"
  cat >"$work/airflow-dags/load.py" <<PY
# An Airflow DAG file: dag-factory builds the YAML file's DAGs.
from dagfactory import load_yaml_dags
load_yaml_dags(globals_dict=globals(), config_filepath="$work/dags/chain.yaml")
PY
}
