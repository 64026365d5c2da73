//! Trigger rules: when a task may run, given the states of its upstream tasks.
//!
//! The names and meanings are Airflow's. This module only names the rules; deciding readiness
//! from upstream states belongs to the scheduling core.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of Airflow's thirteen trigger rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream succeeded (the default).
    #[default]
    AllSuccess,
    /// Every upstream failed or was upstream_failed.
    AllFailed,
    /// Every upstream finished, whatever its state.
    AllDone,
    /// Every upstream was skipped.
    AllSkipped,
    /// At least one upstream succeeded.
    OneSuccess,
    /// At least one upstream failed.
    OneFailed,
    /// At least one upstream succeeded or failed.
    OneDone,
    /// No upstream failed or was upstream_failed.
    NoneFailed,
    /// No upstream failed, and at least one succeeded.
    NoneFailedMinOneSuccess,
    /// No upstream was skipped.
    NoneSkipped,
    /// Run regardless of upstream states.
    Always,
    /// Every upstream finished, none was skipped, and at least one succeeded.
    AllDoneMinOneSuccess,
    /// Every upstream finished and, when some are setup tasks, at least one of those succeeded:
    /// a teardown's rule.
    AllDoneSetupSuccess,
}

impl TriggerRule {
    /// Every rule, in Airflow's documentation order.
    pub const ALL: [TriggerRule; 13] = [
        Self::AllSuccess,
        Self::AllFailed,
        Self::AllDone,
        Self::AllSkipped,
        Self::OneSuccess,
        Self::OneFailed,
        Self::OneDone,
        Self::NoneFailed,
        Self::NoneFailedMinOneSuccess,
        Self::NoneSkipped,
        Self::Always,
        Self::AllDoneMinOneSuccess,
        Self::AllDoneSetupSuccess,
    ];

    /// The rule's name as Airflow spells it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllSuccess => "all_success",
            Self::AllFailed => "all_failed",
            Self::AllDone => "all_done",
            Self::AllSkipped => "all_skipped",
            Self::OneSuccess => "one_success",
            Self::OneFailed => "one_failed",
            Self::OneDone => "one_done",
            Self::NoneFailed => "none_failed",
            Self::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            Self::NoneSkipped => "none_skipped",
            Self::Always => "always",
            Self::AllDoneMinOneSuccess => "all_done_min_one_success",
            Self::AllDoneSetupSuccess => "all_done_setup_success",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no trigger rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger rule \"{0}\"")]
pub struct UnknownTriggerRule(pub String);

impl FromStr for TriggerRule {
    type Err = UnknownTriggerRule;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Airflow accepts the enum's repr too (`TriggerRule.ALL_DONE`); so do we.
        let name = text
            .trim()
            .trim_start_matches("TriggerRule.")
            .to_ascii_lowercase();
        // `none_failed_or_skipped` is Airflow's deprecated name for none_failed_min_one_success.
        if name == "none_failed_or_skipped" {
            return Ok(Self::NoneFailedMinOneSuccess);
        }
        Self::ALL
            .into_iter()
            .find(|rule| rule.as_str() == name)
            .ok_or_else(|| UnknownTriggerRule(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_parses_from_its_own_name() {
        for rule in TriggerRule::ALL {
            assert_eq!(rule.as_str().parse::<TriggerRule>(), Ok(rule));
        }
    }

    #[test]
    fn airflow_enum_reprs_and_deprecated_names_parse() {
        assert_eq!("TriggerRule.ALL_DONE".parse(), Ok(TriggerRule::AllDone));
        assert_eq!(
            "none_failed_or_skipped".parse(),
            Ok(TriggerRule::NoneFailedMinOneSuccess)
        );
    }

    #[test]
    fn unknown_rules_are_refused() {
        assert!("sometimes".parse::<TriggerRule>().is_err());
    }
}
