//! `fedimpute audit ...`.

use std::process::ExitCode;

use super::{ConfigArg, NodeHandle};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain and every signature. Exits 0 if intact, 1 naming the first
    /// bad row otherwise.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { config } => {
            let node = NodeHandle::open(&config.config).await?;
            let v = node.store.verify_audit(&node.identity.public()).await?;
            match v.first_break {
                None => {
                    println!("audit log intact: {} rows, head {}", v.rows, v.head_hash);
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    eprintln!(
                        "audit log BROKEN at row seq={}: {} ({} rows before it verified)",
                        b.seq, b.reason, v.rows
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
