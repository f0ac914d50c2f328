//! `fedimpute backup` and `fedimpute restore`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::ConfigArg;
use super::progress::ByteProgress;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The backup file to write (a tar archive, mode 0600; it holds the node's keys: keep it
    /// as you keep them). Must not exist, and must be outside the data directory.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Leave the panels' files out (their registrations are still in the database): for panels
    /// kept elsewhere, which you copy back into `panels/` before starting a restored node.
    #[arg(long)]
    pub without_panels: bool,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file `fedimpute backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into: new, or empty. The node's config is written into it
    /// as node.toml with `node.data_dir` set to this folder.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Write the restored node.toml here instead (e.g. /etc/fedimpute/node.toml).
    #[arg(long)]
    pub config_out: Option<PathBuf>,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let mut bar: Option<ByteProgress> = None;
    let mut progress = |done: u64, total: u64| {
        bar.get_or_insert_with(|| ByteProgress::new(total, "backup")).set_position(done);
    };
    let report = crate::backup::backup(&args.config.config, &args.out, !args.without_panels, &mut progress).await?;
    if let Some(bar) = bar.as_mut() {
        bar.finish();
    }
    for path in &report.manifest.not_included {
        eprintln!("note: {} is outside the data directory and not in the backup; back it up yourself", path.display());
    }
    for missing in &report.missing {
        eprintln!("warning: {missing} was deleted by the node before it could be saved");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Backed up node {} ({}) to {}: {} files, {} bytes{}",
            report.manifest.peer_id,
            report.manifest.institution,
            report.out.display(),
            report.files,
            report.bytes,
            if report.manifest.panels_included { "" } else { ", without the panels' files" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let report = crate::backup::restore(&args.from, &args.data_dir, args.config_out.as_deref()).await?;
    if !report.manifest.panels_included {
        eprintln!(
            "note: the backup holds no panel files; copy each panel's folder back into {}/panels before starting",
            report.data_dir.display()
        );
    }
    for path in &report.manifest.not_included {
        eprintln!("note: the config names {}, which the backup does not hold; put it back", path.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Restored node {} ({}) from its backup of {}: {} users, {} jobs, audit log intact ({} rows).\n\
             Start it with: fedimpute run --config {}\n\
             Stop the node the backup was made from first: two nodes with one identity confuse the federation.",
            report.manifest.peer_id,
            report.manifest.institution,
            crate::time::rfc3339(report.manifest.created_at * 1000),
            report.users,
            report.jobs,
            report.audit_rows,
            report.config.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
