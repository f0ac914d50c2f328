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
    /// `ok` (healthz), `ready`, or `degraded`: it serves, but something needs an operator.
    status: &'static str,
    /// Why it is degraded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
}

/// The process is up.
#[utoipa::path(get, operation_id = "getHealth", path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok", reasons: Vec::new() })
}

/// The node can serve (200): its database answers and, if it belongs to a federation, its
/// config is current (an expired config freezes the node: 503). It is `degraded`, still 200 and
/// with its reasons, when a peer witnessed an audit head its log no longer holds, when the data
/// directory runs short of space, or when the federation config is about to expire.
#[utoipa::path(get, operation_id = "getReadiness", path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    if !state.store.ping().await {
        return Err(ApiError::Unavailable("the database does not answer".into()));
    }
    let now = time::OffsetDateTime::now_utc();
    if let crate::federation::FederationStatus::Frozen { reason } = state.federation.federation.status(now) {
        return Err(ApiError::Unavailable(format!("not federating: {reason}")));
    }
    let mut degraded = Vec::new();
    let mismatches = state.store.head_mismatches().await?;
    if let Some(m) = mismatches.first() {
        degraded.push(format!(
            "the audit log no longer holds what {} witnessed ({} rows; this log had {}): rows were deleted or \
             rewritten{}",
            state.federation.member_label(&m.peer_id),
            m.witnessed_count,
            m.own_count,
            if mismatches.len() > 1 {
                format!(", and {} more such reports", mismatches.len() - 1)
            } else {
                String::new()
            }
        ));
    }
    let min_free = state.config.jobs.min_free_disk_bytes;
    match crate::at_rest::free_bytes(&state.config.node.data_dir) {
        Ok(free) if free < min_free => degraded.push(format!(
            "{free} bytes free in the data directory, under jobs.min_free_disk_bytes ({min_free}); jobs may fail"
        )),
        Ok(_) => {}
        Err(e) => degraded.push(format!("cannot tell the free space of the data directory: {e}")),
    }
    if let Some(days) = config_days_left(&state, now)
        && days < CONFIG_EXPIRY_WARNING_DAYS
    {
        degraded.push(format!(
            "the federation config expires in {days} days; the federation admins must sign the next version"
        ));
    }
    let status = if degraded.is_empty() { "ready" } else { "degraded" };
    Ok(axum::Json(Health { status, reasons: degraded }))
}

/// Below this many days before the federation config expires, the node reports itself degraded.
const CONFIG_EXPIRY_WARNING_DAYS: i64 = 7;

/// Whole days until the current federation config expires (negative once it has).
fn config_days_left(state: &AppState, now: time::OffsetDateTime) -> Option<i64> {
    state.federation.federation.current().map(|c| crate::federation::expiry::days_left(&c, now))
}

/// Prometheus text exposition.
#[utoipa::path(get, operation_id = "getMetrics", path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.set_members(state.federation.member_counts(crate::time::now_ms()));
    state.metrics.set_audit_head_mismatches(state.store.head_mismatches().await.map(|m| m.len()).unwrap_or(0));
    state.metrics.set_config_expiry_days(config_days_left(&state, time::OffsetDateTime::now_utc()));
    state.metrics.set_free_bytes(crate::at_rest::free_bytes(&state.config.node.data_dir).ok());
    match state.store.count_jobs_by_state().await {
        Ok(counts) => state.metrics.set_jobs_by_state(&counts),
        Err(e) => tracing::warn!(error = %e, "counting jobs for /metrics"),
    }
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
}
