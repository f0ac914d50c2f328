//! Extractors: authentication and role checks, the client's address, and JSON/query/path
//! parsing whose failures use the API's error format.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, OriginalUri, Path, Query};
use axum::http::HeaderName;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use crate::config::ProxyNet;
use crate::store::users::Role;

/// A JSON object body; malformed input is a 400/422 in the API's error format. Every request
/// body of the API is an object: anything else is refused before it reaches serde, whose
/// derived structs would also take an array of their fields in order (`[null, null]`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::Unprocessable("the request body must be a JSON object".into()));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| ApiError::Unprocessable(e.to_string()))
    }
}

/// A multipart body; one that is not multipart, or has no boundary, is a 400 in the API's error
/// format.
pub struct ApiMultipart(pub axum::extract::Multipart);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiMultipart {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(axum::extract::Multipart::from_request(req, state).await?))
    }
}

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

/// What a user with a one-time password may reach until they have changed it.
const ONE_TIME_PASSWORD_PATHS: [&str; 3] = ["/api/v1/me", "/api/v1/me/password", "/api/v1/auth/logout"];

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
        // Inside a nested router `uri` has lost its prefix; OriginalUri has the path as sent.
        let path = parts.extensions.get::<OriginalUri>().map_or(parts.uri.path(), |original| original.path());
        if principal.user.must_change_password && !ONE_TIME_PASSWORD_PATHS.contains(&path) {
            return Err(ApiError::PasswordChangeRequired);
        }
        if !P::allows(principal.user.role) {
            return Err(ApiError::Forbidden(format!("role `{}` may not use this endpoint", principal.user.role)));
        }
        Ok(Self { principal, _policy: PhantomData })
    }
}

/// The client's IP address: the TCP peer's, or, when the peer is a trusted proxy
/// (`api.trusted_proxies`), the nearest address in `X-Forwarded-For` that is not one. A client
/// cannot forge its address by sending the header itself: from an untrusted peer it is ignored.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(ClientIp("unknown".to_string()));
        };
        let forwarded = parts.headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok());
        Ok(ClientIp(client_address(peer.ip(), forwarded, &state.config.api.trusted_proxies).to_string()))
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Walks `X-Forwarded-For` from the nearest hop back while the hops are trusted proxies; the
/// first untrusted one is the client. Garbage in the header stops the walk at the last trusted
/// hop, which then counts as the client (it is the one that passed the garbage on).
pub fn client_address<'a>(peer: IpAddr, forwarded: impl Iterator<Item = &'a str>, trusted: &[ProxyNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|value| value.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ProxyNet> {
        list.iter().map(|s| ProxyNet::try_from(s.to_string()).unwrap()).collect()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = nets(&["10.0.0.0/24", "127.0.0.1"]);
        // From an untrusted peer the header is the client's own claim: ignored.
        assert_eq!(client_address(ip("192.0.2.7"), ["1.2.3.4"].into_iter(), &trusted), ip("192.0.2.7"));
        // Through the proxy: the nearest untrusted hop, not a spoofed one further left.
        assert_eq!(
            client_address(ip("10.0.0.5"), ["6.6.6.6, 198.51.100.9", "10.0.0.4"].into_iter(), &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(client_address(ip("127.0.0.1"), ["garbage"].into_iter(), &trusted), ip("127.0.0.1"));
        assert_eq!(client_address(ip("127.0.0.1"), std::iter::empty(), &trusted), ip("127.0.0.1"));
        assert_eq!(client_address(ip("127.0.0.1"), ["1.2.3.4"].into_iter(), &[]), ip("127.0.0.1"));
    }
}
