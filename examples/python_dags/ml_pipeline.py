"""The seed ML pipeline's processing step (seed 000) as a Python DAG: an init container
downloads the step's inputs into a shared emptyDir volume, the main container runs the step
on them and returns where its output went through XCom, and the next task pulls it.

The pod is described with the Kubernetes client's objects (k8s.V1Container, V1Volume...), as
the seed writes it; Gust runs it natively, with the same pod Airflow's KubernetesPodOperator
would build. Without a cluster: gust dags test ml_pipeline --local-pods
"""

from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from kubernetes.client import models as k8s

INPUT = "/opt/ml/processing/input"

oss_volume = k8s.V1Volume(name="oss-volume", empty_dir=k8s.V1EmptyDirVolumeSource())

with DAG(
    "ml_pipeline",
    description="an init container feeds a processing pod, whose XCom the next task pulls (seed 000)",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["example", "seed", "kubernetes"],
) as dag:
    plan = BashOperator(
        task_id="plan",
        bash_command="echo oss://ml-bucket/jobs/{{ ds_nodash }}",
    )

    download = k8s.V1Container(
        name="init-container",
        image="ml-oss:0.0.8",
        env=[k8s.V1EnvVar(name="PROCESSING_INPUTS", value="{{ ti.xcom_pull(task_ids='plan') }}")],
        volume_mounts=[k8s.V1VolumeMount(mount_path=INPUT, name="oss-volume", read_only=False)],
        command=["sh", "-c"],
        args=[f'echo "features from $PROCESSING_INPUTS" > {INPUT}/features.csv'],
    )

    process = KubernetesPodOperator(
        task_id="process",
        name="ml-pipeline-pod",
        namespace="airflow",
        image="ml-xgboost:0.0.6",
        cmds=["bash", "-cx"],
        arguments=[
            f"cat {INPUT}/features.csv && mkdir -p /airflow/xcom"
            " && echo '{\"model\": \"'$PROCESSING_OUTPUT_PATH'/model\"}' > /airflow/xcom/return.json"
        ],
        env_vars=[k8s.V1EnvVar(name="PROCESSING_OUTPUT_PATH", value="oss://ml-bucket/jobs/{{ ds_nodash }}/process")],
        volumes=[oss_volume],
        volume_mounts=[k8s.V1VolumeMount(mount_path=INPUT, name="oss-volume", read_only=True)],
        init_containers=[download],
        on_finish_action="delete_pod",
        do_xcom_push=True,
        get_logs=True,
    )

    report = BashOperator(
        task_id="report",
        bash_command="echo model at {{ ti.xcom_pull(task_ids='process')['model'] }}",
    )

    plan >> process >> report
