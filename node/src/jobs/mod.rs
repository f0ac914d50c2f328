//! Jobs on this node: submission, a persistent queue with a scheduler, cancellation and retry,
//! and a bus of job events for live clients.
//!
//! The queue is the `jobs` table. A job in `running` when the node starts was interrupted (its
//! engine died with the node, see `imputation::engines`): it goes back to `queued` and runs
//! again from the start, so no job is lost and none runs twice at once.

pub mod archives;
mod engine_run;
mod external;
pub mod federated;
pub mod html_report;
pub mod meta_rounds;
pub mod multi_panel;
mod outputs;
mod results;
mod runner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use crate::config::NodeConfig;
use crate::files::FileStore;
use crate::identity::NodeIdentity;
use crate::imputation::engines::KillSwitch;
use crate::imputation::executor::Executor;
use crate::metrics::Metrics;
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::jobs::{JobEvent, JobRole, JobState, LIVE_STATES, TransitionUpdate};
use crate::store::{Store, StoreError};

pub use results::JobSummary;

/// Everything jobs need; cheap to clone.
#[derive(Clone)]
pub struct JobsService {
    pub store: Store,
    pub files: FileStore,
    pub config: Arc<NodeConfig>,
    pub(crate) identity: NodeIdentity,
    events: broadcast::Sender<JobEvent>,
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<String, KillSwitch>>>,
    /// Wakes the mail sender when a mail is queued.
    mail_wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Where engine tasks run; shared by all jobs, so its limit holds node-wide.
    pub(crate) executor: Executor,
}

/// The kind of reason a job failed for, for the `job_failures` metric: from where it was in its
/// life, not from its error text (which may name the researcher's files).
fn failure_reason(
    job: &crate::store::jobs::JobRow,
    state_before: &str,
    stage_before: Option<&str>,
    max_attempts: u32,
) -> &'static str {
    if job.external_id.is_some() {
        return "service";
    }
    if job.attempts >= i64::from(max_attempts) && job.error.as_deref().is_some_and(|e| e.contains("stopped")) {
        return "interrupted";
    }
    match (stage_before, state_before) {
        (Some("qc"), _) | (None, "pending" | "validating") => "input",
        (Some("phasing" | "imputing" | "writing" | "merging" | "composing"), _) => "engine",
        (Some("queued_at_host" | "fetching_results"), _) | (None, "transferring" | "fetching_results" | "received") => {
            "federation"
        }
        _ if job.role() == JobRole::Origin => "federation",
        _ => "other",
    }
}

/// A cancel or retry that does not apply to the job's state.
#[derive(Debug, thiserror::Error)]
pub enum JobActionError {
    #[error("job {0} not found")]
    NotFound(String),
    #[error("job {job} is {state}: {what}")]
    WrongState { job: String, state: JobState, what: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl JobsService {
    pub fn new(store: Store, config: Arc<NodeConfig>, identity: NodeIdentity, metrics: Arc<Metrics>) -> Self {
        let files = FileStore::new(&config.node.data_dir);
        let executor =
            Executor::new(&config.executor, config.engines.threads, store.clone()).observed_by(metrics.clone());
        Self {
            executor,
            store,
            files,
            config,
            identity,
            events: broadcast::channel(1024).0,
            wake: Arc::default(),
            running: Arc::default(),
            mail_wake: Arc::default(),
            metrics,
        }
    }

    /// Live job events (every transition and progress step).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    pub(crate) fn publish(&self, event: JobEvent) {
        let _ = self.events.send(event);
    }

    /// The job's folder: its inputs, work files and results.
    pub fn job_dir(&self, id: &str) -> std::path::PathBuf {
        self.files.job_dir(id)
    }

    /// The job's work files: in its folder, or for Slurm on the cluster's shared filesystem.
    pub fn work_dir(&self, id: &str) -> std::path::PathBuf {
        match (&self.config.executor.slurm.shared_dir, self.executor.resumable()) {
            (Some(shared), true) => shared.join("jobs").join(id),
            _ => self.job_dir(id).join("work"),
        }
    }

    /// Where a forwarded job's files are pulled into before they are complete.
    pub fn transfer_dir(&self, id: &str) -> std::path::PathBuf {
        self.config.node.data_dir.join("transfers").join(id)
    }

    /// Where a job's result files are served from.
    pub fn results_dir(&self, id: &str) -> std::path::PathBuf {
        self.job_dir(id).join("results")
    }

    pub(crate) async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.store.append_audit(&self.identity, event).await {
            tracing::error!(error = %e, "could not write to the audit log");
        }
    }

    /// Applies a transition and tells live clients. `Ok(false)` if the job was no longer in
    /// `from` (e.g. cancelled meanwhile).
    pub(crate) async fn transition(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        update: TransitionUpdate,
    ) -> Result<bool, StoreError> {
        // Where a failing job was (the transition clears its stage), for the failure's reason.
        let before = match to {
            JobState::Failed => self.store.job(id).await?.map(|j| (j.state, j.stage)),
            _ => None,
        };
        match self.store.transition(id, from, to, update).await? {
            Ok(event) => {
                self.publish(event);
                if to == JobState::Queued || to.is_final() {
                    self.wake.notify_one();
                }
                if to == JobState::Running && !from.contains(&JobState::Running) {
                    tracing::info!(job_id = %id, "job started");
                }
                if matches!(to, JobState::Completed | JobState::Failed | JobState::Cancelled) {
                    self.inputs_done(id).await;
                    self.job_ended(id, to, before).await;
                }
                Ok(true)
            }
            Err(stale) => {
                tracing::debug!(%stale, "transition skipped");
                Ok(false)
            }
        }
    }

    /// What wakes the mail sender ([`crate::mail::spawn_sender`]).
    pub fn mail_wake(&self) -> Arc<Notify> {
        self.mail_wake.clone()
    }

    /// What follows a job's end: a log line and, for a failure, its count by reason (never
    /// anything the researcher wrote: no name, no error text), and the owner's mail.
    async fn job_ended(&self, id: &str, state: JobState, before: Option<(String, Option<String>)>) {
        let job = match self.store.job(id).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(e) => return tracing::error!(job_id = %id, error = %e, "reading an ended job"),
        };
        if state == JobState::Failed {
            let (was, stage) = before.unwrap_or_default();
            let reason = failure_reason(&job, &was, stage.as_deref(), self.config.jobs.max_attempts);
            self.metrics.job_failed(reason);
            tracing::info!(job_id = %id, role = %job.role, state = %state, reason, "job ended");
        } else {
            tracing::info!(job_id = %id, role = %job.role, state = %state, "job ended");
        }
        self.queue_end_mail(&job, state).await;
    }

    /// Queues the mail telling a job's owner it ended, if the node sends mails and they want
    /// them. Only for the researcher's own job: not a host's job for another node (its owner is
    /// a pseudonym there), nor each panel's part of a multi-panel job (their parent's mail tells).
    async fn queue_end_mail(&self, job: &crate::store::jobs::JobRow, state: JobState) {
        let Some(smtp) = &self.config.smtp else { return };
        let id = job.id.as_str();
        let queued = async {
            if job.role() == JobRole::Host || job.parent_id.is_some() {
                return Ok(false);
            }
            let Some(owner) = self.store.user_by_id(job.owner_id).await? else { return Ok(false) };
            let Some(email) = owner.email.as_deref().filter(|_| owner.email_notifications) else { return Ok(false) };
            let (subject, body) =
                crate::mail::job_ended_mail(job, state, &smtp.public_url, &self.config.node.institution);
            self.store.queue_mail(id, email, &subject, &body).await?;
            Ok::<_, StoreError>(true)
        };
        match queued.await {
            Ok(true) => self.mail_wake.notify_one(),
            Ok(false) => {}
            Err(e) => tracing::error!(job_id = %id, error = %e, "could not queue the job's mail"),
        }
    }

    /// Queues a validated job.
    pub async fn enqueue(&self, id: &str) -> Result<bool, StoreError> {
        self.transition(
            id,
            &[JobState::Validating, JobState::Pending],
            JobState::Queued,
            TransitionUpdate { message: Some("queued".into()), ..Default::default() },
        )
        .await
    }

    /// Cancels a job that has not finished; kills its engine if it runs.
    pub async fn cancel(&self, id: &str, actor: &str, ip: &str) -> Result<(), JobActionError> {
        let job = self.store.job(id).await?.ok_or_else(|| JobActionError::NotFound(id.to_string()))?;
        if !self
            .transition(
                id,
                &LIVE_STATES,
                JobState::Cancelled,
                TransitionUpdate { message: Some("cancelled".into()), ..Default::default() },
            )
            .await?
        {
            return Err(JobActionError::WrongState {
                job: id.to_string(),
                state: job.state(),
                what: "only a live job can be cancelled",
            });
        }
        if let Some(kill) = self.running.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            kill.kill();
        }
        self.audit(AuditEvent::new(actor, ip, "job.cancel", Outcome::Success).target(id)).await;
        Ok(())
    }

    /// Queues a failed or cancelled job again.
    pub async fn retry(&self, id: &str, actor: &str, ip: &str) -> Result<(), JobActionError> {
        let job = self.store.job(id).await?.ok_or_else(|| JobActionError::NotFound(id.to_string()))?;
        if job.inputs_deleted_at.is_some() {
            return Err(JobActionError::WrongState {
                job: id.to_string(),
                state: job.state(),
                what: "its inputs were deleted; submit it again",
            });
        }
        if job.role() == JobRole::Host {
            return Err(JobActionError::WrongState {
                job: id.to_string(),
                state: job.state(),
                what: "it came from another node, which decides on retries",
            });
        }
        if job.role() == JobRole::Parent {
            return Err(JobActionError::WrongState {
                job: id.to_string(),
                state: job.state(),
                what: "a multi-panel job is retried by submitting it again",
            });
        }
        if job.role() == JobRole::Origin && job.state().is_final() {
            // A retry chooses its host afresh.
            self.store.set_job_peer(id, None).await?;
        }
        if matches!(job.state(), JobState::Failed | JobState::Cancelled) {
            self.store.reset_attempts(id).await?;
            // A retry runs every task again, none is re-attached.
            self.store.clear_engine_tasks(id).await?;
        }
        if !self
            .transition(
                id,
                &[JobState::Failed, JobState::Cancelled],
                JobState::Queued,
                TransitionUpdate { message: Some("retry".into()), progress: Some(0.0), ..Default::default() },
            )
            .await?
        {
            return Err(JobActionError::WrongState {
                job: id.to_string(),
                state: job.state(),
                what: "only a failed or cancelled job can be retried",
            });
        }
        self.audit(AuditEvent::new(actor, ip, "job.retry", Outcome::Success).target(id)).await;
        Ok(())
    }

    /// Recovers interrupted jobs, then runs queued jobs and deletes expired results until the
    /// process ends.
    pub fn start(&self) {
        let this = self.clone();
        // Before the API can take an upload: nothing an upload writes is older than this.
        let started = std::time::SystemTime::now();
        tokio::spawn(async move {
            this.adopt_pooled_inputs().await;
            this.remove_orphan_folders(started).await;
            this.recover().await;
            this.schedule().await;
        });
        let this = self.clone();
        tokio::spawn(async move { this.retain().await });
        let this = self.clone();
        tokio::spawn(async move { this.follow_parents().await });
    }

    /// Deletes the inputs and results of jobs that ended more than `results_retention_days` ago.
    async fn retain(&self) {
        let every = Duration::from_secs(self.config.jobs.retention_sweep_secs.max(1));
        loop {
            let keep_ms = i64::from(self.config.jobs.results_retention_days) * 86_400_000;
            match self.store.jobs_with_expired_files(crate::time::now_ms() - keep_ms).await {
                Ok(expired) => {
                    for job in expired {
                        let id = job.id;
                        if let Err(e) = self.delete_inputs(&id).await {
                            tracing::error!(job = %id, error = %e, "could not delete expired inputs");
                            continue;
                        }
                        if job.results_deleted_at.is_some() {
                            continue;
                        }
                        let _ = tokio::fs::remove_dir_all(self.job_dir(&id)).await;
                        if let Err(e) = self.store.mark_results_deleted(&id).await {
                            tracing::error!(job = %id, error = %e, "could not record deleted results");
                            continue;
                        }
                        tracing::info!(job = %id, "deleted inputs and results past retention");
                        self.audit(
                            AuditEvent::new("node", "local", "job.results_deleted", Outcome::Success).target(&id),
                        )
                        .await;
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not look for expired results"),
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn recover(&self) {
        // Only jobs that run here: a forwarded job `running` at its host carries on there.
        let interrupted = self.store.runnable_jobs().await.unwrap_or_default();
        let max_attempts = i64::from(self.config.jobs.max_attempts);
        for job in interrupted.into_iter().filter(|j| j.state() == JobState::Running) {
            if job.attempts >= max_attempts {
                let update = TransitionUpdate {
                    error: Some(format!(
                        "the node stopped {} times while running this job, the most it allows \
                         (jobs.max_attempts = {max_attempts}); the job may be what stops it: check its input and the \
                         node's log before retrying",
                        job.attempts
                    )),
                    ..Default::default()
                };
                match self.transition(&job.id, &[JobState::Running], JobState::Failed, update).await {
                    Ok(_) => {
                        tracing::warn!(job = %job.id, attempts = job.attempts, "gave up on a job that keeps being interrupted")
                    }
                    Err(e) => tracing::error!(job = %job.id, error = %e, "could not fail an interrupted job"),
                }
                continue;
            }
            let update = TransitionUpdate {
                message: Some("re-queued: the node restarted while it ran".into()),
                progress: Some(0.0),
                ..Default::default()
            };
            if let Err(e) = self.transition(&job.id, &[JobState::Running], JobState::Queued, update).await {
                tracing::error!(job = %job.id, error = %e, "could not re-queue an interrupted job");
            } else {
                tracing::info!(job = %job.id, "re-queued a job interrupted by a restart");
            }
        }
        // A submission cut off before it was queued cannot be trusted to be complete.
        for job in self.store.jobs_in(&[JobState::Pending, JobState::Validating]).await.unwrap_or_default() {
            let update = TransitionUpdate {
                error: Some("interrupted while being submitted; submit it again".into()),
                ..Default::default()
            };
            let _ =
                self.transition(&job.id, &[JobState::Pending, JobState::Validating], JobState::Failed, update).await;
        }
    }

    /// Starts queued jobs while there is capacity: the oldest job of the user with the fewest
    /// jobs running goes first, so one user's batch does not starve the others.
    async fn schedule(&self) {
        let capacity = self.config.engines.max_concurrent_jobs as usize;
        let per_origin = match self.config.policy.max_concurrent_per_origin {
            0 => usize::MAX,
            n => n as usize,
        };
        loop {
            let running: Vec<String> = self.running.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
            if running.len() < capacity {
                match self.store.runnable_jobs().await {
                    Ok(jobs) => {
                        let candidates: Vec<QueuedJob> = jobs
                            .iter()
                            .map(|j| QueuedJob {
                                id: j.id.clone(),
                                owner: j.owner_id,
                                created_at: j.created_at,
                                queued: j.state() == JobState::Queued,
                                owner_cap: if j.role() == JobRole::Host { per_origin } else { usize::MAX },
                            })
                            .collect();
                        if let Some(id) = next_job(&candidates, &running) {
                            self.launch(id);
                            continue;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not read the job queue"),
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    fn launch(&self, id: String) {
        tracing::debug!(job = %id, "starting");
        let kill = KillSwitch::default();
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), kill.clone());
        let this = self.clone();
        tokio::spawn(async move {
            runner::run(&this, &id, &kill).await;
            this.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            this.wake.notify_one();
        });
    }

    /// A job has ended: its genotype inputs go, on every path (completed, failed, cancelled),
    /// unless the node is set to keep them for retries. A peer's inputs never stay (the origin
    /// decides on retries and sends them again), nor a multi-panel job's (its per-panel jobs hold
    /// their own links, and it is retried by submitting it again).
    async fn inputs_done(&self, id: &str) {
        let Ok(Some(job)) = self.store.job(id).await else { return };
        let delete = self.config.jobs.delete_inputs_when_done || matches!(job.role(), JobRole::Host | JobRole::Parent);
        if job.inputs_deleted_at.is_some() || !delete {
            return;
        }
        if let Err(e) = self.delete_inputs(id).await {
            tracing::warn!(job = %id, error = %e, "could not delete the job's inputs");
        }
    }

    /// Deletes a job's inputs and every working copy made of them (work files, partial
    /// transfers), records when, frees the owner's quota, and audits it once.
    pub async fn delete_inputs(&self, id: &str) -> Result<(), StoreError> {
        let already = self.store.job(id).await?.is_some_and(|j| j.inputs_deleted_at.is_some());
        for dir in [self.files.inputs_dir(id), self.job_dir(id).join("work"), self.work_dir(id), self.transfer_dir(id)]
        {
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(job = %id, error = %e, dir = %dir.display(), "could not delete job files");
                }
                _ => {}
            }
        }
        if !already {
            self.store.mark_inputs_deleted(id).await?;
            self.audit(AuditEvent::new("node", "local", "job.inputs_deleted", Outcome::Success).target(id)).await;
        }
        Ok(())
    }

    /// Job folders with no job: an upload cut off by a crash or a stop before its job was
    /// recorded (its genotypes must not stay). Only folders from before `started`: an upload
    /// under way now has no job yet either.
    async fn remove_orphan_folders(&self, started: std::time::SystemTime) {
        let Ok(mut entries) = tokio::fs::read_dir(self.files.jobs_root()).await else { return };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry.metadata().await.and_then(|m| m.modified()).is_ok_and(|t| t < started);
            if old && let Ok(None) = self.store.job(&name).await {
                match tokio::fs::remove_dir_all(entry.path()).await {
                    Ok(()) => tracing::info!(folder = %name, "removed the files of an upload that never became a job"),
                    Err(e) => tracing::warn!(folder = %name, error = %e, "could not remove an orphaned job folder"),
                }
            }
        }
    }

    /// Inputs stored by a node from before per-job input folders (a shared `files/` pool keyed
    /// by SHA-256) move into the folder of the job they were uploaded or pulled for. A host job
    /// still receiving its inputs gets nothing from the pool: it pulls them from its origin.
    async fn adopt_pooled_inputs(&self) {
        let pool = self.config.node.data_dir.join("files");
        if !pool.is_dir() {
            return;
        }
        for job in self.store.jobs_with_inputs().await.unwrap_or_default() {
            if job.role() == JobRole::Host && job.state() == JobState::Received {
                continue;
            }
            for input in self.store.job_inputs(&job.id).await.unwrap_or_default() {
                let dest = self.files.input_path(&job.id, input.idx);
                let source = pool.join(input.sha256.get(..2).unwrap_or("xx")).join(&input.sha256);
                if dest.exists() || !source.is_file() {
                    continue;
                }
                let linked = async {
                    tokio::fs::create_dir_all(self.files.inputs_dir(&job.id)).await?;
                    tokio::fs::hard_link(&source, &dest).await
                };
                if let Err(e) = linked.await {
                    tracing::warn!(job = %job.id, error = %e, "could not move a pooled input into its job's folder");
                }
            }
        }
        match tokio::fs::remove_dir_all(&pool).await {
            Ok(()) => tracing::info!("moved pooled inputs into their jobs' folders"),
            Err(e) => tracing::warn!(error = %e, "could not remove the old input pool"),
        }
    }
}

/// A job the scheduler may start.
struct QueuedJob {
    id: String,
    owner: i64,
    created_at: i64,
    queued: bool,
    /// Jobs of this owner that may run at once (another node's jobs here are capped per origin).
    owner_cap: usize,
}

/// The job to start next among `jobs`: the oldest queued job of the owner with the fewest jobs
/// in `running`, so one user's (or one origin node's) batch does not starve the others.
fn next_job(jobs: &[QueuedJob], running: &[String]) -> Option<String> {
    let mut per_owner: HashMap<i64, usize> = HashMap::new();
    for job in jobs {
        if running.contains(&job.id) {
            *per_owner.entry(job.owner).or_default() += 1;
        }
    }
    let load = |owner: i64| per_owner.get(&owner).copied().unwrap_or(0);
    jobs.iter()
        .filter(|j| j.queued && !running.contains(&j.id) && load(j.owner) < j.owner_cap)
        .min_by_key(|j| (load(j.owner), j.created_at))
        .map(|j| j.id.clone())
}

#[cfg(test)]
mod tests {
    use super::{QueuedJob, next_job};

    fn job(id: &str, owner: i64, created_at: i64, queued: bool, owner_cap: usize) -> QueuedJob {
        QueuedJob { id: id.into(), owner, created_at, queued, owner_cap }
    }

    #[test]
    fn a_user_with_a_running_job_waits_behind_another_users_older_or_newer_job() {
        // alice submitted three jobs, then bob one; alice's first runs.
        let jobs = vec![
            job("a1", 1, 100, false, usize::MAX),
            job("a2", 1, 101, true, usize::MAX),
            job("a3", 1, 102, true, usize::MAX),
            job("b1", 2, 200, true, usize::MAX),
        ];
        let running = vec!["a1".to_string()];
        assert_eq!(next_job(&jobs, &running).as_deref(), Some("b1"), "bob's job goes before alice's second");
        // With nothing running, plain age decides.
        assert_eq!(next_job(&jobs[1..], &[]).as_deref(), Some("a2"));
        assert_eq!(next_job(&[], &[]), None);
    }

    #[test]
    fn an_origin_at_its_cap_waits_even_when_the_node_has_room() {
        // Origin node 7 may run one job at once here; one runs, so its next waits.
        let jobs = vec![job("o1", 7, 100, false, 1), job("o2", 7, 101, true, 1)];
        assert_eq!(next_job(&jobs, &["o1".to_string()]), None);
        assert_eq!(next_job(&jobs[1..], &[]).as_deref(), Some("o2"));
    }
}
