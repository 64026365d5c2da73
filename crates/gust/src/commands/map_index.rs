//! `--map-index` of the `gust tasks` commands that run or render one task instance (as
//! Airflow's `tasks test` and `tasks render`): which instance of a mapped task, and the
//! arguments it is given. Only lists written in the DAG file are known outside a run; a task
//! mapped over another task's return value is tested with `gust dags test`, which runs both.

use gust_core::mapping::{ExpandError, UNMAPPED};
use gust_core::task::Task;
use serde_json::{Map, Value};

/// Why `--map-index` does not name an instance of the task.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapIndexError {
    /// A mapped task without `--map-index`.
    #[error(
        "task \"{task}\" of DAG \"{dag}\" is mapped: name one of its instances with --map-index N (0 for the first)"
    )]
    Missing {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
    },
    /// `--map-index` on a task that is not mapped.
    #[error("task \"{task}\" of DAG \"{dag}\" is not mapped: drop --map-index")]
    NotMapped {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
    },
    /// Past the task's last instance.
    #[error(
        "--map-index {index} is out of range: task \"{task}\" of DAG \"{dag}\" has {count} mapped instance(s), 0 to {count} exclusive"
    )]
    OutOfRange {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
        /// The index asked for.
        index: i32,
        /// How many instances the task has.
        count: usize,
    },
    /// Mapped over a value known only in a run.
    #[error(
        "task \"{task}\" of DAG \"{dag}\" is mapped over the return value of \"{upstream}\", known only in a run: test them together with `gust dags test {dag}`"
    )]
    NeedsRun {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
        /// The task whose return value it maps over.
        upstream: String,
    },
    /// The lists cannot be expanded (too long, not lists).
    #[error("task \"{task}\" of DAG \"{dag}\" cannot be expanded")]
    Expand {
        /// The DAG.
        dag: String,
        /// The task.
        task: String,
        /// Why.
        #[source]
        source: ExpandError,
    },
}

/// The arguments instance `map_index` of `task` is given on top of its own (`None` for a task
/// that is not mapped, named with -1 or no index, as Airflow's default is -1).
pub fn instance_args(
    dag: &str,
    task: &Task,
    map_index: Option<i32>,
    max_map_length: usize,
) -> Result<Option<Map<String, Value>>, MapIndexError> {
    let names = || (dag.to_owned(), task.id.to_string());
    let index = map_index.filter(|i| *i != UNMAPPED);
    let Some(mapping) = &task.mapping else {
        return match index {
            None => Ok(None),
            Some(_) => {
                let (dag, task) = names();
                Err(MapIndexError::NotMapped { dag, task })
            }
        };
    };
    let Some(index) = index else {
        let (dag, task) = names();
        return Err(MapIndexError::Missing { dag, task });
    };
    let expand_error = |source: ExpandError| {
        let (dag, task) = names();
        match source {
            ExpandError::NoValue { task: upstream, .. } => MapIndexError::NeedsRun {
                dag,
                task,
                upstream: upstream.to_string(),
            },
            source => MapIndexError::Expand { dag, task, source },
        }
    };
    // Outside a run no task has pushed a value.
    let no_xcoms = |_: &gust_core::ids::TaskId, _: Option<&str>| None;
    let count = mapping
        .length(&no_xcoms, max_map_length)
        .map_err(expand_error)?;
    let out_of_range = || {
        let (dag, task) = names();
        MapIndexError::OutOfRange {
            dag,
            task,
            index,
            count,
        }
    };
    let position = usize::try_from(index).map_err(|_| out_of_range())?;
    if position >= count {
        return Err(out_of_range());
    }
    mapping
        .instance_args(&no_xcoms, position)
        .map_err(expand_error)?
        .map(Some)
        .ok_or_else(out_of_range)
}

/// `task` as instance `map_index` runs it: a task that is not mapped, its instance's arguments
/// on top of its own.
pub fn one_instance(
    dag: &str,
    task: &Task,
    map_index: Option<i32>,
    max_map_length: usize,
) -> Result<Task, MapIndexError> {
    let mut one = task.clone();
    if let Some(args) = instance_args(dag, task, map_index, max_map_length)? {
        one.args.extend(args);
        one.mapping = None;
    }
    Ok(one)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gust_core::mapping::{Expand, Mapping, Source};
    use serde_json::json;

    fn task(mapping: Option<Mapping>) -> Task {
        let mut args = Map::new();
        args.insert("bash_command".to_owned(), json!("echo $N"));
        Task {
            id: gust_core::ids::TaskId::new("t").unwrap(),
            operator: "bash".into(),
            args,
            upstream: Vec::new(),
            group: None,
            settings: gust_core::task::TaskSettings::default(),
            doc_md: None,
            mapping,
        }
    }

    fn mapped(source: Source) -> Task {
        task(Some(Mapping {
            expand: Expand::Args(vec![("env".to_owned(), source)]),
            map_index_template: None,
            group: None,
        }))
    }

    #[test]
    fn an_instance_of_a_literal_list_gets_its_item() {
        let t = mapped(Source::Literal(vec![json!({"N": "1"}), json!({"N": "2"})]));
        let one = one_instance("d", &t, Some(1), 1024).unwrap();
        assert!(one.mapping.is_none());
        assert_eq!(one.args["env"], json!({"N": "2"}));
        assert_eq!(one.args["bash_command"], json!("echo $N"));
        assert_eq!(
            instance_args("d", &t, Some(2), 1024)
                .unwrap_err()
                .to_string(),
            "--map-index 2 is out of range: task \"t\" of DAG \"d\" has 2 mapped instance(s), 0 to 2 exclusive"
        );
        assert!(matches!(
            instance_args("d", &t, None, 1024),
            Err(MapIndexError::Missing { .. })
        ));
        assert!(matches!(
            instance_args("d", &t, Some(-1), 1024),
            Err(MapIndexError::Missing { .. })
        ));
    }

    #[test]
    fn an_unmapped_task_takes_no_index_and_a_run_time_list_needs_a_run() {
        let plain = task(None);
        assert_eq!(instance_args("d", &plain, Some(-1), 1024), Ok(None));
        assert_eq!(
            instance_args("d", &plain, Some(0), 1024)
                .unwrap_err()
                .to_string(),
            "task \"t\" of DAG \"d\" is not mapped: drop --map-index"
        );
        let upstream = gust_core::ids::TaskId::new("list".to_owned()).unwrap();
        let over_xcom = mapped(Source::XCom(upstream));
        assert_eq!(
            instance_args("d", &over_xcom, Some(0), 1024)
                .unwrap_err()
                .to_string(),
            "task \"t\" of DAG \"d\" is mapped over the return value of \"list\", known only in a run: test them together with `gust dags test d`"
        );
    }
}
