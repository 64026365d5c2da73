# Run by Gust: parses Python DAG files as Airflow 3's DAG processor does, and prints what Gust
# needs of each, one JSON line per file on stdout.
#
# The request (JSON on stdin) names the files, the DAG bundle folder (the DAGs folder, put on
# sys.path as Airflow does), the per-file timeout and how many files parse at once. Airflow is
# imported once here; files are parsed in children forked from this process (Airflow's
# processor forks its parsers the same way), each child parsing a batch of files one after
# another (as `airflow dags reserialize` parses in one process): a fork costs far more than a
# small file's parse. Each file is parsed with Airflow's own BundleDagBag, and each DAG is
# serialized with Airflow's own DagSerialization (a DAG Airflow cannot serialize is an import
# error, as in Airflow). A child still on one file past the timeout is killed: that file gets
# an import error, and the rest of its batch goes to another child, as does the rest of a
# batch whose child died.
#
# What is printed per DAG is the DAG in dag-factory's shape (what Gust reads from YAML), taken
# from the DAG Airflow built: its settings, its tasks with their settings, upstreams, groups and
# the arguments each operator was given (Airflow keeps them; its serialized form keeps only
# template fields). Values YAML cannot hold are said, per task, in "not_expressible".
import datetime
import enum
import gc
import json
import os
import selectors
import signal
import sys
import time
import traceback

request = json.load(sys.stdin)
FILES = request["files"]
BUNDLE = request["bundle_path"]
TIMEOUT = float(request["timeout"])
PARALLELISM = max(1, int(request["parallelism"]))
MAX_BYTES = int(request["max_bytes"])
TRACEBACK_DEPTH = 5
# The most files one child parses: enough to pay a fork for many small files, few enough that
# what one file leaves behind in its process (a changed setting, a patched module) reaches few
# others.
FILES_PER_CHILD = 16

OUT = os.fdopen(os.dup(1), "w")
# A DAG file's prints must not reach the protocol: they go to stderr, which Gust discards.
os.dup2(2, 1)

started = time.monotonic()
from airflow.dag_processing.dagbag import BundleDagBag  # noqa: E402
from airflow.sdk.bases.operator import BaseOperator  # noqa: E402
from airflow.sdk.definitions.mappedoperator import MappedOperator  # noqa: E402
from airflow.serialization.serialized_objects import DagSerialization  # noqa: E402

import importlib  # noqa: E402
import inspect  # noqa: E402

# What most DAG files import, imported once here rather than in every child (a child is a fork
# of this process): Airflow's processor parses in forks of an Airflow-importing parent too.
for _module in (
    "airflow.sdk",
    "airflow.providers.standard.operators.bash",
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.cncf.kubernetes.operators.pod",
):
    try:
        importlib.import_module(_module)
    except Exception:  # An optional provider missing is the DAG file's problem, if it uses it.
        pass

BASE_ARGUMENTS = set(inspect.signature(BaseOperator.__init__).parameters) - {"self", "kwargs"}
# Task settings Gust reads from the operator's attributes rather than from its arguments, with
# Airflow's defaults (a setting at its default is left out, as a YAML file would leave it).
SETTINGS = {
    "owner": "airflow",
    "retries": 0,
    "retry_delay": datetime.timedelta(seconds=300),
    "retry_exponential_backoff": False,
    "max_retry_delay": None,
    "execution_timeout": None,
    "trigger_rule": "all_success",
    "pool": "default_pool",
    "pool_slots": 1,
    "max_active_tis_per_dag": None,
    "max_active_tis_per_dagrun": None,
    "priority_weight": 1,
    "depends_on_past": False,
    "do_xcom_push": None,
    "email_on_failure": True,
    "email_on_retry": True,
}
CALLBACKS = (
    "on_execute_callback",
    "on_success_callback",
    "on_failure_callback",
    "on_retry_callback",
    "on_skipped_callback",
)


class NotExpressible(Exception):
    pass


def timedelta(value):
    return {"__type__": "datetime.timedelta", "seconds": value.total_seconds()}


def plain(value, where):
    """A value as YAML holds it, or NotExpressible naming what it is."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value, where)
    if isinstance(value, datetime.timedelta):
        return timedelta(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [plain(item, where) for item in items]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotExpressible("%s has a key that is not a string (%r)" % (where, key))
            out[key] = plain(item, where)
        return out
    if hasattr(value, "openapi_types") and type(value).__module__.startswith("kubernetes."):
        # A Kubernetes client object: its manifest form, as kubectl writes it.
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(value)
    raise NotExpressible("%s is a %s" % (where, type(value).__qualname__))


def class_path(obj):
    cls = type(obj)
    return "%s.%s" % (cls.__module__, cls.__qualname__)


def callable_path(fn):
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return "%s.%s" % (getattr(fn, "__module__", None) or type(fn).__module__, name)


def asset_shape(value):
    """An asset, an asset alias or a condition of them in dag-factory's shape (an asset map, an
    alias map, `{and: [...]}`, `{or: [...]}`); None for what Gust cannot read (an asset
    reference)."""
    from airflow.sdk.definitions.asset import Asset, AssetAlias, AssetAll, AssetAny

    if isinstance(value, Asset):
        shape = {"__type__": "airflow.sdk.Asset", "name": value.name, "uri": value.uri,
                 "group": value.group}
        if value.extra:
            try:
                shape["extra"] = plain(dict(value.extra), "the asset's extra")
            except NotExpressible:
                return None
        return shape
    if isinstance(value, AssetAlias):
        return {"__type__": "airflow.sdk.AssetAlias", "name": value.name, "group": value.group}
    if isinstance(value, (AssetAll, AssetAny)):
        parts = [asset_shape(item) for item in value.objects]
        if any(part is None for part in parts):
            return None
        return {"and" if isinstance(value, AssetAll) else "or": parts}
    return None


def schedule(dag, problems):
    value = dag.schedule if hasattr(dag, "schedule") else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime.timedelta):
        return timedelta(value)
    if isinstance(value, (list, tuple)):
        parts = [asset_shape(item) for item in value]
        if parts and all(part is not None for part in parts):
            return parts
    else:
        condition = asset_shape(value)
        if condition is not None:
            return {"assets": condition}
    from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule

    if isinstance(value, AssetOrTimeSchedule):
        condition = asset_shape(value.asset_condition)
        time = timetable_shape(value.timetable)
        if condition is not None and time is not None:
            return {"__type__": "airflow.timetables.assets.AssetOrTimeSchedule",
                    "assets": condition, "timetable": time}
    shape = timetable_shape(value)
    if shape is not None:
        return shape
    problems.append(
        "DAG %s: its schedule (%s) cannot be read by Gust yet; use a cron expression, a preset, "
        "a timedelta, None, assets and asset aliases or one of Airflow's cron, delta, events "
        "and continuous timetables" % (dag.dag_id, type(value).__qualname__)
    )
    return None


# Airflow's serialized timetable arguments -> dag-factory's, per class (Gust reads the YAML shape).
TIMETABLE_ARGS = {
    "airflow.timetables.trigger.CronTriggerTimetable": {
        "expression": "cron", "timezone": "timezone", "interval": "interval",
        "run_immediately": "run_immediately",
    },
    "airflow.timetables.trigger.MultipleCronTriggerTimetable": {
        "expressions": "__args__", "timezone": "timezone", "interval": "interval",
        "run_immediately": "run_immediately",
    },
    "airflow.timetables.trigger.DeltaTriggerTimetable": {"delta": "delta", "interval": "interval"},
    "airflow.timetables.interval.CronDataIntervalTimetable": {
        "expression": "cron", "timezone": "timezone",
    },
    "airflow.timetables.interval.DeltaDataIntervalTimetable": {"delta": "delta"},
    "airflow.timetables.events.EventsTimetable": {
        "event_dates": "event_dates", "restrict_to_events": "restrict_to_events",
        "description": "description",
    },
    "airflow.timetables.simple.ContinuousTimetable": {},
    "airflow.timetables.simple.OnceTimetable": {},
    "airflow.timetables.simple.NullTimetable": {},
}


def timetable_shape(value):
    """A timetable object in dag-factory's shape, from Airflow's own serialization of it (what
    Airflow stores, so the arguments are those Airflow schedules with); None for other values
    and for arguments YAML cannot hold (a relativedelta)."""
    try:
        from airflow.serialization.encoders import encode_timetable

        encoded = encode_timetable(value)
    except Exception:
        return None
    kind = encoded.get("__type")
    names = TIMETABLE_ARGS.get(kind)
    if names is None:
        return None
    shape = {"__type__": kind}
    for name, arg in names.items():
        if name not in encoded.get("__var", {}):
            continue
        item = encoded["__var"][name]
        if isinstance(item, dict):  # A relativedelta: months and years have no fixed length.
            return None
        shape[arg] = item
    if kind == "airflow.timetables.events.EventsTimetable":
        # Airflow 3.3's SDK class keeps the dates in the order given (it sorts only when told
        # they are presorted) and the scheduler reads them as presorted: keep Airflow's order.
        shape["presorted"] = True
    return shape


def assets(values):
    """A task's outlets or inlets: its assets and asset aliases (references are left out)."""
    return [shape for shape in (asset_shape(a) for a in values) if shape is not None]


def task_shape(task, dag_module):
    """The task in dag-factory's shape, and what of it YAML cannot hold."""
    out = {"operator": class_path(task)}
    not_expressible = []
    for key, default in SETTINGS.items():
        value = getattr(task, key, None)
        if isinstance(value, enum.Enum):
            value = value.value
        if key == "retry_exponential_backoff":
            value = bool(value)
        if value is None or value == default:
            continue
        if isinstance(value, datetime.timedelta):
            value = timedelta(value)
        out[key] = value
    if task.is_setup:
        out["is_setup"] = True
    if task.is_teardown:
        out["is_teardown"] = True
        out["on_failure_fail_dagrun"] = bool(getattr(task, "_on_failure_fail_dagrun", False))
    if task.doc_md:
        out["doc_md"] = task.doc_md
    if task.outlets:
        out["outlets"] = assets(task.outlets)
    if task.inlets:
        out["inlets"] = assets(task.inlets)
    for name in CALLBACKS:
        callbacks = getattr(task, name, None)
        if not callbacks:
            continue
        callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
        out[name] = [callable_path(fn) for fn in callbacks]
        if any(getattr(fn, "__module__", None) == dag_module for fn in callbacks):
            not_expressible.append("its %s is defined in the DAG file" % name)
    group = task.task_group
    if group is not None and group.group_id is not None:
        out["task_group_name"] = group.group_id
    out["dependencies"] = sorted(task.upstream_task_ids)
    # The operator's own arguments, as it was given them (default_args applied).
    arguments = {}
    given = getattr(task, "_BaseOperator__init_kwargs", None) or {}
    for key, value in given.items():
        if key in BASE_ARGUMENTS or key in CALLBACKS:
            continue
        try:
            arguments[key] = plain(value, "argument %r" % key)
        except NotExpressible as why:
            not_expressible.append(str(why))
    return out, arguments, not_expressible


def expand_literal(value, where):
    """An item of a list a mapped task expands over: as YAML holds it when it can. Otherwise its
    text: the Task SDK, which runs every mapped task of a Python DAG file, reads the item from the
    file itself, and Gust only counts the items."""
    try:
        return plain(value, where)
    except NotExpressible:
        return str(value)


def expand_source(value, where):
    """What a mapped task expands over, in dag-factory's spelling: a list (or a dict, whose items
    are mapped over) written in the file, or an upstream's output as `task.output`; NotMappable
    for what Gust cannot count the items of."""
    from airflow.sdk.definitions.xcom_arg import MapXComArg, PlainXComArg, XComArg

    # `.map(fn)` gives one item per item of what it maps.
    while isinstance(value, MapXComArg):
        value = value.arg
    if isinstance(value, PlainXComArg):
        if value.key == "return_value":
            return "%s.output" % value.operator.task_id
        return "%s.output[%r]" % (value.operator.task_id, value.key)
    if isinstance(value, XComArg):
        raise NotMappable("%s is a %s" % (where, type(value).__name__))
    if isinstance(value, dict):
        return {str(k): expand_literal(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [expand_literal(item, where) for item in value]
    raise NotMappable("%s is a %s" % (where, type(value).__qualname__))


class NotMappable(Exception):
    pass


def mapped_task_shape(task, dag_module):
    """A mapped task (a MappedOperator) in dag-factory's shape: its operator's class, its
    settings, and what it expands over (`expand:` or `expand_kwargs:`)."""
    out, _, not_expressible = task_shape(task, dag_module)
    out["operator"] = "%s.%s" % (task._task_module, task.task_type)
    # A MappedOperator keeps what its instances are given in partial_kwargs.
    push = task.partial_kwargs.get("do_xcom_push")
    if push is not None:
        out["do_xcom_push"] = bool(push)
    expand_input = task._get_specified_expand_input()
    if expand_input.EXPAND_INPUT_TYPE == "dict-of-lists":
        out["expand"] = {
            name: expand_source(value, "expand argument %r" % name)
            for name, value in expand_input.value.items()
        }
    else:
        out["expand_kwargs"] = expand_source(expand_input.value, "expand_kwargs")
    if task.map_index_template:
        out["map_index_template"] = task.map_index_template
    return out, not_expressible


def groups(dag, problems):
    """The DAG's task groups in dag-factory's shape; a mapped group (`@task_group` with
    `.expand`) with what it expands over, as a mapped task's (its tasks, which the Task SDK runs,
    resolve their arguments from the file's own group: Gust only counts the items)."""
    found = {}
    pending = [dag.task_group]
    while pending:
        group = pending.pop()
        for child in group.children.values():
            if hasattr(child, "children"):
                pending.append(child)
                entry = {"prefix_group_id": False}
                if child.tooltip:
                    entry["tooltip"] = child.tooltip
                if group.group_id is not None:
                    entry["parent_group_name"] = group.group_id
                expand_input = getattr(child, "_expand_input", None)
                if expand_input is not None:
                    try:
                        if expand_input.EXPAND_INPUT_TYPE == "dict-of-lists":
                            entry["expand"] = {
                                name: expand_source(value, "expand argument %r" % name)
                                for name, value in expand_input.value.items()
                            }
                        else:
                            entry["expand_kwargs"] = expand_source(
                                expand_input.value, "expand_kwargs"
                            )
                    except NotMappable as what:
                        problems.append(
                            "DAG %s: task group %s maps over what Gust cannot map over yet (%s); "
                            "expand over a list or one upstream's output"
                            % (dag.dag_id, child.group_id, what)
                        )
                found[child.group_id] = entry
    return found


def deadline_shape(dag, problems):
    """A DAG's deadline alerts in Gust's compact YAML form, or None without any."""
    alerts = getattr(dag, "deadline", None)
    if not alerts:
        return None
    alerts = alerts if isinstance(alerts, (list, tuple)) else [alerts]
    shaped = []
    for alert in alerts:
        ref = alert.reference
        kind = type(ref).__name__
        if kind == "DagRunQueuedAtDeadline":
            reference = "DAGRUN_QUEUED_AT"
        elif kind == "DagRunLogicalDateDeadline":
            reference = "DAGRUN_LOGICAL_DATE"
        elif kind == "FixedDatetimeDeadline":
            reference = {"fixed_datetime": ref._datetime.isoformat()}
        elif kind == "AverageRuntimeDeadline":
            reference = {"average_runtime": {"max_runs": ref.max_runs, "min_runs": ref.min_runs}}
        else:
            problems.append("DAG %s: its deadline's reference %s is not one Gust knows; use "
                            "DeadlineReference's DAGRUN_QUEUED_AT, DAGRUN_LOGICAL_DATE, "
                            "FIXED_DATETIME or AVERAGE_RUNTIME" % (dag.dag_id, kind))
            continue
        if not isinstance(alert.interval, datetime.timedelta):
            problems.append("DAG %s: its deadline's interval is a %s; Gust needs a timedelta"
                            % (dag.dag_id, type(alert.interval).__name__))
            continue
        try:
            callback = plain(dict(alert.callback.kwargs or {}), "deadline callback's kwargs")
        except NotExpressible as why:
            problems.append("DAG %s: its %s" % (dag.dag_id, why))
            continue
        callback["callback"] = alert.callback.path
        entry = {"reference": reference, "interval": timedelta(alert.interval), "callback": callback}
        if alert.name:
            entry["name"] = alert.name
        shaped.append(entry)
    return shaped


def dag_shape(dag):
    problems = []
    shape = {}
    shape["schedule"] = schedule(dag, problems)
    if dag.timezone is not None:
        shape["timezone"] = getattr(dag.timezone, "name", str(dag.timezone))
    if dag.start_date is not None:
        shape["start_date"] = dag.start_date.isoformat()
    if dag.end_date is not None:
        shape["end_date"] = dag.end_date.isoformat()
    shape["catchup"] = bool(dag.catchup)
    shape["max_active_runs"] = dag.max_active_runs
    shape["max_active_tasks"] = dag.max_active_tasks
    if dag.dagrun_timeout is not None:
        shape["dagrun_timeout"] = timedelta(dag.dagrun_timeout)
    if dag.description:
        shape["description"] = dag.description
    if dag.doc_md:
        shape["doc_md"] = dag.doc_md
    if dag.tags:
        shape["tags"] = sorted(dag.tags)
    if dag.is_paused_upon_creation is not None:
        shape["is_paused_upon_creation"] = dag.is_paused_upon_creation
    try:
        params = dag.params.dump() if dag.params else {}
        if params:
            shape["params"] = plain(params, "params")
    except NotExpressible as why:
        problems.append("DAG %s: its %s" % (dag.dag_id, why))
    for name in ("on_success_callback", "on_failure_callback"):
        callbacks = getattr(dag, name, None)
        if callbacks:
            callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
            shape[name] = [callable_path(fn) for fn in callbacks]
    deadlines = deadline_shape(dag, problems)
    if deadlines:
        shape["deadline"] = deadlines
    shape["task_groups"] = groups(dag, problems)
    tasks = {}
    arguments = {}
    not_expressible = {}
    dag_module = None
    for task in dag.tasks:
        dag_module = dag_module or _dag_module(dag)
        closest_mapped_group = getattr(task, "get_closest_mapped_task_group", None)
        mapped_group = closest_mapped_group() if closest_mapped_group is not None else None
        if mapped_group is not None and isinstance(task, MappedOperator):
            problems.append(
                "DAG %s: task %s is mapped inside mapped task group %s, which Gust cannot run "
                "yet; map the group or the task, not both"
                % (dag.dag_id, task.task_id, mapped_group.group_id)
            )
            continue
        if isinstance(task, MappedOperator):
            try:
                tasks[task.task_id], why = mapped_task_shape(task, dag_module)
            except NotMappable as what:
                problems.append(
                    "DAG %s: task %s maps over what Gust cannot map over yet (%s); expand over "
                    "a list or one upstream's output" % (dag.dag_id, task.task_id, what)
                )
                continue
            arguments[task.task_id] = {}
        elif isinstance(task, BaseOperator):
            tasks[task.task_id], arguments[task.task_id], why = task_shape(task, dag_module)
        else:
            problems.append(
                "DAG %s: task %s is a %s, which Gust cannot read"
                % (dag.dag_id, task.task_id, type(task).__qualname__)
            )
            continue
        if why:
            not_expressible[task.task_id] = why
    shape["tasks"] = tasks
    return {
        "dag_id": dag.dag_id,
        "dag": shape,
        "arguments": arguments,
        "not_expressible": not_expressible,
        "problems": problems,
    }


def _dag_module(dag):
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == dag.fileloc:
            return name
    return None


def parse(path):
    """One file's result, in the child."""
    began = time.monotonic()
    bag = BundleDagBag(dag_folder=path, bundle_path=BUNDLE, load_op_links=False, safe_mode=True)
    errors = [{"message": message} for message in bag.import_errors.values()]
    dags = []
    for dag in bag.dags.values():
        try:
            DagSerialization.to_dict(dag)
        except Exception:
            errors.append({"message": traceback.format_exc(limit=-TRACEBACK_DEPTH)})
            continue
        try:
            dags.append(dag_shape(dag))
        except Exception:
            errors.append(
                {"message": "Gust could not read DAG %s:\n%s" % (dag.dag_id, traceback.format_exc())}
            )
    return {
        "file": path,
        "dags": dags,
        "errors": errors,
        "seconds": time.monotonic() - began,
    }


def result_line(path):
    """One file's result as a JSON line, in the child."""
    try:
        result = parse(path)
    except BaseException:
        result = {"file": path, "dags": [], "errors": [{"message": traceback.format_exc()}]}
    text = json.dumps(result, default=str)
    if len(text) > MAX_BYTES:
        text = json.dumps(
            {
                "file": path,
                "dags": [],
                "errors": [
                    {
                        "message": "the file's DAGs are %d bytes once read, past Gust's limit of %d"
                        % (len(text), MAX_BYTES)
                    }
                ],
                "seconds": result.get("seconds", 0.0),
            }
        )
    return text.encode() + b"\n"


def child(paths, fd):
    """Parses `paths` one after another, writing each one's line as soon as it is parsed."""
    for path in paths:
        view = memoryview(result_line(path))
        while view:
            written = os.write(fd, view)
            view = view[written:]
    os.close(fd)


def batches(files):
    """The files split into batches, so that the children share the work evenly."""
    size = max(1, min(FILES_PER_CHILD, -(-len(files) // PARALLELISM)))
    return [files[i : i + size] for i in range(0, len(files), size)]


def failed(path, message, seconds):
    return {"file": path, "dags": [], "errors": [{"message": message}], "seconds": seconds}


def main():
    selector = selectors.DefaultSelector()
    pending = batches(list(FILES))
    # read fd -> {pid, paths (those not reported yet), deadline, buffer, began (the current file)}
    running = {}
    while pending or running:
        while pending and len(running) < PARALLELISM:
            paths = pending.pop(0)
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                code = 0
                try:
                    child(paths, write_fd)
                except BaseException:
                    code = 1
                os._exit(code)
            os.close(write_fd)
            now = time.monotonic()
            running[read_fd] = {
                "pid": pid, "paths": list(paths), "deadline": now + TIMEOUT, "buffer": b"", "began": now,
            }
            selector.register(read_fd, selectors.EVENT_READ)
        nearest = min(entry["deadline"] for entry in running.values())
        wait = max(0.0, nearest - time.monotonic())
        for key, _ in selector.select(timeout=wait):
            fd = key.fd
            entry = running[fd]
            chunk = os.read(fd, 1 << 16)
            if chunk:
                entry["buffer"] += chunk
                *lines, entry["buffer"] = entry["buffer"].split(b"\n")
                for line in lines:
                    try:
                        result = json.loads(line)
                    except ValueError:
                        continue
                    if result.get("file") in entry["paths"]:
                        entry["paths"].remove(result["file"])
                    emit(result)
                    # The next file's time starts now.
                    now = time.monotonic()
                    entry["began"] = now
                    entry["deadline"] = now + TIMEOUT
                continue
            selector.unregister(fd)
            os.close(fd)
            del running[fd]
            _, status = os.waitpid(entry["pid"], 0)
            if entry["paths"]:
                # The child died on its current file: that file is the one to blame, and the
                # rest of its batch is parsed by another child.
                path, *rest = entry["paths"]
                emit(failed(path, "parsing the file ended its process (%s)" % _status(status),
                            time.monotonic() - entry["began"]))
                if rest:
                    pending.append(rest)
        now = time.monotonic()
        for fd, entry in list(running.items()):
            if now < entry["deadline"]:
                continue
            os.kill(entry["pid"], signal.SIGKILL)
            os.waitpid(entry["pid"], 0)
            selector.unregister(fd)
            os.close(fd)
            del running[fd]
            path, *rest = entry["paths"] or [None]
            if path is not None:
                emit(failed(path, "parsing the file took longer than [dag_processor] "
                            "dag_file_processor_timeout (%gs) and was killed" % TIMEOUT,
                            now - entry["began"]))
            if rest:
                pending.append(rest)


def _status(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "exit code %d" % os.WEXITSTATUS(status)


def emit(result):
    OUT.write(json.dumps(result, default=str))
    OUT.write("\n")
    OUT.flush()


def warm_up():
    """Parses and serializes a small DAG once here, so that what the first parse sets up
    (importers, serializers, settings) is set up before forking, not again in every child."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gust-warm-up-") as folder:
        path = os.path.join(folder, "warm_up_dag.py")
        with open(path, "w") as f:
            f.write(
                "from airflow.sdk import DAG\n"
                "from airflow.providers.standard.operators.bash import BashOperator\n"
                "with DAG('gust_warm_up', schedule=None):\n"
                "    BashOperator(task_id='t', bash_command='true')\n"
            )
        try:
            bag = BundleDagBag(dag_folder=path, bundle_path=folder, load_op_links=False)
            for dag in bag.dags.values():
                DagSerialization.to_dict(dag)
        except Exception:  # Only a warm-up: the files themselves say what is wrong.
            pass


warm_up()
# Children share the parent's objects copy-on-write: frozen, the garbage collector does not
# touch (and so copy) them in every child, as Airflow's processor does before forking.
gc.collect()
gc.freeze()
OUT.write(json.dumps({"ready": time.monotonic() - started}) + "\n")
OUT.flush()
main()
