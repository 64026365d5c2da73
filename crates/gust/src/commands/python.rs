//! `gust python check`: whether the Python environment `[python] interpreter` names can run
//! Python tasks, and what to install when it cannot. It asks the interpreter itself (the same
//! way a worker starts), so what it says holds for the tasks.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::cli::PythonCommand;
use crate::config::{self, Config};

/// What to install, in words a user can paste.
const INSTALL: &str = "pip install apache-airflow==3.3.2 dag-factory==1.1.0";

/// The interpreter has this long to import Airflow's Task SDK and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Prints what the interpreter has, as one JSON object: its version, the distributions Gust needs
/// and the Execution API version its Task SDK speaks.
const PROBE: &str = r#"
import json, sys
import importlib.metadata as metadata
facts = {"python": sys.version.split()[0], "distributions": {}}
for name in ("apache-airflow", "apache-airflow-task-sdk", "dag-factory"):
    try:
        facts["distributions"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        facts["distributions"][name] = None
try:
    from airflow.sdk.api.datamodels._generated import API_VERSION
    import airflow.sdk.execution_time.execute_workload  # noqa: F401
    facts["api_version"] = API_VERSION
except Exception as error:
    facts["import_error"] = f"{type(error).__name__}: {error}"
try:
    import dagfactory  # noqa: F401
except Exception as error:
    facts["dagfactory_error"] = f"{type(error).__name__}: {error}"
print(json.dumps(facts))
"#;

/// What the probe found.
#[derive(Debug, Deserialize)]
struct Facts {
    python: String,
    distributions: std::collections::BTreeMap<String, Option<String>>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    import_error: Option<String>,
    #[serde(default)]
    dagfactory_error: Option<String>,
}

/// Runs a `gust python` command.
pub fn run(command: PythonCommand) -> anyhow::Result<ExitCode> {
    match command {
        PythonCommand::Check { interpreter } => {
            let config = Config::load(&config::home()?)?;
            let Some(interpreter) = interpreter.or(config.python.interpreter) else {
                println!(
                    "no Python environment is configured: Python tasks are refused.\n\
                     To run them, make one (python3 -m venv ~/gust-venv && \
                     ~/gust-venv/bin/{INSTALL}) and set [python] interpreter = \
                     \"~/gust-venv/bin/python\" (or GUST__PYTHON__INTERPRETER); see docs/python.md"
                );
                return Ok(ExitCode::FAILURE);
            };
            let facts = super::runtime()?.block_on(probe(&interpreter))?;
            let problems = problems(&facts);
            print!("{}", report(&interpreter, &facts, &problems));
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Runs [`PROBE`] in `interpreter`.
async fn probe(interpreter: &Path) -> anyhow::Result<Facts> {
    // Like a worker, the probe is a process of the Python environment (the one other edge that
    // starts processes besides the local runtime and the artifacts wrapper).
    let mut command = tokio::process::Command::new(interpreter);
    command
        .args(["-c", PROBE])
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIMEOUT, command.output())
        .await
        .with_context(|| {
            format!(
                "{} did not answer within {}s",
                interpreter.display(),
                PROBE_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| {
            format!(
                "cannot run {}: point [python] interpreter at a virtualenv's bin/python",
                interpreter.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr.lines().last().unwrap_or_default();
        format!(
            "{} is not a Python that runs the check ({}): {said}",
            interpreter.display(),
            output.status
        )
    })
}

/// What stops the environment from running Python tasks, each with its fix.
fn problems(facts: &Facts) -> Vec<String> {
    let mut problems = Vec::new();
    let version = |name: &str| facts.distributions.get(name).cloned().flatten();
    match version("apache-airflow") {
        None => problems.push(format!("apache-airflow is not installed: {INSTALL}")),
        Some(v) if !v.starts_with("3.") => problems.push(format!(
            "apache-airflow {v} has no Task SDK (Airflow 3 does): {INSTALL}"
        )),
        Some(_) => {}
    }
    if version("dag-factory").is_none() || facts.dagfactory_error.is_some() {
        problems.push(format!(
            "dag-factory cannot be imported ({}): workers build the DAG files with it: {INSTALL}",
            facts.dagfactory_error.as_deref().unwrap_or("not installed")
        ));
    }
    match (&facts.api_version, &facts.import_error) {
        (Some(api), _) if api != gust_server::execution::API_VERSION => problems.push(format!(
            "its Task SDK speaks Execution API {api}, Gust serves {}: {INSTALL}",
            gust_server::execution::API_VERSION
        )),
        (Some(_), _) => {}
        (None, Some(error)) => problems.push(format!(
            "Airflow's Task SDK cannot be imported ({error}): {INSTALL}"
        )),
        (None, None) => problems.push(format!("Airflow's Task SDK is missing: {INSTALL}")),
    }
    problems
}

/// The check's report: what was found, then each problem, or that all is well.
fn report(interpreter: &Path, facts: &Facts, problems: &[String]) -> String {
    let mut text = format!("python: {} ({})\n", interpreter.display(), facts.python);
    for (name, version) in &facts.distributions {
        let shown = version.as_deref().unwrap_or("not installed");
        text.push_str(&format!("{name}: {shown}\n"));
    }
    if let Some(api) = &facts.api_version {
        text.push_str(&format!(
            "Execution API: {api} (Gust serves {})\n",
            gust_server::execution::API_VERSION
        ));
    }
    if problems.is_empty() {
        text.push_str("ok: this environment runs Python tasks\n");
    }
    for problem in problems {
        text.push_str(&format!("problem: {problem}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(airflow: Option<&str>, api: Option<&str>) -> Facts {
        Facts {
            python: "3.11.2".to_owned(),
            distributions: [
                ("apache-airflow".to_owned(), airflow.map(str::to_owned)),
                (
                    "apache-airflow-task-sdk".to_owned(),
                    Some("1.3.2".to_owned()),
                ),
                ("dag-factory".to_owned(), Some("1.1.0".to_owned())),
            ]
            .into_iter()
            .collect(),
            api_version: api.map(str::to_owned),
            import_error: None,
            dagfactory_error: None,
        }
    }

    #[test]
    fn a_matching_environment_has_no_problem_and_others_say_what_to_install() {
        let served = gust_server::execution::API_VERSION;
        assert!(problems(&facts(Some("3.3.2"), Some(served))).is_empty());
        let old = problems(&facts(Some("2.10.0"), None));
        assert!(
            old.iter()
                .any(|p| p.contains("2.10.0") && p.contains(INSTALL)),
            "{old:?}"
        );
        let other_api = problems(&facts(Some("3.4.0"), Some("2099-01-01")));
        assert!(
            other_api.iter().any(|p| p.contains("2099-01-01")),
            "{other_api:?}"
        );
        let report = report(Path::new("/v/bin/python"), &facts(None, None), &[]);
        assert!(report.contains("apache-airflow: not installed"), "{report}");
    }
}
