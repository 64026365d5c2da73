"""The seed documents' first pod DAG (seed 001, "Airflow on Kubernetes (Part 1)") as Airflow 3
writes it: two pods after a start task. `passing-task` runs Python in a Python image and
succeeds; `failing-task` fails on purpose, to show how a failed pod is reported.

The same DAG in YAML is examples/dags/kubernetes/kubernetes_sample.yaml; both give the same
pods. Without a cluster: gust dags test kubernetes_sample_py --local-pods
"""

from datetime import datetime, timedelta

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

default_args = {
    "owner": "airflow",
    "depends_on_past": False,
    "email": ["airflow@example.com"],
    "email_on_failure": False,
    "email_on_retry": False,
    "retries": 0,
    "retry_delay": timedelta(minutes=5),
}

with DAG(
    "kubernetes_sample_py",
    description="a passing and a failing pod (seed 001)",
    default_args=default_args,
    schedule=timedelta(minutes=10),
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "seed", "kubernetes"],
) as dag:
    start = EmptyOperator(task_id="run_this_first")

    passing = KubernetesPodOperator(
        namespace="default",
        image="python:3.12-slim",
        cmds=["python3", "-c"],
        arguments=["print('hello world')"],
        labels={"foo": "bar"},
        name="passing-test",
        task_id="passing-task",
        get_logs=True,
    )

    # ubuntu:16.04 has no Python, so on a cluster this pod fails to start its command; the
    # local pod runtime has Python, so the script fails by itself to show the same thing.
    failing = KubernetesPodOperator(
        namespace="default",
        image="ubuntu:16.04",
        cmds=["python3", "-c"],
        arguments=["import sys; sys.exit('this image has no Python: the pod fails on purpose')"],
        labels={"foo": "bar"},
        name="fail",
        task_id="failing-task",
        get_logs=True,
    )

    start >> [passing, failing]
