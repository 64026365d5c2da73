//! What the command-line tests share: the examples folder and `gust` run as a user runs it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The repository's example DAGs.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dags")
}

/// `gust` with `home` as GUST_HOME, so the user's own configuration never leaks in.
pub fn gust(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("gust").expect("the gust binary");
    cmd.env("GUST_HOME", home)
        .env_remove("GUST__CORE__DAGS_FOLDER")
        .env_remove("GUST__KUBERNETES__RUNTIME");
    cmd
}
