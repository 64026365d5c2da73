//! Pod names and label values, made valid the way KubernetesPodOperator makes them, so that the
//! same task gets the same pod name and labels under Gust as under Airflow.

use md5::{Digest, Md5};

/// The longest pod name KPO generates (a hostname's limit).
pub const POD_NAME_MAX_LENGTH: usize = 63;
/// The longest label value Kubernetes accepts.
const MAX_LABEL_LEN: usize = 63;
/// The longest `name` argument KPO accepts.
const MAX_NAME_ARGUMENT: usize = 220;

/// Why a pod name cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The `name` argument has characters or a length KPO refuses.
    #[error("pod name \"{0}\" must be at most 220 letters, digits, '-', '_' or '.'; change `name`")]
    InvalidArgument(String),
    /// The name, without its random suffix, is not a valid DNS-1123 name.
    #[error(
        "pod name \"{0}\" is not a valid Kubernetes name (lowercase letters, digits and '-', \
         starting and ending with a letter or digit); change `name` or turn \
         `random_name_suffix` on"
    )]
    NotDns(String),
}

/// The `name` argument made valid: checked as KPO checks it, lowercased, and every run of
/// characters other than `a-z0-9-` replaced by `-`.
pub fn sanitize_name_argument(name: &str) -> Result<String, NameError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_ARGUMENT
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(NameError::InvalidArgument(name.to_owned()));
    }
    Ok(replace_runs(&name.to_lowercase(), |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    }))
}

/// A pod name from the task id, as KPO's `create_unique_id`: slugified, cut to 63 characters.
#[must_use]
pub fn name_from_task_id(task_id: &str) -> String {
    let slug = replace_runs(&task_id.to_lowercase(), |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    });
    let slug = slug.trim_matches('-');
    let cut: String = slug.chars().take(POD_NAME_MAX_LENGTH).collect();
    cut.trim_matches(['.', '-']).to_owned()
}

/// `name` with `-suffix` appended, cut so that the whole fits in 63 characters.
#[must_use]
pub fn with_suffix(name: &str, suffix: &str) -> String {
    let room = POD_NAME_MAX_LENGTH.saturating_sub(suffix.len() + 1);
    let cut: String = name.chars().take(room).collect();
    format!("{}-{suffix}", cut.trim_matches(['-', '.']))
}

/// A UUID (version 3, from MD5) standing for `unique` and `index`: KPO names secret volumes
/// `secretvol` + a random UUID; this one is as unique as the pod's own randomness, and keeps
/// building a pod a pure function of its request.
#[must_use]
pub fn uuid_from(unique: &str, index: usize) -> String {
    let mut bytes: [u8; 16] = Md5::digest(format!("{unique}/{index}").as_bytes()).into();
    bytes[6] = (bytes[6] & 0x0f) | 0x30; // version 3
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Checks a final pod name (a DNS-1123 subdomain).
pub fn check_pod_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(NameError::NotDns(name.to_owned()))
    }
}

/// A label value Kubernetes accepts, as KPO's `make_safe_label_value`: invalid characters and
/// non-alphanumeric ends removed; when anything changed or it is too long, cut and followed by
/// the first 9 hex digits of the original's MD5, so distinct values stay distinct.
#[must_use]
pub fn safe_label_value(value: &str) -> String {
    let inner: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    let safe = inner.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if safe.len() <= MAX_LABEL_LEN && safe == value {
        return safe.to_owned();
    }
    let digest = Md5::digest(value.as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let hash = &hash[..9];
    let cut: String = safe.chars().take(MAX_LABEL_LEN - hash.len() - 1).collect();
    format!("{cut}-{hash}")
}

/// Eight random lowercase letters and digits, as KPO's name suffixes.
#[must_use]
pub fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn replace_runs(text: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if keep(c) {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_volume_uuids_look_like_kpos_and_differ_per_secret() {
        let one = uuid_from("abcd1234", 0);
        assert_eq!(one.len(), 36);
        assert_eq!(one.matches('-').count(), 4);
        assert_eq!(&one[14..15], "3", "version 3: {one}");
        assert_ne!(one, uuid_from("abcd1234", 1));
        assert_eq!(one, uuid_from("abcd1234", 0));
    }

    #[test]
    fn name_arguments_are_lowercased_and_dashed() {
        assert_eq!(sanitize_name_argument("My_Pod.v2").unwrap(), "my-pod-v2");
        assert!(sanitize_name_argument("bad name").is_err());
        assert!(sanitize_name_argument(&"x".repeat(221)).is_err());
    }

    #[test]
    fn task_ids_are_slugified() {
        assert_eq!(
            name_from_task_id("Train_Model.step-1"),
            "train-model-step-1"
        );
        assert_eq!(name_from_task_id("__x__"), "x");
        assert_eq!(name_from_task_id(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn suffixes_keep_names_within_63_characters() {
        let name = with_suffix(&"a".repeat(80), "abcd1234");
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-abcd1234"));
        assert_eq!(with_suffix("t1-", "abcd1234"), "t1-abcd1234");
    }

    #[test]
    fn label_values_are_made_safe_as_kpo_makes_them() {
        assert_eq!(safe_label_value("my_dag"), "my_dag");
        // A run id with ':' and '+' changes, so it gets a hash of the original.
        let run = "scheduled__2024-01-01T00:00:00+00:00";
        assert_eq!(
            safe_label_value(run),
            format!("scheduled__2024-01-01T0000000000-{}", &hex_md5(run)[..9])
        );
        let long = safe_label_value(&"a".repeat(70));
        assert_eq!(long.len(), 63);
        // md5("a" * 70)[:9]
        assert!(long.ends_with(&hex_md5(&"a".repeat(70))[..9]));
    }

    fn hex_md5(text: &str) -> String {
        Md5::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn pod_names_must_be_dns_names() {
        assert!(check_pod_name("t1-abc").is_ok());
        assert!(check_pod_name("t1-").is_err());
        assert!(check_pod_name("").is_err());
    }
}
