-- Version 4: several schedulers share the work by DAG. Each DAG is driven by the scheduler that
-- holds its claim until `claimed_until`; a claim not renewed in time is taken over.
ALTER TABLE dags ADD COLUMN scheduler_id TEXT;
ALTER TABLE dags ADD COLUMN claimed_until BIGINT;
