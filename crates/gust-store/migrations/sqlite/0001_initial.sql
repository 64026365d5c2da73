-- Gust's metadata, version 1. Times are microseconds since the Unix epoch (UTC); JSON is text.
-- Every row whose state the scheduler moves carries a version for compare-and-set updates.

CREATE TABLE dags (
    dag_id       TEXT PRIMARY KEY,
    fileloc      TEXT NOT NULL,
    definition   TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    is_paused    INTEGER NOT NULL DEFAULT 0,
    is_stale     INTEGER NOT NULL DEFAULT 0,
    is_active    INTEGER NOT NULL DEFAULT 1,
    last_parsed  BIGINT NOT NULL
);

CREATE TABLE dag_runs (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id               TEXT NOT NULL,
    run_id               TEXT NOT NULL,
    run_type             TEXT NOT NULL,
    state                TEXT NOT NULL,
    logical_date         BIGINT NOT NULL,
    data_interval_start  BIGINT NOT NULL,
    data_interval_end    BIGINT NOT NULL,
    conf                 TEXT NOT NULL DEFAULT '{}',
    note                 TEXT,
    queued_at            BIGINT NOT NULL,
    start_date           BIGINT,
    end_date             BIGINT,
    version              BIGINT NOT NULL DEFAULT 0,
    UNIQUE (dag_id, run_id)
);
-- One scheduled run per interval, whoever creates it.
CREATE UNIQUE INDEX dag_runs_scheduled_interval ON dag_runs (dag_id, logical_date) WHERE run_type = 'scheduled';
CREATE INDEX dag_runs_by_state ON dag_runs (state, dag_id);

CREATE TABLE task_instances (
    dag_id         TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    task_id        TEXT NOT NULL,
    state          TEXT NOT NULL,
    try_number     INTEGER NOT NULL DEFAULT 0,
    next_retry_at  BIGINT,
    rendered_args  TEXT,
    version        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (dag_id, run_id, task_id)
);
CREATE INDEX task_instances_by_state ON task_instances (state);

CREATE TABLE task_tries (
    dag_id       TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    try_number   INTEGER NOT NULL,
    state        TEXT NOT NULL,
    start_date   BIGINT,
    end_date     BIGINT,
    failure      TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, try_number)
);

CREATE TABLE xcoms (
    dag_id   TEXT NOT NULL,
    run_id   TEXT NOT NULL,
    task_id  TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, key)
);

CREATE TABLE variables (
    key          TEXT PRIMARY KEY,
    value        TEXT NOT NULL,
    description  TEXT
);

CREATE TABLE connections (
    conn_id             TEXT PRIMARY KEY,
    conn_type           TEXT NOT NULL,
    host                TEXT,
    login               TEXT,
    schema_name         TEXT,
    port                INTEGER,
    password_encrypted  TEXT,
    extra_encrypted     TEXT,
    description         TEXT
);

CREATE TABLE pools (
    name         TEXT PRIMARY KEY,
    slots        INTEGER NOT NULL,
    description  TEXT
);
INSERT INTO pools (name, slots, description) VALUES ('default_pool', 128, 'Default pool');

CREATE TABLE import_errors (
    file       TEXT PRIMARY KEY,
    problems   TEXT NOT NULL,
    timestamp  BIGINT NOT NULL
);

CREATE TABLE log_index (
    dag_id      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    try_number  INTEGER NOT NULL,
    location    TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, try_number)
);
