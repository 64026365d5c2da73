# Run by Gust: one callback of a task it runs natively, or of a DAG, as Airflow's DAG processor
# runs them: the DAG file is built by dag-factory (through Gust's loader), the context is built
# from the run and the task instance Gust describes in the request file (argv[1]).
import json
import runpy
import sys
import uuid

with open(sys.argv[1]) as f:
    request = json.load(f)

namespace = runpy.run_path(request["loader"], run_name="gust_callback_loader")

from airflow.sdk import DAG  # noqa: E402
from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext  # noqa: E402
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance  # noqa: E402

dag = next(
    (v for v in namespace.values() if isinstance(v, DAG) and v.dag_id == request["dag_id"]),
    None,
)
if dag is None:
    sys.exit("dag-factory did not build DAG %r from %s" % (request["dag_id"], request["dag_file"]))

run = DagRun.model_validate(request["dag_run"])
attribute = "on_%s_callback" % request["event"]
task_request = request.get("task")
context = None
if task_request:
    task = dag.get_task(task_request["task_id"])
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task.task_id,
        dag_id=dag.dag_id,
        run_id=run.run_id,
        try_number=task_request["try_number"],
        map_index=-1,
        state=task_request["state"],
        task=task,
        max_tries=task.retries,
        _ti_context_from_server=TIRunContext.model_construct(dag_run=run, max_tries=task.retries),
    )
    context = ti.get_template_context()
if request["of_dag"]:
    # As Airflow's DAG processor: the context of the task instance that decided the run, if
    # any, with the reason.
    if context is None:
        context = {"dag": dag, "run_id": run.run_id}
    context["reason"] = request.get("reason")
    callbacks = getattr(dag, attribute, None)
    owner = "DAG %s" % dag.dag_id
else:
    if request.get("reason"):
        context["exception"] = request["reason"]
    callbacks = getattr(task, attribute, None)
    owner = "task %s" % task.task_id

if not callbacks:
    sys.exit("%s has no %s in the DAG dag-factory built" % (owner, attribute))
callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
failed = 0
for callback in callbacks:
    name = getattr(callback, "__name__", type(callback).__name__)
    print("running %s's %s: %s" % (owner, attribute, name), flush=True)
    try:
        callback(context)
    except Exception as error:  # A callback's failure is logged, as Airflow does.
        failed += 1
        import traceback

        traceback.print_exc()
        print("%s failed: %s" % (name, error), flush=True)
sys.exit(1 if failed else 0)
