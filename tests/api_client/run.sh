#!/usr/bin/env bash
# Airflow's own Python client against a running Gust: starts `gust standalone` on a free port in
# a throwaway GUST_HOME (the example DAGs plus one broken file), creates an admin, an op and a
# viewer, then runs test_airflow_client.py, which drives the server with apache-airflow-client
# and checks every response against Airflow's OpenAPI document. Exits non-zero on any failure;
# the server is stopped on every exit.
#
# Needs python3 (with venv) and PyPI access the first time; the virtual environment
# (target/ci-venv) and Airflow's OpenAPI document (target/airflow-openapi/) are cached.
# GUST_BIN names a gust binary to use instead of building target/debug/gust.
set -euo pipefail
cd "$(dirname "$0")/../.."

AIRFLOW_VERSION=3.3.2
venv=target/ci-venv
requirements="apache-airflow-client==$AIRFLOW_VERSION jsonschema rfc3339-validator pyyaml"
spec_dir=target/airflow-openapi
spec=$spec_dir/v2-rest-api-generated-$AIRFLOW_VERSION.yaml

# The client, in its own virtual environment (installed again only when the list changes).
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$venv/.api-client-requirements" 2>/dev/null)" != "$requirements" ]; then
  # shellcheck disable=SC2086 # the list is split on purpose
  "$venv/bin/pip" install -q --disable-pip-version-check $requirements
  echo "$requirements" >"$venv/.api-client-requirements"
fi

# Airflow's OpenAPI document, from the apache-airflow-core wheel of the same version.
if [ ! -s "$spec" ]; then
  mkdir -p "$spec_dir"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$spec_dir" "apache-airflow-core==$AIRFLOW_VERSION"
  "$venv/bin/python" - "$spec_dir" "$spec" "$AIRFLOW_VERSION" <<'EOF'
import glob, sys, zipfile
folder, out, version = sys.argv[1:]
wheel = glob.glob(f"{folder}/apache_airflow_core-{version}-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read("airflow/api_fastapi/core_api/openapi/v2-rest-api-generated.yaml"))
EOF
fi

if [ -n "${GUST_BIN:-}" ]; then
  gust=$GUST_BIN
else
  cargo build -q -p gust --bin gust
  gust=${CARGO_TARGET_DIR:-$PWD/target}/debug/gust
fi

home=$(mktemp -d)
server_pid=""
status=1
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$home/server.log" ]; then
    echo "--- the server's log (last 60 lines)" >&2
    tail -n 60 "$home/server.log" >&2
  fi
  rm -rf "$home"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Only this run's settings: none of the caller's GUST__* variables leak in.
for variable in $(compgen -e | grep '^GUST__' || true); do
  unset "$variable"
done
export GUST_HOME=$home
export GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION=false
export GUST__KUBERNETES__RUNTIME=local
# For the configuration endpoints (Airflow answers them only when exposed).
export GUST__API__EXPOSE_CONFIG=true
# For `POST /connections/test` (off by default, as in Airflow).
export GUST__CORE__TEST_CONNECTION=Enabled

# The example DAGs, and one file that does not load, for the import-error endpoints.
cp -r examples/dags "$home/dags"
broken=api_client_broken.yaml
cat >"$home/dags/$broken" <<'EOF'
api_client_broken:
  schedule: "@daily"
  tasks:
    - task_id: a
      operator: no_such_operator
EOF

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$gust" db migrate >/dev/null
users=""
for role in admin op user viewer; do
  password="$role-password-$RANDOM$RANDOM"
  "$gust" users create --username "api-$role" --password "$password" --role "$role" >/dev/null
  users="$users $role:api-$role:$password"
done

"$gust" standalone --port "$port" --dags-folder "$home/dags" >"$home/server.log" 2>&1 &
server_pid=$!

url=http://127.0.0.1:$port
for _ in $(seq 1 120); do
  if "$venv/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('$url/api/v2/monitor/health', timeout=2)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "gust standalone exited before answering" >&2
    exit 1
  fi
  sleep 0.5
done

set +e
GUST_API_URL=$url AIRFLOW_OPENAPI=$spec GUST_API_USERS="$users" GUST_BROKEN_DAG=$broken \
  "$venv/bin/python" tests/api_client/test_airflow_client.py
status=$?
set -e
exit "$status"
