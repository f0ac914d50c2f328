//! What every way of running a job shares: its failure type, progress, and the result files
//! it records (QC report, per-chromosome dose files, provenance, the report page).

use std::path::{Path, PathBuf};

use super::JobsService;
use super::results::{JobSummary, add_counts};
use crate::imputation::qc::QcReport;
use crate::imputation::repair::Repair;
use crate::imputation::{dose, tools};
use crate::store::jobs::{JobResult, JobRow};
use crate::tool_args;

/// A failure to report on the job, in words for the researcher.
#[derive(Debug)]
pub(crate) struct JobFailure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for JobFailure {
    fn from(e: E) -> Self {
        JobFailure(e.to_string())
    }
}

pub(crate) async fn progress(svc: &JobsService, id: &str, stage: &str, p: f64, message: Option<&str>) {
    match svc.store.job_progress(id, stage, p, message).await {
        Ok(event) => svc.publish(event),
        Err(e) => tracing::warn!(job = %id, error = %e, "could not record progress"),
    }
}

/// Hashes a result file and records it.
pub(crate) async fn add_result(svc: &JobsService, id: &str, path: &Path) -> Result<(), JobFailure> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let file = crate::files::hash_file(path).await?;
    svc.store.add_job_result(id, &JobResult { name, size: file.size as i64, sha256: file.sha256 }).await?;
    Ok(())
}

/// Writes `report.html` from the job's report files in `results` and records it. A host writes
/// none: the origin renders the researcher's page itself, from the reports' numbers.
pub(crate) async fn write_html_report(svc: &JobsService, job: &JobRow, results: &Path) -> Result<(), JobFailure> {
    if job.role() == crate::store::jobs::JobRole::Host {
        return Ok(());
    }
    let path = super::html_report::write(job, results).await?;
    add_result(svc, &job.id, &path).await
}

/// What was repaired in the job's uploads at this node.
pub(crate) fn repairs_of(job: &JobRow) -> Vec<Repair> {
    job.input_repairs.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default()
}

/// Writes the QC report as `qc_report.json` and `qc_report.txt` into `results` and records
/// both as results of the job. Returns the JSON.
pub(crate) async fn write_qc_report(
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
pub(crate) fn chrom_prefix(chrom: &str) -> String {
    format!("chr{}", chrom.strip_prefix("chr").unwrap_or(chrom))
}

/// Finishes an engine's output for one chromosome into the results: `<prefix>.dose.vcf.gz` (r2
/// filter applied, provenance in the header) with its tabix index, and `<prefix>.info.gz`; adds
/// the chromosome to the summary.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_chromosome_results(
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
pub(crate) async fn signed_institution(svc: &JobsService, peer: &str) -> Option<String> {
    let row = svc.store.current_federation_config().await.ok()??;
    let config = fedimpute_protocol::federation::FederationConfig::from_json(&row.document).ok()?;
    config.doc().member(peer).map(|m| m.institution.clone())
}

/// The provenance lines of a job's result files: software, job, panel and the node hosting it
/// (as the signed member list names it), engine, phasing and r2 filter.
pub(crate) async fn provenance(svc: &JobsService, job: &JobRow, engine: &str) -> Vec<(String, String)> {
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
