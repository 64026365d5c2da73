//! `gust users create | list | delete`: the accounts of the REST API and the web UI.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use gust_core::clock::{Clock, SystemClock};
use gust_server::auth::password::{MIN_PASSWORD_LEN, hash_password};
use gust_store::{Role, Store, User};

use crate::cli::{RoleArg, UsersCommand};
use crate::config::{self, Config};

/// Runs a `gust users` command.
pub fn run(command: UsersCommand) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config::home()?)?;
    super::runtime()?.block_on(async {
        let store = Store::connect(&config.database.url).await?;
        store.check().await?;
        let result = match command {
            UsersCommand::Create {
                username,
                password,
                role,
            } => create(&store, username, password, role).await,
            UsersCommand::List { output } => {
                let users = store.users().await?;
                print!("{}", crate::render::users(&users, output)?);
                Ok(())
            }
            UsersCommand::Delete { username } => {
                if store.delete_user(&username).await? {
                    println!("deleted user \"{username}\"");
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "no user \"{username}\"; `gust users list` shows them"
                    ))
                }
            }
        };
        store.close().await;
        result.map(|()| ExitCode::SUCCESS)
    })
}

async fn create(
    store: &Store,
    username: String,
    password: String,
    role: RoleArg,
) -> anyhow::Result<()> {
    let password = if password == "-" {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        password
    };
    check_username(&username)?;
    if password.chars().count() < MIN_PASSWORD_LEN {
        anyhow::bail!("the password must have at least {MIN_PASSWORD_LEN} characters");
    }
    let role = match role {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::User => Role::User,
        RoleArg::Op => Role::Op,
        RoleArg::Admin => Role::Admin,
    };
    let user = User::new(username, hash_password(&password)?, role, SystemClock.now());
    if !store.create_user(&user).await? {
        anyhow::bail!(
            "user \"{}\" already exists; `gust users delete --username {}` first to replace it",
            user.username,
            user.username
        );
    }
    println!("created user \"{}\" ({})", user.username, role.as_str());
    Ok(())
}

/// A user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
fn check_username(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        anyhow::bail!(
            "invalid user name \"{name}\": use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )
    }
}

/// Creates the `admin` user with a random password when there is no user at all, as `airflow
/// standalone` does; returns the password to show once. It is also written, readable only by
/// its owner, to `$GUST_HOME/standalone_admin_password.txt` so it can be found again.
pub async fn ensure_first_admin(
    store: &Store,
    home: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    if !store.users().await?.is_empty() {
        return Ok(None);
    }
    let password = gust_server::auth::password::random_password();
    let user = User::new(
        "admin".to_owned(),
        hash_password(&password)?,
        Role::Admin,
        SystemClock.now(),
    );
    if !store.create_user(&user).await? {
        return Ok(None); // Another process created it first.
    }
    let path = home.join("standalone_admin_password.txt");
    let _ = std::fs::remove_file(&path);
    super::connections::write_private(&path, &format!("{password}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(password))
}
