-- Version 8: what the REST API's audit and history endpoints read. The event log (Airflow's
-- `log` table: who did what, through the API or a sign-in); each DAG's versions (Airflow's
-- `dag_version` with its `dag_code`: a new version whenever the parsed definition's fingerprint
-- changes, with the text of its file at that time); and backfills (Airflow's `backfill`), whose
-- runs name theirs in `dag_runs.backfill_id`; and the schedulers as Airflow's `job` rows (one per
-- scheduler id, written with its heartbeat).
CREATE TABLE event_logs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    dttm                BIGINT NOT NULL,
    event               TEXT NOT NULL,
    dag_id              TEXT,
    task_id             TEXT,
    run_id              TEXT,
    map_index           INTEGER,
    try_number          INTEGER,
    logical_date        BIGINT,
    owner               TEXT,
    owner_display_name  TEXT,
    extra               TEXT
);
CREATE INDEX event_logs_by_dag ON event_logs (dag_id, dttm);
CREATE TABLE dag_versions (
    id              TEXT NOT NULL UNIQUE,
    dag_id          TEXT NOT NULL,
    version_number  INTEGER NOT NULL,
    fingerprint     TEXT NOT NULL,
    fileloc         TEXT NOT NULL,
    source          TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (dag_id, version_number)
);
CREATE TABLE backfills (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id                TEXT NOT NULL,
    from_date             BIGINT NOT NULL,
    to_date               BIGINT NOT NULL,
    dag_run_conf          TEXT,
    run_backwards         INTEGER NOT NULL DEFAULT 0,
    is_paused             INTEGER NOT NULL DEFAULT 0,
    reprocess_behavior    TEXT NOT NULL,
    max_active_runs       INTEGER NOT NULL,
    created_at            BIGINT NOT NULL,
    completed_at          BIGINT,
    updated_at            BIGINT NOT NULL,
    triggering_user_name  TEXT
);
ALTER TABLE dag_runs ADD COLUMN backfill_id BIGINT;
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    scheduler_id      TEXT NOT NULL UNIQUE,
    job_type          TEXT NOT NULL,
    state             TEXT NOT NULL,
    hostname          TEXT,
    start_date        BIGINT NOT NULL,
    end_date          BIGINT,
    latest_heartbeat  BIGINT NOT NULL
);
