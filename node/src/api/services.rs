//! `/api/v1/services`: external imputation services this node wraps. Admins register and
//! remove them; the token goes in and never comes out.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminOnly, ApiJson, ApiPath, Auth, ClientIp};
use crate::credentials::Secret;
use crate::imputation::external::{self, RegisterError, Registration};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::services::{ServicePanel, ServiceRow};
use crate::time::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new().route("/services", get(list).post(add)).route("/services/{id}", delete(remove))
}

/// A registered service as the API shows it (never its token).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceView {
    id: String,
    kind: String,
    url: String,
    app: Option<String>,
    workflow_url: Option<String>,
    outputs_dir: Option<String>,
    /// `available` or `unavailable`, from the last health check.
    status: String,
    queue_length: i64,
    panels: Vec<ServicePanel>,
    last_check_at: Option<String>,
    last_error: Option<String>,
    has_token: bool,
}

impl From<ServiceRow> for ServiceView {
    fn from(s: ServiceRow) -> Self {
        Self {
            panels: s.panels(),
            has_token: s.sealed_token.is_some(),
            id: s.id,
            kind: s.kind,
            url: s.url,
            app: s.app,
            workflow_url: s.workflow_url,
            outputs_dir: s.outputs_dir,
            status: s.status,
            queue_length: s.queue_length,
            last_check_at: s.last_check_at.map(rfc3339),
            last_error: s.last_error,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AddServiceRequest {
    /// `cloudgene`.
    kind: String,
    id: String,
    url: String,
    /// The service's API token (required for Cloudgene, optional for WES); stored encrypted,
    /// never returned.
    token: Option<String>,
    /// Cloudgene application id (default `imputationserver2`).
    app: Option<String>,
    /// WES: the CWL workflow, by the name of one shipped with fedimpute (`beagle-impute.cwl`)
    /// or as an http(s) URL; never a file on the node.
    workflow_url: Option<String>,
    /// WES on this machine: the one folder its `file://` outputs may come from.
    outputs_dir: Option<String>,
    /// WES: the panels the workflow can use.
    #[serde(default)]
    panels: Vec<ServicePanel>,
}

/// The registered services with their last health check.
#[utoipa::path(get, operation_id = "listServices", path = "/api/v1/services", tag = "services", security(("bearer" = [])),
    responses((status = 200, body = [ServiceView])))]
async fn list(State(state): State<AppState>, _: Auth<AdminOnly>) -> Result<axum::Json<Vec<ServiceView>>, ApiError> {
    Ok(axum::Json(state.store.services().await?.into_iter().map(ServiceView::from).collect()))
}

/// Registers a service, checks it at once and advertises it.
#[utoipa::path(post, operation_id = "addService", path = "/api/v1/services", tag = "services", security(("bearer" = [])),
    request_body = AddServiceRequest,
    responses((status = 201, body = ServiceView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<AddServiceRequest>,
) -> Result<(StatusCode, axum::Json<ServiceView>), ApiError> {
    let registration = Registration {
        kind: &req.kind,
        id: &req.id,
        url: &req.url,
        token: req.token.map(Secret::new),
        app: req.app.as_deref(),
        workflow_url: req.workflow_url.as_deref(),
        outputs_dir: req.outputs_dir.as_deref(),
        panels: req.panels,
    };
    external::register(&state.store, &state.identity, &registration).await.map_err(|e| match e {
        RegisterError::Invalid(m) => ApiError::Unprocessable(m),
        RegisterError::Exists(_) => ApiError::Conflict(e.to_string()),
        other => ApiError::internal(other),
    })?;
    state
        .auth
        .audit(
            AuditEvent::new(format!("user:{}", auth.principal.user.username), &ip, "service.add", Outcome::Success)
                .target(&req.id)
                .details(json!({ "kind": req.kind, "url": req.url })),
        )
        .await?;
    let service = state.store.service(&req.id).await?.ok_or_else(|| ApiError::internal("service vanished"))?;
    external::check(&state.store, &state.identity, &service).await;
    state.federation.republish.notify_one();
    let service = state.store.service(&req.id).await?.ok_or_else(|| ApiError::internal("service vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(service.into())))
}

/// Removes a service.
#[utoipa::path(delete, operation_id = "removeService", path = "/api/v1/services/{id}", tag = "services", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if !state.store.remove_service(&id).await? {
        return Err(ApiError::NotFound(format!("no service {id}")));
    }
    state
        .auth
        .audit(
            AuditEvent::new(format!("user:{}", auth.principal.user.username), &ip, "service.remove", Outcome::Success)
                .target(&id),
        )
        .await?;
    state.federation.republish.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
