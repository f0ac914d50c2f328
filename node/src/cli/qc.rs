//! `fedimpute qc`: the input QC of a job, run on local files, e.g. to check a VCF before
//! uploading it, or to check it against a panel this node hosts.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::imputation::GenomeBuild;
use crate::imputation::panels::PanelFiles;
use crate::imputation::qc::{InputFile, QcSettings, QcStatus, run_qc};

#[derive(Debug, clap::Args)]
pub struct QcArgs {
    /// Bgzipped VCFs, one chromosome per file.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long, value_enum)]
    build: GenomeBuild,
    /// Also match alleles against this node's panel (needs --config).
    #[arg(long, requires = "config")]
    panel: Option<String>,
    /// The node's node.toml (for --panel and its [qc] thresholds).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Where to write the filtered VCFs and excluded.tsv.
    #[arg(long, default_value = "qc-out")]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: QcArgs) -> anyhow::Result<ExitCode> {
    let (settings, panel) = match &args.config {
        Some(path) => {
            let config = crate::config::NodeConfig::load(path)?;
            let panel = match &args.panel {
                Some(id) => {
                    let node = super::NodeHandle::open(path).await?;
                    let chromosomes = node.store.panel_chromosomes(id).await?;
                    anyhow::ensure!(!chromosomes.is_empty(), "panel {id} is not ready on this node");
                    Some(PanelFiles::new(&config, id).panel_sites(chromosomes.iter().map(|c| c.chromosome.as_str())))
                }
                None => None,
            };
            (config.qc, panel)
        }
        None => (QcSettings::default(), None),
    };
    let inputs: Vec<InputFile> =
        args.files.iter().map(|p| InputFile { path: p.clone(), name: p.display().to_string() }).collect();
    let (build, out) = (args.build, args.out.clone());
    let outcome =
        tokio::task::spawn_blocking(move || run_qc(&inputs, build, panel.as_ref(), &settings, &out)).await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    } else {
        print!("{}", outcome.report.to_text());
        println!("Filtered VCFs and excluded.tsv are in {}", args.out.display());
    }
    Ok(if outcome.report.status == QcStatus::Passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
