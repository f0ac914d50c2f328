//! `fedimpute combine`: the origin's statistics of a multi-panel job, run on local files (no
//! node needed), one chromosome at a time:
//! - `meta`: meta-imputation of each panel's Minimac4 dose VCF and `--empirical-output` file, all
//!   made from the same phased targets;
//! - `best-r2`: per variant, the call of the panel with the highest estimated r2;
//! - `phasing`: each sample's best-fitting panel (from the empirical files of each panel's own
//!   phasing), and the targets with each sample phased by that panel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::imputation::combine::best_r2::{MergeReport, PanelVcf, merge_chromosome, report_text};
use crate::imputation::combine::meta::phasing::{best_panels, compose, sample_fit};
use crate::imputation::combine::meta::{AbsentRule, MetaPanel, MetaReport, combine_chromosome};

#[derive(Debug, clap::Subcommand)]
pub enum CombineCommand {
    /// Meta-imputation: per haplotype and along the chromosome, weights for the panels learnt
    /// from their leave-one-out dosages at the typed sites; the combined dose VCF.
    Meta(MetaArgs),
    /// Per variant, the call of the panel with the highest estimated r2.
    BestR2(BestR2Args),
    /// Each sample's best-fitting panel, and the targets phased sample by sample with it.
    Phasing(PhasingArgs),
}

#[derive(Debug, clap::Args)]
pub struct MetaArgs {
    /// A panel's results: NAME=DOSE_VCF,EMPIRICAL_VCF (repeat for every panel, at least two).
    #[arg(long = "panel", required = true, value_parser = two_files)]
    panels: Vec<(String, PathBuf, PathBuf)>,
    /// The combined dose VCF to write (bgzipped, then indexed with tabix if tabix is on PATH).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// What a panel that lacks a site stands for: infer (from what the panels that have the site
    /// predict for its haplotypes), ref, or pass_through (MetaMinimac2's rule: the panels that
    /// have the site share its weight).
    #[arg(long, default_value = "infer")]
    absent: AbsentRule,
    /// Also write the report (JSON) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BestR2Args {
    /// A panel's dose VCF: NAME=DOSE_VCF (repeat for every panel).
    #[arg(long = "panel", required = true, value_parser = one_file)]
    panels: Vec<(String, PathBuf)>,
    /// The merged dose VCF to write (bgzipped).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PhasingArgs {
    /// A panel's phasing of the targets and the empirical VCF of its Minimac4 run on that
    /// phasing: NAME=PHASED_VCF,EMPIRICAL_VCF (repeat for every panel).
    #[arg(long = "panel", required = true, value_parser = two_files)]
    panels: Vec<(String, PathBuf, PathBuf)>,
    /// The composed phased VCF to write (bgzipped, then indexed with tabix if on PATH).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Print the choice as JSON.
    #[arg(long)]
    json: bool,
}

fn one_file(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => Ok((name.to_string(), file.into())),
        _ => Err(format!("{value:?}: expected NAME=FILE")),
    }
}

fn two_files(value: &str) -> Result<(String, PathBuf, PathBuf), String> {
    let usage = || format!("{value:?}: expected NAME=FILE,FILE");
    let (name, files) = one_file(value).map_err(|_| usage())?;
    let files = files.to_str().ok_or_else(usage)?;
    match files.split_once(',') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((name, a.into(), b.into())),
        _ => Err(usage()),
    }
}

async fn index(path: &Path) {
    let _ = tokio::process::Command::new("tabix").args(["-f", "-p", "vcf"]).arg(path).status().await;
}

pub async fn run(cmd: CombineCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CombineCommand::Meta(args) => meta(args).await,
        CombineCommand::BestR2(args) => best_r2(args).await,
        CombineCommand::Phasing(args) => phasing(args).await,
    }
}

async fn meta(args: MetaArgs) -> anyhow::Result<ExitCode> {
    // The model's two work files (sites x haplotypes x panels floats) go next to the output.
    let mut work = args.out.clone().into_os_string();
    work.push(".work");
    let work = PathBuf::from(work);
    std::fs::create_dir_all(&work).with_context(|| format!("making {}", work.display()))?;
    let (panels, out, rule) = (args.panels.clone(), args.out.clone(), args.absent);
    let started = std::time::Instant::now();
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<MetaReport> {
        let names: Vec<&str> = panels.iter().map(|(n, _, _)| n.as_str()).collect();
        let inputs: Vec<MetaPanel<'_>> =
            panels.iter().map(|(name, dose, empirical)| MetaPanel { name, dose, empirical }).collect();
        let mut report = MetaReport::new(&names, rule);
        let combined = combine_chromosome(&inputs, &work, &out, rule, &mut report);
        let _ = std::fs::remove_dir_all(&work);
        combined?;
        Ok(report)
    })
    .await??;
    index(&args.out).await;
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
        eprintln!("wrote {} in {:.1} s", args.out.display(), started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

async fn best_r2(args: BestR2Args) -> anyhow::Result<ExitCode> {
    let (panels, out) = (args.panels.clone(), args.out.clone());
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<MergeReport> {
        let inputs: Vec<PanelVcf<'_>> = panels.iter().map(|(panel, path)| PanelVcf { panel, path }).collect();
        let mut report = MergeReport::default();
        merge_chromosome(&inputs, &out, &mut report)?;
        Ok(report)
    })
    .await??;
    index(&args.out).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn phasing(args: PhasingArgs) -> anyhow::Result<ExitCode> {
    let (panels, out) = (args.panels.clone(), args.out.clone());
    let (samples, fit, choice, composed) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let empirical: Vec<&Path> = panels.iter().map(|(_, _, e)| e.as_path()).collect();
        let (samples, fit) = sample_fit(&empirical)?;
        let choice = best_panels(&fit);
        let phased: Vec<&Path> = panels.iter().map(|(_, p, _)| p.as_path()).collect();
        let composed = compose(&phased, &choice, &out)?;
        Ok((samples, fit, choice, composed))
    })
    .await??;
    index(&args.out).await;
    let name = |p: usize| args.panels[p].0.as_str();
    if args.json {
        let rows: Vec<serde_json::Value> = samples
            .iter()
            .zip(&choice)
            .zip(&fit)
            .map(|((s, c), f)| serde_json::json!({ "sample": s, "panel": name(*c), "fit": f }))
            .collect();
        let doc = serde_json::json!({ "samples": rows, "sites": composed.sites, "left_out": composed.left_out });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (s, c) in samples.iter().zip(&choice) {
            println!("{s}\t{}", name(*c));
        }
        eprintln!(
            "wrote {}: {} sites ({} left out: not phased by every panel)",
            args.out.display(),
            composed.sites,
            composed.left_out
        );
    }
    Ok(ExitCode::SUCCESS)
}
