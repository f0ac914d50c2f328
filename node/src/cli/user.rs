//! `fedimpute user ...`: user administration on the node's host. Safe while the daemon runs
//! (SQLite in WAL mode), and audited like the API.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{ConfigArg, NodeHandle, read_password_file};
use crate::auth::service::Actor;
use crate::secrets::random_password;
use crate::store::users::{Role, User};
use crate::time::rfc3339;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user. Without --password-file a password is generated and printed once.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// User name (letters, digits and . _ - @).
        username: String,
        #[arg(long, value_enum, default_value = "researcher")]
        role: Role,
        /// File holding the password (`-` for standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List users.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Change a user's role.
    SetRole {
        #[command(flatten)]
        config: ConfigArg,
        username: String,
        #[arg(value_enum)]
        role: Role,
    },
    /// Disable a user (revokes their sessions and API tokens), or re-enable with --enable.
    Disable {
        #[command(flatten)]
        config: ConfigArg,
        username: String,
        /// Re-enable instead.
        #[arg(long)]
        enable: bool,
    },
    /// Set a new password. Without --password-file one is generated and printed once.
    ResetPassword {
        #[command(flatten)]
        config: ConfigArg,
        username: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// The audit actor for commands run on this host.
pub fn cli_actor() -> Actor {
    Actor::cli()
}

async fn find(node: &NodeHandle, username: &str) -> anyhow::Result<User> {
    node.store
        .user_by_name(username)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user named {username:?} (see `fedimpute user list`)"))
}

fn password_or_generated(file: Option<&PathBuf>) -> anyhow::Result<(String, bool)> {
    match file {
        Some(path) => Ok((read_password_file(path)?, false)),
        None => Ok((random_password(), true)),
    }
}

pub async fn run(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let actor = cli_actor();
    match cmd {
        UserCommand::Add { config, username, role, password_file } => {
            let node = NodeHandle::open(&config.config).await?;
            let (password, generated) = password_or_generated(password_file.as_ref())?;
            let user = node.auth.create_user(&actor, &username, &password, role, generated).await?;
            println!("added user {} (id {}, role {})", user.username, user.id, user.role);
            if generated {
                println!("one-time password, to be changed at first login (shown only now): {password}");
            }
        }
        UserCommand::List { config } => {
            let node = NodeHandle::open(&config.config).await?;
            println!("{:>4}  {:<24} {:<11} {:<9} created", "id", "username", "role", "status");
            for u in node.store.list_users().await? {
                let status = if u.disabled { "disabled" } else { "active" };
                println!("{:>4}  {:<24} {:<11} {:<9} {}", u.id, u.username, u.role, status, rfc3339(u.created_at));
            }
        }
        UserCommand::SetRole { config, username, role } => {
            let node = NodeHandle::open(&config.config).await?;
            let user = find(&node, &username).await?;
            node.auth.set_role(&actor, &user, role).await?;
            println!("{username}: role {} -> {role}", user.role);
        }
        UserCommand::Disable { config, username, enable } => {
            let node = NodeHandle::open(&config.config).await?;
            let user = find(&node, &username).await?;
            node.auth.set_disabled(&actor, &user, !enable).await?;
            println!("{username}: {}", if enable { "enabled" } else { "disabled; sessions and API tokens revoked" });
        }
        UserCommand::ResetPassword { config, username, password_file } => {
            let node = NodeHandle::open(&config.config).await?;
            let user = find(&node, &username).await?;
            let (password, generated) = password_or_generated(password_file.as_ref())?;
            node.auth.reset_password(&actor, &user, &password, generated).await?;
            println!("{username}: password changed; their sessions and API tokens were ended");
            if generated {
                println!("one-time password, to be changed at first login (shown only now): {password}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
