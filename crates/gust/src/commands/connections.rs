//! `gust connections add | get | list | delete`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use gust_store::{Connection, Secret, SecretKey, Store};

use crate::cli::ConnectionsCommand;
use crate::config::{self, Config};

/// Runs a `gust connections` command.
pub fn run(command: ConnectionsCommand) -> anyhow::Result<ExitCode> {
    let home = config::home()?;
    let config = Config::load(&home)?;
    let key = secret_key(&config, &home)?;
    super::runtime()?.block_on(async {
        let store = Store::connect(&config.database.url).await?;
        store.check().await?;
        match command {
            ConnectionsCommand::Add {
                conn_id,
                conn_uri,
                conn_type,
                conn_host,
                conn_login,
                conn_password,
                conn_schema,
                conn_port,
                conn_extra,
                conn_description,
            } => {
                if let Some(extra) = &conn_extra {
                    match serde_json::from_str::<serde_json::Value>(extra) {
                        Ok(serde_json::Value::Object(_)) => {}
                        _ => anyhow::bail!("--conn-extra must be a JSON object, like '{{\"region\": \"eu-west-1\"}}'"),
                    }
                }
                let base = match &conn_uri {
                    Some(uri) => super::conn_uri::parse(&conn_id, uri)?,
                    None => Connection {
                        conn_id,
                        conn_type: conn_type.clone().context("--conn-type is required (or give --conn-uri)")?,
                        host: None,
                        login: None,
                        schema: None,
                        port: None,
                        password: None,
                        extra: None,
                        description: None,
                    },
                };
                // Flags override the URI's parts, as in Airflow.
                let conn = Connection {
                    conn_type: conn_type.unwrap_or(base.conn_type),
                    host: conn_host.or(base.host),
                    login: conn_login.or(base.login),
                    schema: conn_schema.or(base.schema),
                    port: conn_port.map(i32::from).or(base.port),
                    password: conn_password.map(Secret::new).or(base.password),
                    extra: conn_extra.map(Secret::new).or(base.extra),
                    description: conn_description.or(base.description),
                    conn_id: base.conn_id,
                };
                store.put_connection(&conn, &key).await?;
            }
            ConnectionsCommand::Get { conn_id } => {
                let Some(conn) = store.connection(&conn_id, &key).await? else {
                    anyhow::bail!("no connection \"{conn_id}\"; `gust connections list` shows them");
                };
                let show = |v: Option<String>| v.unwrap_or_default();
                println!("conn_id: {}", conn.conn_id);
                println!("conn_type: {}", conn.conn_type);
                println!("host: {}", show(conn.host));
                println!("login: {}", show(conn.login));
                println!("schema: {}", show(conn.schema));
                println!("port: {}", show(conn.port.map(|p| p.to_string())));
                println!("password: {}", if conn.password.is_some() { "***" } else { "" });
                println!("extra: {}", if conn.extra.is_some() { "***" } else { "" });
                println!("description: {}", show(conn.description));
            }
            ConnectionsCommand::List => {
                for (id, kind) in store.connection_ids().await? {
                    println!("{id}\t{kind}");
                }
            }
            ConnectionsCommand::Delete { conn_id } => {
                if !store.delete_connection(&conn_id).await? {
                    anyhow::bail!("no connection \"{conn_id}\"");
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The configured Fernet key, else the one in `$GUST_HOME/fernet.key`, made on first use (as
/// `airflow standalone` writes a fresh key into its configuration).
pub(crate) fn secret_key(config: &Config, home: &Path) -> anyhow::Result<SecretKey> {
    if let Some(key) = &config.core.fernet_key {
        return SecretKey::parse(key)
            .context("[core] fernet_key is not a valid Fernet key (32 bytes, URL-safe base64)");
    }
    let path = home.join("fernet.key");
    if !path.exists() {
        create_private_dir(home).with_context(|| format!("cannot create {}", home.display()))?;
        write_private(&path, &SecretKey::generate())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    SecretKey::parse(&text)
        .with_context(|| format!("{} does not hold a valid Fernet key", path.display()))
}

/// Creates `dir` and its missing parents, each new one only its owner can enter (0700): GUST_HOME
/// holds the keys, the database and the logs. A folder that exists keeps its mode.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `text` to a new file only its owner can read.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
