//! `fedimpute account ...`: a user's own account on a node, through its API, from any machine.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};

use super::client::{Trust, http_client, success_or_error};
use super::read_password_file;

#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Change your password (a one-time password must be changed before anything else). Every
    /// session of yours ends; API tokens stay until you revoke them.
    Password {
        /// The node's base URL, e.g. https://imputation.example.org:8443
        #[arg(long, env = "FEDIMPUTE_NODE")]
        node: String,
        /// Your user name on that node.
        #[arg(long)]
        user: String,
        /// File holding your current password (`-` for standard input).
        #[arg(long)]
        current_password_file: PathBuf,
        /// File holding the new password (`-` for standard input, after the current one if
        /// that comes from standard input too: one per line).
        #[arg(long)]
        new_password_file: PathBuf,
        /// PEM certificate to trust for the node (for a node with a self-signed certificate).
        #[arg(long, env = "FEDIMPUTE_CA_CERT")]
        ca_cert: Option<PathBuf>,
    },
}

pub async fn run(cmd: AccountCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AccountCommand::Password { node, user, current_password_file, new_password_file, ca_cert } => {
            let (current, new) = if current_password_file.as_os_str() == "-" && new_password_file.as_os_str() == "-" {
                let text =
                    std::io::read_to_string(std::io::stdin()).context("reading the passwords from standard input")?;
                let mut lines = text.lines();
                let current = lines.next().context("standard input holds no current password")?.to_string();
                let new =
                    lines.next().context("standard input holds no new password after the current one")?.to_string();
                (current, new)
            } else {
                (read_password_file(&current_password_file)?, read_password_file(&new_password_file)?)
            };
            let http = http_client(&ca_cert.map_or(Trust::System, Trust::CaFile))?;
            let base = format!("{}/api/v1", node.trim_end_matches('/'));
            let login = http
                .post(format!("{base}/auth/login"))
                .json(&json!({ "username": user, "password": current }))
                .send()
                .await
                .context("reaching the node")?;
            let session: Value = success_or_error(login).await.context("logging in")?.json().await?;
            let access = session["access_token"].as_str().context("the login answer has no access token")?;
            let change = http
                .put(format!("{base}/me/password"))
                .bearer_auth(access)
                .json(&json!({ "current_password": current, "new_password": new }))
                .send()
                .await
                .context("reaching the node")?;
            success_or_error(change).await.context("changing the password")?;
            println!("{user}: password changed; your other sessions have ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}
