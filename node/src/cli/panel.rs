//! `fedimpute panel ...`: reference panels hosted by this node (works while the node runs; a
//! running node advertises the change within seconds).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use super::{ConfigArg, NodeHandle};
use crate::auth::service::Actor;
use crate::imputation::GenomeBuild;
use crate::imputation::panels::{self, PanelSpec};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::panels::panel_totals;

#[derive(Debug, clap::Subcommand)]
pub enum PanelCommand {
    /// Register a panel as published: check it, split multi-allelic records, leave out records
    /// no engine can use (with a count per reason), index it, convert it for Beagle (bref3) and
    /// Minimac4 (msav), and record its allele frequencies for QC.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Panel id (a-z 0-9 - _ .), as researchers will choose it.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        build: GenomeBuild,
        /// Population labels, comma-separated (e.g. AFR,EUR).
        #[arg(long, value_delimiter = ',')]
        population: Vec<String>,
        /// A phased VCF per chromosome, as published: SNPs, indels and multi-allelic records;
        /// plain, gzip or bgzip (repeatable).
        #[arg(long = "vcf", required = true)]
        vcfs: Vec<PathBuf>,
        /// `sample population` rows (whitespace-separated; the 1000 Genomes `.panel` file is
        /// one): QC then compares a job's allele frequencies with its chosen population's.
        #[arg(long)]
        sample_populations: Option<PathBuf>,
        /// A PLINK genetic map for the engines.
        #[arg(long)]
        map: Option<PathBuf>,
    },
    /// List the panels.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove a panel and its files.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
    },
}

pub async fn run(cmd: PanelCommand) -> anyhow::Result<ExitCode> {
    let actor = Actor::cli();
    match cmd {
        PanelCommand::Add { config, id, name, build, population, vcfs, sample_populations, map } => {
            let node = NodeHandle::open(&config.config).await?;
            let spec =
                PanelSpec { id: id.clone(), name, build, populations: population, sample_populations, vcfs, map };
            let result = panels::register(&node.store, &node.config, spec, |step| eprintln!("  {step}")).await;
            let (outcome, details) = match &result {
                Ok(c) => (Outcome::Success, json!({ "chromosomes": c.len() })),
                Err(e) => (Outcome::Failure, json!({ "reason": e.to_string() })),
            };
            node.auth
                .audit(AuditEvent::new(&actor.name, &actor.source, "panel.add", outcome).target(&id).details(details))
                .await?;
            match result {
                Ok(chromosomes) => {
                    for c in chromosomes {
                        println!(
                            "panel {id}: chromosome {} with {} samples and {} sites",
                            c.chromosome, c.samples, c.sites
                        );
                    }
                    println!("panel {id} is ready");
                }
                Err(e) => {
                    eprintln!("panel {id} was not registered: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        PanelCommand::List { config } => {
            let node = NodeHandle::open(&config.config).await?;
            println!(
                "{:<20} {:<6} {:<10} {:>8} {:>10}  chromosomes / populations",
                "id", "build", "status", "samples", "sites"
            );
            for p in node.store.list_panels().await? {
                let c = node.store.panel_chromosomes(&p.id).await?;
                let (samples, sites) = panel_totals(&c);
                println!(
                    "{:<20} {:<6} {:<10} {:>8} {:>10}  {} / {}{}",
                    p.id,
                    p.build,
                    p.status,
                    samples,
                    sites,
                    c.iter().map(|x| x.chromosome.as_str()).collect::<Vec<_>>().join(","),
                    p.population_list().join(","),
                    p.error.map(|e| format!("  ({e})")).unwrap_or_default()
                );
            }
        }
        PanelCommand::Remove { config, id } => {
            let node = NodeHandle::open(&config.config).await?;
            panels::remove(&node.store, &node.config, &id).await?;
            node.auth
                .audit(AuditEvent::new(&actor.name, &actor.source, "panel.remove", Outcome::Success).target(&id))
                .await?;
            println!("removed panel {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
