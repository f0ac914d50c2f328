//! Liveness, readiness and Prometheus metrics; no authentication, nothing sensitive.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ErrorBody};

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The node can serve: its database answers, if it belongs to a federation its config is
/// current (an expired config freezes the node), and no peer witnessed an audit head its log no
/// longer holds.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    if !state.store.ping().await {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    if let crate::federation::FederationStatus::Frozen { reason } =
        state.federation.federation.status(time::OffsetDateTime::now_utc())
    {
        return Err(ApiError::Unavailable(format!("not federating: {reason}")));
    }
    let mismatches = state.store.head_mismatches().await?;
    if let Some(m) = mismatches.first() {
        return Err(ApiError::Unavailable(format!(
            "degraded: the audit log no longer holds what {} witnessed ({} rows; this log had {}): rows were deleted \
             or rewritten{}",
            state.federation.member_label(&m.peer_id),
            m.witnessed_count,
            m.own_count,
            if mismatches.len() > 1 {
                format!(", and {} more such reports", mismatches.len() - 1)
            } else {
                String::new()
            }
        )));
    }
    Ok(axum::Json(Health { status: "ready" }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (listed, connected, reachable) = state.federation.member_counts(crate::time::now_ms());
    state.metrics.set_members(listed, connected, reachable);
    state.metrics.set_audit_head_mismatches(state.store.head_mismatches().await.map(|m| m.len()).unwrap_or(0));
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
