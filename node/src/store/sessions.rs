//! Sessions, refresh tokens and API tokens. Tokens are stored only as SHA-256 digests: they carry 256 random bits, so a fast hash suffices and a stolen database yields
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

/// What presenting a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// A live token, now spent; its session goes on with a new one.
    Rotated { user_id: i64, session_id: String },
    /// A token already spent: someone holds a copy. Its whole session has been ended.
    Replayed { user_id: i64, session_id: String },
    /// Unknown, expired, or of an ended session.
    Refused,
}

/// A refresh token as presented, with its session's state.
#[derive(sqlx::FromRow)]
struct PresentedToken {
    user_id: i64,
    session_id: Option<String>,
    revoked_at: Option<i64>,
    expires_at: i64,
    ended_at: Option<i64>,
}

/// A live session, as an access token's `sid` finds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveSession {
    pub user_id: i64,
    pub created_at: i64,
}

impl Store {
    /// Opens a session for `user_id` with its first refresh token; returns the session's id.
    pub async fn open_session(
        &self,
        user_id: i64,
        refresh_digest: &str,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        let session_id = hex::encode(crate::secrets::random_bytes::<16>());
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO sessions (id, user_id, created_at) VALUES (?, ?, ?)")
            .bind(&session_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        insert_refresh_token(&mut tx, user_id, &session_id, refresh_digest, expires_at).await?;
        tx.commit().await?;
        Ok(session_id)
    }

    /// Spends a refresh token and, if it was live, stores its successor in the same session.
    /// A token spent before is a replay: the session ends, so the thief's copy and the owner's
    /// newer token both stop working. One transaction, so two racing uses cannot both win.
    pub async fn use_refresh_token(
        &self,
        digest: &str,
        successor_digest: &str,
        expires_at: i64,
    ) -> Result<RefreshUse, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let row: Option<PresentedToken> = sqlx::query_as(
            "SELECT t.user_id, t.session_id, t.revoked_at, t.expires_at, s.ended_at \
             FROM refresh_tokens t LEFT JOIN sessions s ON s.id = t.session_id WHERE t.token_sha256 = ?",
        )
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(PresentedToken {
            user_id,
            session_id: Some(session_id),
            revoked_at,
            expires_at: token_expires_at,
            ended_at,
        }) = row
        else {
            return Ok(RefreshUse::Refused);
        };
        if ended_at.is_some() || token_expires_at <= now {
            return Ok(RefreshUse::Refused);
        }
        if revoked_at.is_some() {
            end_session_in(&mut tx, &session_id, "a spent refresh token was presented again", now).await?;
            tx.commit().await?;
            return Ok(RefreshUse::Replayed { user_id, session_id });
        }
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE token_sha256 = ?")
            .bind(now)
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        insert_refresh_token(&mut tx, user_id, &session_id, successor_digest, expires_at).await?;
        tx.commit().await?;
        Ok(RefreshUse::Rotated { user_id, session_id })
    }

    /// The session a refresh token belongs to, if the token is live and its owner is `user_id`.
    pub async fn session_of_refresh_token(&self, digest: &str, user_id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT session_id FROM refresh_tokens WHERE token_sha256 = ? AND user_id = ? AND session_id IS NOT NULL",
        )
        .bind(digest)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        .flatten())
    }

    /// Ends one session and its refresh tokens. Ending an ended session changes nothing.
    pub async fn end_session(&self, session_id: &str, reason: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        end_session_in(&mut tx, session_id, reason, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every session of a user: sessions, refresh tokens and, through
    /// `sessions_valid_after`, any access token minted before now. With `api_tokens`, their
    /// API tokens are revoked too.
    pub async fn end_all_sessions(&self, user_id: i64, reason: &str, api_tokens: bool) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        // A second line of defence beside ended_at: no session older than this is honoured.
        sqlx::query("UPDATE users SET sessions_valid_after = ? WHERE id = ?")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE user_id = ? AND ended_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if api_tokens {
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The session `session_id` if it has not ended.
    pub async fn live_session(&self, session_id: &str) -> Result<Option<LiveSession>, StoreError> {
        Ok(sqlx::query_as("SELECT user_id, created_at FROM sessions WHERE id = ? AND ended_at IS NULL")
            .bind(session_id)
            .fetch_optional(self.pool())
            .await?)
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
}

async fn insert_refresh_token(
    tx: &mut sqlx::SqliteConnection,
    user_id: i64,
    session_id: &str,
    digest: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, session_id, token_sha256, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(user_id)
    .bind(session_id)
    .bind(digest)
    .bind(now_ms())
    .bind(expires_at)
    .execute(tx)
    .await?;
    Ok(())
}

async fn end_session_in(
    tx: &mut sqlx::SqliteConnection,
    session_id: &str,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL")
        .bind(now)
        .bind(reason)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL")
        .bind(now)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
