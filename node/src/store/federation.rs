//! Accepted federation configs and the persisted catalog of adverts.

use super::{Store, StoreError};
use crate::time::now_ms;

/// A config row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredConfig {
    pub version: i64,
    pub federation_id: String,
    pub digest: String,
    pub document: String,
    pub accepted_at: i64,
    pub source: String,
}

impl Store {
    /// The highest accepted config, if any.
    pub async fn current_federation_config(&self) -> Result<Option<StoredConfig>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM federation_configs ORDER BY version DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?)
    }

    /// An accepted config of exactly this version.
    pub async fn federation_config(&self, version: i64) -> Result<Option<StoredConfig>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM federation_configs WHERE version = ?")
            .bind(version)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Records a newly accepted config, only if it directly follows the current head (or is the
    /// first). Returns false, writing nothing, if another writer got there first: the daemon and
    /// the CLI may both be adopting, and the version rules were checked against the head they saw.
    pub async fn insert_federation_config(
        &self,
        expected_previous: Option<i64>,
        version: i64,
        federation_id: &str,
        digest: &str,
        document: &str,
        source: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM federation_configs").fetch_one(&mut *tx).await?;
        if head != expected_previous {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO federation_configs (version, federation_id, digest, document, accepted_at, source) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(version)
        .bind(federation_id)
        .bind(digest)
        .bind(document)
        .bind(now_ms())
        .bind(source)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores the newest advert of a peer.
    pub async fn upsert_advert(&self, peer_id: &str, seq: i64, signed_advert: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO catalog_adverts (peer_id, seq, signed_advert, received_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (peer_id) DO UPDATE SET seq = excluded.seq, signed_advert = excluded.signed_advert, \
             received_at = excluded.received_at WHERE excluded.seq > catalog_adverts.seq",
        )
        .bind(peer_id)
        .bind(seq)
        .bind(signed_advert)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every stored advert: (peer_id, signed advert JSON, received_at).
    pub async fn stored_adverts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(sqlx::query_as("SELECT peer_id, signed_advert, received_at FROM catalog_adverts")
            .fetch_all(self.pool())
            .await?)
    }

    /// Forgets the adverts of nodes that are no longer members.
    pub async fn delete_advert(&self, peer_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM catalog_adverts WHERE peer_id = ?").bind(peer_id).execute(self.pool()).await?;
        Ok(())
    }
}
