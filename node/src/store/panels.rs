//! Reference panels hosted by this node.

use super::{Store, StoreError};
use crate::time::now_ms;

/// A panel as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PanelRow {
    pub id: String,
    pub name: String,
    pub build: String,
    pub populations: String,
    pub status: String,
    pub error: Option<String>,
    pub has_map: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PanelRow {
    /// The population labels.
    pub fn population_list(&self) -> Vec<String> {
        serde_json::from_str(&self.populations).unwrap_or_default()
    }
}

/// One chromosome of a panel.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PanelChromosome {
    pub chromosome: String,
    pub samples: i64,
    pub sites: i64,
    /// The registration report (JSON), for panels registered since reports were kept.
    pub report: Option<String>,
}

/// A panel's samples (the most of any chromosome file) and sites (all files together).
pub fn panel_totals(chromosomes: &[PanelChromosome]) -> (i64, i64) {
    (chromosomes.iter().map(|c| c.samples).max().unwrap_or(0), chromosomes.iter().map(|c| c.sites).sum())
}

impl Store {
    /// Records a new panel as `preparing`; a taken id is a conflict.
    pub async fn insert_panel(
        &self,
        id: &str,
        name: &str,
        build: &str,
        populations: &[String],
        has_map: bool,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO panels (id, name, build, populations, status, has_map, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 'preparing', ?, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(build)
        .bind(serde_json::to_string(populations).unwrap_or_else(|_| "[]".into()))
        .bind(has_map)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, "panel"))?;
        Ok(())
    }

    /// Marks a panel ready, with its chromosomes.
    pub async fn panel_ready(&self, id: &str, chromosomes: &[PanelChromosome]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for c in chromosomes {
            sqlx::query(
                "INSERT INTO panel_chromosomes (panel_id, chromosome, samples, sites, report) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(&c.chromosome)
            .bind(c.samples)
            .bind(c.sites)
            .bind(&c.report)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE panels SET status = 'ready', error = NULL, updated_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a panel failed with the reason.
    pub async fn panel_failed(&self, id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE panels SET status = 'failed', error = ?, updated_at = ? WHERE id = ?")
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every panel, by id.
    pub async fn list_panels(&self) -> Result<Vec<PanelRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM panels ORDER BY id").fetch_all(self.pool()).await?)
    }

    /// One panel.
    pub async fn panel(&self, id: &str) -> Result<Option<PanelRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM panels WHERE id = ?").bind(id).fetch_optional(self.pool()).await?)
    }

    /// A panel's chromosomes.
    pub async fn panel_chromosomes(&self, id: &str) -> Result<Vec<PanelChromosome>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT chromosome, samples, sites, report FROM panel_chromosomes WHERE panel_id = ? ORDER BY chromosome",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Removes a panel's records.
    pub async fn delete_panel(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM panels WHERE id = ?").bind(id).execute(self.pool()).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("panel"));
        }
        Ok(())
    }

    /// A number that changes whenever panels change, so a running node notices CLI edits.
    pub async fn panels_fingerprint(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM panels").fetch_one(self.pool()).await?)
    }
}
