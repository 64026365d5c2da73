//! Where a try's log lives under a log folder: Airflow's layout,
//! `dag_id=D/run_id=R/task_id=T/attempt=N.log`, shared by the local folder and the remote copy.
//!
//! DAG and task ids cannot hold a `/`, but a run id given by a user is free text, so its folder
//! name is escaped to be one path segment that no other run id has: `%`, `/`, `\` and control
//! characters become `%XX`. Ordinary run ids (`manual__2024-01-01T00:00:00+00:00`, anything
//! `[scheduler] allowed_run_id_pattern` admits by default) have none of these and keep the name
//! they always had. A name too long for a file system keeps a readable start and ends with the
//! SHA-256 of the whole id after `%~`, which no escaped name contains.

use sha2::{Digest, Sha256};

use crate::TryKey;

/// The longest file name most file systems take (ext4, XFS, APFS: 255 bytes).
const LONGEST_NAME: usize = 255;

/// How much of an over-long run id's escaped text is kept before its digest.
const KEPT_PREFIX: usize = 120;

/// `dag_id=D/run_id=R/task_id=T/attempt=N.log`, `/`-separated.
#[must_use]
pub fn relative_path(key: &TryKey) -> String {
    // Airflow's `log_filename_template` puts a mapped instance's tries in a folder of its own.
    let instance = if key.map_index >= 0 {
        format!("/map_index={}", key.map_index)
    } else {
        String::new()
    };
    format!(
        "dag_id={}/{}/task_id={}{instance}/attempt={}.log",
        key.dag_id,
        run_folder(key.run_id.as_str()),
        key.task_id,
        key.try_number
    )
}

/// `run_id=R`, `R` escaped so that two run ids never share a folder.
#[must_use]
pub fn run_folder(run_id: &str) -> String {
    let name = format!("run_id={}", escape(run_id));
    if name.len() <= LONGEST_NAME {
        return name;
    }
    let mut kept = String::from("run_id=");
    for c in run_id.chars() {
        let part = escape(c.encode_utf8(&mut [0; 4]));
        if kept.len() + part.len() > KEPT_PREFIX {
            break;
        }
        kept.push_str(&part);
    }
    let digest = Sha256::digest(run_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{kept}%~{hex}")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '/' | '\\') || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_run_ids_keep_their_folder_names() {
        for id in [
            "manual__2024-01-01T00:00:00+00:00",
            "scheduled__2024-01-01T00:00:00.123456+00:00",
            "my.run~1:a+b-c",
        ] {
            assert_eq!(run_folder(id), format!("run_id={id}"));
        }
    }

    #[test]
    fn distinct_run_ids_never_share_a_folder() {
        let ids = [
            "x/y", "x_y", "x%2Fy", "x\\y", "x%5Cy", "x%y", "x\ny", "x%0Ay", "x\ry", "..", ".",
        ];
        let folders: std::collections::HashSet<String> =
            ids.iter().map(|id| run_folder(id)).collect();
        assert_eq!(folders.len(), ids.len(), "{folders:?}");
        for folder in &folders {
            assert!(
                !folder.contains(['/', '\\', '\n', '\r']),
                "{folder} is one plain segment"
            );
        }
    }

    #[test]
    fn over_long_run_ids_end_with_their_digest() {
        let long = "é/".repeat(125);
        let other = format!("{}x", "é/".repeat(124));
        let (a, b) = (run_folder(&long), run_folder(&other));
        assert!(a.len() <= LONGEST_NAME && b.len() <= LONGEST_NAME, "{a}");
        assert_ne!(a, b);
        assert!(a.starts_with("run_id=é%2Fé%2F") && a.contains("%~"), "{a}");
        let plain = "a".repeat(248);
        assert_eq!(run_folder(&plain), format!("run_id={plain}"));
        assert!(run_folder(&"a".repeat(249)).contains("%~"));
    }
}
