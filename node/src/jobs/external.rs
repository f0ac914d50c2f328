//! Running a job through an external service this node wraps (a Cloudgene server, or a GA4GH
//! WES server running our CWL workflow): submit the inputs, follow the job there (queue
//! position, steps), fetch (and unpack) the results into our layout, and write the info tables
//! and summary as for a local run.
//!
//! The job's id at the service is stored before it is followed, so after a restart the node
//! carries on with the same remote job instead of submitting it twice. The archives'
//! password is derived from the node key and the job id, so it never has to be stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::JobsService;
use super::outputs::{JobFailure, add_result, progress, provenance, write_chromosome_results};
use super::results::JobSummary;
use crate::credentials::Secret;
use crate::imputation::engines::KillSwitch;
use crate::imputation::external::cloudgene::{State, Submission};
use crate::imputation::external::wes::{RunRequest, RunState, Workflow};
use crate::imputation::external::{cloudgene_client, wes_client};
use crate::store::jobs::JobRow;
use crate::store::services::ServiceRow;

/// The password protecting a job's result archives at the service.
fn archive_password(svc: &JobsService, job_id: &str) -> Secret {
    let mut message = b"fedimpute/cloudgene-password/v1\0".to_vec();
    message.extend(job_id.as_bytes());
    Secret::new(hex::encode(&Sha256::digest(svc.identity.sign(&message))[..16]))
}

/// A population the service accepts for the job: the job's own if the service lists it (any
/// case), else `mixed` where offered, else the service's first.
fn population_for(job: &JobRow, offered: &[String]) -> Option<String> {
    if let Some(p) = &job.population
        && let Some(found) = offered.iter().find(|o| o.eq_ignore_ascii_case(p))
    {
        return Some(found.clone());
    }
    offered.iter().find(|o| o.as_str() == "mixed").or(offered.first()).cloned()
}

pub(super) async fn execute(
    svc: &JobsService,
    job: &JobRow,
    service: &ServiceRow,
    kill: &KillSwitch,
    work: &Path,
    results: &Path,
) -> Result<Option<JobSummary>, JobFailure> {
    let client = cloudgene_client(&svc.identity, service)?;
    let password = archive_password(svc, &job.id);
    let external_id = remote_id(svc, job, service, async {
        let app = client.app().await?;
        let panel = app
            .panels
            .iter()
            .find(|p| p.id == job.panel_id || p.key == job.panel_id)
            .ok_or_else(|| JobFailure(format!("{} no longer offers panel {}", service.id, job.panel_id)))?;
        let inputs: Vec<(String, PathBuf)> = svc
            .store
            .job_inputs(&job.id)
            .await?
            .into_iter()
            .map(|i| (i.name, svc.files.input_path(&job.id, i.idx)))
            .collect();
        let population = population_for(job, &app.populations).unwrap_or_else(|| "mixed".into());
        progress(svc, &job.id, "submitting", 0.03, Some(&format!("submitting to {}", service.id))).await;
        let id = client
            .submit(&Submission {
                files: &inputs,
                refpanel: &panel.key,
                build: &job.build,
                phasing: if job.phasing == "no_phasing" { "no_phasing" } else { "eagle" },
                population: &population,
                mode: if job.mode == "qc_only" { "qconly" } else { "imputation" },
                r2_filter: fedimpute_protocol::jobs::r2_filter_text(job.r2_filter),
                password: &password,
            })
            .await?;
        Ok(id)
    })
    .await?;

    let mut follow = Follow::new(svc);
    loop {
        if kill.is_killed() {
            if let Err(e) = client.cancel(&external_id).await {
                tracing::warn!(job = %job.id, error = %e, "could not cancel the job at the external service");
            }
            return Err(JobFailure("cancelled".into()));
        }
        let status = client.status(&external_id).await?;
        let (stage, share, note) = match status.state {
            State::Waiting => (
                "queued_at_service",
                0.05,
                format!("waiting at {}: position {} in its queue", service.id, status.position_in_queue),
            ),
            State::Running | State::Exporting => {
                let details = client.details(&external_id).await?;
                let step = details.current_step().unwrap_or("running").to_string();
                let share = if status.state == State::Exporting { 0.85 } else { 0.5 };
                ("running_at_service", share, format!("{}: {step}", service.id))
            }
            State::Success | State::SuccessNotified => break,
            State::Failed | State::FailedNotified => {
                let details = client.details(&external_id).await?;
                return Err(JobFailure(
                    details
                        .error_message()
                        .unwrap_or_else(|| format!("{} reports the job failed, without a message", service.id)),
                ));
            }
            State::Canceled => return Err(JobFailure(format!("cancelled at {}", service.id))),
            State::Retired => {
                return Err(JobFailure(format!(
                    "{} retired the job: its results were deleted there before they were fetched",
                    service.id
                )));
            }
            State::Dead => return Err(JobFailure(format!("{} lost the job (state dead)", service.id))),
            State::Deleted => return Err(JobFailure(format!("the job was deleted at {}", service.id))),
            State::Unknown(code) => {
                return Err(JobFailure(format!("{} reports an unknown job state {code}", service.id)));
            }
        };
        follow.note_and_wait(svc, &job.id, stage, share, note).await;
    }

    // Results: download every output file; unpack the encrypted archives.
    progress(svc, &job.id, "fetching_results", 0.9, Some(&format!("fetching the results from {}", service.id))).await;
    let details = client.details(&external_id).await?;
    let downloads = work.join("downloads");
    tokio::fs::create_dir_all(&downloads).await?;
    let limits = ArchiveLimits::of(svc);
    let mut unpacked = 0u64;
    for file in details.output_params.iter().flat_map(|p| p.files.iter()) {
        let name = Path::new(&file.name).file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.is_empty() || name.starts_with('.') {
            return Err(JobFailure(format!("{} listed an unusable file name {:?}", service.id, file.name)));
        }
        let local = downloads.join(&name);
        client.download(file, &local, limits.max_download_bytes).await?;
        if name.ends_with(".zip") {
            let (archive, into, password) = (local.clone(), results.to_path_buf(), password.clone());
            let budget = limits.max_unpacked_bytes.saturating_sub(unpacked);
            let ratio = limits.max_ratio;
            unpacked += tokio::task::spawn_blocking(move || unzip(&archive, &into, &password, budget, ratio))
                .await
                .map_err(|e| JobFailure(e.to_string()))??;
        } else {
            tokio::fs::rename(&local, results.join(&name)).await?;
        }
    }

    let mut summary = JobSummary { r2_filter: job.r2_filter, ..Default::default() };
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(results).await?;
    while let Some(entry) = entries.next_entry().await? {
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    // The service's own dosage VCFs, finished into our layout; its own info files (a Cloudgene
    // server's hold leave-one-out figures ours cannot) are kept where it sent them.
    let lines = provenance(svc, job, &format!("{} ({} server)", service.id, service.kind)).await;
    for name in names.iter().filter(|n| n.ends_with(".dose.vcf.gz")) {
        let prefix = name.trim_end_matches(".dose.vcf.gz");
        let theirs = work.join(name);
        tokio::fs::rename(results.join(name), &theirs).await?;
        let kept_info = results.join(format!("{prefix}.info.gz"));
        let their_info = work.join(format!("{prefix}.service.info.gz"));
        let had_info = tokio::fs::rename(&kept_info, &their_info).await.is_ok();
        write_chromosome_results(svc, &job.id, &theirs, prefix, results, 0.0, &lines, &mut summary).await?;
        if had_info {
            tokio::fs::rename(&their_info, &kept_info).await?;
        }
    }
    tokio::fs::write(results.join("summary.json"), serde_json::to_string_pretty(&summary)?).await?;
    record_results_folder(svc, &job.id, results).await?;
    Ok(if job.mode == "qc_only" { None } else { Some(summary) })
}

/// Hashes and records every file of the results folder (a service's output names vary).
async fn record_results_folder(svc: &JobsService, job_id: &str, results: &Path) -> Result<(), JobFailure> {
    let mut entries = tokio::fs::read_dir(results).await?;
    while let Some(entry) = entries.next_entry().await? {
        add_result(svc, job_id, &entry.path()).await?;
    }
    Ok(())
}

/// The job's id at `service`: the stored one when the node restarted mid-job, else the one
/// `submit` returns, stored before the job is followed so that it is never submitted twice.
async fn remote_id(
    svc: &JobsService,
    job: &JobRow,
    service: &ServiceRow,
    submit: impl Future<Output = Result<String, JobFailure>>,
) -> Result<String, JobFailure> {
    if let Some(id) = &job.external_id {
        return Ok(id.clone());
    }
    let id = submit.await?;
    svc.store.set_external_id(&job.id, Some(&id)).await?;
    tracing::info!(job = %job.id, service = %service.id, external = %id, "submitted to an external service");
    Ok(id)
}

/// Following a job at a service: a progress note when what the service says changes (polls
/// mostly repeat it), and the wait between polls.
struct Follow {
    last_note: String,
    poll: Duration,
}

impl Follow {
    fn new(svc: &JobsService) -> Self {
        Self { last_note: String::new(), poll: Duration::from_secs(svc.config.transfer.poll_secs.max(1)) }
    }

    async fn note_and_wait(&mut self, svc: &JobsService, job_id: &str, stage: &str, share: f64, note: String) {
        if note != self.last_note {
            progress(svc, job_id, stage, share, Some(&note)).await;
            self.last_note = note;
        }
        tokio::time::sleep(self.poll).await;
    }
}

/// What a service's downloads and archives may amount to (node.toml `engines.service_max_*`).
struct ArchiveLimits {
    max_download_bytes: u64,
    max_unpacked_bytes: u64,
    max_ratio: u64,
}

impl ArchiveLimits {
    fn of(svc: &JobsService) -> Self {
        let e = &svc.config.engines;
        Self {
            max_download_bytes: e.service_max_download_bytes,
            max_unpacked_bytes: e.service_max_unpacked_bytes,
            max_ratio: u64::from(e.service_max_compression_ratio),
        }
    }
}

/// Unpacks a (possibly AES-encrypted) zip archive's files into `into`, flat: only file names are
/// kept, never the archive's folders, so no entry can land outside `into`. At most `budget`
/// bytes in all, and no entry that unpacks to more than `max_ratio` times its packed size (the
/// sizes an archive declares are not trusted: the bytes written are counted). Returns the
/// bytes written.
fn unzip(archive: &Path, into: &Path, password: &Secret, budget: u64, max_ratio: u64) -> Result<u64, JobFailure> {
    use std::io::Read;
    let file = std::fs::File::open(archive)?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| JobFailure(format!("result archive: {e}")))?;
    let mut written = 0u64;
    for i in 0..zip.len() {
        let encrypted = zip.by_index_raw(i).map(|f| f.encrypted()).unwrap_or(false);
        let entry = if encrypted {
            zip.by_index_decrypt(i, password.expose().as_bytes())
                .map_err(|e| JobFailure(format!("result archive does not open with the job's password: {e}")))?
        } else {
            zip.by_index(i).map_err(|e| JobFailure(format!("result archive: {e}")))?
        };
        if entry.is_dir() {
            continue;
        }
        let Some(name) = entry.enclosed_name().and_then(|p| p.file_name().map(|n| n.to_os_string())) else {
            continue;
        };
        // Small entries may compress well whatever they hold; the ratio applies past 1 MiB.
        let entry_cap = entry.compressed_size().max((1u64 << 20) / max_ratio.max(1)).saturating_mul(max_ratio);
        let cap = entry_cap.min(budget - written);
        let mut out = std::fs::File::create(into.join(&name))?;
        let copied = std::io::copy(&mut entry.take(cap + 1), &mut out)
            .map_err(|e| JobFailure(format!("result archive: {e}")))?;
        if copied > cap {
            drop(out);
            let _ = std::fs::remove_file(into.join(&name));
            let why = if cap == entry_cap {
                format!("unpacks to more than {max_ratio} times its packed size (a zip bomb?)")
            } else {
                "would take the job's unpacked results past this node's limit (engines.service_max_unpacked_bytes)"
                    .into()
            };
            return Err(JobFailure(format!("result archive entry {}: {why}", name.to_string_lossy())));
        }
        written += copied;
    }
    Ok(written)
}

/// Running a job through a GA4GH WES service: one run of the service's CWL workflow on the
/// job's input, with the panel's files where the server reads them; the imputed VCF comes back
/// as the job's dosage VCF (r2-filtered here, as for a local Beagle job).
pub(super) async fn execute_wes(
    svc: &JobsService,
    job: &JobRow,
    service: &ServiceRow,
    kill: &KillSwitch,
    work: &Path,
    results: &Path,
) -> Result<Option<JobSummary>, JobFailure> {
    if job.mode == "qc_only" {
        return Err(JobFailure(format!("{} runs imputation only; a QC-only job cannot run there", service.id)));
    }
    let client = wes_client(&svc.identity, service)?;
    let inputs = svc.store.job_inputs(&job.id).await?;
    let [input] = inputs.as_slice() else {
        return Err(JobFailure(format!(
            "{} takes one VCF (one chromosome) per job; this job has {}",
            service.id,
            inputs.len()
        )));
    };
    let panels = service.panels();
    let panel = panels
        .iter()
        .find(|p| p.id == job.panel_id)
        .ok_or_else(|| JobFailure(format!("{} does not offer panel {}", service.id, job.panel_id)))?;
    let stem: String = input
        .name
        .trim_end_matches(".gz")
        .trim_end_matches(".vcf")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let run_id = remote_id(svc, job, service, async {
        let e = &svc.config.engines;
        let mut params = serde_json::json!({
            "gt": {"class": "File", "path": input.name},
            "ref": {"class": "File", "location": panel.key},
            "out": "imputed",
            "nthreads": e.threads,
            "java_heap": e.java_heap,
        });
        if let Some(map) = &panel.map {
            params["map"] = serde_json::json!({"class": "File", "location": map});
        }
        let workflow = Workflow::parse(service.workflow_url.as_deref().unwrap_or_default())
            .map_err(|e| JobFailure(format!("{}: {e}; the node's admin must register it again", service.id)))?;
        progress(svc, &job.id, "submitting", 0.03, Some(&format!("submitting to {}", service.id))).await;
        let id = client
            .run(&RunRequest {
                workflow: &workflow,
                params,
                attachments: &[(input.name.clone(), svc.files.input_path(&job.id, input.idx))],
            })
            .await?;
        Ok(id)
    })
    .await?;

    let mut follow = Follow::new(svc);
    loop {
        if kill.is_killed() {
            // The reference server accepts a cancel but does nothing with it: say what we know.
            let note = match client.cancel(&run_id).await {
                Ok(()) => {
                    format!("cancel requested at {}; the service does not confirm that the run stopped", service.id)
                }
                Err(e) => format!("could not ask {} to cancel: {e}", service.id),
            };
            progress(svc, &job.id, "cancelling", 0.0, Some(&note)).await;
            return Err(JobFailure("cancelled".into()));
        }
        let (stage, share, note) = match client.status(&run_id).await? {
            RunState::Queued | RunState::Initializing => {
                ("queued_at_service", 0.05, format!("queued at {}", service.id))
            }
            RunState::Running | RunState::Paused => ("running_at_service", 0.5, format!("running at {}", service.id)),
            RunState::Complete => break,
            RunState::ExecutorError | RunState::SystemError => {
                let log = client.log(&run_id).await?;
                let run =
                    log.run_log.unwrap_or(crate::imputation::external::wes::Log { stderr: None, exit_code: None });
                let stderr = run.stderr.unwrap_or_default();
                let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(3).collect();
                return Err(JobFailure(format!(
                    "the run at {} failed (exit code {}): {}",
                    service.id,
                    run.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into()),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                )));
            }
            RunState::Canceled | RunState::Canceling => return Err(JobFailure(format!("cancelled at {}", service.id))),
            RunState::Preempted => return Err(JobFailure(format!("{} preempted the run", service.id))),
            RunState::Unknown => return Err(JobFailure(format!("{} reports the run in an unknown state", service.id))),
        };
        follow.note_and_wait(svc, &job.id, stage, share, note).await;
    }

    progress(svc, &job.id, "fetching_results", 0.9, Some(&format!("fetching the results from {}", service.id))).await;
    let log = client.log(&run_id).await?;
    let location = log.outputs["imputed"]["location"]
        .as_str()
        .ok_or_else(|| JobFailure(format!("{} finished the run without an `imputed` output", service.id)))?;
    let fetched = work.join("imputed.vcf.gz");
    let limit = svc.config.engines.service_max_download_bytes;
    client.fetch(location, &fetched, limit).await?;
    if let Some(engine_log) = log.outputs["log"]["location"].as_str()
        && let Err(e) = client.fetch(engine_log, &results.join("job.log"), limit).await
    {
        tracing::warn!(job = %job.id, error = %e, "could not fetch the engine log");
    }
    let mut summary = JobSummary { r2_filter: job.r2_filter, ..Default::default() };
    let lines = provenance(svc, job, &format!("{} (WES server)", service.id)).await;
    write_chromosome_results(svc, &job.id, &fetched, &stem, results, job.r2_filter, &lines, &mut summary).await?;
    tokio::fs::write(results.join("summary.json"), serde_json::to_string_pretty(&summary)?).await?;
    record_results_folder(svc, &job.id, results).await?;
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    #[test]
    fn archives_unpack_flat_within_their_budget_and_bombs_are_refused() {
        let into = tempfile::tempdir().unwrap();
        let password = Secret::new("unused".into());
        let plain = zip_of(&[("chr20/chr20.info.tsv", b"SNP\tRsq\n"), ("../escape.txt", b"x")]);
        assert_eq!(unzip(plain.path(), into.path(), &password, 1 << 30, 100).unwrap(), 8);
        assert!(into.path().join("chr20.info.tsv").is_file());
        assert!(!into.path().join("escape.txt").exists() && !into.path().parent().unwrap().join("escape.txt").exists());

        let zeros = vec![0u8; 20 << 20];
        let bomb = zip_of(&[("chr20.dose.vcf.gz", &zeros)]);
        let err = unzip(bomb.path(), into.path(), &password, 1 << 30, 100).unwrap_err().0;
        assert!(err.contains("times its packed size"), "{err}");
        assert!(!into.path().join("chr20.dose.vcf.gz").exists(), "a refused entry was left");

        let err = unzip(bomb.path(), into.path(), &password, 1 << 20, 1_000_000).unwrap_err().0;
        assert!(err.contains("service_max_unpacked_bytes"), "{err}");
    }
}
