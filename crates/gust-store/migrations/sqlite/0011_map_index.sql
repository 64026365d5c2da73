-- Version 11: dynamic task mapping. A mapped task has one instance per item it is expanded
-- over, told apart by `map_index` (0, 1, ...); an unmapped task's one instance has -1, as in
-- Airflow. The index joins the key of instances, their tries, XComs and reschedules. SQLite
-- cannot change a primary key in place, so each table is rebuilt (the same statements on
-- both engines keep the two schemas in lockstep).
CREATE TABLE task_instances_mapped (
    dag_id         TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    task_id        TEXT NOT NULL,
    map_index      INTEGER NOT NULL DEFAULT -1,
    state          TEXT NOT NULL,
    try_number     INTEGER NOT NULL DEFAULT 0,
    next_retry_at  BIGINT,
    version        BIGINT NOT NULL DEFAULT 0,
    note           TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, map_index)
);
INSERT INTO task_instances_mapped (dag_id, run_id, task_id, map_index, state, try_number, next_retry_at, version, note)
    SELECT dag_id, run_id, task_id, -1, state, try_number, next_retry_at, version, note FROM task_instances;
DROP TABLE task_instances;
ALTER TABLE task_instances_mapped RENAME TO task_instances;
CREATE INDEX task_instances_by_state ON task_instances (state);

CREATE TABLE task_tries_mapped (
    dag_id         TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    task_id        TEXT NOT NULL,
    map_index      INTEGER NOT NULL DEFAULT -1,
    try_number     INTEGER NOT NULL,
    state          TEXT NOT NULL,
    start_date     BIGINT,
    end_date       BIGINT,
    failure        TEXT,
    rendered_args  TEXT,
    queued_at      BIGINT,
    log_location   TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number)
);
INSERT INTO task_tries_mapped (dag_id, run_id, task_id, map_index, try_number, state, start_date, end_date, failure, rendered_args, queued_at, log_location)
    SELECT dag_id, run_id, task_id, -1, try_number, state, start_date, end_date, failure, rendered_args, queued_at, log_location FROM task_tries;
DROP TABLE task_tries;
ALTER TABLE task_tries_mapped RENAME TO task_tries;

CREATE TABLE xcoms_mapped (
    dag_id     TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    map_index  INTEGER NOT NULL DEFAULT -1,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, key)
);
INSERT INTO xcoms_mapped (dag_id, run_id, task_id, map_index, key, value)
    SELECT dag_id, run_id, task_id, -1, key, value FROM xcoms;
DROP TABLE xcoms;
ALTER TABLE xcoms_mapped RENAME TO xcoms;

CREATE TABLE task_reschedules_mapped (
    dag_id           TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    map_index        INTEGER NOT NULL DEFAULT -1,
    try_number       INTEGER NOT NULL,
    number           INTEGER NOT NULL,
    start_date       BIGINT NOT NULL,
    end_date         BIGINT NOT NULL,
    reschedule_date  BIGINT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number, number)
);
INSERT INTO task_reschedules_mapped (dag_id, run_id, task_id, map_index, try_number, number, start_date, end_date, reschedule_date)
    SELECT dag_id, run_id, task_id, -1, try_number, number, start_date, end_date, reschedule_date FROM task_reschedules;
DROP TABLE task_reschedules;
ALTER TABLE task_reschedules_mapped RENAME TO task_reschedules;
