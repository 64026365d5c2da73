"""Writes the pods Airflow's KubernetesPodOperator builds for the DAG files in kpo/.

Each DAG file is loaded with dag-factory, as Airflow loads it, and every KubernetesPodOperator
task's pod is built with the operator's own `build_pod_request_obj` (a dry run: no cluster, no
task instance, so no try labels). The result, {dag_id: {task_id: pod manifest}}, is written as
kpo_pods.golden.json, which crates/gust-kube/tests/airflow_parity.rs compares Gust's pods to.

Run with the Python of a virtualenv holding Airflow, dag-factory and the cncf-kubernetes
provider (the Rust test runs it when GUST_AIRFLOW_PYTHON names that Python):

    GUST_AIRFLOW_PYTHON=/path/to/venv/bin/python cargo test -p gust-kube --test airflow_parity
"""

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAGS = HERE / "kpo"
GOLDEN = HERE / "kpo_pods.golden.json"

# No user configuration or metadata database: a throwaway AIRFLOW_HOME.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="gust-kpo-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from dagfactory import load_yaml_dags  # noqa: E402
from airflow.sdk import DAG  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # noqa: E402
from importlib.metadata import version  # noqa: E402


def main() -> None:
    out = {}
    # KPO opens pod_template_file relative to the working folder; Gust relative to the DAG file.
    os.chdir(DAGS)
    for path in sorted(DAGS.glob("*.yaml")):  # pod templates are in templates/
        loaded = {}
        load_yaml_dags(globals_dict=loaded, config_filepath=str(path), defaults_config_path=str(DAGS))
        dags = {d.dag_id: d for d in loaded.values() if isinstance(d, DAG)}
        for dag_id, dag in sorted(dags.items()):
            pods = {}
            for task in dag.tasks:
                if isinstance(task, KubernetesPodOperator):
                    pod = task.build_pod_request_obj(dry_run=True)
                    pods[task.task_id] = ApiClient().sanitize_for_serialization(pod)
            out[dag_id] = dict(sorted(pods.items()))
    versions = {
        "airflow": __import__("airflow").__version__,
        "cncf_kubernetes": version("apache-airflow-providers-cncf-kubernetes"),
        "dag_factory": __import__("dagfactory").__version__,
    }
    GOLDEN.write_text(json.dumps({"built_by": versions, "pods": out}, indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    main()
