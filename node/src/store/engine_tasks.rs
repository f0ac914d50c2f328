//! Engine tasks running on an executor that outlives the node (Slurm jobs), by job and task name.

use super::{Store, StoreError};
use crate::time::now_ms;

/// A task as recorded: its executor's id for it, how many times it was submitted, and its state
/// (`submitted` or `completed`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EngineTaskRow {
    pub external_id: String,
    pub attempts: i64,
    pub state: String,
}

impl Store {
    pub async fn engine_task(&self, job: &str, name: &str) -> Result<Option<EngineTaskRow>, StoreError> {
        Ok(sqlx::query_as("SELECT external_id, attempts, state FROM engine_tasks WHERE job_id = ? AND name = ?")
            .bind(job)
            .bind(name)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Records a submission (the first, or a retry) before anything waits on it.
    pub async fn record_engine_task(
        &self,
        job: &str,
        name: &str,
        external_id: &str,
        attempts: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO engine_tasks (job_id, name, external_id, attempts, state, updated_at) \
             VALUES (?, ?, ?, ?, 'submitted', ?) \
             ON CONFLICT (job_id, name) DO UPDATE SET external_id = excluded.external_id, \
             attempts = excluded.attempts, state = 'submitted', updated_at = excluded.updated_at",
        )
        .bind(job)
        .bind(name)
        .bind(external_id)
        .bind(attempts)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn complete_engine_task(&self, job: &str, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE engine_tasks SET state = 'completed', updated_at = ? WHERE job_id = ? AND name = ?")
            .bind(now_ms())
            .bind(job)
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets a job's tasks (a retry by the researcher runs everything again).
    pub async fn clear_engine_tasks(&self, job: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM engine_tasks WHERE job_id = ?").bind(job).execute(self.pool()).await?;
        Ok(())
    }
}
