//! The origin side: a local researcher's job that runs at another node.
//!
//! `queued` (choose a host, submit) -> `transferring` (the host pulls the inputs) -> `running`
//! (the host queues and runs it; its updates are mirrored here) -> `fetching_results` (pull the
//! results it offers) -> `completed`, then a delivery receipt so the host deletes its copies.
//! A cancel or failure here is passed on to the host. A host silent for longer than
//! `transfer.peer_timeout_secs` fails the job, or, if the researcher allowed it, sends it to
//! another host of the panel.

use std::time::Duration;

use fedimpute_protocol::jobs::{FileManifest, JobReply, JobRequest, JobRequestParams};
use serde_json::json;
use tokio::sync::Notify;

use super::selection::{Candidate, Needs, PanelRef, choose_host};
use super::transfer::PullError;
use super::{Federated, plain_file_name, pseudonym, valid_sha256};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobInput, JobResult, JobRow, JobState, LIVE_STATES, TransitionUpdate};
use crate::time::now_ms;

/// What a driver does after a step.
pub(super) enum Step {
    /// Look at the job again now.
    Again,
    /// Look again after this long, or when woken.
    Wait(Duration),
    /// Nothing left to do.
    Done,
}

const RETRY: Duration = Duration::from_secs(2);

/// The job's parameters as they travel.
pub(super) fn request_params(job: &JobRow) -> JobRequestParams {
    JobRequestParams {
        panel_id: job.panel_id.clone(),
        build: job.build.clone(),
        engine: job.engine.clone(),
        phasing: job.phasing.clone(),
        population: job.population.clone(),
        r2_filter: fedimpute_protocol::jobs::r2_filter_text(job.r2_filter).to_string(),
        mode: job.mode.clone(),
    }
}

/// Whether an origin job still has something to do (the same rule as
/// `Store::origin_jobs_to_drive`).
fn needs_driving(job: &JobRow) -> bool {
    let s = job.state();
    matches!(s, JobState::Queued | JobState::Transferring | JobState::Running | JobState::FetchingResults)
        || (job.peer.is_some() && job.peer_closed_at.is_none() && !s.is_live())
}

impl Federated {
    pub(super) async fn drive_origin(&self, id: &str, wake: &Notify) {
        loop {
            let job = match self.jobs.store.job(id).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "cannot read a forwarded job");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if !needs_driving(&job) {
                return;
            }
            let step = match job.state() {
                JobState::Queued => self.forward(&job).await,
                JobState::Transferring | JobState::Running => self.follow(&job).await,
                JobState::FetchingResults => self.fetch_results(&job).await,
                JobState::Completed => self.confirm_delivery(&job).await,
                _ => self.close_at_host(&job).await,
            };
            match step {
                Step::Again => {}
                Step::Done => return,
                Step::Wait(d) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(d) => {}
                    }
                }
            }
        }
    }

    fn timeout_ms(&self) -> i64 {
        self.jobs.config.transfer.peer_timeout_secs as i64 * 1000
    }

    async fn fail(&self, job: &JobRow, reason: String) -> Step {
        tracing::info!(job = %job.id, %reason, "forwarded job failed");
        let update = TransitionUpdate { error: Some(reason), ..Default::default() };
        if let Err(e) = self.jobs.transition(&job.id, &LIVE_STATES, JobState::Failed, update).await {
            tracing::error!(job = %job.id, error = %e, "cannot record a failure");
            return Step::Wait(RETRY);
        }
        Step::Again
    }

    async fn forward(&self, job: &JobRow) -> Step {
        let inputs = match self.jobs.store.job_inputs(&job.id).await {
            Ok(i) => i,
            Err(e) => return self.fail(job, format!("cannot read the job's inputs: {e}")).await,
        };
        let host = match &job.peer {
            Some(peer) => peer.clone(),
            None => {
                let panel = PanelRef { panel_id: job.panel_id.clone(), host: job.pinned_host.clone() };
                let excluded: Vec<String> = job.excluded_hosts.split_whitespace().map(String::from).collect();
                let bytes = inputs.iter().map(|i| i.size as u64).sum();
                match select_host(
                    &self.federation,
                    &self.jobs.config,
                    &panel,
                    &job.build,
                    &job.engine,
                    bytes,
                    &excluded,
                ) {
                    Ok(peer) => {
                        // A job that moved here from another host starts with none of its files.
                        let _ = tokio::fs::remove_dir_all(self.jobs.results_dir(&job.id)).await;
                        let _ = tokio::fs::remove_dir_all(self.jobs.transfer_dir(&job.id)).await;
                        if let Err(e) = self.jobs.store.clear_job_results(&job.id).await {
                            tracing::error!(job = %job.id, error = %e, "cannot forget an earlier host's results");
                            return Step::Wait(RETRY);
                        }
                        if let Err(e) = self.jobs.store.set_job_peer(&job.id, Some(&peer)).await {
                            tracing::error!(job = %job.id, error = %e, "cannot record the chosen host");
                            return Step::Wait(RETRY);
                        }
                        self.audit(
                            AuditEvent::new("node", "local", "job.forwarded", Outcome::Success)
                                .target(&job.id)
                                .details(json!({ "host": peer, "institution": self.federation.member_label(&peer),
                                                 "panel": job.panel_id,
                                                 "inputs": inputs.iter().map(|i| json!({"sha256": i.sha256, "size": i.size})).collect::<Vec<_>>() })),
                        )
                        .await;
                        peer
                    }
                    // Just after a start the catalog may not be complete yet: wait a while
                    // before giving up, unless hosts were already tried.
                    Err(_) if excluded.is_empty() && now_ms() - job.updated_at < self.timeout_ms().min(60_000) => {
                        return Step::Wait(RETRY);
                    }
                    Err(reason) => return self.fail(job, reason).await,
                }
            }
        };
        let label = self.federation.member_label(&host);
        let submit = JobRequest::Submit {
            job_id: job.id.clone(),
            params: request_params(job),
            inputs: inputs.iter().map(JobInput::manifest).collect(),
            pseudonymous_user: pseudonym(&self.identity, job.owner_id),
        };
        match self.ask(&host, &submit).await {
            Ok(JobReply::Accepted { .. }) => {
                let _ = self.jobs.store.touch_peer(&job.id).await;
                self.audit(
                    AuditEvent::new("node", "local", "job.accepted_by_host", Outcome::Success)
                        .target(&job.id)
                        .details(json!({ "host": host, "institution": label })),
                )
                .await;
                let update = TransitionUpdate {
                    message: Some(format!("accepted by {label}, which is fetching the inputs")),
                    ..Default::default()
                };
                let _ = self.jobs.transition(&job.id, &[JobState::Queued], JobState::Transferring, update).await;
                Step::Again
            }
            Ok(JobReply::Refused { reason, .. }) => {
                self.audit(
                    AuditEvent::new("node", "local", "job.refused_by_host", Outcome::Denied)
                        .target(&job.id)
                        .details(json!({ "host": host, "institution": label, "reason": reason })),
                )
                .await;
                if job.allow_resubmit && job.pinned_host.is_none() {
                    let _ = self.jobs.store.exclude_host(&job.id, &host).await;
                    Step::Again
                } else {
                    self.fail(job, format!("{label} refused the job: {reason}")).await
                }
            }
            Ok(other) => self.unreachable(job, &host, &format!("unexpected answer {other:?}")).await,
            Err(e) => self.unreachable(job, &host, &e.to_string()).await,
        }
    }

    /// The host did not answer. While it is connected, or within the timeout since it last
    /// was: try again later. Beyond it: another host if the researcher allowed it, else fail
    /// with the reason.
    async fn unreachable(&self, job: &JobRow, host: &str, error: &str) -> Step {
        // Connected (a slow answer, on a busy host): not gone. Only silence counts.
        if self.federation.peers.get(host).connected {
            tracing::debug!(job = %job.id, %host, %error, "host connected but did not answer; will retry");
            let _ = self.jobs.store.touch_peer(&job.id).await;
            return Step::Wait(RETRY);
        }
        let seen = job.peer_seen_at.unwrap_or(job.updated_at);
        let silent_ms = now_ms() - seen;
        if silent_ms < self.timeout_ms() {
            tracing::debug!(job = %job.id, %host, %error, "host not reachable; will retry");
            return Step::Wait(RETRY);
        }
        let label = self.federation.member_label(host);
        let secs = self.jobs.config.transfer.peer_timeout_secs;
        self.audit(
            AuditEvent::new("node", "local", "job.host_unreachable", Outcome::Failure)
                .target(&job.id)
                .details(json!({ "host": host, "institution": label, "silent_secs": silent_ms / 1000 })),
        )
        .await;
        if job.allow_resubmit && job.pinned_host.is_none() && job.state().is_live() {
            if let Err(e) = self.jobs.store.exclude_host(&job.id, host).await {
                tracing::error!(job = %job.id, error = %e, "cannot record the lost host");
                return Step::Wait(RETRY);
            }
            let update = TransitionUpdate {
                message: Some(format!("{label} unreachable for more than {secs} s: moving the job to another host")),
                progress: Some(0.0),
                ..Default::default()
            };
            let _ = self.jobs.transition(&job.id, &LIVE_STATES, JobState::Queued, update).await;
            return Step::Again;
        }
        self.fail(job, format!("host {label} has been unreachable for more than {secs} s")).await
    }

    async fn follow(&self, job: &JobRow) -> Step {
        let Some(host) = job.peer.clone() else {
            return self.fail(job, "the job has no host".into()).await;
        };
        match self.ask(&host, &JobRequest::QueryStatus { job_id: job.id.clone() }).await {
            Ok(reply) => {
                self.apply_update(job, reply).await;
                Step::Wait(Duration::from_secs(self.jobs.config.transfer.poll_secs))
            }
            Err(e) => self.unreachable(job, &host, &e.to_string()).await,
        }
    }

    /// Mirrors what the host says about the job (pushed by it, or asked by us).
    pub(super) async fn apply_update(&self, job: &JobRow, reply: JobReply) {
        let Some(host) = job.peer.as_deref() else { return };
        let _ = self.jobs.store.touch_peer(&job.id).await;
        let label = self.federation.member_label(host);
        let state = job.state();
        let following = [JobState::Transferring, JobState::Running];
        match reply {
            JobReply::Status { state: remote, stage, progress_permille, message, qc_report, .. } => {
                let progress = f64::from(progress_permille.min(1000)) / 1000.0;
                let qc_report = qc_report.and_then(qc_report_text);
                match remote.as_str() {
                    "queued" if state == JobState::Transferring => {
                        let update = TransitionUpdate {
                            stage: Some("queued_at_host".into()),
                            message: Some(format!("inputs received; queued at {label}")),
                            ..Default::default()
                        };
                        let _ = self.jobs.transition(&job.id, &following, JobState::Running, update).await;
                    }
                    "running" if state == JobState::Transferring || qc_report.is_some() && job.qc_report.is_none() => {
                        let update = TransitionUpdate {
                            stage,
                            progress: Some(progress),
                            message,
                            qc_report,
                            ..Default::default()
                        };
                        let _ = self.jobs.transition(&job.id, &following, JobState::Running, update).await;
                    }
                    "running" if state == JobState::Running => {
                        let stage = stage.unwrap_or_else(|| "running".into());
                        let changed =
                            job.stage.as_deref() != Some(stage.as_str()) || (job.progress - progress).abs() > 1e-6;
                        if changed {
                            match self.jobs.store.job_progress(&job.id, &stage, progress, message.as_deref()).await {
                                Ok(event) => self.jobs.publish(event),
                                Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot record progress"),
                            }
                        }
                    }
                    "failed" if state.is_live() => {
                        let reason = message.unwrap_or_else(|| "failed".into());
                        let update = TransitionUpdate {
                            error: Some(format!("at {label}: {reason}")),
                            qc_report,
                            ..Default::default()
                        };
                        let _ = self.jobs.transition(&job.id, &LIVE_STATES, JobState::Failed, update).await;
                    }
                    "cancelled" if state.is_live() => {
                        let update =
                            TransitionUpdate { message: Some(format!("cancelled at {label}")), ..Default::default() };
                        let _ = self.jobs.transition(&job.id, &LIVE_STATES, JobState::Cancelled, update).await;
                    }
                    "delivered" | "purged" if state.is_live() => {
                        self.fail(job, format!("{label} no longer holds this job")).await;
                    }
                    _ => {}
                }
            }
            JobReply::ResultManifest { files, .. } if following.contains(&state) => {
                if let Some(bad) = files.iter().find(|f| !plain_file_name(&f.name) || !valid_sha256(&f.sha256)) {
                    self.fail(
                        job,
                        format!("{label} offered a result file with an unusable name or digest {:?}", bad.name),
                    )
                    .await;
                    return;
                }
                // The host decides the sizes: hold them to the researcher's storage quota here, as
                // an upload would be, so no peer can fill this node's disk (nor wrap the sum).
                let quota = self.jobs.config.jobs.max_stored_bytes_per_user;
                let Some(total) = manifest_bytes(&files) else {
                    self.fail(job, format!("{label} offered results whose sizes do not add up to a byte count")).await;
                    return;
                };
                let held = u64::try_from(self.jobs.store.stored_bytes_of(job.owner_id).await.unwrap_or(0)).unwrap_or(0);
                if held.saturating_add(total) > quota {
                    self.fail(
                        job,
                        format!(
                            "the results at {label} ({total} bytes) would bring your stored data to {} bytes, \
                             over your quota of {quota}; free space and retry",
                            held.saturating_add(total)
                        ),
                    )
                    .await;
                    return;
                }
                let manifest = serde_json::to_string(&files).unwrap_or_default();
                if let Err(e) = self.jobs.store.set_remote_results(&job.id, &manifest).await {
                    tracing::error!(job = %job.id, error = %e, "cannot record the result manifest");
                    return;
                }
                let update = TransitionUpdate {
                    stage: Some("fetching_results".into()),
                    message: Some(format!("results ready at {label}: fetching {} files, {total} bytes", files.len())),
                    ..Default::default()
                };
                let _ = self.jobs.transition(&job.id, &following, JobState::FetchingResults, update).await;
            }
            JobReply::Refused { reason, .. } if state.is_live() => {
                self.fail(job, format!("{label}: {reason}")).await;
            }
            _ => {}
        }
    }

    async fn fetch_results(&self, job: &JobRow) -> Step {
        let Some(host) = job.peer.clone() else {
            return self.fail(job, "the job has no host".into()).await;
        };
        let label = self.federation.member_label(&host);
        let files: Vec<FileManifest> = match job.remote_results.as_deref().map(serde_json::from_str) {
            Some(Ok(files)) => files,
            _ => return self.fail(job, "the host's result manifest is missing".into()).await,
        };
        let Ok(peer) = host.parse() else { return self.fail(job, format!("{host:?} is not a PeerId")).await };
        let results_dir = self.jobs.results_dir(&job.id);
        let staging = self.jobs.transfer_dir(&job.id);
        if let Err(e) = tokio::fs::create_dir_all(&results_dir).await {
            return self.fail(job, format!("cannot create the results folder: {e}")).await;
        }
        let have = self.jobs.store.job_results(&job.id).await.unwrap_or_default();
        for file in &files {
            if have.iter().any(|r| r.name == file.name && r.sha256 == file.sha256) {
                continue;
            }
            // Keyed by digest: a partial file from another host (before the job moved) is never resumed.
            let partial = staging.join(format!("{}.part", file.sha256));
            let pull = self.pull(peer, &job.id, file, "result");
            match pull.run(&partial).await {
                Ok(()) => {}
                Err(PullError::Unreachable(e)) => return self.unreachable(job, &host, &e.to_string()).await,
                Err(PullError::Corrupt(e)) => {
                    tracing::warn!(job = %job.id, error = %e, "a result file did not match; fetching it again");
                    return Step::Wait(RETRY);
                }
                Err(e) => return self.fail(job, format!("fetching {} from {label}: {e}", file.name)).await,
            }
            let _ = self.jobs.store.touch_peer(&job.id).await;
            if let Err(e) = tokio::fs::rename(&partial, results_dir.join(&file.name)).await {
                return self.fail(job, format!("cannot store {}: {e}", file.name)).await;
            }
            // Within the quota checked when the manifest came, so it fits.
            let size = i64::try_from(file.size).unwrap_or(i64::MAX);
            let result = JobResult { name: file.name.clone(), size, sha256: file.sha256.clone() };
            if let Err(e) = self.jobs.store.add_job_result(&job.id, &result).await {
                tracing::error!(job = %job.id, error = %e, "cannot record a result file");
                return Step::Wait(RETRY);
            }
        }
        let _ = tokio::fs::remove_dir_all(&staging).await;
        // The host's QC report does not know what this node repaired before sending the inputs.
        let repairs = crate::jobs::outputs::repairs_of(job);
        if !repairs.is_empty()
            && let Ok(text) = tokio::fs::read_to_string(results_dir.join("qc_report.json")).await
            && let Ok(mut report) = serde_json::from_str::<crate::imputation::qc::QcReport>(&text)
        {
            report.repairs = repairs;
            if let Err(crate::jobs::outputs::JobFailure(e)) =
                crate::jobs::outputs::write_qc_report(&self.jobs, &job.id, &results_dir, &report).await
            {
                tracing::warn!(job = %job.id, error = %e, "cannot add the repairs to the QC report");
            }
        }
        // The report page is this node's own, drawn from the reports' numbers (with the repairs
        // above), never the host's markup.
        if let Err(crate::jobs::outputs::JobFailure(e)) =
            crate::jobs::outputs::write_html_report(&self.jobs, job, &results_dir).await
        {
            tracing::warn!(job = %job.id, error = %e, "cannot write the report page");
        }
        self.audit(
            AuditEvent::new("node", "local", "job.results_received", Outcome::Success).target(&job.id).details(json!({
                "host": host, "institution": label,
                "files": files.iter().map(|f| json!({"name": f.name, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
            })),
        )
        .await;
        let update = TransitionUpdate {
            message: Some(format!("results received from {label}")),
            summary: tokio::fs::read_to_string(results_dir.join("summary.json")).await.ok(),
            qc_report: tokio::fs::read_to_string(results_dir.join("qc_report.json")).await.ok(),
            ..Default::default()
        };
        let _ = self.jobs.transition(&job.id, &[JobState::FetchingResults], JobState::Completed, update).await;
        Step::Again
    }

    /// Tells the host the results arrived, so it deletes its copies.
    async fn confirm_delivery(&self, job: &JobRow) -> Step {
        let Some(host) = job.peer.clone() else { return Step::Done };
        // The receipt lists what the host offered; files this node rewrote since (the QC report
        // with its repairs) are still the host's files received.
        let files: Vec<FileManifest> = match job.remote_results.as_deref().map(serde_json::from_str) {
            Some(Ok(files)) => files,
            _ => {
                self.jobs.store.job_results(&job.id).await.unwrap_or_default().iter().map(JobResult::manifest).collect()
            }
        };
        let receipt = JobRequest::DeliveryReceipt { job_id: job.id.clone(), files };
        match self.ask(&host, &receipt).await {
            Ok(_) => {
                let _ = self.jobs.store.close_peer(&job.id).await;
                self.audit(
                    AuditEvent::new("node", "local", "job.delivery_confirmed", Outcome::Success)
                        .target(&job.id)
                        .details(json!({ "host": host, "institution": self.federation.member_label(&host) })),
                )
                .await;
                Step::Done
            }
            Err(e) => self.give_up_after_timeout(job, &host, &e.to_string()).await,
        }
    }

    /// Tells the host the job ended here (cancelled, or failed), so it stops and deletes.
    async fn close_at_host(&self, job: &JobRow) -> Step {
        let Some(host) = job.peer.clone() else { return Step::Done };
        match self.ask(&host, &JobRequest::Cancel { job_id: job.id.clone() }).await {
            Ok(_) => {
                let _ = self.jobs.store.close_peer(&job.id).await;
                Step::Done
            }
            Err(e) => self.give_up_after_timeout(job, &host, &e.to_string()).await,
        }
    }

    /// A last message the host did not take: retried until the timeout, then left to the host's
    /// own retention.
    async fn give_up_after_timeout(&self, job: &JobRow, host: &str, error: &str) -> Step {
        let since = job.peer_seen_at.unwrap_or(job.updated_at).max(job.finished_at.unwrap_or(0));
        if now_ms() - since < self.timeout_ms() {
            tracing::debug!(job = %job.id, %host, %error, "host not reachable; will retry");
            return Step::Wait(Duration::from_secs(5));
        }
        tracing::warn!(job = %job.id, %host, "host unreachable past the timeout; its retention will delete the job's files");
        let _ = self.jobs.store.close_peer(&job.id).await;
        Step::Done
    }
}

/// The total size a peer's manifest announces, or `None` if it overflows (a peer's numbers are
/// never trusted to add up).
fn manifest_bytes(files: &[FileManifest]) -> Option<u64> {
    files.iter().try_fold(0u64, |sum, f| sum.checked_add(f.size)).filter(|total| i64::try_from(*total).is_ok())
}

/// The best host for a job: members advertising the panel, within both data policies.
pub fn select_host(
    federation: &crate::federation::runtime::FederationHandle,
    config: &crate::config::NodeConfig,
    panel: &PanelRef,
    build: &str,
    engine: &str,
    input_bytes: u64,
    excluded: &[String],
) -> Result<String, String> {
    let Some(fed_config) = federation.federation.current() else {
        return Err("this node is not in a federation yet".into());
    };
    let doc = fed_config.doc();
    let now = now_ms();
    let entries = federation.catalog.entries();
    let local = federation.peers.clone();
    let me = federation.federation.local_peer();
    let Some(origin) = doc.member(&me) else { return Err("this node is not a member of the federation".into()) };
    let candidates: Vec<Candidate<'_>> = entries
        .iter()
        .filter(|e| e.advert.peer_id != me)
        .filter_map(|e| {
            let member = doc.member(&e.advert.peer_id)?;
            let status = local.get(&member.peer_id);
            Some(Candidate { member, advert: &e.advert, fresh: e.is_fresh(&fed_config, now), rtt_ms: status.rtt_ms })
        })
        .collect();
    let needs = Needs { panel, build, engine, input_bytes, origin, excluded };
    choose_host(&candidates, &needs, &config.policy).map(|c| c.member.peer_id.clone())
}

/// The host's QC report as the origin stores it (JSON text), if it is JSON of a sane size. Hosts
/// send it as JSON text; an object is taken too.
fn qc_report_text(report: serde_json::Value) -> Option<String> {
    const MAX_QC_REPORT_BYTES: usize = 1 << 20;
    let text = match report {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    let parsed: serde_json::Value = serde_json::from_str(&text).ok()?;
    (parsed.is_object() && text.len() <= MAX_QC_REPORT_BYTES).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_whose_sizes_overflow_is_refused_not_wrapped() {
        let file = |size| FileManifest { name: "r".into(), size, sha256: "0".repeat(64) };
        assert_eq!(manifest_bytes(&[file(10), file(20)]), Some(30));
        // Wrapping would make these look like 8 bytes, under any quota.
        assert_eq!(manifest_bytes(&[file(u64::MAX - 1), file(10)]), None);
        assert_eq!(manifest_bytes(&[file(u64::MAX / 2 + 10)]), None, "past what the store can count");
    }
}
