//! Extractors: authentication and role checks, the client's address, and JSON/query/path
//! parsing whose failures use the API's error format.

use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use crate::store::users::Role;

/// A JSON body; malformed input is a 400/422 in the API's error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query parameters, parsed with the API's error format.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters, parsed with the API's error format.
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Which roles may call a handler. Implemented by the marker types below.
pub trait RolePolicy: Send + Sync + 'static {
    fn allows(role: Role) -> bool;
}

/// Any logged-in user.
pub struct AnyRole;
/// Node administrators only.
pub struct AdminOnly;
/// Administrators and auditors (read access to the audit log).
pub struct AdminOrAuditor;
/// Those who may submit jobs: researchers and administrators.
pub struct Submitter;

impl RolePolicy for AnyRole {
    fn allows(_: Role) -> bool {
        true
    }
}
impl RolePolicy for AdminOnly {
    fn allows(role: Role) -> bool {
        role == Role::Admin
    }
}
impl RolePolicy for Submitter {
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Researcher)
    }
}
impl RolePolicy for AdminOrAuditor {
    fn allows(role: Role) -> bool {
        matches!(role, Role::Admin | Role::Auditor)
    }
}

/// An authenticated caller whose role satisfies `P`. A handler that takes `Auth<AdminOnly>`
/// cannot run for anyone else: the check lives in the type, not in the handler body.
pub struct Auth<P: RolePolicy = AnyRole> {
    pub principal: Principal,
    _policy: PhantomData<P>,
}

impl<P: RolePolicy> FromRequestParts<AppState> for Auth<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer header".into()))?;
        let bearer = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
        let principal = state.auth.authenticate(bearer.trim()).await?;
        if !P::allows(principal.user.role) {
            return Err(ApiError::Forbidden(format!("role `{}` may not use this endpoint", principal.user.role)));
        }
        Ok(Self { principal, _policy: PhantomData })
    }
}

/// The client's IP address as seen on the TCP connection (proxies are not trusted).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Ok(ClientIp(ip))
    }
}
