//! Jinja templates with Airflow's context names and macros.
