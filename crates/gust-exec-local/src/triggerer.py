# Gust's triggerer: runs Airflow triggers, many at once on one asyncio loop, for the scheduler
# that started it. It reads JSON lines on stdin:
#   {"op": "run", "id": ID, "classpath": "module.Class", "kwargs": {...serde...}, "path": DIR}
#   {"op": "cancel", "id": ID}
# and answers each trigger's end, once, on stdout:
#   {"id": ID, "event": <the first TriggerEvent's payload, serialized by Airflow's serde>}
#   {"id": ID, "end": "success" | "failed" | "skipped"}   (a BaseTaskEndEvent)
#   {"id": ID, "error": [traceback lines]}
# Anything else written to stdout (a trigger's print) goes to stderr, which Gust logs.
import asyncio
import importlib
import json
import os
import sys
import traceback

_PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

_TASKS = {}


def _send(message):
    _PROTOCOL.write(json.dumps(message) + "\n")
    _PROTOCOL.flush()


def _build(classpath, kwargs, path):
    from airflow.sdk.serde import deserialize

    if path and path not in sys.path:
        sys.path.insert(0, path)
    module, _, name = classpath.rpartition(".")
    if not module:
        raise ImportError(f"trigger class {classpath!r} names no module")
    cls = getattr(importlib.import_module(module), name)
    if isinstance(kwargs, str):
        raise TypeError("encrypted trigger kwargs are not supported by Gust's triggerer")
    return cls(**deserialize(kwargs))


async def _run(trigger_id, classpath, kwargs, path):
    trigger = None
    try:
        from airflow.sdk.serde import serialize
        from airflow.triggers.base import BaseTaskEndEvent

        trigger = _build(classpath, kwargs, path)
        async for event in trigger.run():
            if isinstance(event, BaseTaskEndEvent):
                state = getattr(event.task_instance_state, "value", event.task_instance_state)
                _send({"id": trigger_id, "end": str(state)})
            else:
                _send({"id": trigger_id, "event": serialize(event.payload)})
            break
        else:
            _send({"id": trigger_id, "error": [
                "Trigger exited without sending an event. Dependent tasks will be failed."
            ]})
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure is the trigger's, reported
        _send({"id": trigger_id, "error": traceback.format_exception(exc)})
    finally:
        _TASKS.pop(trigger_id, None)
        if trigger is not None:
            try:
                await trigger.cleanup()
            except Exception:  # noqa: BLE001
                traceback.print_exc()


async def _main():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            message = json.loads(line)
            op, trigger_id = message["op"], message["id"]
        except (ValueError, KeyError, TypeError) as exc:
            print(f"gust triggerer: unreadable request: {exc}", file=sys.stderr)
            continue
        if op == "run" and trigger_id not in _TASKS:
            _TASKS[trigger_id] = asyncio.create_task(_run(
                trigger_id, message.get("classpath", ""), message.get("kwargs", {}),
                message.get("path"),
            ))
        elif op == "cancel":
            task = _TASKS.pop(trigger_id, None)
            if task is not None:
                task.cancel()
    for task in list(_TASKS.values()):
        task.cancel()


asyncio.run(_main())
