"""Drives a running Gust API server with Airflow's own Python client (apache-airflow-client),
unmodified, and checks every answer it received against Airflow's OpenAPI document.

Run by tests/api_client/run.sh, which starts the server and passes, in the environment:
  GUST_API_URL       the server's base URL (http://127.0.0.1:PORT)
  AIRFLOW_OPENAPI    the path of Airflow's v2-rest-api-generated.yaml
  GUST_API_USERS     "role:username:password" for admin, op, user and viewer, space-separated
  GUST_BROKEN_DAG    the file name of a DAG file that does not load (for import errors)

Every scenario runs even when an earlier one failed; the script prints each failure on one line
and exits 1 if there was any.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

import jsonschema
import yaml
from airflow_client import client
from airflow_client.client import ApiClient, Configuration
from airflow_client.client.exceptions import ApiException

BASE_URL = os.environ["GUST_API_URL"].rstrip("/")
SPEC_PATH = os.environ["AIRFLOW_OPENAPI"]
BROKEN_DAG = os.environ.get("GUST_BROKEN_DAG", "")
USERS = {
    role: (name, password)
    for role, name, password in (entry.split(":", 2) for entry in os.environ["GUST_API_USERS"].split())
}

# The example DAG whose `count` task pushes `params.limit` as its XCom; the trigger's conf
# overrides the param.
DAG_ID = "example_templating"
RUN_TIMEOUT_S = 180


@dataclass
class Recorded:
    """One HTTP exchange as the client saw it."""

    method: str
    url: str
    status: int
    content_type: str
    body: bytes


@dataclass
class Recorder:
    """Keeps every response any ApiClient receives (the client's REST layer is wrapped)."""

    exchanges: list[Recorded] = field(default_factory=list)

    def install(self) -> None:
        original = ApiClient.call_api
        recorder = self

        def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
            response = original(self, method, url, header_params, body, post_params, _request_timeout)
            data = response.read()  # kept on the response: deserialising reads it again
            recorder.exchanges.append(
                Recorded(method, url, response.status, response.getheader("content-type") or "", data or b"")
            )
            return response

        ApiClient.call_api = call_api


RECORDER = Recorder()
RECORDER.install()
FAILURES: list[str] = []


def token(role: str) -> str:
    """An access token from `POST /auth/token`."""
    name, password = USERS[role]
    request = urllib.request.Request(
        f"{BASE_URL}/auth/token",
        data=json.dumps({"username": name, "password": password}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201, f"POST /auth/token answered {response.status}"
        return json.load(response)["access_token"]


def api(role: str | None) -> ApiClient:
    """A client logged in as `role` (None: without credentials)."""
    config = Configuration(host=BASE_URL)
    if role is not None:
        config.access_token = token(role)
    return ApiClient(config)


def expect_status(status: int, call: Callable[[], Any], what: str) -> ApiException:
    """Runs `call`, which must fail with `status`."""
    try:
        call()
    except ApiException as err:
        assert err.status == status, f"{what}: expected {status}, got {err.status}: {err.body}"
        return err
    raise AssertionError(f"{what}: expected {status}, but it succeeded")


def scenario(fn: Callable[[], None]) -> Callable[[], None]:
    """Runs `fn` now; a failure is recorded, and the next scenario runs."""
    started = time.monotonic()
    try:
        fn()
        print(f"ok    {fn.__name__} ({time.monotonic() - started:.1f}s)")
    except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the run
        ours = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == __file__]
        line = ours[-1].lineno if ours else "?"
        message = " | ".join(part.strip() for part in str(err).splitlines() if part.strip())
        FAILURES.append(f"{fn.__name__}: {type(err).__name__}: {message} (line {line})")
        print(f"FAIL  {fn.__name__}: {message}")
    return fn


# --- scenarios ------------------------------------------------------------------------------

admin, op, user, viewer, anonymous = api("admin"), api("op"), api("user"), api("viewer"), api(None)


@scenario
def health_and_version_need_no_credentials():
    health = client.MonitorApi(anonymous).get_health()
    assert health.metadatabase.status == "healthy", health
    version = client.VersionApi(anonymous).get_version()
    assert version.version, version


@scenario
def requests_without_a_token_are_401():
    expect_status(401, lambda: client.DAGApi(anonymous).get_dags(), "GET /dags without a token")
    expect_status(401, lambda: client.VariableApi(anonymous).get_variables(), "GET /variables without a token")
    bad = ApiClient(Configuration(host=BASE_URL, access_token="not.a.token"))
    expect_status(401, lambda: client.PoolApi(bad).get_pools(), "GET /pools with a forged token")


@scenario
def viewers_read_but_their_changes_are_403():
    dags = client.DAGApi(viewer).get_dags()
    assert dags.total_entries >= 1
    expect_status(403, lambda: client.DAGApi(viewer).patch_dag(DAG_ID, client.DAGPatchBody(is_paused=True)), "viewer pauses")
    expect_status(
        403,
        lambda: client.VariableApi(viewer).post_variable(client.VariableBody(key="nope", value="x")),
        "viewer creates a variable",
    )
    expect_status(403, lambda: client.PoolApi(viewer).delete_pool("default_pool"), "viewer deletes a pool")
    expect_status(
        403,
        lambda: client.DagRunApi(viewer).trigger_dag_run(DAG_ID, client.TriggerDAGRunPostBody(logical_date=None)),
        "viewer triggers a run",
    )
    # Airflow's Viewer reads neither variables nor connections.
    expect_status(403, lambda: client.VariableApi(viewer).get_variables(), "viewer lists variables")
    expect_status(403, lambda: client.ConnectionApi(viewer).get_connections(), "viewer lists connections")
    assert client.PoolApi(viewer).get_pools().total_entries >= 1


@scenario
def dags_are_listed_read_paused_and_unpaused():
    dag_api = client.DAGApi(op)
    deadline = time.monotonic() + 60
    while True:  # the scheduler records the folder's DAGs shortly after it starts
        dags = dag_api.get_dags(limit=100)
        ids = {d.dag_id for d in dags.dags}
        if DAG_ID in ids or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert DAG_ID in ids, f"{DAG_ID} not among {sorted(ids)}"
    assert dags.total_entries == len(dags.dags)
    dag = dag_api.get_dag(DAG_ID)
    assert dag.dag_id == DAG_ID and not dag.is_paused, dag
    details = dag_api.get_dag_details(DAG_ID)
    assert details.dag_id == DAG_ID
    paused = dag_api.patch_dag(DAG_ID, client.DAGPatchBody(is_paused=True))
    assert paused.is_paused
    assert dag_api.get_dags(paused=True, dag_id_pattern=DAG_ID).total_entries == 1
    unpaused = dag_api.patch_dag(DAG_ID, client.DAGPatchBody(is_paused=False))
    assert not unpaused.is_paused
    err = expect_status(404, lambda: dag_api.get_dag("no_such_dag"), "a missing DAG")
    assert "no_such_dag" in json.loads(err.body)["detail"]
    tags = client.DAGApi(viewer).get_dag_tags(tag_name_pattern="exam")
    assert tags.tags == ["example"], tags


@scenario
def users_act_on_dags_but_not_on_variables_connections_or_pools():
    patched = client.DAGApi(user).patch_dag(DAG_ID, client.DAGPatchBody(is_paused=False))
    assert patched.is_paused is False, patched
    expect_status(403, lambda: client.VariableApi(user).get_variables(), "user lists variables")
    expect_status(403, lambda: client.ConnectionApi(user).get_connections(), "user lists connections")
    expect_status(
        403,
        lambda: client.PoolApi(user).post_pool(client.PoolBody(name="api_test_user_pool", slots=1)),
        "user creates a pool",
    )


@scenario
def a_triggered_run_succeeds_with_its_conf_its_logs_and_its_xcom():
    runs = client.DagRunApi(op)
    run = runs.trigger_dag_run(
        DAG_ID,
        client.TriggerDAGRunPostBody(dag_run_id="api_client_test", logical_date=None, conf={"limit": 7}),
    )
    assert run.dag_run_id == "api_client_test", run
    assert run.conf == {"limit": 7}, run.conf
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        run = runs.get_dag_run(DAG_ID, "api_client_test")
        state = str(run.state.value if hasattr(run.state, "value") else run.state)
        if state in ("success", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert state == "success", f"the run ended {state}"
    listed = runs.get_dag_runs(DAG_ID)
    assert "api_client_test" in {r.dag_run_id for r in listed.dag_runs}

    tis = client.TaskInstanceApi(op).get_task_instances(DAG_ID, "api_client_test")
    states = {ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state) for ti in tis.task_instances}
    assert states == {"dates": "success", "count": "success", "report": "success"}, states
    count = client.TaskInstanceApi(op).get_task_instance(DAG_ID, "api_client_test", "count")
    assert count.try_number == 1, count.try_number

    log = client.TaskInstanceApi(op).get_log(DAG_ID, "api_client_test", "report", 1)
    text = "\n".join(
        (entry if isinstance(entry, str) else getattr(entry, "event", str(entry)))
        for entry in (log.content.actual_instance if hasattr(log.content, "actual_instance") else log.content)
    )
    assert "orders limit was 7" in text, text[-2000:]

    xcom = client.XComApi(op).get_xcom_entry(DAG_ID, "count", "api_client_test", "return_value")
    xcom = getattr(xcom, "actual_instance", xcom)  # a oneOf of the native and string forms
    assert str(xcom.value) == "7", xcom
    entries = client.XComApi(op).get_xcom_entries(DAG_ID, "api_client_test", "count")
    assert entries.total_entries >= 1


@scenario
def a_finished_run_is_counted_waited_on_explained_and_listed():
    runs = client.DagRunApi(viewer)
    # The run finished (the scenario above): one line, with the result asked for.
    waited = runs.wait_dag_run_until_finished_without_preload_content(
        DAG_ID, "api_client_test", interval=0.1, result=["count"]
    )
    lines = [json.loads(line) for line in waited.data.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["state"] == "success", lines
    assert str(lines[0]["results"]["count"]) == "7", lines

    stats = client.DagStatsApi(viewer).get_dag_stats(dag_ids=[DAG_ID])
    assert [d.dag_id for d in stats.dags] == [DAG_ID], stats
    counts = {str(getattr(s.state, "value", s.state)): s.count for s in stats.dags[0].stats}
    assert set(counts) == {"queued", "running", "success", "failed"}, counts
    assert counts["success"] >= 1, counts

    instances = client.TaskInstanceApi(viewer)
    deps = instances.get_task_instance_dependencies(DAG_ID, "api_client_test", "count")
    assert deps.dependencies == [], deps
    mapped = instances.get_task_instance_dependencies_by_map_index(DAG_ID, "api_client_test", "count", -1)
    assert mapped.dependencies == [], mapped
    expect_status(
        404,
        lambda: instances.get_task_instance_dependencies(DAG_ID, "api_client_test", "no_such_task"),
        "the dependencies of a missing task instance",
    )

    batch = instances.get_task_instances_batch(
        "~",
        "~",
        client.TaskInstancesBatchBody(dag_ids=[DAG_ID], dag_run_ids=["api_client_test"], order_by="start_date"),
    )
    assert batch.total_entries == 3, batch
    started = [ti.start_date for ti in batch.task_instances]
    assert started == sorted(started), started
    across = instances.get_task_instances(DAG_ID, "~", order_by=["-start_date"], limit=100)
    assert across.total_entries >= 3, across
    by_last_run = client.DAGApi(viewer).get_dags(order_by=["-last_run_start_date"], limit=100)
    assert by_last_run.total_entries == len(by_last_run.dags), by_last_run

    xcoms = client.XComApi(op)
    created = xcoms.create_xcom_entry(
        DAG_ID, "count", "api_client_test", client.XComCreateBody(key="api_test_checked", value={"rows": 3})
    )
    assert created.key == "api_test_checked" and created.value == {"rows": 3}, created
    expect_status(
        409,
        lambda: xcoms.create_xcom_entry(
            DAG_ID, "count", "api_client_test", client.XComCreateBody(key="api_test_checked", value=0)
        ),
        "a duplicate XCom",
    )
    expect_status(
        403,
        lambda: client.XComApi(viewer).create_xcom_entry(
            DAG_ID, "count", "api_client_test", client.XComCreateBody(key="api_test_viewer", value=1)
        ),
        "a viewer creates an XCom",
    )


@scenario
def warnings_providers_and_the_configuration_are_answered():
    warnings = client.DagWarningApi(viewer).list_dag_warnings()
    assert warnings.total_entries == len(warnings.dag_warnings), warnings
    providers = client.ProviderApi(op).get_providers()
    assert providers.total_entries == 0 and providers.providers == [], providers
    expect_status(403, lambda: client.ProviderApi(viewer).get_providers(), "viewer lists providers")

    # run.sh sets [api] expose_config; Airflow's Op role is the first that reads it.
    config = client.ConfigApi(op).get_config()
    sections = {
        s.name: {o.key: getattr(o.value, "actual_instance", o.value) for o in s.options} for s in config.sections
    }
    assert sections["database"]["url"] == "< hidden >", sections["database"]
    assert sections["kubernetes"]["runtime"] == "local", sections["kubernetes"]
    one = client.ConfigApi(op).get_config_value("core", "dags_are_paused_at_creation")
    assert getattr(one.sections[0].options[0].value, "actual_instance", None) == "false", one
    text = client.ConfigApi(op).get_config_without_preload_content(section="api", accept="text/plain")
    assert text.data.decode().startswith("[api]\n"), text.data[:200]
    expect_status(404, lambda: client.ConfigApi(op).get_config(section="no_such_section"), "a missing section")
    expect_status(403, lambda: client.ConfigApi(viewer).get_config(), "viewer reads the configuration")
    for exchange in RECORDER.exchanges:
        assert b"sqlite://" not in exchange.body, exchange.url


@scenario
def variables_are_created_read_updated_and_deleted():
    variables = client.VariableApi(op)
    created = variables.post_variable(client.VariableBody(key="api_test_region", value="eu", description="where"))
    assert (created.key, created.value, created.description) == ("api_test_region", "eu", "where")
    expect_status(
        409,
        lambda: variables.post_variable(client.VariableBody(key="api_test_region", value="us")),
        "a duplicate variable",
    )
    secret = variables.post_variable(client.VariableBody(key="api_test_password", value="hunter2"))
    assert secret.value == "***", secret
    assert variables.get_variable("api_test_region").value == "eu"
    listed = variables.get_variables(variable_key_pattern="api_test")
    assert listed.total_entries == 2, listed
    patched = variables.patch_variable(
        "api_test_region", client.VariableBody(key="api_test_region", value="us"), update_mask=["value"]
    )
    assert patched.value == "us" and patched.description == "where", patched
    variables.delete_variable("api_test_region")
    variables.delete_variable("api_test_password")
    err = expect_status(404, lambda: variables.get_variable("api_test_region"), "a deleted variable")
    assert json.loads(err.body)["detail"] == "The Variable with key: `api_test_region` was not found"


@scenario
def connections_are_created_read_updated_and_deleted_and_never_show_secrets():
    connections = client.ConnectionApi(op)
    body = client.ConnectionBody(
        connection_id="api_test_db",
        conn_type="postgres",
        host="db.internal",
        login="etl",
        password="hunter2",
        port=5432,
        extra=json.dumps({"sslmode": "require", "api_key": "k-123"}),
        **{"schema": "analytics"},
    )
    created = connections.post_connection(body)
    assert created.password == "***" and created.var_schema == "analytics", created
    assert json.loads(created.extra) == {"sslmode": "require", "api_key": "***"}, created.extra
    got = connections.get_connection("api_test_db")
    assert got.password == "***" and got.port == 5432, got
    expect_status(403, lambda: client.ConnectionApi(viewer).get_connection("api_test_db"), "viewer reads a connection")
    expect_status(409, lambda: connections.post_connection(body), "a duplicate connection")
    listed = connections.get_connections(connection_id_pattern="api_test")
    assert [c.connection_id for c in listed.connections] == ["api_test_db"]
    patched = connections.patch_connection(
        "api_test_db",
        client.ConnectionBody(connection_id="api_test_db", conn_type="postgres", host="db2.internal"),
        update_mask=["host"],
    )
    assert patched.host == "db2.internal" and patched.password == "***", patched
    for exchange in RECORDER.exchanges:
        assert b"hunter2" not in exchange.body and b"k-123" not in exchange.body, exchange.url
    connections.delete_connection("api_test_db")
    expect_status(404, lambda: connections.get_connection("api_test_db"), "a deleted connection")


@scenario
def pools_are_created_read_updated_and_deleted():
    pools = client.PoolApi(op)
    created = pools.post_pool(client.PoolBody(name="api_test_pool", slots=3, description="test"))
    assert (created.name, created.slots, created.open_slots, created.occupied_slots) == ("api_test_pool", 3, 3, 0)
    assert pools.get_pool("api_test_pool").slots == 3
    patched = pools.patch_pool("api_test_pool", client.PoolPatchBody(slots=5), update_mask=["slots"])
    assert patched.slots == 5 and patched.description == "test", patched
    listed = client.PoolApi(admin).get_pools()
    assert {"default_pool", "api_test_pool"} <= {p.name for p in listed.pools}
    err = expect_status(400, lambda: pools.delete_pool("default_pool"), "deleting default_pool")
    assert json.loads(err.body)["detail"] == "Default Pool can't be deleted"
    pools.delete_pool("api_test_pool")
    expect_status(404, lambda: pools.get_pool("api_test_pool"), "a deleted pool")


@scenario
def variables_connections_pools_and_dags_change_in_bulk():
    variables = client.VariableApi(op)
    done = variables.bulk_variables(
        client.BulkBodyVariableBody.from_dict(
            {
                "actions": [
                    {"action": "create", "entities": [{"key": "api_bulk_a", "value": "1"}, {"key": "api_bulk_b", "value": "2"}]},
                    {"action": "update", "entities": [{"key": "api_bulk_a", "value": "3"}]},
                    {"action": "delete", "entities": ["api_bulk_b", "api_bulk_missing"]},
                ]
            }
        )
    )
    assert done.create.success == ["api_bulk_a", "api_bulk_b"], done
    assert done.update.success == ["api_bulk_a"], done
    assert done.delete.success == [] and done.delete.errors[0]["status_code"] == 404, done
    assert variables.get_variable("api_bulk_a").value == "3"

    connections = client.ConnectionApi(op).bulk_connections(
        client.BulkBodyConnectionBody.from_dict(
            {
                "actions": [
                    {"action": "create", "entities": [{"connection_id": "api_bulk_conn", "conn_type": "http", "password": "bulk-secret"}]},
                    {"action": "delete", "action_on_non_existence": "skip", "entities": ["api_bulk_conn", "api_bulk_none"]},
                ]
            }
        )
    )
    assert connections.create.success == ["api_bulk_conn"] and connections.delete.success == ["api_bulk_conn"], connections

    pools = client.PoolApi(op).bulk_pools(
        client.BulkBodyPoolBody.from_dict(
            {
                "actions": [
                    {"action": "create", "entities": [{"name": "api_bulk_pool", "slots": 2}]},
                    {"action": "create", "action_on_existence": "overwrite", "entities": [{"name": "api_bulk_pool", "slots": 4}]},
                ]
            }
        )
    )
    assert pools.create.success == ["api_bulk_pool", "api_bulk_pool"], pools
    assert client.PoolApi(op).get_pool("api_bulk_pool").slots == 4
    expect_status(
        403,
        lambda: client.PoolApi(user).bulk_pools(client.BulkBodyPoolBody.from_dict({"actions": []})),
        "a user changes pools in bulk",
    )

    dags = client.DAGApi(user)
    paused = dags.patch_dags(client.DAGPatchBody(is_paused=True), dag_id_pattern=DAG_ID)
    assert [d.dag_id for d in paused.dags] == [DAG_ID] and paused.dags[0].is_paused, paused
    unpaused = dags.patch_dags(client.DAGPatchBody(is_paused=False), dag_id_pattern=DAG_ID, update_mask=["is_paused"])
    assert not unpaused.dags[0].is_paused, unpaused
    variables.delete_variable("api_bulk_a")
    client.PoolApi(op).delete_pool("api_bulk_pool")


@scenario
def connections_are_tested_where_gust_can_test_them():
    # run.sh turns [core] test_connection on: the API server itself is a reachable http host.
    server = urllib.parse.urlsplit(BASE_URL)
    tested = client.ConnectionApi(op).test_connection(
        client.ConnectionBody(connection_id="api_test_http", conn_type="http", host=server.hostname, port=server.port)
    )
    assert tested.status is True, tested
    no_host = client.ConnectionApi(op).test_connection(client.ConnectionBody(connection_id="api_test_aws", conn_type="aws"))
    assert no_host.status is False and "no host" in no_host.message, no_host
    expect_status(
        403,
        lambda: client.ConnectionApi(user).test_connection(client.ConnectionBody(connection_id="x", conn_type="http")),
        "a user tests a connection",
    )


@scenario
def a_dag_s_file_and_versions_are_answered():
    versions = client.DagVersionApi(viewer).get_dag_versions(DAG_ID)
    assert versions.total_entries >= 1, versions
    latest = max(v.version_number for v in versions.dag_versions)
    one = client.DagVersionApi(viewer).get_dag_version(DAG_ID, latest)
    assert one.dag_id == DAG_ID and one.bundle_name == "dags-folder", one
    every = client.DagVersionApi(viewer).get_dag_versions("~", limit=100)
    assert every.total_entries >= versions.total_entries, every
    source = client.DagSourceApi(viewer).get_dag_source(DAG_ID)
    assert source.version_number == latest and DAG_ID in source.content, source
    first = client.DagSourceApi(viewer).get_dag_source(DAG_ID, version_number=1)
    assert first.version_number == 1 and first.content, first
    expect_status(404, lambda: client.DagVersionApi(viewer).get_dag_version(DAG_ID, 99999), "a missing version")
    expect_status(404, lambda: client.DagSourceApi(viewer).get_dag_source("no_such_dag"), "a missing DAG's source")


@scenario
def schedulers_are_listed_as_jobs():
    jobs = client.JobApi(viewer).get_jobs(is_alive=True)
    assert jobs.total_entries >= 1, jobs
    assert jobs.jobs[0].job_type == "SchedulerJob" and jobs.jobs[0].state == "running", jobs
    assert jobs.jobs[0].latest_heartbeat is not None, jobs


@scenario
def the_event_log_records_who_changed_what():
    events = client.EventLogApi(viewer)
    pauses = events.get_event_logs(dag_id=DAG_ID, event="patch_dag")
    assert pauses.total_entries >= 2, pauses
    owners = {e.owner for e in pauses.event_logs}
    assert owners <= {USERS["op"][0], USERS["user"][0]}, owners
    assert all('"is_paused"' in (e.extra or "") for e in pauses.event_logs), pauses
    one = events.get_event_log(pauses.event_logs[0].event_log_id)
    assert one.event == "patch_dag" and one.dag_id == DAG_ID, one
    variables = events.get_event_logs(event_pattern="variable", limit=100)
    assert variables.total_entries >= 2, variables
    for entry in variables.event_logs:
        assert "hunter2" not in (entry.extra or ""), entry
    logins = events.get_event_logs(event="login", owner=USERS["viewer"][0])
    assert logins.total_entries >= 1, logins
    newest = events.get_event_logs(order_by=["-when"], limit=1, excluded_events=["login"])
    assert newest.event_logs and newest.event_logs[0].event != "login", newest
    expect_status(404, lambda: events.get_event_log(2_000_000_000), "a missing event log")


@scenario
def a_backfill_is_planned_created_paused_and_cancelled():
    backfills = client.BackfillApi(user)
    body = client.BackfillPostBody(
        dag_id=DAG_ID,
        from_date="2024-01-01T00:00:00Z",
        to_date="2024-01-02T00:00:00Z",
        max_active_runs=1,
        dag_run_conf={"limit": 2},
    )
    dry = backfills.create_backfill_dry_run(body)
    assert dry.total_entries == 2, dry
    created = backfills.create_backfill(body)
    assert created.dag_id == DAG_ID and created.max_active_runs == 1 and created.completed_at is None, created
    expect_status(409, lambda: backfills.create_backfill(body), "a second backfill while one runs")
    assert backfills.pause_backfill(created.id).is_paused
    assert not backfills.unpause_backfill(created.id).is_paused
    listed = client.BackfillApi(viewer).list_backfills(DAG_ID)
    assert created.id in {b.id for b in listed.backfills}, listed
    assert client.BackfillApi(viewer).get_backfill(created.id).id == created.id
    runs = client.DagRunApi(viewer).get_dag_runs(DAG_ID, run_type=["backfill"])
    assert runs.total_entries == 2, runs
    cancelled = backfills.cancel_backfill(created.id)
    assert cancelled.completed_at is not None and cancelled.is_paused, cancelled
    expect_status(409, lambda: backfills.cancel_backfill(created.id), "cancelling a cancelled backfill")
    expect_status(404, lambda: backfills.get_backfill(999999), "a missing backfill")
    expect_status(403, lambda: client.BackfillApi(viewer).create_backfill(body), "a viewer backfills")


@scenario
def import_errors_name_the_broken_file():
    errors = client.ImportErrorApi(viewer).get_import_errors()
    if not BROKEN_DAG:
        return
    matching = [e for e in errors.import_errors if e.filename.endswith(BROKEN_DAG)]
    assert len(matching) == 1, [e.filename for e in errors.import_errors]
    one = client.ImportErrorApi(viewer).get_import_error(matching[0].import_error_id)
    assert one.filename == matching[0].filename and one.stack_trace, one
    expect_status(404, lambda: client.ImportErrorApi(viewer).get_import_error(0), "a missing import error")


@scenario
def an_asset_event_triggers_the_dag_scheduled_on_the_asset():
    assets = client.AssetApi(viewer).get_assets(uri_prefix_pattern="s3://warehouse/")
    orders = next(a for a in assets.assets if a.name == "orders")
    assert [d.dag_id for d in orders.scheduled_dags] == ["orders_report"], orders
    assert [t.task_id for t in orders.producing_tasks] == ["export_orders"], orders
    assert client.AssetApi(viewer).get_asset(orders.id).uri == "s3://warehouse/orders"
    body = client.CreateAssetEventsBody(asset_id=orders.id, extra={"rows": 3})
    expect_status(403, lambda: client.AssetApi(viewer).create_asset_event(body), "a viewer posts an asset event")
    event = client.AssetApi(user).create_asset_event(body)
    assert event.extra == {"rows": 3, "from_rest_api": True}, event
    # The scheduled export may update the asset too: the run wanted is the one that consumed
    # this event.
    deadline = time.time() + RUN_TIMEOUT_S
    run = None
    while run is None and time.time() < deadline:
        runs = client.DagRunApi(viewer).get_dag_runs("orders_report", run_type=["asset_triggered"])
        for candidate in runs.dag_runs:
            upstream = client.DagRunApi(viewer).get_upstream_asset_events("orders_report", candidate.dag_run_id)
            if event.id in {e.id for e in upstream.asset_events}:
                run = candidate
        time.sleep(0.5)
    assert run is not None, "the asset event made no run of orders_report"
    assert run.triggered_by == "asset" and run.logical_date is None, run
    events = client.AssetApi(viewer).get_asset_events(asset_id=orders.id)
    assert any(e.id == event.id and e.created_dagruns for e in events.asset_events), events
    expect_status(404, lambda: client.AssetApi(viewer).get_asset(999999), "a missing asset")


# --- the schema test ------------------------------------------------------------------------


def operations(spec: dict) -> list[tuple[str, re.Pattern, str, dict]]:
    """(method, path pattern, operationId, operation) for every operation; literal paths first,
    so `/connections/defaults` is not read as `/connections/{connection_id}`."""
    found = []
    for path, item in spec["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                found.append((method.upper(), pattern, operation.get("operationId", path), operation, path.count("{")))
    found.sort(key=lambda o: o[4])
    return [o[:4] for o in found]


def validate_all(spec: dict) -> list[str]:
    """Checks every recorded answer against its operation's response schema."""
    problems = []
    ops = operations(spec)
    format_checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for ex in RECORDER.exchanges:
        path = urllib.parse.urlsplit(ex.url).path
        match = next(((op_id, op) for m, p, op_id, op in ops if m == ex.method and p.match(path)), None)
        if match is None:
            problems.append(f"{ex.method} {path}: not an operation of Airflow's API")
            continue
        op_id, op = match
        response = op.get("responses", {}).get(str(ex.status))
        if response is None:
            problems.append(f"{op_id} ({ex.method} {path}): status {ex.status} is not one Airflow answers")
            continue
        content = response.get("content") or {}
        # The answer's media type picks the schema (JSON, NDJSON or text, as the operation offers).
        media = ex.content_type.split(";")[0].strip().lower() or "application/json"
        if content and media not in content:
            problems.append(f"{op_id} ({ex.method} {path}) {ex.status}: answered as {media}, which Airflow does not offer")
            continue
        schema = content.get(media, {}).get("schema")
        if schema is None:
            if ex.body.strip():
                problems.append(f"{op_id} ({ex.method} {path}) {ex.status}: a body where Airflow has none")
            continue
        try:
            if media == "application/x-ndjson":
                # Airflow describes the stream as one string; each of its lines must be JSON.
                for line in ex.body.splitlines():
                    if line.strip():
                        json.loads(line)
                body = ex.body.decode("utf-8")
            elif media.startswith("text/"):
                body = ex.body.decode("utf-8")
            else:
                body = json.loads(ex.body)
        except ValueError as err:
            problems.append(f"{op_id} ({ex.method} {path}) {ex.status}: not {media} ({err})")
            continue
        root = dict(schema)
        root["components"] = spec["components"]
        validator = jsonschema.Draft202012Validator(root, format_checker=format_checker)
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            problems.append(f"{op_id} ({ex.method} {path}) {ex.status}: at {error.json_path}: {error.message[:300]}")
    return problems


def main() -> int:
    with open(SPEC_PATH, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    problems = validate_all(spec)
    operations_seen = len({(e.method, urllib.parse.urlsplit(e.url).path) for e in RECORDER.exchanges})
    print(f"schema: {len(RECORDER.exchanges)} responses ({operations_seen} distinct requests) checked against Airflow's OpenAPI document")
    for problem in problems:
        print(f"SCHEMA {problem}")
    FAILURES.extend(f"schema: {p}" for p in problems)
    if FAILURES:
        print(f"\n{len(FAILURES)} failure(s):", file=sys.stderr)
        for failure in FAILURES:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
