//! Runs one job: QC against the panel, the chunk plan, the engines (see `engine_run`), result
//! files, summary.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::JobsService;
use super::engine_run::{ChromosomeWork, EngineJob, is_meta, meta_work_files};
use super::outputs::{
    JobFailure, add_result, chrom_prefix, progress, provenance, repairs_of, write_chromosome_results,
    write_html_report, write_qc_report,
};
use super::results::JobSummary;
use crate::imputation::GenomeBuild;
use crate::imputation::chunks;
use crate::imputation::engines::{KillSwitch, engine_version};
use crate::imputation::panels::PanelFiles;
use crate::imputation::qc::{InputFile, QcStatus, run_qc};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobRow, JobState, TransitionUpdate};

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

async fn execute(svc: &JobsService, job: &JobRow, kill: &KillSwitch) -> Result<Option<JobSummary>, JobFailure> {
    let cfg = &svc.config;
    let e = &cfg.engines;
    let (work, results) = (svc.work_dir(&job.id), svc.results_dir(&job.id));
    // A re-run (after a restart or a retry) starts clean, but for tasks that outlive the node
    // (Slurm jobs): their work files stay for the re-run to re-attach to.
    let resumable = svc.executor.resumable() && svc.store.service(&job.engine).await?.is_none();
    if !resumable {
        let _ = tokio::fs::remove_dir_all(&work).await;
    }
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
    // Tasks re-attached to may still read the last run's QC output: a re-run writes its own.
    let qc_name = if resumable { format!("qc.{}", job.attempts) } else { "qc".to_string() };
    let (qc_dir, settings) = (work.join(qc_name), cfg.qc);
    let outcome = tokio::task::spawn_blocking(move || run_qc(&inputs, build, Some(&sites), &settings, &qc_dir))
        .await
        .map_err(|e| JobFailure(e.to_string()))??;
    let mut report = outcome.report.clone();
    report.repairs = repairs_of(job);
    let chromosomes_work = plan_chunks(svc, job, &files, &outcome.filtered, &outcome.excluded_path).await?;
    report.chunks = chromosomes_work.iter().flat_map(|c| c.chunks.iter().cloned()).collect();
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

    // Engines, chunks of every chromosome through the node's executor.
    let mut summary = JobSummary { r2_filter: job.r2_filter, ..Default::default() };
    let engine_job = EngineJob { svc, job, kill, files: &files, has_map: panel.has_map, work: &work, log: &log };
    let outputs = engine_job.run(&chromosomes_work).await?;
    if is_meta(job) {
        // What the origin combines: per chromosome the phased targets (first round) and the
        // leave-one-out dosages at the typed sites (both rounds).
        for (chrom, _) in &outcome.filtered {
            let (phased, empirical) = meta_work_files(&work, chrom);
            let prefix = chrom_prefix(chrom);
            let mut returned = vec![(empirical, format!("{prefix}.empirical.vcf.gz"))];
            if job.mode == "meta_phase" {
                returned.push((phased, format!("{prefix}.phased.vcf.gz")));
            }
            for (from, name) in returned {
                let to = results.join(name);
                let copy = to.clone();
                tokio::task::spawn_blocking(move || crate::at_rest::private_copy(&from, &copy)).await??;
                add_result(svc, &job.id, &to).await?;
            }
        }
        if job.mode == "meta_phase" {
            add_result(svc, &job.id, &log).await?;
            return Ok(None);
        }
    }
    for ((chrom, _), imputed) in outcome.filtered.iter().zip(&outputs) {
        // Results: the indexed dosage VCF (r2-filtered, with provenance) and its info file.
        progress(svc, &job.id, "writing", 0.96, Some(&format!("{chrom}: writing results"))).await;
        let provenance = provenance(svc, job, &engine_version(e, &job.engine).await).await;
        let prefix = chrom_prefix(chrom);
        write_chromosome_results(svc, &job.id, imputed, &prefix, &results, job.r2_filter, &provenance, &mut summary)
            .await?;
        tracing::debug!(job = %job.id, chrom, "chromosome done");
    }
    tokio::fs::write(results.join("summary.json"), serde_json::to_string_pretty(&summary)?).await?;
    add_result(svc, &job.id, &results.join("summary.json")).await?;
    add_result(svc, &job.id, &log).await?;
    write_html_report(svc, job, &results).await?;
    Ok(Some(summary))
}

/// Plans the chunks of each chromosome from its QC-passed input, the input's SNPs the panel
/// lacks (from `excluded.tsv`), and the panel's span on it.
async fn plan_chunks(
    svc: &JobsService,
    job: &JobRow,
    files: &PanelFiles,
    filtered: &[(String, PathBuf)],
    excluded_tsv: &Path,
) -> Result<Vec<ChromosomeWork>, JobFailure> {
    let (filtered, excluded, panel) = (filtered.to_vec(), excluded_tsv.to_path_buf(), files.clone());
    let mut settings = svc.config.chunking;
    if is_meta(job) {
        // The origin combines whole chromosomes: one chunk each (a chunk's own leave-one-out
        // file would need ligating at the same boundaries in every panel).
        settings.size_bp = u64::MAX / 4;
    }
    // One read of excluded.tsv for every chromosome; then each chromosome's input and panel span.
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<ChromosomeWork>> {
        let absent = chunks::absent_from_panel(&excluded)?;
        filtered
            .into_iter()
            .map(|(chrom, path)| {
                let kept = chunks::positions(&path)?;
                let span = chunks::span(&panel.sites(&chrom))?.unwrap_or((1, 1));
                let absent = absent.get(&chrom).cloned().unwrap_or_default();
                let planned = chunks::plan(&chrom, span, &kept, &absent, &settings);
                Ok(ChromosomeWork { chrom, filtered: path, chunks: planned })
            })
            .collect()
    })
    .await
    .map_err(|e| JobFailure(e.to_string()))??;
    Ok(out)
}
