-- Version 9: every time a try of a sensor in `reschedule` mode asks to run again later, as
-- Airflow's `task_reschedule` table records it. A sensor measures its `timeout` from the first
-- of its try's reschedules, and its run context counts them.
CREATE TABLE task_reschedules (
    dag_id           TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    task_id          TEXT NOT NULL,
    try_number       INTEGER NOT NULL,
    number           INTEGER NOT NULL,
    start_date       BIGINT NOT NULL,
    end_date         BIGINT NOT NULL,
    reschedule_date  BIGINT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, try_number, number)
);
