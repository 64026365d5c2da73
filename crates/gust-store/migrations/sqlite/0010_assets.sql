-- Version 10: assets (Airflow 3's data-aware scheduling). Each asset once by (name, uri), as
-- Airflow's `asset` table; which DAG schedules on it and which task updates or reads it
-- (Airflow's `dag_schedule_asset_reference`, `task_outlet_asset_reference` and
-- `task_inlet_asset_reference` in one table, `kind` saying which, `task_id` empty for a
-- schedule); its events (`asset_event`, with the try that emitted one, or none for an event
-- posted through the API); the events waiting for each consuming DAG (`asset_dag_run_queue`);
-- and the events each asset-triggered run consumed (`dagrun_asset_event`).
CREATE TABLE assets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    uri         TEXT NOT NULL,
    asset_group TEXT NOT NULL,
    extra       TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (name, uri)
);
CREATE TABLE asset_references (
    asset_id    BIGINT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    dag_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (asset_id, dag_id, task_id, kind)
);
CREATE INDEX asset_references_by_dag ON asset_references (dag_id);
CREATE TABLE asset_events (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id          BIGINT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    extra             TEXT NOT NULL DEFAULT '{}',
    source_dag_id     TEXT,
    source_run_id     TEXT,
    source_task_id    TEXT,
    source_map_index  INTEGER NOT NULL DEFAULT -1,
    timestamp         BIGINT NOT NULL
);
CREATE INDEX asset_events_by_asset ON asset_events (asset_id, timestamp);
CREATE TABLE asset_queue (
    asset_id       BIGINT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    target_dag_id  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (asset_id, target_dag_id)
);
CREATE TABLE run_asset_events (
    dag_id    TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    event_id  BIGINT NOT NULL REFERENCES asset_events (id) ON DELETE CASCADE,
    PRIMARY KEY (dag_id, run_id, event_id)
);
CREATE INDEX run_asset_events_by_event ON run_asset_events (event_id);
