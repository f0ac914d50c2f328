//! The parts of the jobs tables that only forwarded and multi-panel jobs use: their peer, the
//! unreachable clock, the result manifest, the origins' principals, the children of a parent.

use super::jobs::{JobRole, JobRow, JobState};
use super::{Store, StoreError};
use crate::time::now_ms;

/// The user name of another node's principal here.
pub fn peer_username(peer: &str) -> String {
    format!("peer:{peer}")
}

impl Store {
    /// The principal that owns the jobs `peer` sends here, created on first use: disabled, with
    /// no usable password (`!` is no argon2 hash), so nobody can log in as it.
    pub async fn peer_principal(&self, peer: &str) -> Result<i64, StoreError> {
        let name = peer_username(peer);
        let now = now_ms();
        sqlx::query(
            "INSERT OR IGNORE INTO users (username, password_hash, role, disabled, created_at, updated_at) \
             VALUES (?, '!', 'viewer', 1, ?, ?)",
        )
        .bind(&name)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(sqlx::query_scalar("SELECT id FROM users WHERE username = ?").bind(&name).fetch_one(self.pool()).await?)
    }

    /// Jobs of `role` in one of `states`, oldest first.
    pub async fn jobs_of_role(&self, role: JobRole, states: &[JobState]) -> Result<Vec<JobRow>, StoreError> {
        let placeholders = vec!["?"; states.len()].join(", ");
        let sql = format!("SELECT * FROM jobs WHERE role = ? AND state IN ({placeholders}) ORDER BY created_at");
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(role.as_str());
        for s in states {
            q = q.bind(s.as_str());
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Jobs the local scheduler runs: local ones and those received from origins.
    pub async fn runnable_jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM jobs WHERE role IN ('local', 'host') AND state IN ('queued', 'running') ORDER BY created_at",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Origin jobs that still have something to do: live ones, and ended ones the host has not
    /// yet acknowledged (a delivery receipt or a cancel to send).
    pub async fn origin_jobs_to_drive(&self) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM jobs WHERE role = 'origin' AND \
             (state IN ('queued', 'transferring', 'running', 'fetching_results') \
              OR (peer IS NOT NULL AND peer_closed_at IS NULL)) ORDER BY created_at",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Jobs `owner` (an origin's principal) has live here, for the per-origin concurrency limit.
    pub async fn live_jobs_of(&self, owner: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE owner_id = ? AND state IN ('received', 'queued', 'running')",
        )
        .bind(owner)
        .fetch_one(self.pool())
        .await?)
    }

    /// Jobs waiting for an engine here (the queue length advertised).
    pub async fn queue_length(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE role IN ('local', 'host') AND state IN ('received', 'queued')",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Sets (or clears) the host of an origin job.
    pub async fn set_job_peer(&self, id: &str, peer: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET peer = ?, peer_seen_at = ?, peer_closed_at = NULL WHERE id = ?")
            .bind(peer)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Gives up on `host` for this job: it will not be chosen again.
    pub async fn exclude_host(&self, id: &str, host: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET excluded_hosts = TRIM(excluded_hosts || ' ' || ?), peer = NULL, peer_seen_at = NULL \
             WHERE id = ?",
        )
        .bind(host)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The peer answered about this job just now.
    pub async fn touch_peer(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET peer_seen_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The host acknowledged the end of the job: nothing more to tell it.
    pub async fn close_peer(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET peer_closed_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records the host's result manifest (JSON).
    pub async fn set_remote_results(&self, id: &str, manifest: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET remote_results = ? WHERE id = ?")
            .bind(manifest)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The children of a multi-panel job, in the order the panels were given.
    pub async fn child_jobs(&self, parent: &str) -> Result<Vec<JobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM jobs WHERE parent_id = ? ORDER BY rowid")
            .bind(parent)
            .fetch_all(self.pool())
            .await?)
    }

    /// Forgets a job entirely (a host's ended job that its origin submits again).
    pub async fn delete_job(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM jobs WHERE id = ?").bind(id).execute(self.pool()).await?;
        Ok(())
    }

    /// Origin jobs that `peer` may still hold although this node is done with it there: jobs
    /// moved away from it, and jobs that ended here while it was unreachable. Created since
    /// `since_ms`.
    pub async fn jobs_left_at(&self, peer: &str, since_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE role = 'origin' AND created_at >= ? AND \
             ((peer = ? AND state IN ('failed', 'cancelled')) OR (' ' || excluded_hosts || ' ') LIKE ?)",
        )
        .bind(since_ms)
        .bind(peer)
        .bind(format!("% {peer} %"))
        .fetch_all(self.pool())
        .await?)
    }
}
