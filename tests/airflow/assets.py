"""Writes what Airflow makes of dag-factory's asset examples in assets/: each DAG's asset
condition (`as_expression()`, the REST API's `asset_expression`), its timetable's class, and
each task's outlets and inlets as (name, uri, group). crates/gust-dagfile/tests/assets.rs
compares Gust's reading of the same files to assets.golden.json.

dag-factory 1.1.0 builds the `datasets:` forms of `schedule` only on Airflow 2 (on Airflow 3 it
passes the map to the DAG, which refuses it), refuses `schedule_interval` on Airflow 3, and its
YAML loader knows no `!and`/`!or` tags, nor its helpers `or:`/`and:` maps. So that the files mean what dag-factory documents, this
script takes dag-factory's Airflow 2 path for `schedule` (its own helpers, with Airflow 3's
Asset), reads `schedule_interval` as `schedule`, and reads `!and`/`!or` lists as the
`__and__`/`__or__` maps dag-factory's loader combines. Run with the Python of a virtualenv
holding Airflow 3.3.2 and dag-factory 1.1.0:

    python tests/airflow/assets.py
"""

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAGS = HERE / "assets"
GOLDEN = HERE / "assets.golden.json"

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="gust-assets-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["CONFIG_ROOT_DIR"] = str(DAGS)

import yaml  # noqa: E402

for tag, key in (("!and", "__and__"), ("!or", "__or__")):
    yaml.add_constructor(
        tag,
        lambda loader, node, key=key: {key: loader.construct_sequence(node, deep=True)},
        Loader=yaml.FullLoader,
    )

from dagfactory import dagbuilder  # noqa: E402
from dagfactory.dagbuilder import DagBuilder  # noqa: E402
from dagfactory.dagfactory import _DagFactory  # noqa: E402
from dagfactory.exceptions import DagFactoryConfigException  # noqa: E402
from airflow.timetables.assets import AssetOrTimeSchedule  # noqa: E402

original = DagBuilder.configure_schedule


def condition_text(node):
    """dag-factory's YAML condition (`{or: [...]}`, `{and: [...]}`) as the condition string its
    loader makes of the `__or__`/`__and__` maps it knows (dag-factory 1.1.0 cannot read the
    `or:`/`and:` spelling of example_dataset_with_file.yml at all)."""
    if isinstance(node, dict) and len(node) == 1:
        (op, items), = node.items()
        joiner = {"or": " | ", "__or__": " | ", "and": " & ", "__and__": " & "}[op]
        return "(" + joiner.join(condition_text(item) for item in items) + ")"
    return node


def configure_schedule(dag_params, dag_kwargs):
    if "schedule_interval" in dag_params:
        dag_params["schedule"] = dag_params.pop("schedule_interval")
    schedule = dag_params.get("schedule")
    if isinstance(schedule, dict) and "datasets" in schedule:
        datasets = condition_text(schedule.pop("datasets"))
        conditions = dagbuilder.utils.parse_list_datasets(datasets)
        if "file" in schedule:
            dag_kwargs["schedule"] = DagBuilder.process_file_with_datasets(schedule.pop("file"), conditions)
        else:
            assets = DagBuilder.evaluate_condition_with_datasets(conditions)
            if "timetable" in schedule:
                assets = AssetOrTimeSchedule(timetable=schedule.pop("timetable"), assets=assets)
            dag_kwargs["schedule"] = assets
        return
    original(dag_params, dag_kwargs)


DagBuilder.configure_schedule = staticmethod(configure_schedule)

# Airflow 2's module path of BashOperator, which the older examples name.
import airflow.providers.standard.operators.bash as bash  # noqa: E402

sys.modules.setdefault("airflow.operators.bash_operator", bash)

# The producer in asset_triggered_dags.yml names `utils.generate_data`.
sys.modules.setdefault("utils", type(sys)("utils"))
sys.modules["utils"].generate_data = lambda: None


def expression(condition):
    """`as_expression()` of Airflow's serialized condition (the SDK's objects lack it)."""
    kind = type(condition).__name__.removeprefix("Serialized")
    if kind == "AssetAll":
        return {"all": [expression(c) for c in condition.objects]}
    if kind == "AssetAny":
        return {"any": [expression(c) for c in condition.objects]}
    return {"asset": {"uri": condition.uri, "name": condition.name, "group": condition.group}}


def assets_of(items):
    return [[a.name, a.uri, a.group] for a in items]


def main() -> None:
    out = {}
    for path in sorted(DAGS.glob("*.yml")):
        try:
            dags = _DagFactory(str(path)).build_dags()
        except DagFactoryConfigException as err:
            # A file dag-factory itself refuses (a task without an operator): Gust must too.
            out[path.name] = {"refused": str(err)}
            continue
        for dag_id, dag in sorted(dags.items()):
            timetable = dag.timetable
            condition = getattr(timetable, "asset_condition", None)
            tasks = {
                t.task_id: {"outlets": assets_of(t.outlets), "inlets": assets_of(t.inlets)}
                for t in dag.tasks
                if t.outlets or t.inlets
            }
            out.setdefault(path.name, {})[dag_id] = {
                "assets": expression(condition) if condition is not None else None,
                "timetable": type(timetable).__name__,
                "tasks": tasks,
            }
    GOLDEN.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
