//! `/api/v1/audit`: reading and verifying the audit log (admins and auditors).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminOrAuditor, ApiQuery, Auth};
use crate::store::audit::{AuditQuery, AuditRecord};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list)).route("/audit/verify", get(verify))
}

/// Filters; every one optional. Times are RFC 3339.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Exact action, or a family with a trailing dot (`auth.`).
    action: Option<String>,
    /// Exact actor, e.g. `user:alice`.
    actor: Option<String>,
    /// `success`, `failure` or `denied`.
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Only entries older than this sequence number (for the next page).
    before: Option<i64>,
    /// At most this many entries (default 100, at most 1000).
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditRecord>,
    /// Pass as `before` to read the next (older) page; absent on the last page.
    next_before: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditVerifyResponse {
    /// The hash chain verifies, row by row.
    ok: bool,
    /// The chain verifies and it still holds every head peers witnessed (no newest rows
    /// deleted or rewritten).
    intact: bool,
    rows_verified: i64,
    head_hash: String,
    first_bad_seq: Option<i64>,
    reason: Option<String>,
    /// Heads of this log that peers witnessed and it no longer holds.
    head_mismatches: Vec<WitnessReport>,
}

/// A peer's witness of a head this log no longer holds.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WitnessReport {
    peer_id: String,
    /// The peer as the signed member list names it.
    institution: String,
    witnessed_count: i64,
    witnessed_hash: String,
    own_count: i64,
    detected_at: String,
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| ApiError::BadRequest(format!("`{name}` must be an RFC 3339 time, got {v:?}")))
        })
        .transpose()
}

/// Audit entries, newest first.
#[utoipa::path(get, operation_id = "listAuditEvents", path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    _: Auth<AdminOrAuditor>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!("`limit` must be between 1 and {MAX_LIMIT}")));
    }
    let query = AuditQuery {
        action: p.action,
        actor: p.actor,
        outcome: p.outcome,
        since_ms: parse_time("since", p.since.as_deref())?,
        until_ms: parse_time("until", p.until.as_deref())?,
        before_seq: p.before,
        limit,
    };
    let entries = state.store.query_audit(&query).await?;
    let next_before = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(axum::Json(AuditPage { entries, next_before }))
}

/// Walk the whole hash chain and report the first row that does not verify.
#[utoipa::path(get, operation_id = "verifyAuditChain", path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditVerifyResponse), (status = 403, body = ErrorBody)))]
async fn verify(
    State(state): State<AppState>,
    _: Auth<AdminOrAuditor>,
) -> Result<axum::Json<AuditVerifyResponse>, ApiError> {
    let v = state.store.verify_audit(&state.identity.public()).await?;
    let head_mismatches: Vec<WitnessReport> = state
        .store
        .head_mismatches()
        .await?
        .into_iter()
        .map(|m| WitnessReport {
            institution: state.federation.member_label(&m.peer_id),
            peer_id: m.peer_id,
            witnessed_count: m.witnessed_count,
            witnessed_hash: m.witnessed_hash,
            own_count: m.own_count,
            detected_at: crate::time::rfc3339(m.detected_at),
        })
        .collect();
    Ok(axum::Json(AuditVerifyResponse {
        ok: v.first_break.is_none(),
        intact: v.first_break.is_none() && head_mismatches.is_empty(),
        rows_verified: v.rows,
        head_hash: v.head_hash,
        first_bad_seq: v.first_break.as_ref().map(|b| b.seq),
        reason: v.first_break.map(|b| b.reason),
        head_mismatches,
    }))
}
