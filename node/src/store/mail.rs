//! The mail outbox: mails about ended jobs wait here until the SMTP server took them, so none is
//! lost to a restart and a failed send is retried later.

use super::{Store, StoreError};
use crate::time::now_ms;

/// A mail waiting to be sent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMail {
    pub id: i64,
    pub job_id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
}

impl Store {
    /// Queues a mail, to be sent at once.
    pub async fn queue_mail(
        &self,
        job_id: &str,
        recipient: &str,
        subject: &str,
        body: &str,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        Ok(sqlx::query(
            "INSERT INTO mail_outbox (job_id, recipient, subject, body, created_at, next_attempt_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(job_id)
        .bind(recipient)
        .bind(subject)
        .bind(body)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?
        .last_insert_rowid())
    }

    /// Mails whose (next) attempt is due, oldest first.
    pub async fn due_mails(&self, limit: i64) -> Result<Vec<OutboxMail>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, job_id, recipient, subject, body, attempts FROM mail_outbox \
             WHERE sent_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// When the next waiting mail is due (ms), if any waits.
    pub async fn next_mail_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM mail_outbox WHERE sent_at IS NULL AND gave_up_at IS NULL",
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn mark_mail_sent(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE mail_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a failed attempt: tried again at `retry_at` (ms), or never again if `None`.
    pub async fn mark_mail_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?, \
             next_attempt_at = COALESCE(?, next_attempt_at), gave_up_at = CASE WHEN ? IS NULL THEN ? END WHERE id = ?",
        )
        .bind(error)
        .bind(retry_at)
        .bind(retry_at)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
