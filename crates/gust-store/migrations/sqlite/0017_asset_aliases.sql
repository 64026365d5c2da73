-- Version 17: asset aliases (Airflow 3's `AssetAlias`). Each alias once by name, as Airflow's
-- `asset_alias`; the assets attached to it by the events emitted through it
-- (`asset_alias_asset`), which a DAG scheduled on the alias is scheduled on; the events emitted
-- through it (`asset_alias_asset_event`, the `inlet_events` of a task reading the alias); and
-- which DAG schedules on it and which task emits through it (`dag_schedule_asset_alias_reference`
-- and the outlets, `kind` saying which, `task_id` empty for a schedule).
CREATE TABLE asset_aliases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    alias_group TEXT NOT NULL
);
CREATE TABLE asset_alias_assets (
    alias_id    BIGINT NOT NULL REFERENCES asset_aliases (id) ON DELETE CASCADE,
    asset_id    BIGINT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    PRIMARY KEY (alias_id, asset_id)
);
CREATE TABLE asset_alias_events (
    alias_id    BIGINT NOT NULL REFERENCES asset_aliases (id) ON DELETE CASCADE,
    event_id    BIGINT NOT NULL REFERENCES asset_events (id) ON DELETE CASCADE,
    PRIMARY KEY (alias_id, event_id)
);
CREATE INDEX asset_alias_events_by_event ON asset_alias_events (event_id);
CREATE TABLE asset_alias_references (
    alias_id    BIGINT NOT NULL REFERENCES asset_aliases (id) ON DELETE CASCADE,
    dag_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (alias_id, dag_id, task_id, kind)
);
CREATE INDEX asset_alias_references_by_dag ON asset_alias_references (dag_id);
