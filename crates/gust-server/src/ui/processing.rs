//! The artifacts of a `processing` try: its inputs, as its rendered arguments name them, and its
//! outputs' URIs, from the step's XCom (the map of output names to URIs it returned) or, before
//! it has one, the destinations its arguments name. Default destinations depend on the
//! scheduler's `[artifacts] root`, which the server does not read; they show once the step's
//! XCom has them.

use gust_operators::processing::ProcessingArgs;
use serde_json::{Value, json};

/// `{"inputs": [{name, uri}], "outputs": [{name, uri}]}` of one try (`uri` null for an output
/// not known yet), or `{"error": ...}` when its arguments cannot be read.
pub fn artifacts(rendered_args: &Value, xcom: Option<&Value>) -> Value {
    let args = rendered_args
        .as_object()
        .ok_or_else(|| "the stored arguments are not a map".to_owned())
        .and_then(|args| ProcessingArgs::read(args).map_err(|e| e.to_string()));
    let args = match args {
        Ok(args) => args,
        Err(why) => return json!({"error": why}),
    };
    let inputs: Vec<Value> = args
        .inputs
        .iter()
        .map(|input| json!({"name": input.name, "uri": input.source}))
        .collect();
    let outputs: Vec<Value> = args
        .outputs
        .iter()
        .map(|output| {
            let returned = xcom
                .and_then(|x| x.get(&output.name))
                .and_then(Value::as_str);
            let uri = returned.or(output.destination.as_deref());
            json!({"name": output.name, "uri": uri})
        })
        .collect();
    json!({"inputs": inputs, "outputs": outputs})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_from_the_xcom_then_from_the_arguments() {
        let args = json!({
            "image": "python", "command": ["true"],
            "inputs": [{"name": "train", "source": "s3://b/prep/train"}],
            "outputs": [{"name": "model"}, {"name": "report", "destination": "s3://b/report"}],
        });
        let before = artifacts(&args, None);
        assert_eq!(
            before,
            json!({"inputs": [{"name": "train", "uri": "s3://b/prep/train"}],
                   "outputs": [{"name": "model", "uri": null},
                               {"name": "report", "uri": "s3://b/report"}]})
        );
        let xcom = json!({"model": "s3://b/run/train/model", "report": "s3://b/report"});
        let after = artifacts(&args, Some(&xcom));
        assert_eq!(after["outputs"][0]["uri"], "s3://b/run/train/model");
        assert!(
            artifacts(&json!({"image": "x"}), None)["error"]
                .as_str()
                .unwrap()
                .contains("give `code`")
        );
    }
}
