//! `fedimpute smtp ...`: the node's outgoing mail.

use std::process::ExitCode;

use anyhow::Context;

use super::ConfigArg;
use crate::config::NodeConfig;

#[derive(Debug, clap::Subcommand)]
pub enum SmtpCommand {
    /// Send a test mail now with the node's [smtp] settings and say whether the server took it
    /// (works while the node runs; sends nothing else).
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// Who gets the test mail.
        #[arg(long)]
        to: String,
    },
}

pub async fn run(cmd: SmtpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SmtpCommand::Test { config, to } => {
            let config = NodeConfig::load(&config.config)?;
            let smtp = config.smtp.as_ref().context("node.toml has no [smtp] section: the node sends no mail")?;
            anyhow::ensure!(crate::mail::valid_address(&to), "{to:?} is not an e-mail address");
            let mailer = crate::mail::Mailer::new(smtp, &config.node.data_dir)?;
            let body = format!(
                "This is a test mail from the fedimpute node {} of {}.\n\
                 Mails about researchers' jobs go out the same way.\n",
                config.node.name, config.node.institution
            );
            mailer
                .send(&to, "fedimpute: test mail", &body)
                .await
                .with_context(|| format!("sending through {}:{}", smtp.host, smtp.port()))?;
            println!("{}:{} took the test mail for {to}", smtp.host, smtp.port());
        }
    }
    Ok(ExitCode::SUCCESS)
}
