//! The host side: another node's job, run here on a local panel.
//!
//! `received` (checked and accepted; pulling the inputs from the origin) -> `queued` -> `running`
//! (the local scheduler and runner, as for a local job) -> `completed` (results offered) ->
//! `delivered` (the origin confirmed it holds them) -> `purged` (inputs and results deleted).
//! A cancel from the origin kills the engine and purges too. The origin's user is known here
//! only by a pseudonym; the job is owned by the origin node's principal, so the scheduler's
//! fairness and the quotas apply per origin.

use std::sync::Arc;
use std::time::Duration;

use fedimpute_protocol::jobs::{FileManifest, JobReply, JobRequest, JobRequestParams};
use libp2p::PeerId;
use serde_json::json;
use tokio::sync::Notify;

use super::transfer::PullError;
use super::{Federated, plain_file_name, valid_job_id, valid_sha256};
use crate::federation::policy::host_accepts;
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{
    JobInput, JobParams, JobPlacement, JobResult, JobRole, JobRow, JobState, LIVE_STATES, TransitionUpdate,
};
use crate::time::now_ms;

const RETRY: Duration = Duration::from_secs(2);

impl Federated {
    /// A request from an origin.
    pub(super) async fn on_request(&self, peer: PeerId, request: JobRequest) -> JobReply {
        let peer_text = peer.to_string();
        match request {
            JobRequest::Submit { job_id, params, inputs, pseudonymous_user } => {
                match self.accept(&peer_text, &job_id, &params, &inputs, &pseudonymous_user).await {
                    Ok(()) => JobReply::Accepted { job_id },
                    Err(reason) => {
                        tracing::info!(%peer, job = %job_id, %reason, "refused a job");
                        self.audit(
                            AuditEvent::new(format!("peer:{peer}"), "p2p", "job.refused", Outcome::Denied)
                                .target(&job_id)
                                .details(json!({ "origin": self.federation.member_label(&peer_text), "user": pseudonymous_user,
                                                 "panel": params.panel_id, "reason": reason })),
                        )
                        .await;
                        JobReply::Refused { job_id, reason }
                    }
                }
            }
            JobRequest::QueryStatus { job_id } => match self.host_job(&peer_text, &job_id).await {
                Ok(job) => self.host_status(&job).await,
                Err(reason) => JobReply::Refused { job_id, reason },
            },
            JobRequest::Cancel { job_id } => match self.host_job(&peer_text, &job_id).await {
                Ok(job) => {
                    if job.state().is_live()
                        && let Err(e) = self.jobs.cancel(&job_id, &format!("peer:{peer}"), "p2p").await
                    {
                        tracing::debug!(job = %job_id, error = %e, "cancel from the origin");
                    }
                    self.purge(&job_id, "cancelled or failed at the origin").await;
                    JobReply::Ack { job_id }
                }
                Err(reason) => JobReply::Refused { job_id, reason },
            },
            JobRequest::DeliveryReceipt { job_id, files } => match self.host_job(&peer_text, &job_id).await {
                Ok(job) => self.delivered(&job, &files).await,
                Err(reason) => JobReply::Refused { job_id, reason },
            },
        }
    }

    /// A host's update about one of our forwarded jobs (this node is the origin).
    pub(super) async fn on_update(&self, peer: PeerId, update: JobReply) -> JobReply {
        let job_id = match &update {
            JobReply::Status { job_id, .. } | JobReply::ResultManifest { job_id, .. } => job_id.clone(),
            _ => return JobReply::Refused { job_id: String::new(), reason: "not an update".into() },
        };
        match self.jobs.store.job(&job_id).await {
            Ok(Some(job)) if job.role() == JobRole::Origin && job.peer.as_deref() == Some(&peer.to_string()) => {
                self.apply_update(&job, update).await;
                self.drive(&job);
                JobReply::Ack { job_id }
            }
            _ => JobReply::Refused { job_id, reason: "no such job sent to you".into() },
        }
    }

    /// The job `id`, if `peer` sent it here.
    async fn host_job(&self, peer: &str, id: &str) -> Result<JobRow, String> {
        match self.jobs.store.job(id).await {
            Ok(Some(job)) if job.role() == JobRole::Host && job.peer.as_deref() == Some(peer) => Ok(job),
            Ok(_) => Err(format!("no job {id} from you here")),
            Err(e) => Err(format!("cannot read job {id}: {e}")),
        }
    }

    /// Checks a submitted job against everything this node requires, and records it.
    async fn accept(
        &self,
        peer: &str,
        job_id: &str,
        params: &JobRequestParams,
        inputs: &[FileManifest],
        pseudonymous_user: &str,
    ) -> Result<(), String> {
        let config = &self.jobs.config;
        if !valid_job_id(job_id) {
            return Err("the job id must be 8 to 64 lowercase hex digits".into());
        }
        let origin = self.member(peer).ok_or("you are not a member of this federation")?;
        match self.jobs.store.job(job_id).await.map_err(|e| e.to_string())? {
            // A repeated submit (the origin did not get our answer): same answer.
            Some(job) if job.role() == JobRole::Host && job.peer.as_deref() == Some(peer) => {
                if job.state().is_live() || job.state() == JobState::Completed {
                    self.drive(&job);
                    return Ok(());
                }
                // It ended here and the origin retries it: start afresh.
                self.jobs.store.delete_job(job_id).await.map_err(|e| e.to_string())?;
            }
            Some(_) => return Err(format!("job id {job_id} is already in use here")),
            None => {}
        }
        params.validate()?;
        host_accepts(&config.policy, &origin)?;
        if inputs.is_empty() || inputs.len() > 64 {
            return Err("a job has 1 to 64 input files".into());
        }
        for file in inputs {
            if !plain_file_name(&file.name) {
                return Err(format!("input name {:?} is not a plain file name", file.name));
            }
            if !valid_sha256(&file.sha256.to_ascii_lowercase()) {
                return Err(format!("input {} has no valid SHA-256", file.name));
            }
            if file.size > config.jobs.max_upload_bytes {
                return Err(format!(
                    "input {} has {} bytes; this node accepts at most {} per file",
                    file.name, file.size, config.jobs.max_upload_bytes
                ));
            }
        }
        match self.jobs.store.service(&params.engine).await.map_err(|e| e.to_string())? {
            // Through an external service this node wraps.
            Some(service) => super::external_offer(&service, &params.panel_id, &params.build)?,
            None => {
                let panel = self.jobs.store.panel(&params.panel_id).await.map_err(|e| e.to_string())?;
                let Some(panel) = panel.filter(|p| p.status == "ready") else {
                    return Err(format!("panel {} is not available here", params.panel_id));
                };
                if panel.build != params.build {
                    return Err(format!("panel {} is {}, the job is {}", panel.id, panel.build, params.build));
                }
                let engines = crate::imputation::catalog_entry::local_services(&config.engines);
                let available = engines.iter().any(|s| {
                    s.kind == params.engine && s.status != fedimpute_protocol::advert::ServiceStatus::Unavailable
                });
                if !available {
                    return Err(format!("{} is not available here", params.engine));
                }
            }
        }
        let owner = self.jobs.store.peer_principal(peer).await.map_err(|e| e.to_string())?;
        let per_month = config.policy.max_jobs_per_origin_per_month;
        let recent =
            self.jobs.store.jobs_submitted_since(owner, now_ms() - 30 * 86_400_000).await.map_err(|e| e.to_string())?;
        if per_month > 0 && recent >= i64::from(per_month) {
            return Err(format!(
                "{} has submitted {recent} jobs here in the last 30 days, the most this node accepts from one member",
                origin.institution
            ));
        }
        let in_flight_cap = config.policy.max_jobs_in_flight_per_origin;
        let in_flight = self.jobs.store.unfinished_jobs_of(owner).await.map_err(|e| e.to_string())?;
        if in_flight_cap > 0 && in_flight >= i64::from(in_flight_cap) {
            return Err(format!(
                "{} has {in_flight} jobs not yet ended here, the most this node takes from one member at once",
                origin.institution
            ));
        }
        let stored_cap = config.policy.max_stored_bytes_per_origin;
        if stored_cap > 0 {
            let held =
                u64::try_from(self.jobs.store.stored_bytes_of(owner).await.map_err(|e| e.to_string())?).unwrap_or(0);
            let incoming = inputs.iter().try_fold(0u64, |sum, f| sum.checked_add(f.size));
            if incoming.and_then(|n| n.checked_add(held)).is_none_or(|total| total > stored_cap) {
                return Err(format!(
                    "{}'s jobs hold {held} bytes here; this job's inputs would pass the {stored_cap} bytes this node keeps for one member",
                    origin.institution
                ));
            }
        }
        let job_params = JobParams {
            name: format!("from {}", origin.institution),
            panel_id: params.panel_id.clone(),
            build: params.build.clone(),
            engine: params.engine.clone(),
            phasing: params.phasing.clone(),
            population: params.population.clone(),
            r2_filter: params.r2_filter.parse().unwrap_or(0.0),
            mode: params.mode.clone(),
        };
        let job_inputs: Vec<JobInput> = inputs
            .iter()
            .enumerate()
            .map(|(i, f)| JobInput {
                idx: i as i64,
                name: f.name.clone(),
                sha256: f.sha256.to_lowercase(),
                // At most `max_upload_bytes`, checked above.
                size: i64::try_from(f.size).unwrap_or(i64::MAX),
            })
            .collect();
        // Nothing left under this id from before (an earlier run of it) counts as received.
        let _ = tokio::fs::remove_dir_all(self.jobs.job_dir(job_id)).await;
        let placement = JobPlacement {
            role: JobRole::Host,
            peer: Some(peer.to_string()),
            peer_user: Some(pseudonymous_user.chars().take(64).collect()),
            ..Default::default()
        };
        self.jobs
            .store
            .create_job(job_id, owner, &job_params, &job_inputs, &placement)
            .await
            .map_err(|e| e.to_string())?;
        self.audit(
            AuditEvent::new(format!("peer:{peer}"), "p2p", "job.received", Outcome::Success).target(job_id).details(
                json!({
                    "origin": origin.institution, "user": pseudonymous_user, "panel": params.panel_id,
                    "engine": params.engine,
                    "inputs": inputs.iter().map(|f| json!({"sha256": f.sha256, "size": f.size})).collect::<Vec<_>>(),
                }),
            ),
        )
        .await;
        if let Ok(Some(job)) = self.jobs.store.job(job_id).await {
            self.drive(&job);
        }
        Ok(())
    }

    /// What the origin is told about its job.
    pub(super) async fn host_status(&self, job: &JobRow) -> JobReply {
        if job.state() == JobState::Completed {
            let files = self.jobs.store.job_results(&job.id).await.unwrap_or_default();
            return JobReply::ResultManifest {
                job_id: job.id.clone(),
                files: files.iter().map(JobResult::manifest).collect(),
            };
        }
        let message = match job.state() {
            JobState::Failed => job.error.clone(),
            // Read on every status push: the newest event alone, not the job's whole history.
            _ => self.jobs.store.last_job_message(&job.id).await.ok().flatten(),
        };
        JobReply::Status {
            job_id: job.id.clone(),
            state: job.state.clone(),
            stage: job.stage.clone(),
            progress_permille: (job.progress.clamp(0.0, 1.0) * 1000.0).round() as u32,
            message,
            // As JSON text: the report's call rates are fractions, and a signed body holds no floats.
            qc_report: job.qc_report.clone().map(serde_json::Value::String),
        }
    }

    /// Tells the origin where its job is now; if it is not listening, it will ask.
    pub(super) async fn push_status(&self, job: &JobRow) {
        let Some(origin) = job.peer.clone() else { return };
        if matches!(job.state(), JobState::Delivered | JobState::Purged) {
            return;
        }
        let update = self.host_status(job).await;
        if let Err(e) = self.ask(&origin, &update).await {
            tracing::debug!(job = %job.id, error = %e, "could not push a status to the origin");
        }
    }

    async fn delivered(&self, job: &JobRow, files: &[FileManifest]) -> JobReply {
        let job_id = job.id.clone();
        match job.state() {
            JobState::Delivered | JobState::Purged => return JobReply::Ack { job_id },
            JobState::Completed => {}
            other => return JobReply::Refused { job_id, reason: format!("the job is {other}, not completed") },
        }
        let ours = self.jobs.store.job_results(&job.id).await.unwrap_or_default();
        let mut offered: Vec<&str> = ours.iter().map(|f| f.sha256.as_str()).collect();
        let mut received: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
        offered.sort_unstable();
        received.sort_unstable();
        if offered != received {
            return JobReply::Refused { job_id, reason: "the receipt does not list the files offered".into() };
        }
        let update = TransitionUpdate { message: Some("results delivered to the origin".into()), ..Default::default() };
        if let Err(e) = self.jobs.transition(&job.id, &[JobState::Completed], JobState::Delivered, update).await {
            return JobReply::Refused { job_id, reason: format!("cannot record the delivery: {e}") };
        }
        self.audit(
            AuditEvent::new(format!("peer:{}", job.peer.as_deref().unwrap_or("")), "p2p", "job.delivered", Outcome::Success)
                .target(&job.id)
                .details(json!({ "files": files.iter().map(|f| json!({"name": f.name, "sha256": f.sha256, "size": f.size})).collect::<Vec<_>>() })),
        )
        .await;
        self.purge(&job.id, "delivered").await;
        JobReply::Ack { job_id }
    }

    /// Deletes a host job's inputs and results once it has ended, and records it.
    async fn purge(&self, id: &str, why: &str) {
        let Ok(Some(job)) = self.jobs.store.job(id).await else { return };
        let ended = [JobState::Completed, JobState::Delivered, JobState::Failed, JobState::Cancelled];
        if !ended.contains(&job.state()) {
            return;
        }
        // Inputs, work files and partial transfers (idempotent), then the rest of the folder.
        if let Err(e) = self.jobs.delete_inputs(id).await {
            tracing::warn!(job = %id, error = %e, "could not delete the inputs");
        }
        let _ = tokio::fs::remove_dir_all(self.jobs.job_dir(id)).await;
        if let Err(e) = self.jobs.store.mark_results_deleted(id).await {
            tracing::error!(job = %id, error = %e, "could not record deleted results");
            return;
        }
        let update =
            TransitionUpdate { message: Some(format!("inputs and results deleted ({why})")), ..Default::default() };
        if matches!(self.jobs.transition(id, &ended, JobState::Purged, update).await, Ok(true)) {
            self.audit(
                AuditEvent::new("node", "local", "job.purged", Outcome::Success)
                    .target(id)
                    .details(json!({ "origin": job.peer, "reason": why })),
            )
            .await;
        }
    }

    pub(super) async fn recover_host_jobs(&self) {
        let store = &self.jobs.store;
        for job in store.jobs_of_role(JobRole::Host, &[JobState::Received]).await.unwrap_or_default() {
            self.drive(&job);
        }
        // Delivered but killed before the files were gone.
        for job in store.jobs_of_role(JobRole::Host, &[JobState::Delivered]).await.unwrap_or_default() {
            self.purge(&job.id, "delivered").await;
        }
    }

    /// A host job's driver: pull the inputs, then hand the job to the scheduler.
    pub(super) async fn drive_host(&self, id: &str, wake: &Notify) {
        loop {
            let job = match self.jobs.store.job(id).await {
                Ok(Some(job)) if job.state() == JobState::Received => job,
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "cannot read a received job");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            // An origin gets no more pulls at once than it may run jobs at once: many small
            // jobs from one member cannot take every transfer slot of the host.
            let slots = self.input_pull_slots(job.peer.as_deref().unwrap_or_default());
            let pulled = match slots.acquire_owned().await {
                Ok(_slot) => self.pull_inputs(&job).await,
                Err(_) => return,
            };
            match pulled {
                Ok(true) => return,
                Ok(false) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
                Err(reason) => {
                    let update = TransitionUpdate { error: Some(reason), ..Default::default() };
                    let _ = self.jobs.transition(id, &LIVE_STATES, JobState::Failed, update).await;
                    return;
                }
            }
        }
    }

    fn input_pull_slots(&self, origin: &str) -> Arc<tokio::sync::Semaphore> {
        let per_origin = match self.jobs.config.policy.max_concurrent_per_origin {
            0 => tokio::sync::Semaphore::MAX_PERMITS,
            n => n as usize,
        };
        let mut slots = self.input_pulls.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(origin.to_string()).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(per_origin))).clone()
    }

    /// Pulls the inputs not yet here. `Ok(true)`: all here and the job queued; `Ok(false)`: the
    /// origin is not reachable now, try later; `Err`: the job fails with that reason.
    async fn pull_inputs(&self, job: &JobRow) -> Result<bool, String> {
        let origin = job.peer.clone().ok_or("the job has no origin")?;
        let peer: PeerId = origin.parse().map_err(|_| format!("{origin:?} is not a PeerId"))?;
        let inputs = self.jobs.store.job_inputs(&job.id).await.map_err(|e| e.to_string())?;
        for input in &inputs {
            // The job's own folder holds only what its own transfer brought: a file is there
            // because it was pulled from this origin for this job, never because its hash matches.
            let dest = self.jobs.files.input_path(&job.id, input.idx);
            if dest.is_file() {
                continue;
            }
            let manifest = input.manifest();
            let pull = self.pull(peer, &job.id, &manifest, "input");
            let partial = crate::files::partial_path(&dest);
            match pull.run(&partial).await {
                Ok(()) => {}
                Err(PullError::Unreachable(e)) if self.federation.peers.get(&origin).connected => {
                    tracing::debug!(job = %job.id, error = %e, "origin connected but slow; will resume the upload");
                    let _ = self.jobs.store.touch_peer(&job.id).await;
                    return Ok(false);
                }
                Err(PullError::Unreachable(e)) => {
                    let silent = now_ms() - job.peer_seen_at.unwrap_or(job.created_at);
                    let timeout = self.jobs.config.transfer.peer_timeout_secs;
                    if silent > timeout as i64 * 1000 {
                        return Err(format!("the origin has been unreachable for more than {timeout} s"));
                    }
                    tracing::debug!(job = %job.id, error = %e, "origin not reachable; will resume the upload");
                    return Ok(false);
                }
                Err(PullError::Corrupt(e)) => {
                    tracing::warn!(job = %job.id, error = %e, "an input did not match its manifest; pulling it again");
                    return Ok(false);
                }
                Err(e) => return Err(format!("receiving {} from the origin: {e}", input.name)),
            }
            let _ = self.jobs.store.touch_peer(&job.id).await;
            tokio::fs::rename(&partial, &dest).await.map_err(|e| e.to_string())?;
        }
        let bytes: i64 = inputs.iter().map(|i| i.size).sum();
        self.audit(
            AuditEvent::new(format!("peer:{origin}"), "p2p", "job.inputs_received", Outcome::Success)
                .target(&job.id)
                .details(json!({ "files": inputs.iter().map(|i| json!({"sha256": i.sha256, "size": i.size})).collect::<Vec<_>>(),
                                 "bytes": bytes })),
        )
        .await;
        let update =
            TransitionUpdate { message: Some(format!("inputs received ({bytes} bytes)")), ..Default::default() };
        let queued = self
            .jobs
            .transition(&job.id, &[JobState::Received], JobState::Queued, update)
            .await
            .map_err(|e| e.to_string())?;
        if !queued {
            // Cancelled while its inputs arrived: nothing of them stays.
            self.jobs.delete_inputs(&job.id).await.map_err(|e| e.to_string())?;
        }
        Ok(true)
    }
}
