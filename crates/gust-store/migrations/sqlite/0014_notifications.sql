-- Version 14: notification deliveries (Gust's own: Airflow records none). One row per
-- notifier a task's or a run's event sent, or Airflow's alert email: what it was (its kind and
-- a description of where it went, never a secret), its status (pending, sent, failed), how
-- many attempts it took, and the last error. Rows are written by whichever process sends them
-- (the scheduler, or `gust dags test`), read by the API.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id       TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    task_id      TEXT,
    map_index    INTEGER NOT NULL DEFAULT -1,
    try_number   INTEGER,
    event        TEXT NOT NULL,
    notifier     TEXT NOT NULL,
    target       TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX notifications_by_run ON notifications (dag_id, run_id);
