-- Version 5: a try's log location is kept on its history row and written with it, rather than in
-- a table of its own: one statement less for every try queued.
ALTER TABLE task_tries ADD COLUMN log_location TEXT;
UPDATE task_tries SET log_location = (SELECT l.location FROM log_index l WHERE l.dag_id = task_tries.dag_id AND l.run_id = task_tries.run_id AND l.task_id = task_tries.task_id AND l.try_number = task_tries.try_number);
DROP TABLE log_index;
