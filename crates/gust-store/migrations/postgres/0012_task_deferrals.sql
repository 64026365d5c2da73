-- Version 12: deferral (Airflow's `trigger` table and the task instance's `next_method`,
-- `next_kwargs`, `trigger_timeout` columns in one row per deferred instance). While its
-- instance is `deferred` with this try, the row says which trigger the scheduler runs (its
-- class and kwargs, as Airflow's serde wrote them), when it times out (NULL: never) and where
-- the try resumes. Queuing the try again removes it.
CREATE TABLE task_deferrals (
    dag_id          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    task_id         TEXT NOT NULL,
    map_index       INTEGER NOT NULL DEFAULT -1,
    try_number      INTEGER NOT NULL,
    classpath       TEXT NOT NULL,
    trigger_kwargs  TEXT NOT NULL,
    trigger_timeout BIGINT,
    next_method     TEXT NOT NULL,
    next_kwargs     TEXT NOT NULL,
    deferred_at     BIGINT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, map_index)
);
