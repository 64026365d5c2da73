-- Version 13: a mapped instance's name. A mapped task's `map_index_template` is rendered for
-- each instance when its try is handed to a runtime (or sent by a Python task's Task SDK as it
-- runs), and shown by the API and UI as `rendered_map_index` (Airflow's `_rendered_map_index`).
-- Null until rendered, and for tasks with no template.
ALTER TABLE task_instances ADD COLUMN rendered_map_index TEXT;
