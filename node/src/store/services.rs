//! External imputation services registered on this node.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::time::now_ms;

/// A registered service as stored (the sealed token stays in the row, never in views).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceRow {
    pub id: String,
    pub kind: String,
    pub url: String,
    pub app: Option<String>,
    pub workflow_url: Option<String>,
    pub sealed_token: Option<Vec<u8>>,
    pub status: String,
    pub queue_length: i64,
    pub panels: String,
    pub last_check_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    /// WES on this machine: the only folder `file://` outputs may come from (canonical).
    pub outputs_dir: Option<String>,
}

/// A reference panel an external service offers, as its own metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServicePanel {
    /// The service's own value for it (e.g. `apps@1000g-phase-3-v5`), sent back on submission.
    pub key: String,
    /// Our id for it: the key without the `apps@` prefix and version.
    pub id: String,
    pub name: String,
    pub populations: Vec<String>,
    pub builds: Vec<String>,
    /// WES: where the server reads the panel's genetic map, if any.
    #[serde(default)]
    pub map: Option<String>,
}

impl ServiceRow {
    pub fn panels(&self) -> Vec<ServicePanel> {
        serde_json::from_str(&self.panels).unwrap_or_default()
    }
}

/// What a registration sets.
pub struct NewService<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub url: &'a str,
    pub app: Option<&'a str>,
    pub workflow_url: Option<&'a str>,
    pub outputs_dir: Option<&'a str>,
    pub sealed_token: Option<&'a [u8]>,
    /// The panels, as JSON, when the registration names them (WES has no panel discovery).
    pub panels: Option<&'a str>,
}

impl Store {
    pub async fn add_service(&self, s: &NewService<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO external_services (id, kind, url, app, workflow_url, outputs_dir, sealed_token, panels, \
             created_at) VALUES (?, ?, ?, ?, ?, ?, ?, COALESCE(?, '[]'), ?)",
        )
        .bind(s.id)
        .bind(s.kind)
        .bind(s.url)
        .bind(s.app)
        .bind(s.workflow_url)
        .bind(s.outputs_dir)
        .bind(s.sealed_token)
        .bind(s.panels)
        .bind(now_ms())
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, "service"))?;
        Ok(())
    }

    pub async fn services(&self) -> Result<Vec<ServiceRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM external_services ORDER BY id").fetch_all(self.pool()).await?)
    }

    pub async fn service(&self, id: &str) -> Result<Option<ServiceRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM external_services WHERE id = ?").bind(id).fetch_optional(self.pool()).await?)
    }

    /// Removes a service; `false` if there was none.
    pub async fn remove_service(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM external_services WHERE id = ?").bind(id).execute(self.pool()).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a health check's outcome.
    pub async fn record_service_health(
        &self,
        id: &str,
        status: &str,
        queue_length: i64,
        panels: Option<&[ServicePanel]>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let panels = panels.map(|p| serde_json::to_string(p).unwrap_or_else(|_| "[]".into()));
        sqlx::query(
            "UPDATE external_services SET status = ?, queue_length = ?, panels = COALESCE(?, panels), \
             last_check_at = ?, last_error = ? WHERE id = ?",
        )
        .bind(status)
        .bind(queue_length)
        .bind(panels)
        .bind(now_ms())
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Remembers the id a service gave a job.
    pub async fn set_external_id(&self, job: &str, external_id: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET external_id = ? WHERE id = ?")
            .bind(external_id)
            .bind(job)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
