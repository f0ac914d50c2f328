//! The node's HTTPS API: axum routers, one module per resource, merged here.
//!
//! The API is one of two doors into the node's core (the other is `p2p`); it never reaches
//! into the network layer.

pub mod audit;
pub mod auth;
pub mod connections;
pub mod error;
pub mod extract;
pub mod federation;
pub mod health;
pub mod jobs;
pub mod me;
pub mod node;
pub mod openapi;
pub mod panels;
pub mod services;
pub mod ui;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::AuthService;
use crate::federation::runtime::FederationHandle;
use crate::identity::NodeIdentity;
use crate::metrics::Metrics;
use crate::store::Store;
use error::ApiError;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub auth: AuthService,
    pub identity: NodeIdentity,
    pub metrics: Arc<Metrics>,
    pub federation: FederationHandle,
    pub config: Arc<crate::config::NodeConfig>,
    pub jobs: crate::jobs::JobsService,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Random request ids; a client's own `x-request-id` is kept if it sends one.
#[derive(Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = hex::encode(crate::secrets::random_bytes::<8>());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The whole application: API under `/api/v1`, operations endpoints at the root.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let v1 = Router::new()
        .merge(auth::router())
        .merge(me::router())
        .merge(users::router())
        .merge(audit::router())
        .merge(federation::router())
        .merge(panels::router())
        .merge(jobs::router(state.config.jobs.max_upload_bytes))
        .merge(node::router())
        .merge(services::router())
        .route("/openapi.json", get(|| async { axum::Json(openapi::document()) }));

    let layers = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal("handler panicked".into()))
        }));

    let body_stall = std::time::Duration::from_secs(state.config.api.body_stall_timeout_secs.max(1));
    Router::new()
        .nest("/api/v1", v1)
        .merge(health::router())
        .merge(ui::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn(security_headers))
        .layer(RequestBodyTimeoutLayer::new(body_stall))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track_metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(layers)
        .with_state(state)
}

/// Headers every answer carries: browsers must only ever reach the node over HTTPS and must not
/// guess content types; API answers (tokens, genotype summaries) must not be cached anywhere.
async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Records every request under its route template (never the raw path, which would let clients
/// create unbounded label values).
async fn track_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_http(method, route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
