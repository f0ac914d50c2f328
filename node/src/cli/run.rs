//! `fedimpute run`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{LogFormat, NodeConfig};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Path of the node's node.toml.
    #[arg(long, short = 'c', env = "FEDIMPUTE_CONFIG")]
    pub config: PathBuf,
}

pub async fn run(args: RunArgs, log_format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    super::init_logging(log_format.unwrap_or(config.logging.format), "info,sqlx=warn");
    crate::daemon::run(config, &args.config).await?;
    Ok(ExitCode::SUCCESS)
}
