-- Version 15: deadlines (Airflow's `deadline` table): one row per deadline alert of a run,
-- written when the scheduler first sees the run, with the time it must have finished by and
-- the notifiers to send (as JSON) if it has not. A run that finishes in time deletes its
-- pending rows (as Airflow prunes them); a missed one is claimed (`missed` 0 -> 1 in one
-- conditional UPDATE) by exactly one scheduler, which then sends its notifiers.
CREATE TABLE deadlines (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dag_id          TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    alert_index     INTEGER NOT NULL,
    alert_name      TEXT,
    reference_type  TEXT NOT NULL,
    deadline_time   BIGINT NOT NULL,
    callback        TEXT NOT NULL,
    missed          INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (dag_id, run_id, alert_index)
);
CREATE INDEX deadlines_pending ON deadlines (missed, deadline_time);
