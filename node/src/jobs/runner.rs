//! Runs one job: QC against the panel, the engine per chromosome, result files, summary.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::JobsService;
use super::results::{JobSummary, add_counts};
use crate::imputation::engines::{
    EngineError, EngineRun, KillSwitch, beagle_args, beagle_phasing_progress, engine_version, minimac4_args,
};
use crate::imputation::panels::PanelFiles;
use crate::imputation::qc::{InputFile, QcReport, QcStatus, run_qc};
use crate::imputation::repair::Repair;
use crate::imputation::tools;
use crate::imputation::{GenomeBuild, dose};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobResult, JobRow, JobState, TransitionUpdate};
use crate::tool_args;

/// A failure to report on the job, in words for the researcher.
#[derive(Debug)]
pub(super) struct JobFailure(pub(super) String);

impl<E: std::fmt::Display> From<E> for JobFailure {
    fn from(e: E) -> Self {
        JobFailure(e.to_string())
    }
}

pub(super) async fn run(svc: &JobsService, id: &str, kill: &KillSwitch) {
    let Ok(Some(job)) = svc.store.job(id).await else { return };
    let started = svc
        .transition(
            id,
            &[JobState::Queued],
            JobState::Running,
            TransitionUpdate {
                stage: Some("qc".into()),
                progress: Some(0.02),
                message: Some("started".into()),
                ..Default::default()
            },
        )
        .await;
    if !matches!(started, Ok(true)) {
        return;
    }
    let outcome = execute(svc, &job, kill).await;
    let (to, update) = match outcome {
        Ok(summary) => (
            JobState::Completed,
            TransitionUpdate {
                stage: None,
                progress: Some(1.0),
                message: Some("completed".into()),
                summary: summary.map(|s| serde_json::to_string(&s).unwrap_or_default()),
                ..Default::default()
            },
        ),
        Err(JobFailure(reason)) => {
            if kill.is_killed() {
                // Cancelled: the cancel recorded the state and deleted the inputs while the
                // engine may still have been writing work files.
                sweep_work(svc, id).await;
                return;
            }
            (JobState::Failed, TransitionUpdate { error: Some(reason), ..Default::default() })
        }
    };
    let ended = svc.transition(id, &[JobState::Running], to, update).await;
    if matches!(ended, Ok(true)) {
        let outcome = if to == JobState::Completed { Outcome::Success } else { Outcome::Failure };
        svc.audit(
            AuditEvent::new("node", "local", "job.finished", outcome)
                .target(id)
                .details(json!({ "state": to.as_str() })),
        )
        .await;
    }
    sweep_work(svc, id).await;
}

/// Once the run is over, if its inputs are gone by then (a cancel deleted them mid-run),
/// deletes again what the engine may have written since: work files are copies of them.
async fn sweep_work(svc: &JobsService, id: &str) {
    if let Ok(Some(job)) = svc.store.job(id).await
        && job.inputs_deleted_at.is_some()
        && let Err(e) = svc.delete_inputs(id).await
    {
        tracing::warn!(job = %id, error = %e, "could not delete a cancelled run's work files");
    }
}

pub(super) async fn progress(svc: &JobsService, id: &str, stage: &str, p: f64, message: Option<&str>) {
    match svc.store.job_progress(id, stage, p, message).await {
        Ok(event) => svc.publish(event),
        Err(e) => tracing::warn!(job = %id, error = %e, "could not record progress"),
    }
}

/// Hashes a result file and records it.
pub(super) async fn add_result(svc: &JobsService, id: &str, path: &Path) -> Result<(), JobFailure> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let file = crate::files::hash_file(path).await?;
    svc.store.add_job_result(id, &JobResult { name, size: file.size as i64, sha256: file.sha256 }).await?;
    Ok(())
}

/// Writes `report.html` from the job's report files in `results` and records it. A host writes
/// none: the origin renders the researcher's page itself, from the reports' numbers.
pub(super) async fn write_html_report(svc: &JobsService, job: &JobRow, results: &Path) -> Result<(), JobFailure> {
    if job.role() == crate::store::jobs::JobRole::Host {
        return Ok(());
    }
    let path = super::html_report::write(job, results).await?;
    add_result(svc, &job.id, &path).await
}

/// What was repaired in the job's uploads at this node.
pub(super) fn repairs_of(job: &JobRow) -> Vec<Repair> {
    job.input_repairs.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default()
}

/// Writes the QC report as `qc_report.json` and `qc_report.txt` into `results` and records
/// both as results of the job. Returns the JSON.
pub(super) async fn write_qc_report(
    svc: &JobsService,
    id: &str,
    results: &Path,
    report: &QcReport,
) -> Result<String, JobFailure> {
    let json = serde_json::to_string_pretty(report)?;
    tokio::fs::write(results.join("qc_report.json"), &json).await?;
    tokio::fs::write(results.join("qc_report.txt"), report.to_text()).await?;
    for f in ["qc_report.json", "qc_report.txt"] {
        add_result(svc, id, &results.join(f)).await?;
    }
    Ok(json)
}

/// The result-file prefix of a chromosome: `chr20` whether it was named `20` or `chr20`.
pub(super) fn chrom_prefix(chrom: &str) -> String {
    format!("chr{}", chrom.strip_prefix("chr").unwrap_or(chrom))
}

async fn execute(svc: &JobsService, job: &JobRow, kill: &KillSwitch) -> Result<Option<JobSummary>, JobFailure> {
    let cfg = &svc.config;
    let e = &cfg.engines;
    let dir = svc.job_dir(&job.id);
    let (work, results) = (dir.join("work"), svc.results_dir(&job.id));
    // A re-run (after a restart or a retry) starts clean.
    let _ = tokio::fs::remove_dir_all(&work).await;
    let _ = tokio::fs::remove_dir_all(&results).await;
    svc.store.clear_job_results(&job.id).await?;
    tokio::fs::create_dir_all(&work).await?;
    tokio::fs::create_dir_all(&results).await?;
    let log = results.join("job.log");

    // A job for an external service this node wraps runs there.
    if let Some(service) = svc.store.service(&job.engine).await? {
        return if service.kind == "wes" {
            super::external::execute_wes(svc, job, &service, kill, &work, &results).await
        } else {
            super::external::execute(svc, job, &service, kill, &work, &results).await
        };
    }
    let panel = svc.store.panel(&job.panel_id).await?.filter(|p| p.status == "ready");
    let Some(panel) = panel else {
        return Err(JobFailure(format!("panel {} is not available on this node", job.panel_id)));
    };
    let build: GenomeBuild = job.build.parse().map_err(JobFailure)?;
    if panel.build != build.as_str() {
        return Err(JobFailure(format!("panel {} is {}, the job asks for {}", panel.id, panel.build, build.as_str())));
    }
    let files = PanelFiles::new(cfg, &panel.id);
    let chromosomes = svc.store.panel_chromosomes(&panel.id).await?;
    let mut sites = files.panel_sites(chromosomes.iter().map(|c| c.chromosome.as_str()));
    sites.population = job.population.clone();
    let inputs: Vec<InputFile> = svc
        .store
        .job_inputs(&job.id)
        .await?
        .into_iter()
        .map(|i| InputFile { path: svc.files.input_path(&job.id, i.idx), name: i.name })
        .collect();

    // QC.
    let (qc_dir, settings) = (work.join("qc"), cfg.qc);
    let outcome = tokio::task::spawn_blocking(move || run_qc(&inputs, build, Some(&sites), &settings, &qc_dir))
        .await
        .map_err(|e| JobFailure(e.to_string()))??;
    let mut report = outcome.report.clone();
    report.repairs = repairs_of(job);
    let report_json = write_qc_report(svc, &job.id, &results, &report).await?;
    let (excluded, copy) = (outcome.excluded_path.clone(), results.join("excluded.tsv"));
    tokio::task::spawn_blocking(move || crate::at_rest::private_copy(&excluded, &copy)).await??;
    add_result(svc, &job.id, &results.join("excluded.tsv")).await?;
    if let Some(check) = &report.allele_frequency {
        tokio::fs::write(results.join("af_plot.svg"), check.svg()).await?;
        add_result(svc, &job.id, &results.join("af_plot.svg")).await?;
    }
    let passed = outcome.report.status == QcStatus::Passed;
    let recorded = svc
        .transition(
            &job.id,
            &[JobState::Running],
            JobState::Running,
            TransitionUpdate {
                stage: Some("qc".into()),
                progress: Some(0.1),
                message: Some(format!("QC {}", if passed { "passed" } else { "failed" })),
                qc_report: Some(report_json),
                ..Default::default()
            },
        )
        .await?;
    if !recorded {
        return Err(JobFailure("the job stopped running during QC".into()));
    }
    if !passed {
        return Err(JobFailure(format!("input QC failed: {}", outcome.report.message.clone().unwrap_or_default())));
    }
    if job.mode == "qc_only" {
        write_html_report(svc, job, &results).await?;
        return Ok(None);
    }

    // Engines, one chromosome at a time.
    let mut summary = JobSummary { r2_filter: job.r2_filter, ..Default::default() };
    let n = outcome.filtered.len().max(1) as f64;
    for (i, (chrom, filtered)) in outcome.filtered.iter().enumerate() {
        let base = 0.1 + 0.85 * i as f64 / n;
        let share = 0.85 / n;
        tools::run(&e.tabix, &tool_args!("-f", "-p", "vcf", filtered.as_os_str()), None).await?;
        let prefix = chrom_prefix(chrom);
        let map = panel.has_map.then(|| files.map_for(chrom));
        let beagle = BeagleInputs { kill, log: &log, bref3: &files.bref3(chrom), gt: filtered, map: map.as_deref() };
        let imputed = match job.engine.as_str() {
            "beagle" => beagle.run(svc, job, &work.join(&prefix), true, base, share).await?,
            "minimac4" => {
                let phased = if job.phasing == "beagle" {
                    let out =
                        beagle.run(svc, job, &work.join(format!("{prefix}.phased")), false, base, share * 0.7).await?;
                    tools::run(&e.tabix, &tool_args!("-f", "-p", "vcf", out.as_os_str()), None).await?;
                    out
                } else {
                    filtered.clone()
                };
                progress(svc, &job.id, "imputing", base + share * 0.7, Some(&format!("{chrom}: Minimac4"))).await;
                let out = work.join(format!("{prefix}.minimac4.vcf.gz"));
                let sites = work.join(format!("{prefix}.minimac4.sites.vcf.gz"));
                EngineRun {
                    engine: "minimac4",
                    program: &e.minimac4,
                    args: minimac4_args(e, &files.msav(chrom), &phased, &out, &sites, job.r2_filter, map.as_deref()),
                    stdout_to: None,
                    log: &log,
                    kill,
                }
                .run(|_| {})
                .await
                .map_err(engine_failure)?;
                out
            }
            other => return Err(JobFailure(format!("unknown engine {other}"))),
        };

        // Results: the indexed dosage VCF (r2-filtered, with provenance) and its info file.
        progress(svc, &job.id, "writing", base + share * 0.95, Some(&format!("{chrom}: writing results"))).await;
        let provenance = provenance(svc, job, &engine_version(e, &job.engine).await).await;
        write_chromosome_results(svc, &job.id, &imputed, &prefix, &results, job.r2_filter, &provenance, &mut summary)
            .await?;
        tracing::debug!(job = %job.id, chrom, "chromosome done");
    }
    tokio::fs::write(results.join("summary.json"), serde_json::to_string_pretty(&summary)?).await?;
    add_result(svc, &job.id, &results.join("summary.json")).await?;
    add_result(svc, &job.id, &log).await?;
    write_html_report(svc, job, &results).await?;
    Ok(Some(summary))
}

/// Finishes an engine's output for one chromosome into the results: `<prefix>.dose.vcf.gz` (r2
/// filter applied, provenance in the header) with its tabix index, and `<prefix>.info.gz`; adds
/// the chromosome to the summary.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_chromosome_results(
    svc: &JobsService,
    id: &str,
    engine_output: &Path,
    prefix: &str,
    results: &Path,
    r2_filter: f64,
    provenance: &[(String, String)],
    summary: &mut JobSummary,
) -> Result<(), JobFailure> {
    let dose = results.join(format!("{prefix}.dose.vcf.gz"));
    let info = results.join(format!("{prefix}.info.gz"));
    let (input, dose_out, info_out, lines) =
        (engine_output.to_path_buf(), dose.clone(), info.clone(), provenance.to_vec());
    let counts = tokio::task::spawn_blocking(move || dose::finish(&input, &dose_out, &info_out, r2_filter, &lines))
        .await
        .map_err(|e| JobFailure(e.to_string()))??;
    tools::run(&svc.config.engines.tabix, &tool_args!("-f", "-p", "vcf", dose.as_os_str()), None).await?;
    add_counts(summary, prefix, &counts);
    let index = PathBuf::from(format!("{}.tbi", dose.display()));
    for f in [&dose, &index, &info] {
        add_result(svc, id, f).await?;
    }
    Ok(())
}

/// The institution of `peer` as the current signed member list names it.
pub(super) async fn signed_institution(svc: &JobsService, peer: &str) -> Option<String> {
    let row = svc.store.current_federation_config().await.ok()??;
    let config = fedimpute_protocol::federation::FederationConfig::from_json(&row.document).ok()?;
    config.doc().member(peer).map(|m| m.institution.clone())
}

/// The provenance lines of a job's result files: software, job, panel and the node hosting it
/// (as the signed member list names it), engine, phasing and r2 filter.
pub(super) async fn provenance(svc: &JobsService, job: &JobRow, engine: &str) -> Vec<(String, String)> {
    let me = svc.identity.peer_id().to_string();
    let institution = signed_institution(svc, &me)
        .await
        .unwrap_or_else(|| format!("{} (not in a federation)", svc.config.node.institution));
    let phasing = match (job.engine.as_str(), job.phasing.as_str()) {
        (_, "no_phasing") => "none (the input was phased)".to_string(),
        ("beagle", _) => "Beagle, with imputation".to_string(),
        _ => "Beagle, before imputation".to_string(),
    };
    [
        ("version", format!("fedimpute {}", env!("CARGO_PKG_VERSION"))),
        ("job", job.id.clone()),
        ("panel", job.panel_id.clone()),
        ("panel_host", format!("{institution} ({me})")),
        ("engine", engine.to_string()),
        ("phasing", phasing),
        ("r2_filter", job.r2_filter.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn engine_failure(e: EngineError) -> JobFailure {
    JobFailure(e.to_string())
}

/// What a Beagle run of one chromosome reads.
struct BeagleInputs<'a> {
    kill: &'a KillSwitch,
    log: &'a Path,
    bref3: &'a Path,
    gt: &'a Path,
    map: Option<&'a Path>,
}

impl BeagleInputs<'_> {
    /// Runs Beagle (phasing, and imputation if `impute`), reporting progress between `base` and
    /// `base + share`; returns the output VCF.
    async fn run(
        &self,
        svc: &JobsService,
        job: &JobRow,
        out_prefix: &Path,
        impute: bool,
        base: f64,
        share: f64,
    ) -> Result<PathBuf, JobFailure> {
        let (kill, log, bref3, gt, map) = (self.kill, self.log, self.bref3, self.gt, self.map);
        let e = &svc.config.engines;
        progress(svc, &job.id, "phasing", base, Some("Beagle: phasing")).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
        let mut seen = 0;
        let run = EngineRun {
            engine: "beagle",
            program: &e.java,
            args: beagle_args(e, bref3, gt, out_prefix, map, impute),
            stdout_to: None,
            log,
            kill,
        }
        .run(move |line| {
            if let Some(p) = beagle_phasing_progress(line, &mut seen) {
                let _ = tx.send(p);
            }
        });
        let id = job.id.clone();
        let reporter = async {
            let mut last = 0.0;
            while let Some(p) = rx.recv().await {
                // Phasing is most of Beagle's work; report in steps of a tenth.
                if p - last >= 0.1 || p >= 1.0 {
                    last = p;
                    progress(svc, &id, "phasing", base + share * 0.8 * p, None).await;
                }
            }
        };
        let (result, ()) = tokio::join!(run, reporter);
        result.map_err(engine_failure)?;
        if impute {
            progress(svc, &job.id, "imputing", base + share * 0.9, Some("Beagle: imputed")).await;
        }
        // Beagle writes `<out>.vcf.gz`.
        Ok(PathBuf::from(format!("{}.vcf.gz", out_prefix.display())))
    }
}
