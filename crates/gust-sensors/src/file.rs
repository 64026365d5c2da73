//! `FileSensor`'s poke: a file, or a folder holding a file, matching `filepath` (a glob) under
//! the base path of the `fs_conn_id` connection. The walk runs on the blocking pool.

use std::path::{Path, PathBuf};

use gust_operators::sensors::file::{DEFAULT_CONN_ID, FileArgs};
use gust_template::RuntimeLookup;

use crate::decide::Poke;

/// Pokes for `args.filepath`, reading the base path from `lookup`'s connection.
pub async fn poke(args: &FileArgs, lookup: Option<&dyn RuntimeLookup>) -> (Poke, String) {
    let base = match base_path(&args.fs_conn_id, lookup) {
        Ok(base) => base,
        Err(why) => return (Poke::Error(why), String::new()),
    };
    let path = Path::new(&base).join(&args.filepath);
    let said = format!("Poking for file {}", path.display());
    let recursive = args.recursive;
    let found = tokio::task::spawn_blocking(move || matches_a_file(&path, recursive)).await;
    match found {
        Ok(Ok(true)) => (Poke::Met, said),
        Ok(Ok(false)) => (Poke::NotYet, said),
        Ok(Err(why)) => (Poke::Error(why), said),
        Err(err) => (Poke::Error(format!("the poke stopped: {err}")), said),
    }
}

/// The connection's `path` extra (Airflow's `FSHook.get_path`); `fs_default`, when it does not
/// exist, is Airflow's default connection (`{"path": "/"}`).
fn base_path(conn_id: &str, lookup: Option<&dyn RuntimeLookup>) -> Result<String, String> {
    let Some(conn) = lookup.and_then(|lookup| lookup.connection(conn_id)) else {
        if conn_id == DEFAULT_CONN_ID {
            return Ok("/".to_owned());
        }
        return Err(format!(
            "connection \"{conn_id}\" (fs_conn_id) does not exist: create it with `gust connections add {conn_id} --conn-type fs --conn-extra '{{\"path\": \"/base\"}}'`"
        ));
    };
    let extra: serde_json::Value = match conn.extra.as_deref() {
        None | Some("") => serde_json::Value::Null,
        Some(text) => serde_json::from_str(text)
            .map_err(|_| format!("connection \"{conn_id}\": its extra is not JSON"))?,
    };
    Ok(extra
        .get("path")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned())
}

/// Whether `pattern` (Python's `glob` syntax; `**` crosses folders only when `recursive`)
/// matches a file, or a folder with a file somewhere below it.
fn matches_a_file(pattern: &Path, recursive: bool) -> Result<bool, String> {
    let text = pattern.to_string_lossy();
    let is_glob = |part: &str| part.contains(['*', '?', '[']);
    // The walk starts at the longest leading part without a wildcard.
    let mut root = PathBuf::new();
    let mut rest = Vec::new();
    for part in pattern.components() {
        let part_text = part.as_os_str().to_string_lossy();
        if rest.is_empty() && !is_glob(&part_text) {
            root.push(part);
        } else {
            rest.push(part_text.into_owned());
        }
    }
    if rest.is_empty() {
        return Ok(holds_a_file(&root));
    }
    let text = if recursive {
        text.into_owned()
    } else {
        // Without `recursive`, Python's `**` is `*`.
        text.replace("**", "*")
    };
    let matcher = globset::GlobBuilder::new(&text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|err| format!("filepath is not a valid glob: {err}"))?
        .compile_matcher();
    let crosses = recursive && rest.iter().any(|part| part.contains("**"));
    let mut walk = walkdir::WalkDir::new(&root).min_depth(1).follow_links(true);
    if !crosses {
        walk = walk.max_depth(rest.len());
    }
    // Python's glob leaves out a name starting with a dot unless the pattern's part for it
    // starts with one (past a `**`, whose parts do not line up with the names, any part).
    // Only the names below the walk's root count: the root is written out, dots and all.
    let dotted: Vec<bool> = rest.iter().map(|part| part.starts_with('.')).collect();
    let any_dotted = dotted.contains(&true);
    let shown = |entry: &walkdir::DirEntry| {
        let depth = entry.depth();
        depth == 0
            || !entry.file_name().to_string_lossy().starts_with('.')
            || if crosses {
                any_dotted
            } else {
                dotted.get(depth - 1).copied().unwrap_or(false)
            }
    };
    for entry in walk.into_iter().filter_entry(shown).filter_map(Result::ok) {
        if matcher.is_match(entry.path()) && holds_a_file(entry.path()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A file, or a folder with a file anywhere below it (Airflow's `os.walk` check).
fn holds_a_file(path: &Path) -> bool {
    if path.is_file() {
        return true;
    }
    path.is_dir()
        && walkdir::WalkDir::new(path)
            .follow_links(true)
            .into_iter()
            .filter_map(Result::ok)
            .any(|entry| entry.file_type().is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        std::fs::write(path, b"x").expect("a file");
    }

    #[test]
    fn files_globs_and_folders_with_files_match() {
        let dir = tempfile::tempdir().expect("a folder");
        let root = dir.path();
        assert!(!matches_a_file(&root.join("a.csv"), false).unwrap());
        touch(&root.join("a.csv"));
        assert!(matches_a_file(&root.join("a.csv"), false).unwrap());
        assert!(matches_a_file(&root.join("*.csv"), false).unwrap());
        assert!(!matches_a_file(&root.join("*.json"), false).unwrap());
        std::fs::create_dir_all(root.join("empty")).unwrap();
        assert!(!matches_a_file(&root.join("empty"), false).unwrap());
        touch(&root.join("deep/er/b.json"));
        assert!(matches_a_file(&root.join("deep"), false).unwrap());
        // `**` crosses folders only with `recursive`.
        assert!(!matches_a_file(&root.join("**/b.json"), false).unwrap());
        assert!(matches_a_file(&root.join("**/b.json"), true).unwrap());
        assert!(matches_a_file(&root.join("*/er/*.json"), false).unwrap());
    }

    #[test]
    fn names_with_a_dot_match_only_a_part_that_names_the_dot() {
        // The base folder's own dot (as a temporary folder's `.tmpXYZ`) changes nothing.
        let dir = tempfile::Builder::new()
            .prefix(".base")
            .tempdir()
            .expect("a folder");
        let root = dir.path();
        touch(&root.join("hidden/.secret"));
        assert!(!matches_a_file(&root.join("hidden/*"), false).unwrap());
        assert!(matches_a_file(&root.join("hidden/.s*"), false).unwrap());
        assert!(matches_a_file(&root.join("hidden/.secret"), false).unwrap());
        touch(&root.join(".cache/in/a.csv"));
        assert!(!matches_a_file(&root.join("*/in/*.csv"), false).unwrap());
        assert!(matches_a_file(&root.join(".c*/in/*.csv"), false).unwrap());
        assert!(!matches_a_file(&root.join("**/a.csv"), true).unwrap());
        // A folder named outright, below which a dotted name holds the file: it holds one.
        assert!(matches_a_file(&root.join("hidden"), false).unwrap());
    }

    #[test]
    fn the_base_path_comes_from_the_connection_extra() {
        let mut lookup = gust_template::MapLookup::default();
        lookup.connections.insert(
            "data".into(),
            gust_template::TemplateConnection {
                conn_id: "data".into(),
                conn_type: "fs".into(),
                host: None,
                login: None,
                password: None,
                schema: None,
                port: None,
                extra: Some(r#"{"path": "/srv/data"}"#.into()),
                description: None,
            },
        );
        assert_eq!(base_path("data", Some(&lookup)).unwrap(), "/srv/data");
        assert_eq!(base_path("fs_default", Some(&lookup)).unwrap(), "/");
        let err = base_path("nope", Some(&lookup)).unwrap_err();
        assert!(err.contains("gust connections add nope"), "{err}");
    }
}
