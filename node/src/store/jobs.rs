//! Imputation jobs: their parameters, state, inputs, results and events.
//!
//! Every state change goes through [`Store::transition`], which checks the state it expects,
//! writes the new one and an event in one transaction, and only then lets the caller act.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::time::now_ms;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Validating,
    /// Host: accepted from an origin, inputs being pulled.
    Received,
    Queued,
    /// Origin: accepted by the host, which pulls the inputs.
    Transferring,
    Running,
    /// Origin: the host has results; pulling them.
    FetchingResults,
    Completed,
    Failed,
    Cancelled,
    /// Host: the origin confirmed it holds the results.
    Delivered,
    /// Host: inputs and results deleted after delivery or cancellation.
    Purged,
}

impl JobState {
    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 12] = [
        JobState::Pending,
        JobState::Validating,
        JobState::Received,
        JobState::Queued,
        JobState::Transferring,
        JobState::Running,
        JobState::FetchingResults,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Delivered,
        JobState::Purged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Validating => "validating",
            JobState::Received => "received",
            JobState::Queued => "queued",
            JobState::Transferring => "transferring",
            JobState::Running => "running",
            JobState::FetchingResults => "fetching_results",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Delivered => "delivered",
            JobState::Purged => "purged",
        }
    }

    /// No further transition except an explicit retry (or, at a host, delivery and purge).
    pub fn is_final(self) -> bool {
        !self.is_live()
    }

    /// Not yet ended: may still be cancelled.
    pub fn is_live(self) -> bool {
        LIVE_STATES.contains(&self)
    }
}

/// Every state of a job that has not ended.
pub const LIVE_STATES: [JobState; 7] = [
    JobState::Pending,
    JobState::Validating,
    JobState::Received,
    JobState::Queued,
    JobState::Transferring,
    JobState::Running,
    JobState::FetchingResults,
];

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => JobState::Pending,
            "validating" => JobState::Validating,
            "received" => JobState::Received,
            "queued" => JobState::Queued,
            "transferring" => JobState::Transferring,
            "running" => JobState::Running,
            "fetching_results" => JobState::FetchingResults,
            "completed" => JobState::Completed,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "delivered" => JobState::Delivered,
            "purged" => JobState::Purged,
            other => return Err(format!("unknown job state {other:?}")),
        })
    }
}

/// What the researcher asked for.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobParams {
    pub name: String,
    pub panel_id: String,
    pub build: String,
    /// `beagle` or `minimac4`.
    pub engine: String,
    /// `beagle` or `no_phasing`.
    pub phasing: String,
    pub population: Option<String>,
    /// Drop imputed variants with estimated r2 below this (0 keeps all).
    pub r2_filter: f64,
    /// `imputation` or `qc_only`.
    pub mode: String,
}

/// A job as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub owner_id: i64,
    pub name: String,
    pub state: String,
    pub stage: Option<String>,
    pub progress: f64,
    pub panel_id: String,
    pub build: String,
    pub engine: String,
    pub phasing: String,
    pub population: Option<String>,
    pub r2_filter: f64,
    pub mode: String,
    pub error: Option<String>,
    pub qc_report: Option<String>,
    pub summary: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub inputs_deleted_at: Option<i64>,
    pub results_deleted_at: Option<i64>,
    /// `local`, `origin`, `host` or `parent`.
    pub role: String,
    pub peer: Option<String>,
    pub peer_user: Option<String>,
    pub pinned_host: Option<String>,
    pub allow_resubmit: bool,
    pub excluded_hosts: String,
    pub peer_seen_at: Option<i64>,
    pub peer_closed_at: Option<i64>,
    pub remote_results: Option<String>,
    pub parent_id: Option<String>,
    /// The job's id at the external service that runs it, if one does.
    pub external_id: Option<String>,
    /// What was repaired in the uploads before QC (JSON list), at the node they were uploaded to.
    pub input_repairs: Option<String>,
}

impl JobRow {
    /// A queued local Beagle job on `panel`, for unit tests to adjust.
    #[cfg(test)]
    pub fn for_tests(id: &str, panel: &str) -> Self {
        JobRow {
            id: id.into(),
            owner_id: 1,
            name: format!("job {id}"),
            state: "queued".into(),
            stage: None,
            progress: 0.0,
            panel_id: panel.into(),
            build: "hg19".into(),
            engine: "beagle".into(),
            phasing: "beagle".into(),
            population: None,
            r2_filter: 0.0,
            mode: "imputation".into(),
            error: None,
            qc_report: None,
            summary: None,
            attempts: 0,
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
            inputs_deleted_at: None,
            results_deleted_at: None,
            role: "local".into(),
            peer: None,
            peer_user: None,
            pinned_host: None,
            allow_resubmit: false,
            excluded_hosts: String::new(),
            peer_seen_at: None,
            peer_closed_at: None,
            remote_results: None,
            parent_id: None,
            external_id: None,
            input_repairs: None,
        }
    }

    pub fn state(&self) -> JobState {
        self.state.parse().unwrap_or(JobState::Failed)
    }

    pub fn role(&self) -> JobRole {
        match self.role.as_str() {
            "origin" => JobRole::Origin,
            "host" => JobRole::Host,
            "parent" => JobRole::Parent,
            _ => JobRole::Local,
        }
    }

    pub fn params(&self) -> JobParams {
        JobParams {
            name: self.name.clone(),
            panel_id: self.panel_id.clone(),
            build: self.build.clone(),
            engine: self.engine.clone(),
            phasing: self.phasing.clone(),
            population: self.population.clone(),
            r2_filter: self.r2_filter,
            mode: self.mode.clone(),
        }
    }
}

/// An uploaded input of a job.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct JobInput {
    pub idx: i64,
    pub name: String,
    pub sha256: String,
    pub size: i64,
}

/// A job file as a job message announces it.
fn file_manifest(name: &str, size: i64, sha256: &str) -> fedimpute_protocol::jobs::FileManifest {
    fedimpute_protocol::jobs::FileManifest { name: name.to_string(), size: size as u64, sha256: sha256.to_string() }
}

impl JobInput {
    pub fn manifest(&self) -> fedimpute_protocol::jobs::FileManifest {
        file_manifest(&self.name, self.size, &self.sha256)
    }
}

/// A result file of a job.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct JobResult {
    pub name: String,
    pub size: i64,
    pub sha256: String,
}

impl JobResult {
    pub fn manifest(&self) -> fedimpute_protocol::jobs::FileManifest {
        file_manifest(&self.name, self.size, &self.sha256)
    }
}

/// One recorded step of a job.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct JobEvent {
    pub id: i64,
    pub job_id: String,
    pub at: i64,
    pub state: String,
    pub stage: Option<String>,
    pub progress: f64,
    pub message: Option<String>,
}

/// A transition that did not happen because the job was not in the expected state.
#[derive(Debug, thiserror::Error)]
#[error("job {job} is {actual}, not {expected:?}")]
pub struct StaleTransition {
    pub job: String,
    pub expected: Vec<JobState>,
    pub actual: String,
}

/// Where a job runs, relative to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobRole {
    /// Here, for a local user.
    #[default]
    Local,
    /// At another node (the host), for a local user.
    Origin,
    /// Here, for another node (the origin).
    Host,
    /// A multi-panel job: its children do the work.
    Parent,
}

impl JobRole {
    pub fn as_str(self) -> &'static str {
        match self {
            JobRole::Local => "local",
            JobRole::Origin => "origin",
            JobRole::Host => "host",
            JobRole::Parent => "parent",
        }
    }
}

/// How a new job is placed: its role and, for forwarded jobs, its peer.
#[derive(Debug, Clone, Default)]
pub struct JobPlacement {
    pub role: JobRole,
    pub peer: Option<String>,
    pub peer_user: Option<String>,
    pub pinned_host: Option<String>,
    pub allow_resubmit: bool,
    pub parent_id: Option<String>,
}

/// What a transition sets besides the state.
#[derive(Debug, Default, Clone)]
pub struct TransitionUpdate {
    pub stage: Option<String>,
    pub progress: Option<f64>,
    pub message: Option<String>,
    pub error: Option<String>,
    pub qc_report: Option<String>,
    pub summary: Option<String>,
}

impl Store {
    /// Creates a job with its inputs, in `validating` (or, at a host, `received`).
    pub async fn create_job(
        &self,
        id: &str,
        owner_id: i64,
        p: &JobParams,
        inputs: &[JobInput],
        placement: &JobPlacement,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let state = if placement.role == JobRole::Host { JobState::Received } else { JobState::Validating };
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, owner_id, name, state, panel_id, build, engine, phasing, population, r2_filter, mode, \
             created_at, updated_at, role, peer, peer_user, pinned_host, allow_resubmit, parent_id, peer_seen_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(owner_id)
        .bind(&p.name)
        .bind(state.as_str())
        .bind(&p.panel_id)
        .bind(&p.build)
        .bind(&p.engine)
        .bind(&p.phasing)
        .bind(&p.population)
        .bind(p.r2_filter)
        .bind(&p.mode)
        .bind(now)
        .bind(now)
        .bind(placement.role.as_str())
        .bind(&placement.peer)
        .bind(&placement.peer_user)
        .bind(&placement.pinned_host)
        .bind(placement.allow_resubmit)
        .bind(&placement.parent_id)
        .bind(placement.peer.as_ref().map(|_| now))
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, "job"))?;
        for i in inputs {
            sqlx::query("INSERT INTO job_inputs (job_id, idx, name, sha256, size) VALUES (?, ?, ?, ?, ?)")
                .bind(id)
                .bind(i.idx)
                .bind(&i.name)
                .bind(&i.sha256)
                .bind(i.size)
                .execute(&mut *tx)
                .await?;
        }
        let message = if placement.role == JobRole::Host { "received from the origin" } else { "submitted" };
        sqlx::query("INSERT INTO job_events (job_id, at, state, progress, message) VALUES (?, ?, ?, 0, ?)")
            .bind(id)
            .bind(now)
            .bind(state.as_str())
            .bind(message)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves a job from one of `from` to `to`, recording an event; refuses if the job is in
    /// another state (someone else moved it first, e.g. a cancel).
    pub async fn transition(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        update: TransitionUpdate,
    ) -> Result<Result<JobEvent, StaleTransition>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let current: Option<(String, f64)> =
            sqlx::query_as("SELECT state, progress FROM jobs WHERE id = ?").bind(id).fetch_optional(&mut *tx).await?;
        let Some((state, old_progress)) = current else { return Err(StoreError::NotFound("job")) };
        if !from.iter().any(|s| s.as_str() == state) {
            return Ok(Err(StaleTransition { job: id.to_string(), expected: from.to_vec(), actual: state }));
        }
        let progress = update.progress.unwrap_or(if to == JobState::Completed { 1.0 } else { old_progress });
        sqlx::query(
            "UPDATE jobs SET state = ?, stage = ?, progress = ?, updated_at = ?, \
             error = COALESCE(?, CASE WHEN ? IN ('queued', 'running') THEN NULL ELSE error END), \
             qc_report = COALESCE(?, qc_report), summary = COALESCE(?, summary), \
             started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? ELSE started_at END, \
             attempts = attempts + CASE WHEN ? = 'running' AND state = 'queued' THEN 1 ELSE 0 END, \
             finished_at = CASE WHEN ? IN ('completed', 'failed', 'cancelled') THEN ? \
                                WHEN ? IN ('delivered', 'purged') THEN finished_at ELSE NULL END \
             WHERE id = ?",
        )
        .bind(to.as_str())
        .bind(&update.stage)
        .bind(progress)
        .bind(now)
        .bind(&update.error)
        .bind(to.as_str())
        .bind(&update.qc_report)
        .bind(&update.summary)
        .bind(to.as_str())
        .bind(now)
        .bind(to.as_str())
        .bind(to.as_str())
        .bind(now)
        .bind(to.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let message = update.message.or(update.error);
        let event_id = sqlx::query(
            "INSERT INTO job_events (job_id, at, state, stage, progress, message) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(now)
        .bind(to.as_str())
        .bind(&update.stage)
        .bind(progress)
        .bind(&message)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        tx.commit().await?;
        Ok(Ok(JobEvent {
            id: event_id,
            job_id: id.to_string(),
            at: now,
            state: to.as_str().to_string(),
            stage: update.stage,
            progress,
            message,
        }))
    }

    /// A job by id.
    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE id = ?").bind(id).fetch_optional(self.pool()).await?)
    }

    /// Jobs, newest first; only `owner`'s when given.
    pub async fn list_jobs(&self, owner: Option<i64>, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE (? IS NULL OR owner_id = ?) ORDER BY created_at DESC LIMIT ?")
            .bind(owner)
            .bind(owner)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// Jobs in one of `states`, oldest first.
    pub async fn jobs_in(&self, states: &[JobState]) -> Result<Vec<JobRow>, StoreError> {
        let list: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let placeholders = vec!["?"; list.len()].join(", ");
        let sql = format!("SELECT * FROM jobs WHERE state IN ({placeholders}) ORDER BY created_at");
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for s in list {
            q = q.bind(s);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// A job's inputs, in order.
    pub async fn job_inputs(&self, id: &str) -> Result<Vec<JobInput>, StoreError> {
        Ok(sqlx::query_as("SELECT idx, name, sha256, size FROM job_inputs WHERE job_id = ? ORDER BY idx")
            .bind(id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Records a result file.
    pub async fn add_job_result(&self, id: &str, result: &JobResult) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO job_results (job_id, name, size, sha256) VALUES (?, ?, ?, ?)")
            .bind(id)
            .bind(&result.name)
            .bind(result.size)
            .bind(&result.sha256)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records what was repaired in the job's uploads.
    pub async fn set_input_repairs(&self, id: &str, repairs: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET input_repairs = ? WHERE id = ?")
            .bind(repairs)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets a job's results (before a re-run).
    pub async fn clear_job_results(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM job_results WHERE job_id = ?").bind(id).execute(self.pool()).await?;
        Ok(())
    }

    /// A job's result files.
    pub async fn job_results(&self, id: &str) -> Result<Vec<JobResult>, StoreError> {
        Ok(sqlx::query_as("SELECT name, size, sha256 FROM job_results WHERE job_id = ? ORDER BY name")
            .bind(id)
            .fetch_all(self.pool())
            .await?)
    }

    /// A job's events after `after_id`.
    pub async fn job_events(&self, id: &str, after_id: i64) -> Result<Vec<JobEvent>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM job_events WHERE job_id = ? AND id > ? ORDER BY id")
            .bind(id)
            .bind(after_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// The message of a job's newest event (`None` if that event has none).
    pub async fn last_job_message(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT message FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT 1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.flatten())
    }

    /// Records progress within the current state (no state change).
    pub async fn job_progress(
        &self,
        id: &str,
        stage: &str,
        progress: f64,
        message: Option<&str>,
    ) -> Result<JobEvent, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE jobs SET stage = ?, progress = ?, updated_at = ? WHERE id = ?")
            .bind(stage)
            .bind(progress)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let state: String =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?").bind(id).fetch_one(&mut *tx).await?;
        let event_id = sqlx::query(
            "INSERT INTO job_events (job_id, at, state, stage, progress, message) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(now)
        .bind(&state)
        .bind(stage)
        .bind(progress)
        .bind(message)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        tx.commit().await?;
        Ok(JobEvent {
            id: event_id,
            job_id: id.to_string(),
            at: now,
            state,
            stage: Some(stage.to_string()),
            progress,
            message: message.map(String::from),
        })
    }

    /// Forgets how often a job was started (a researcher's retry starts the count afresh).
    pub async fn reset_attempts(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET attempts = 0 WHERE id = ?").bind(id).execute(self.pool()).await?;
        Ok(())
    }

    /// Marks a job's inputs deleted.
    /// How many jobs are in each state (states without jobs are absent).
    pub async fn count_jobs_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetch_all(self.pool()).await?)
    }

    pub async fn mark_inputs_deleted(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET inputs_deleted_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Jobs whose inputs have not been deleted.
    pub async fn jobs_with_inputs(&self) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE inputs_deleted_at IS NULL").fetch_all(self.pool()).await?)
    }

    /// Jobs `owner` submitted since `since_ms`, for the monthly quota.
    pub async fn jobs_submitted_since(&self, owner: i64, since_ms: i64) -> Result<i64, StoreError> {
        // A multi-panel submission counts once (its parent), not once per panel.
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE owner_id = ? AND created_at >= ? AND parent_id IS NULL")
            .bind(owner)
            .bind(since_ms)
            .fetch_one(self.pool())
            .await?)
    }
}

impl Store {
    /// Jobs that ended before `before_ms` and still hold inputs or results.
    pub async fn jobs_with_expired_files(&self, before_ms: i64) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM jobs WHERE finished_at IS NOT NULL AND finished_at <= ? \
             AND (results_deleted_at IS NULL OR inputs_deleted_at IS NULL)",
        )
        .bind(before_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// Marks a job's results deleted and forgets the files.
    pub async fn mark_results_deleted(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM job_results WHERE job_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE jobs SET results_deleted_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Jobs of `owner` that have not ended (at a host: receiving, queued or running).
    pub async fn unfinished_jobs_of(&self, owner: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE owner_id = ? AND finished_at IS NULL")
            .bind(owner)
            .fetch_one(self.pool())
            .await?)
    }

    /// Bytes a user holds on the node: inputs not yet deleted plus results not yet deleted.
    pub async fn stored_bytes_of(&self, owner: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE((SELECT SUM(i.size) FROM job_inputs i JOIN jobs j ON j.id = i.job_id \
                              WHERE j.owner_id = ? AND j.inputs_deleted_at IS NULL AND j.parent_id IS NULL), 0) \
                  + COALESCE((SELECT SUM(r.size) FROM job_results r JOIN jobs j ON j.id = r.job_id \
                              WHERE j.owner_id = ? AND j.results_deleted_at IS NULL), 0)",
        )
        .bind(owner)
        .bind(owner)
        .fetch_one(self.pool())
        .await?)
    }
}
