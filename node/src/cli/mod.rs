//! The `fedimpute` command line: one module per command group.

pub mod account;
pub mod audit;
pub mod backup;
mod client;
pub mod combine;
pub mod federation;
pub mod init;
pub mod job;
pub mod login;
pub mod man_pages;
pub mod panel;
pub mod panels;
mod profile;
mod progress;
pub mod qc;
pub mod run;
pub mod service;
pub mod smtp;
pub mod user;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::LogFormat;
use crate::node_handle::NodeHandle;

/// fedimpute: a node of a federated genotype-imputation network.
#[derive(Debug, Parser)]
#[command(name = "fedimpute", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log line format (overrides `logging.format` in node.toml).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new node: keys, TLS certificate, database, node.toml and a first admin user.
    Init(init::InitArgs),
    /// Run the node daemon until SIGINT or SIGTERM.
    Run(run::RunArgs),
    /// Manage this node's users (works while the node runs).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Federation configs: make, sign and verify them (federation admins), install them (node admins).
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Log in to a node once: saves its URL, a new API token and how to trust its certificate
    /// as a profile (~/.config/fedimpute/profiles.toml, mode 0600), so `job` and `panels` need
    /// no --node or --token.
    Login(login::LoginArgs),
    /// Revoke a profile's API token at its node and forget the profile.
    Logout(login::LogoutArgs),
    /// Submit and follow imputation jobs on a node (the researcher's client; works from any machine).
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Run the input QC of a job on local VCF files (no node needed unless --panel).
    Qc(qc::QcArgs),
    /// Combine several panels' results of one chromosome on local files (no node needed):
    /// meta-imputation, best r2 per variant, or each sample's phasing from its best panel.
    #[command(subcommand)]
    Combine(combine::CombineCommand),
    /// The reference panels of the whole federation, as your node's catalog lists them (the
    /// researcher's view; works from any machine).
    Panels(panels::PanelsArgs),
    /// Reference panels hosted by this node.
    #[command(subcommand)]
    Panel(panel::PanelCommand),
    /// External imputation services this node wraps (Cloudgene servers).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Back up this node while it runs: database snapshot, keys, config, panels and jobs' files
    /// in one checksummed archive.
    Backup(backup::BackupArgs),
    /// Bring a backup back into an empty data directory: the node keeps its identity, users,
    /// jobs, audit log and federation config.
    Restore(backup::RestoreArgs),
    /// Inspect this node's audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The node's outgoing mail ([smtp] in node.toml): send a test mail.
    #[command(subcommand)]
    Smtp(smtp::SmtpCommand),
    /// Your own account on a node (works from any machine): change your password.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Write the manual pages (for packagers).
    #[command(hide = true)]
    ManPages(man_pages::ManPagesArgs),
}

/// The exit codes of every command (docs/OPERATIONS.md lists them): 0 done, 1 failed, 2 usage
/// (from clap), and for the node's answers:
pub mod exit {
    /// The command line cannot be acted on as given (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The node refused the request as asked (400, 409, 413, 422, 429), or what was asked for
    /// is not ready yet (a running job's results).
    pub const REFUSED: u8 = 3;
    /// Not logged in, or not allowed (401, 403).
    pub const NOT_ALLOWED: u8 = 4;
    /// No such job, panel or user (404).
    pub const NOT_FOUND: u8 = 5;
}

/// The exit code for a command that ended in `err`.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    use reqwest::StatusCode as S;
    if err.downcast_ref::<client::UsageError>().is_some() {
        return ExitCode::from(exit::USAGE);
    }
    if err.downcast_ref::<job::NotReady>().is_some() {
        return ExitCode::from(exit::REFUSED);
    }
    let Some(answer) = err.downcast_ref::<client::NodeAnswer>() else { return ExitCode::FAILURE };
    match answer.status {
        S::UNAUTHORIZED | S::FORBIDDEN => ExitCode::from(exit::NOT_ALLOWED),
        S::NOT_FOUND => ExitCode::from(exit::NOT_FOUND),
        S::BAD_REQUEST | S::CONFLICT | S::PAYLOAD_TOO_LARGE | S::UNPROCESSABLE_ENTITY | S::TOO_MANY_REQUESTS => {
            ExitCode::from(exit::REFUSED)
        }
        _ => ExitCode::FAILURE,
    }
}

/// An error as the one JSON document of a `--json` command: the message, the node's HTTP status
/// if it answered, and the exit code.
pub fn error_json(err: &anyhow::Error) -> serde_json::Value {
    let status = err.downcast_ref::<client::NodeAnswer>().map(|a| a.status.as_u16());
    serde_json::json!({ "error": { "message": format!("{err:#}"), "http_status": status } })
}

impl Cli {
    /// Whether the command asked for JSON output (`--json`).
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Job(cmd) => cmd.json(),
            Command::Panels(args) => args.json(),
            Command::Login(args) => args.json(),
            Command::Logout(args) => args.json(),
            Command::Backup(args) => args.json,
            Command::Restore(args) => args.json,
            _ => false,
        }
    }
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    match cli.command {
        Command::Init(args) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(init::run(args))
        }
        Command::Run(args) => runtime.block_on(run::run(args, cli.log_format)),
        Command::User(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(user::run(cmd))
        }
        Command::Federation(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(federation::run(cmd))
        }
        Command::Login(args) => {
            // Login asks the system's authorities first; their verifier's complaint about a
            // self-signed node is expected there, and login says itself what it does next.
            init_logging(cli.log_format.unwrap_or_default(), "warn,rustls_platform_verifier=off");
            runtime.block_on(login::login(args))
        }
        Command::Logout(args) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(login::logout(args))
        }
        Command::Job(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(job::run(cmd))
        }
        Command::Qc(args) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(qc::run(args))
        }
        Command::Combine(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(combine::run(cmd))
        }
        Command::Panels(args) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(panels::run(args))
        }
        Command::Panel(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(panel::run(cmd))
        }
        Command::Service(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(service::run(cmd))
        }
        Command::Backup(args) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(backup::backup(args))
        }
        Command::Restore(args) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(backup::restore(args))
        }
        Command::Audit(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(audit::run(cmd))
        }
        Command::Smtp(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(smtp::run(cmd))
        }
        Command::Account(cmd) => {
            init_logging(cli.log_format.unwrap_or_default(), "warn");
            runtime.block_on(account::run(cmd))
        }
        Command::ManPages(args) => man_pages::run(args),
    }
}

/// Sets up `tracing` to stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `--config` for commands that act on an existing node.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Path of the node's node.toml.
    #[arg(long, short = 'c', env = "FEDIMPUTE_CONFIG")]
    pub config: PathBuf,
}

/// Reads a password from a file (or `-` for standard input), without its trailing newline.
pub fn read_password_file(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the password from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading password file {}", path.display()))?
    };
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}
