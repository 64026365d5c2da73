//! Creating runs on request (`gust dags trigger`, the API, backfills): run ids in Airflow's form,
//! a run id given by a user checked against `[scheduler] allowed_run_id_pattern`
//! ([`RunIdPattern`]), and `conf` checked against the DAG's params before anything is stored.

use chrono::{DateTime, SubsecRound, Utc};
use gust_core::dag::Dag;
use gust_core::date::python_isoformat;
use gust_core::ids::RunId;
use gust_store::{NewRun, RunType, Store, StoreError};

/// Why a run could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// `conf` does not fit the DAG's params.
    #[error(
        "conf key \"{key}\" must be {expected} like the DAG's param default ({default}), not {given}"
    )]
    ConfType {
        /// The key.
        key: String,
        /// The JSON type the param's default has.
        expected: &'static str,
        /// The default.
        default: String,
        /// What was given instead.
        given: String,
    },
    /// The run id is not acceptable.
    #[error("invalid run id: {0}")]
    RunId(#[from] gust_core::ids::IdError),
    /// A run id given by a user does not match `[scheduler] allowed_run_id_pattern`.
    #[error(
        "run id {run_id:?} does not match [scheduler] allowed_run_id_pattern {pattern:?}; use letters, digits and _.~:+- (the default pattern), or leave it out for a generated one"
    )]
    RunIdNotAllowed {
        /// The id given.
        run_id: String,
        /// The pattern it had to match.
        pattern: String,
    },
    /// A run with this id exists.
    #[error("DAG {dag_id} already has a run with id {run_id}; pass another --run-id")]
    Exists {
        /// The DAG.
        dag_id: String,
        /// The run id.
        run_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Airflow's default `[scheduler] allowed_run_id_pattern`.
pub const DEFAULT_RUN_ID_PATTERN: &str = "^[A-Za-z0-9_.~:+-]+$";

/// Run ids in the form Gust and Airflow generate (`manual__2024-01-01T00:00:00+00:00`), which a
/// user may give whatever the configured pattern says, as Airflow's `RUN_ID_REGEX`.
const GENERATED_FORM: &str = r"^(?:manual|scheduled|asset_triggered|backfill)__\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{6})?\+00:00$";

/// Which run ids a user may give when triggering a run (`[scheduler] allowed_run_id_pattern`):
/// those the pattern matches from their start, as Airflow's `re.match`, and those in the form
/// generated ids have. Ids Gust generates itself are never checked. An empty pattern admits
/// only the generated form. Unlike Python's `$`, the `$` of Rust's regex does not match before
/// a final line feed, so no run id holds one.
#[derive(Debug, Clone)]
pub struct RunIdPattern {
    text: String,
    pattern: Option<regex::Regex>,
    generated: regex::Regex,
}

impl RunIdPattern {
    /// The pattern `text` (surrounding spaces ignored); an error when it is no regular expression.
    pub fn new(text: &str) -> Result<Self, regex::Error> {
        let text = text.trim();
        let pattern = (!text.is_empty())
            .then(|| regex::Regex::new(text))
            .transpose()?;
        Ok(Self {
            text: text.to_owned(),
            pattern,
            generated: regex::Regex::new(GENERATED_FORM)?,
        })
    }

    /// Whether a user may give `run_id`.
    #[must_use]
    pub fn allows(&self, run_id: &str) -> bool {
        self.generated.is_match(run_id)
            || self
                .pattern
                .as_ref()
                .and_then(|p| p.find(run_id))
                .is_some_and(|m| m.start() == 0)
    }

    /// `run_id`, given by a user, checked: long enough, short enough, and allowed.
    pub fn check(&self, run_id: &str) -> Result<RunId, TriggerError> {
        let id = RunId::new(run_id)?;
        if self.allows(run_id) {
            Ok(id)
        } else {
            Err(TriggerError::RunIdNotAllowed {
                run_id: run_id.chars().take(100).collect(),
                pattern: self.text.clone(),
            })
        }
    }
}

impl Default for RunIdPattern {
    /// Airflow's default, [`DEFAULT_RUN_ID_PATTERN`].
    fn default() -> Self {
        Self::new(DEFAULT_RUN_ID_PATTERN).expect("the default pattern is a valid one")
    }
}

/// Airflow 3.3's run id for a run of `kind` that may start at `run_after` (`DagRun.generate_run_id`):
/// `<kind>__<run_after>`, the time in Python's `isoformat()`. Scheduled and backfill runs may
/// start when their data interval ends, so they are named by its end, not by their logical date.
#[must_use]
pub fn run_id_for(kind: RunType, run_after: DateTime<Utc>) -> String {
    let prefix = match kind {
        RunType::Scheduled => "scheduled",
        RunType::Manual => "manual",
        RunType::Backfill => "backfill",
        RunType::OperatorTriggered => "operator_triggered",
        RunType::AssetTriggered => "asset_triggered",
    };
    format!("{prefix}__{}", python_isoformat(run_after))
}

/// The run id of a manual run triggered at `now`: `manual__2026-12-05T10:00:00.123456+00:00`, as
/// Airflow 3.3 names it after the trigger time, not the logical date.
#[must_use]
pub fn manual_run_id(now: DateTime<Utc>) -> String {
    run_id_for(RunType::Manual, now)
}

/// How many later microseconds a generated manual run id may move to when an earlier trigger
/// took its id (two triggers in the same microsecond).
const MANUAL_ID_ATTEMPTS: u32 = 1_000;

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Checks `conf` against the DAG's params: a key naming a param must have its default's JSON
/// type (a `null` default accepts anything). Keys that name no param are allowed, as in Airflow.
pub fn check_conf(
    dag: &Dag,
    conf: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), TriggerError> {
    for (key, given) in conf {
        let Some(default) = dag.settings.params.get(key) else {
            continue;
        };
        if default.is_null() || json_type(default) == json_type(given) {
            continue;
        }
        return Err(TriggerError::ConfType {
            key: key.clone(),
            expected: json_type(default),
            default: default.to_string(),
            given: json_type(given).to_owned(),
        });
    }
    Ok(())
}

/// A manual run of `dag` at `logical_date` (default: now), as `gust dags trigger` and the API
/// create it: it covers its logical date alone, and the scheduler picks it up. A `run_id` the
/// user gave must be checked first ([`RunIdPattern::check`]); without one the run is named after
/// `now` ([`manual_run_id`]), a microsecond later for each trigger that took the id first, so
/// generated ids never collide.
pub async fn trigger(
    store: &Store,
    dag: &Dag,
    conf: serde_json::Map<String, serde_json::Value>,
    given: Option<RunId>,
    logical_date: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, TriggerError> {
    create_triggered(store, dag, RunType::Manual, conf, given, logical_date, now).await
}

/// Creates the run `run_id` of `dag` that a task asked for (`TriggerDagRunOperator`, through the
/// Execution API), an `operator_triggered` run, as [`trigger`] creates a manual one. The id is
/// the operator's (generated by Airflow's code, or the task's `trigger_run_id`), so it is not
/// checked against the pattern users' ids must match, as Airflow does not check it.
pub async fn trigger_by_task(
    store: &Store,
    dag: &Dag,
    conf: serde_json::Map<String, serde_json::Value>,
    run_id: RunId,
    logical_date: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, TriggerError> {
    let kind = RunType::OperatorTriggered;
    create_triggered(store, dag, kind, conf, Some(run_id), logical_date, now).await
}

async fn create_triggered(
    store: &Store,
    dag: &Dag,
    run_type: RunType,
    conf: serde_json::Map<String, serde_json::Value>,
    given: Option<RunId>,
    logical_date: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, TriggerError> {
    check_conf(dag, &conf)?;
    // The store keeps microseconds; the run id must name the same instant.
    let logical_date = logical_date.trunc_subsecs(6);
    let now = now.trunc_subsecs(6);
    let mut run = NewRun {
        dag_id: dag.id.to_string(),
        run_id: String::new(),
        run_type,
        logical_date,
        data_interval: (logical_date, logical_date),
        conf,
        queued_at: now,
    };
    if let Some(run_id) = given {
        run.run_id = run_id.to_string();
        if !store.create_run(&run).await? {
            return Err(TriggerError::Exists {
                dag_id: run.dag_id,
                run_id: run.run_id,
            });
        }
        return Ok(run.run_id);
    }
    for step in 0..MANUAL_ID_ATTEMPTS {
        run.run_id = manual_run_id(now + chrono::Duration::microseconds(i64::from(step)));
        if store.create_run(&run).await? {
            return Ok(run.run_id);
        }
    }
    Err(TriggerError::Exists {
        dag_id: run.dag_id,
        run_id: run.run_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn user_run_ids_must_match_the_allowed_pattern() {
        let default = RunIdPattern::default();
        for ok in [
            "mine",
            "a.b~c:d+e-f_g",
            "manual__2024-01-01T00:00:00+00:00",
            "..",
        ] {
            assert!(default.check(ok).is_ok(), "{ok}");
        }
        for bad in ["x/y", "a\nb", "a\n", "a\r", "<script>", "a b", "é"] {
            let err = default.check(bad).unwrap_err().to_string();
            assert!(
                err.contains("allowed_run_id_pattern") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
        let strict = RunIdPattern::new("^ticket-[0-9]+$").unwrap();
        assert!(strict.allows("ticket-12"));
        assert!(!strict.allows("mine"));
        assert!(
            strict.allows("manual__2024-01-01T00:00:00.123456+00:00"),
            "the generated form is always allowed, as in Airflow"
        );
        // Python's re.match anchors at the start only.
        assert!(RunIdPattern::new("ticket").unwrap().allows("ticket-12"));
        assert!(!RunIdPattern::new("ticket").unwrap().allows("my-ticket"));
        let empty = RunIdPattern::new("  ").unwrap();
        assert!(!empty.allows("mine"));
        assert!(RunIdPattern::new("(").is_err());
    }

    #[test]
    fn run_ids_follow_airflow() {
        let at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 0, 0).unwrap();
        assert_eq!(
            run_id_for(RunType::Manual, at),
            "manual__2024-01-02T03:00:00+00:00"
        );
        assert_eq!(
            run_id_for(RunType::Scheduled, at),
            "scheduled__2024-01-02T03:00:00+00:00"
        );
    }

    #[test]
    fn manual_run_ids_are_the_trigger_time_in_python_isoformat() {
        // What Airflow 3.3.2's `DagRun.generate_run_id` prints for the same instants.
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        assert_eq!(
            manual_run_id(at + chrono::Duration::nanoseconds(123_456_789)),
            "manual__2026-12-05T10:00:00.123456+00:00"
        );
        assert_eq!(
            manual_run_id(at + chrono::Duration::milliseconds(5)),
            "manual__2026-12-05T10:00:00.005000+00:00"
        );
        assert_eq!(manual_run_id(at), "manual__2026-12-05T10:00:00+00:00");
    }

    #[test]
    fn conf_must_keep_the_type_of_param_defaults() {
        let mut dag = Dag::new(
            gust_core::ids::DagId::new("d").unwrap(),
            gust_core::dag::DagSettings::default(),
            indexmap::IndexMap::new(),
            indexmap::IndexMap::new(),
            "d.yaml".into(),
        )
        .unwrap();
        dag.settings.params = serde_json::json!({"limit": 10, "anything": null})
            .as_object()
            .cloned()
            .unwrap();
        let conf = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert!(check_conf(&dag, &conf(serde_json::json!({"limit": 3, "other": "x"}))).is_ok());
        assert!(check_conf(&dag, &conf(serde_json::json!({"anything": [1]}))).is_ok());
        let err = check_conf(&dag, &conf(serde_json::json!({"limit": "ten"})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "conf key \"limit\" must be a number like the DAG's param default (10), not a string"
        );
    }
}
