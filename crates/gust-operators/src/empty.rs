//! `empty`: a task that does nothing and succeeds at once (Airflow's `EmptyOperator`), used to
//! join or fan out branches.

use serde::Deserialize;

use crate::spec::{OperatorSpec, check_args};

/// The empty operator takes no arguments of its own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyArgs {}

/// The empty operator.
pub static SPEC: OperatorSpec = OperatorSpec {
    name: "empty",
    aliases: &[
        "EmptyOperator",
        "DummyOperator",
        "airflow.operators.empty.EmptyOperator",
        "airflow.operators.dummy.DummyOperator",
        "airflow.operators.dummy_operator.DummyOperator",
        "airflow.providers.standard.operators.empty.EmptyOperator",
    ],
    arguments: &[],
    renamed_arguments: &[],
    required: &[],
    pushes_xcom_by_default: true,
    holds_worker: true,
    open_arguments: false,
    check: check_args::<EmptyArgs>,
};
