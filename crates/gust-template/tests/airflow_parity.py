"""Renders airflow_parity.json's cases with Airflow's own template environment and context
accessors, to check the expected texts against Airflow (Gust's test checks Gust against them).

Run by hand where apache-airflow 3 is installed:  python airflow_parity.py
(e.g. python3 -m venv venv && venv/bin/pip install apache-airflow==3.3.2)
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

FIXTURE = json.loads((Path(__file__).parent / "airflow_parity.json").read_text())
CTX = FIXTURE["context"]

# Airflow reads variables and connections from these environment variables (its
# EnvironmentVariablesBackend), so the real accessors below answer without a database.
for key, value in CTX["variables"].items():
    os.environ[f"AIRFLOW_VAR_{key.upper()}"] = value
for conn_id, fields in CTX["connections"].items():
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(fields)

import pendulum  # noqa: E402
from airflow.sdk import DAG  # noqa: E402
from airflow.sdk.execution_time import macros  # noqa: E402
from airflow.sdk.execution_time.context import ConnectionAccessor, VariableAccessor  # noqa: E402


def context():
    logical = pendulum.parse(CTX["logical_date"])
    params = dict(CTX["params"])
    params.update(CTX["conf"])  # Airflow's dag_run_conf_overrides_params
    return {
        "ds": logical.strftime("%Y-%m-%d"),
        "ds_nodash": logical.strftime("%Y%m%d"),
        "ts": logical.isoformat(),
        "logical_date": logical,
        "data_interval_start": logical,
        "data_interval_end": pendulum.parse(CTX["data_interval_end"]),
        "run_id": CTX["run_id"],
        "params": params,
        "dag_run": SimpleNamespace(conf=CTX["conf"], run_id=CTX["run_id"], logical_date=logical),
        "var": {"value": VariableAccessor(False), "json": VariableAccessor(True)},
        "conn": ConnectionAccessor(),
        "macros": macros,
    }


def main():
    env = DAG(dag_id=CTX["dag_id"], schedule=None).get_template_env()
    bad = 0
    for source, expected in FIXTURE["cases"]:
        got = env.from_string(source).render(**context())
        if got != expected:
            bad += 1
            print(f"DIFFERS {source!r}\n  airflow: {got!r}\n  fixture: {expected!r}")
    for source in FIXTURE["failures"]:
        try:
            got = env.from_string(source).render(**context())
        except Exception:  # noqa: BLE001 - any failure is what the fixture says
            continue
        bad += 1
        print(f"RENDERS {source!r} -> {got!r}, but the fixture says it fails")
    # What Gust refuses on purpose (`+`/`-` between dates and timedeltas, which minijinja cannot
    # do): Airflow renders these, and the fixture records what it prints.
    for source, expected in FIXTURE["gust_refuses"]:
        got = env.from_string(source).render(**context())
        if got != expected:
            bad += 1
            print(f"DIFFERS {source!r}\n  airflow: {got!r}\n  fixture: {expected!r}")
    total = len(FIXTURE["cases"]) + len(FIXTURE["failures"]) + len(FIXTURE["gust_refuses"])
    print(f"{total - bad} passed, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
