//! A bash try's plan: the command from the rendered arguments, run by `bash -c` in a fresh
//! temporary folder (or `cwd`), its exit mapped to an outcome as Airflow's BashOperator does.

use std::path::PathBuf;

use gust_executor::{FailureReason, LaunchSpec, TryOutcome};
use gust_operators::bash::BashArgs;

use crate::output::Decoder;
use crate::process::Plan;

/// The plan of a bash try: its command, environment and working folder.
pub fn plan(spec: &LaunchSpec) -> Result<Plan, TryOutcome> {
    let args: BashArgs = gust_operators::read_args(&spec.args)
        .map_err(|err| TryOutcome::Failed(FailureReason::InvalidArguments(err.to_string())))?;
    let Some(decoder) = Decoder::for_label(&args.output_encoding) else {
        return Err(TryOutcome::Failed(FailureReason::InvalidArguments(
            format!("unknown output_encoding \"{}\"", args.output_encoding),
        )));
    };
    // Airflow runs bash commands in a fresh temporary folder unless told otherwise.
    let mut folders = Vec::new();
    let cwd = match &args.cwd {
        Some(cwd) => PathBuf::from(cwd),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("gust-try-")
                .tempdir()
                .map_err(|err| {
                    TryOutcome::Failed(FailureReason::Spawn(format!("no temporary folder: {err}")))
                })?;
            let path = dir.path().to_owned();
            folders.push(dir);
            path
        }
    };
    let do_xcom_push = spec.do_xcom_push;
    Ok(Plan {
        script: args.bash_command.clone(),
        env: args
            .env
            .as_ref()
            .map(|env| env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        clear_env: !args.append_env,
        cwd,
        decoder,
        what: "bash".to_owned(),
        folders,
        finish: Box::new(move |code, last_line| {
            outcome_of_code(code, &args, do_xcom_push, last_line)
        }),
    })
}

/// The outcome of a bash try that exited with `code`.
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
        0 => TryOutcome::Succeeded {
            xcom: if do_xcom_push {
                last_line.map(serde_json::Value::String)
            } else {
                None
            },
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
}
