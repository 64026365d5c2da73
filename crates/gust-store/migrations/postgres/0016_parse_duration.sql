-- Version 16: how long a DAG's file took to parse (read and built for a YAML file; Airflow's
-- parse for a Python one), in seconds: Airflow's `last_parse_duration`, shown by the API and UI.
-- Null until the file is parsed again by a scheduler of this version.
ALTER TABLE dags ADD COLUMN last_parse_duration DOUBLE PRECISION;
