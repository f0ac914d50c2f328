//! Audit heads: this node's own, the highest each member advertised, and the mismatches found
//! between the two (see `federation::witness`).

use fedimpute_protocol::advert::AuditHead;
use serde::Serialize;

use super::audit::GENESIS_HASH;
use super::{Store, StoreError};
use crate::time::now_ms;

/// A head of this node's log that a peer witnessed and the log does not hold.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct HeadMismatch {
    pub peer_id: String,
    pub witnessed_count: i64,
    pub witnessed_hash: String,
    /// Rows this node's log held when the mismatch was found.
    pub own_count: i64,
    pub detected_at: i64,
}

impl Store {
    /// The head of this node's audit log: its row count and newest hash.
    pub async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        let (count, hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
        Ok(AuditHead { count: count.max(0) as u64, hash })
    }

    /// The hash of row `seq` of this node's log, if it holds that row (the genesis hash for 0).
    pub async fn audit_hash_at(&self, seq: u64) -> Result<Option<String>, StoreError> {
        if seq == 0 {
            return Ok(Some(GENESIS_HASH.to_string()));
        }
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        Ok(sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = ?").bind(seq).fetch_optional(self.pool()).await?)
    }

    /// Keeps `head` of `peer` (with the signed advert that carried it) if it is higher than the
    /// one held: a member's count never goes down, so a lower one never replaces a higher.
    pub async fn witness_audit_head(&self, peer: &str, head: &AuditHead, signed: &str) -> Result<(), StoreError> {
        let count = i64::try_from(head.count).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO witnessed_audit_heads (peer_id, count, hash, signed_advert, seen_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (peer_id) DO UPDATE SET count = excluded.count, hash = excluded.hash, \
             signed_advert = excluded.signed_advert, seen_at = excluded.seen_at WHERE excluded.count > count",
        )
        .bind(peer)
        .bind(count)
        .bind(&head.hash)
        .bind(signed)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The highest head of `peer` this node has witnessed: (count, signed advert JSON).
    pub async fn witnessed_audit_head(&self, peer: &str) -> Result<Option<(i64, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT count, signed_advert FROM witnessed_audit_heads WHERE peer_id = ?")
            .bind(peer)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The highest witnessed head's row count of every member seen.
    pub async fn witnessed_audit_rows(&self) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT peer_id, count FROM witnessed_audit_heads").fetch_all(self.pool()).await?;
        Ok(rows.into_iter().collect())
    }

    /// Records a mismatch; `false` if it was already recorded.
    pub async fn record_head_mismatch(&self, m: &HeadMismatch) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO audit_head_mismatches (peer_id, witnessed_count, witnessed_hash, own_count, detected_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&m.peer_id)
        .bind(m.witnessed_count)
        .bind(&m.witnessed_hash)
        .bind(m.own_count)
        .bind(m.detected_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every mismatch found, oldest first.
    pub async fn head_mismatches(&self) -> Result<Vec<HeadMismatch>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM audit_head_mismatches ORDER BY detected_at, peer_id")
            .fetch_all(self.pool())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lower_head_never_replaces_a_higher_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), true).await.unwrap();
        let head = |count, hash: &str| AuditHead { count, hash: hash.into() };
        store.witness_audit_head("p", &head(5, "h5"), "advert5").await.unwrap();
        store.witness_audit_head("p", &head(3, "h3"), "advert3").await.unwrap();
        assert_eq!(store.witnessed_audit_head("p").await.unwrap(), Some((5, "advert5".into())));
        store.witness_audit_head("p", &head(9, "h9"), "advert9").await.unwrap();
        assert_eq!(store.witnessed_audit_head("p").await.unwrap(), Some((9, "advert9".into())));
        assert_eq!(store.audit_head().await.unwrap(), head(0, GENESIS_HASH));
    }
}
