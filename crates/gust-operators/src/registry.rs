//! Every operator Gust knows, and name resolution.

use crate::spec::OperatorSpec;
use crate::{
    apply, bash, empty, kubernetes_job, kubernetes_pod, processing, python, sensors,
    spark_kubernetes,
};

/// Every operator, in the order `gust` lists them.
pub static OPERATORS: &[&OperatorSpec] = &[
    &empty::SPEC,
    &bash::SPEC,
    &kubernetes_pod::SPEC,
    &processing::SPEC,
    &apply::APPLY_SPEC,
    &apply::DELETE_SPEC,
    &apply::KUEUE_INSTALL_SPEC,
    &spark_kubernetes::SPEC,
    &kubernetes_job::SPEC,
    &kubernetes_job::DELETE_SPEC,
    &kubernetes_job::PATCH_SPEC,
    &kubernetes_job::KUEUE_SPEC,
    &sensors::time::TIME_DELTA_SPEC,
    &sensors::time::DATE_TIME_SPEC,
    &sensors::time::TIME_SPEC,
    &sensors::external::SENSOR_SPEC,
    &sensors::external::MARKER_SPEC,
    &sensors::file::SPEC,
    &sensors::s3::SPEC,
    &sensors::http::SENSOR_SPEC,
    &sensors::http::OPERATOR_SPEC,
    &sensors::sql::SPEC,
    &sensors::kubernetes::RESOURCE_SPEC,
    &sensors::kubernetes::SPARK_SPEC,
    &python::SPEC,
    &python::BRANCH_SPEC,
    &python::SHORT_CIRCUIT_SPEC,
    &python::TASKFLOW_SPEC,
    &python::CLASS_PATH_SPEC,
];

/// Finds the operator a DAG file names, by short name, class name or class path. Python tasks
/// are found only once [`python::enable`] was called.
#[must_use]
pub fn resolve(name: &str) -> Option<&'static OperatorSpec> {
    let name = name.trim();
    available().find(|spec| spec.name == name || spec.aliases.contains(&name))
}

/// The operators DAG files may use in this process: every one, but Python tasks only once
/// [`python::enable`] was called.
pub fn available() -> impl Iterator<Item = &'static OperatorSpec> {
    OPERATORS
        .iter()
        .copied()
        .filter(|spec| !python::runs_in_task_sdk(spec.name) || python::enabled())
}

/// Every name an operator can be given by, for "did you mean" suggestions.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    // TaskFlow tasks are written with `decorator:`, never by an operator name.
    available()
        .filter(|spec| !spec.open_arguments)
        .flat_map(|spec| std::iter::once(spec.name).chain(spec.aliases.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_class_names_and_class_paths_resolve() {
        for (given, canonical) in [
            ("bash", "bash"),
            ("BashOperator", "bash"),
            ("airflow.operators.bash.BashOperator", "bash"),
            ("airflow.operators.bash_operator.BashOperator", "bash"),
            (
                "airflow.providers.standard.operators.bash.BashOperator",
                "bash",
            ),
            ("empty", "empty"),
            ("DummyOperator", "empty"),
            ("airflow.operators.empty.EmptyOperator", "empty"),
            ("airflow.operators.dummy_operator.DummyOperator", "empty"),
            ("processing", "processing"),
            ("ProcessingStep", "processing"),
            ("SparkKubernetesOperator", "spark_kubernetes"),
            (
                "airflow.providers.cncf.kubernetes.operators.spark_kubernetes.SparkKubernetesOperator",
                "spark_kubernetes",
            ),
            ("KubernetesCreateResourceOperator", "kubernetes_apply"),
            (
                "KubernetesDeleteResourceOperator",
                "kubernetes_delete_resource",
            ),
            ("KubernetesInstallKueueOperator", "kueue_install"),
        ] {
            assert_eq!(resolve(given).map(|s| s.name), Some(canonical), "{given}");
        }
    }

    #[test]
    fn no_two_operators_share_a_name() {
        let mut names: Vec<&str> = all_names().collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn every_required_argument_is_an_argument() {
        for spec in OPERATORS {
            for required in spec.required {
                assert!(
                    spec.accepts(required),
                    "{} requires unknown {required}",
                    spec.name
                );
            }
        }
    }
}
