//! Refresh tokens, API tokens and failed-login records. Tokens are stored only as SHA-256
//! digests: they carry 256 random bits, so a fast hash suffices and a stolen database yields
//! no usable token.

use super::{Store, StoreError};
use crate::time::now_ms;

/// An API token as listed to its owner (never with the token itself).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Stores a refresh token's digest for `user_id`, valid until `expires_at`.
    pub async fn insert_refresh_token(&self, user_id: i64, digest: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO refresh_tokens (user_id, token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(user_id)
            .bind(digest)
            .bind(now_ms())
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Revokes a live refresh token and returns its user, or None if it is unknown, expired or
    /// already revoked. Used by refresh (which then issues a new one) and by logout; doing the
    /// check and the revocation in one statement means a token is only ever used once.
    pub async fn consume_refresh_token(&self, digest: &str) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        let user_id = sqlx::query_scalar(
            "UPDATE refresh_tokens SET revoked_at = ? \
             WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ? RETURNING user_id",
        )
        .bind(now)
        .bind(digest)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        Ok(user_id)
    }

    pub(super) async fn revoke_refresh_tokens_of(&self, user_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub(super) async fn revoke_all_credentials(&self, user_id: i64) -> Result<(), StoreError> {
        self.revoke_refresh_tokens_of(user_id).await?;
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Stores a new API token's digest and returns its id.
    pub async fn insert_api_token(
        &self,
        user_id: i64,
        name: &str,
        digest: &str,
        expires_at: i64,
    ) -> Result<ApiToken, StoreError> {
        let token = sqlx::query_as(
            "INSERT INTO api_tokens (user_id, name, token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?, ?) \
             RETURNING id, user_id, name, created_at, expires_at, last_used_at, revoked_at",
        )
        .bind(user_id)
        .bind(name)
        .bind(digest)
        .bind(now_ms())
        .bind(expires_at)
        .fetch_one(self.pool())
        .await?;
        Ok(token)
    }

    /// The owner and id of a live API token, marking it used.
    pub async fn use_api_token(&self, digest: &str) -> Result<Option<(i64, i64)>, StoreError> {
        let now = now_ms();
        let row = sqlx::query_as(
            "UPDATE api_tokens SET last_used_at = ? \
             WHERE token_sha256 = ? AND revoked_at IS NULL AND expires_at > ? RETURNING user_id, id",
        )
        .bind(now)
        .bind(digest)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        Ok(row)
    }

    /// A user's API tokens, newest first, revoked ones included.
    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, created_at, expires_at, last_used_at, revoked_at \
             FROM api_tokens WHERE user_id = ? ORDER BY id DESC",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Revokes one of a user's API tokens; another user's token is NotFound.
    pub async fn revoke_api_token(&self, user_id: i64, token_id: i64) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?")
                .bind(now_ms())
                .bind(token_id)
                .bind(user_id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("API token"));
        }
        Ok(())
    }

    /// Failed logins for `username` since `since_ms`: how many, and the oldest one's time.
    pub async fn recent_login_failures(&self, username: &str, since_ms: i64) -> Result<(i64, Option<i64>), StoreError> {
        Ok(sqlx::query_as("SELECT COUNT(*), MIN(at) FROM login_failures WHERE username = ? AND at > ?")
            .bind(username)
            .bind(since_ms)
            .fetch_one(self.pool())
            .await?)
    }

    /// Records a failed login and forgets those older than `forget_before_ms`.
    pub async fn record_login_failure(&self, username: &str, forget_before_ms: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO login_failures (username, at) VALUES (?, ?)")
            .bind(username)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        sqlx::query("DELETE FROM login_failures WHERE at <= ?").bind(forget_before_ms).execute(self.pool()).await?;
        Ok(())
    }

    /// Clears a user's failures after a successful login.
    pub async fn clear_login_failures(&self, username: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE username = ?").bind(username).execute(self.pool()).await?;
        Ok(())
    }
}
