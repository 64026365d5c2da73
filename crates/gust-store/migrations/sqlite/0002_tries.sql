-- Version 2: every try keeps what it ran (its rendered arguments) and when it was queued, so a
-- user can see what actually ran and a restarted scheduler can adopt it as it was started.
ALTER TABLE task_tries ADD COLUMN rendered_args TEXT;
ALTER TABLE task_tries ADD COLUMN queued_at BIGINT;
ALTER TABLE task_instances DROP COLUMN rendered_args;
CREATE INDEX dag_runs_by_logical_date ON dag_runs (dag_id, logical_date);
