//! `fedimpute audit ...`.

use std::process::ExitCode;

use super::{ConfigArg, NodeHandle};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain and every signature, and that the log still holds every head
    /// peers witnessed (as the running node recorded their reports). Exits 0 if intact, 1 naming
    /// the first bad row or the peer whose witness the log no longer matches.
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
            // Recorded by the running node when a peer reported a head this log lost.
            let mismatches = node.store.head_mismatches().await?;
            match v.first_break {
                None if mismatches.is_empty() => {
                    println!("audit log intact: {} rows, head {}", v.rows, v.head_hash);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!(
                        "audit log chain verifies ({} rows), but it no longer holds what peers witnessed:",
                        v.rows
                    );
                    for m in mismatches {
                        eprintln!(
                            "  peer {} saw {} rows (head {}); this log had {} when its report came, at {}",
                            m.peer_id,
                            m.witnessed_count,
                            m.witnessed_hash,
                            m.own_count,
                            crate::time::rfc3339(m.detected_at)
                        );
                    }
                    eprintln!("rows were deleted from the end of the log, or rewritten");
                    Ok(ExitCode::FAILURE)
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
