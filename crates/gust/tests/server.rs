//! `gust users`, `gust api-server` and the API inside `gust standalone`, run as a user runs them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{examples, gust, http};
use predicates::prelude::*;
use predicates::str::contains;

fn migrate(home: &Path) {
    gust(home).args(["db", "migrate"]).assert().success();
}

#[test]
fn users_are_created_listed_and_deleted_with_their_roles() {
    let home = tempfile::tempdir().unwrap();
    migrate(home.path());
    gust(home.path())
        .args([
            "users",
            "create",
            "--username",
            "ada",
            "--password",
            "s3cret-pass",
            "--role",
            "op",
        ])
        .assert()
        .success()
        .stdout(contains("created user \"ada\" (op)"));
    gust(home.path())
        .args([
            "users",
            "create",
            "-u",
            "ada",
            "-p",
            "another-pass",
            "-r",
            "viewer",
        ])
        .assert()
        .failure()
        .stderr(contains("already exists"));
    gust(home.path())
        .args([
            "users", "create", "-u", "bob", "-p", "short", "-r", "viewer",
        ])
        .assert()
        .failure()
        .stderr(contains("at least 8 characters"));
    gust(home.path())
        .args([
            "users",
            "create",
            "-u",
            "b o b",
            "-p",
            "long-enough",
            "-r",
            "viewer",
        ])
        .assert()
        .failure()
        .stderr(contains("invalid user name"));
    gust(home.path())
        .args(["users", "create", "-u", "cy", "-p", "-", "-r", "admin"])
        .write_stdin("from-stdin-pass\n")
        .assert()
        .success();
    let listed = gust(home.path())
        .args(["users", "list", "-o", "json"])
        .output()
        .unwrap();
    let users: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(users[0]["username"], "ada");
    assert_eq!(users[0]["role"], "op");
    assert_eq!(users[1]["role"], "admin");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(!text.contains("argon2"), "hashes are never printed: {text}");
    gust(home.path())
        .args(["users", "delete", "-u", "ada"])
        .assert()
        .success();
    gust(home.path())
        .args(["users", "delete", "-u", "ada"])
        .assert()
        .failure()
        .stderr(contains("no user \"ada\""));
}

/// A server process, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gust ARGS --port 0` and reads its banner up to the address line; returns the port and
/// the banner.
fn start(home: &Path, args: &[&str]) -> (Server, u16, String) {
    // The server's stderr, read back when it ends before its banner says where it listens.
    let stderr_path = home.join(format!("{}.stderr.log", args[0]));
    let stderr = std::fs::File::create(&stderr_path).expect("a file for stderr");
    #[allow(
        clippy::disallowed_methods,
        reason = "the test starts the binary as a user would"
    )]
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("gust"));
    command
        .env("GUST_HOME", home)
        .env("GUST__CORE__DAGS_ARE_PAUSED_AT_CREATION", "false")
        .env("GUST__KUBERNETES__RUNTIME", "local")
        .args(args)
        .args(["--port", "0", "--host", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = command.spawn().expect("start gust");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut banner = String::new();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let Some(line) = lines.next() else {
            panic!(
                "gust {} ended before its banner named the address; it said: {}{}",
                args.join(" "),
                banner,
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        let line = line.expect("stdout");
        banner.push_str(&line);
        banner.push('\n');
        if let Some(address) = line.split("http://127.0.0.1:").nth(1) {
            break address.trim().parse::<u16>().expect("a port");
        }
    };
    // The rest of the banner (the admin password) follows at once, up to the Ctrl-C hint.
    for line in lines
        .by_ref()
        .take_while(|l| l.as_ref().is_ok_and(|l| !l.contains("Ctrl-C")))
    {
        banner.push_str(&line.expect("stdout"));
        banner.push('\n');
    }
    (server, port, banner)
}

#[test]
fn standalone_serves_the_api_and_creates_an_admin_once() {
    let home = tempfile::tempdir().unwrap();
    let folder = examples();
    let folder = folder.to_str().unwrap();
    let (server, port, banner) = start(home.path(), &["standalone", "--dags-folder", folder]);
    let password = banner
        .split("password: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the banner shows the admin password: {banner}"))
        .to_owned();
    let stored =
        std::fs::read_to_string(home.path().join("standalone_admin_password.txt")).unwrap();
    assert_eq!(stored.trim(), password);

    let (status, body) = http(port, "GET", "/api/v2/monitor/health", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(port, "GET", "/api/v2/dags", &[], "");
    assert_eq!(status, 401);
    let login = format!(r#"{{"username": "admin", "password": "{password}"}}"#);
    let (status, body) = http(
        port,
        "POST",
        "/auth/token",
        &[("Content-Type", "application/json")],
        &login,
    );
    assert_eq!(status, 201, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let (status, body) = http(
        port,
        "GET",
        "/api/v2/dags?limit=100",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let dags: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(dags["total_entries"].as_u64().unwrap() >= 5, "{body}");
    drop(server);

    // A second start keeps the admin and shows no password.
    let (_server, _, banner) = start(home.path(), &["standalone", "--dags-folder", folder]);
    assert!(!banner.contains("password:"), "{banner}");

    // SQLite takes one scheduler: a second one on the same database is refused.
    gust(home.path())
        .args(["scheduler", "--dags-folder", folder])
        .assert()
        .failure()
        .stderr(contains("another scheduler (pid").and(contains("PostgreSQL")));
}

#[test]
fn api_server_needs_a_migrated_database_and_then_serves() {
    let home = tempfile::tempdir().unwrap();
    gust(home.path())
        .args(["api-server", "--port", "0"])
        .assert()
        .failure()
        .stderr(contains("gust db migrate"));
    migrate(home.path());
    let (_server, port, banner) = start(home.path(), &["api-server"]);
    assert!(banner.contains("API server"), "{banner}");
    let (status, body) = http(port, "GET", "/api/v2/version", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");
}
