-- Version 3: what the REST API and the web UI need: users with a role, a note on each task
-- instance (as on runs), and each scheduler's heartbeat for the health endpoint.
CREATE TABLE users (
    username       TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
ALTER TABLE task_instances ADD COLUMN note TEXT;
CREATE TABLE scheduler_heartbeats (
    scheduler_id  TEXT PRIMARY KEY,
    heartbeat     BIGINT NOT NULL
);
