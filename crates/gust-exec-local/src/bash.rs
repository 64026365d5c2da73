//! A bash try's plan: the command from the rendered arguments, run by `bash -c` in a fresh
//! temporary folder (or `cwd`), its exit mapped to an outcome as Airflow's BashOperator does.

use std::path::PathBuf;
use std::sync::Arc;

use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_operators::bash::BashArgs;

use crate::output::Decoder;
use crate::process::Plan;
use crate::reuse::ScratchFolders;

/// The plan of a bash try: its command, environment and working folder.
pub fn plan(spec: &LaunchSpec, scratch: &Arc<ScratchFolders>) -> Result<Plan, TryOutcome> {
    let args: BashArgs = gust_operators::read_args(&spec.args)
        .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))?;
    let Some(decoder) = Decoder::for_label(&args.output_encoding) else {
        return Err(TryOutcome::Failed(FailureReason::InvalidArguments(
            format!("unknown output_encoding \"{}\"", args.output_encoding),
        )));
    };
    // Airflow runs bash commands in a fresh, empty temporary folder unless told otherwise.
    let mut own = None;
    let cwd = match &args.cwd {
        Some(cwd) => PathBuf::from(cwd),
        None => {
            let dir = scratch.take().map_err(|err| {
                TryOutcome::Failed(FailureReason::Spawn(format!("no temporary folder: {err}")))
            })?;
            let path = dir.path().to_owned();
            own = Some(dir);
            path
        }
    };
    let do_xcom_push = spec.do_xcom_push;
    // Without `env` the try inherits the scheduler's environment, as with `append_env`; with
    // it alone, it gets nothing else.
    let inherit = args.env.is_none() || args.append_env;
    let mut env: Vec<(String, String)> = (args.env.iter().flatten())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Airflow's BashOperator adds its context variables after the task's own `env`, so they
    // win over a variable of the same name there, whatever `append_env` says.
    env.extend(crate::context_env::airflow_context_vars(spec));
    Ok(Plan {
        script: args.bash_command.clone(),
        env: Some(env),
        clear_env: !inherit,
        cwd,
        decoder,
        render: std::convert::identity,
        what: "bash".to_owned(),
        folders: Vec::new(),
        scratch: own,
        finish: Box::new(move |code, last_line| {
            outcome_of_code(code, &args, do_xcom_push, last_line)
        }),
        watchdog: None,
    })
}

/// The outcome of a bash try that exited with `code`, whose output (stdout and stderr as one
/// stream) ended with `last_line`.
pub fn outcome_of_code(
    code: i32,
    args: &BashArgs,
    do_xcom_push: bool,
    last_line: Option<String>,
) -> TryOutcome {
    // The skip codes first, as Airflow's BashOperator checks them: `skip_on_exit_code: 0`
    // makes a successful exit a skip.
    match code {
        code if args.skip_on_exit_code.contains(&code) => TryOutcome::Skipped { exit_code: code },
        // Airflow's return value: the last line with trailing whitespace stripped, and `""`
        // when there was no output at all (a pull then renders empty, not `None`).
        0 => TryOutcome::Succeeded {
            xcom: do_xcom_push.then(|| {
                let line = last_line.unwrap_or_default();
                serde_json::Value::String(line.trim_end().to_owned())
            }),
        },
        code => TryOutcome::Failed(FailureReason::ExitCode(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(skip: serde_json::Value) -> BashArgs {
        let value = serde_json::json!({"bash_command": "true", "skip_on_exit_code": skip});
        gust_operators::read_args(value.as_object().expect("an object")).expect("args")
    }

    #[test]
    fn skip_codes_are_checked_before_success_as_airflow_does() {
        let skipped = outcome_of_code(0, &args(serde_json::json!(0)), true, None);
        assert_eq!(skipped, TryOutcome::Skipped { exit_code: 0 });
        let default = outcome_of_code(0, &args(serde_json::json!(99)), false, None);
        assert_eq!(default, TryOutcome::Succeeded { xcom: None });
        let ninety_nine = outcome_of_code(99, &args(serde_json::json!(99)), false, None);
        assert_eq!(ninety_nine, TryOutcome::Skipped { exit_code: 99 });
        let failed = outcome_of_code(3, &args(serde_json::json!(99)), false, None);
        assert_eq!(failed, TryOutcome::Failed(FailureReason::ExitCode(3)));
    }

    #[test]
    fn the_last_line_is_pushed_stripped_and_no_output_pushes_an_empty_string() {
        let pushed = |last: Option<&str>| {
            outcome_of_code(
                0,
                &args(serde_json::json!(99)),
                true,
                last.map(str::to_owned),
            )
        };
        let value = |text: &str| TryOutcome::Succeeded {
            xcom: Some(serde_json::json!(text)),
        };
        assert_eq!(pushed(Some("  v 1 \t ")), value("  v 1"));
        assert_eq!(pushed(Some("")), value(""));
        assert_eq!(
            pushed(None),
            value(""),
            "no output pushes \"\", as Airflow does"
        );
    }
}
