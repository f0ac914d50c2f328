//! `/api/v1/auth`: password login, token refresh, logout.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Auth, ClientIp};
use crate::auth::service::SessionTokens;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"username": "ada", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// A session: a short-lived access JWT and a single-use refresh token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until `access_token` expires.
    expires_in: i64,
    /// The password is a one-time one: until `PUT /api/v1/me/password` changes it, every other
    /// endpoint answers 403 `password_change_required`.
    must_change_password: bool,
}

impl From<SessionTokens> for TokenResponse {
    fn from(t: SessionTokens) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            must_change_password: t.must_change_password,
        }
    }
}

/// Log in with a user name and password.
#[utoipa::path(post, operation_id = "logIn", path = "/api/v1/auth/login", request_body = LoginRequest, tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody),
              (status = 429, description = "too many failed logins, or the node is busy checking passwords; see Retry-After", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let (tokens, _) = state.auth.login(&req.username, &req.password, &ip).await?;
    Ok(axum::Json(tokens.into()))
}

/// Trade a refresh token for new tokens of the same session; the old refresh token stops
/// working, and presenting it again ends the session.
#[utoipa::path(post, operation_id = "refreshSession", path = "/api/v1/auth/refresh", request_body = RefreshRequest, tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    Ok(axum::Json(state.auth.refresh(&req.refresh_token, &ip).await?.into()))
}

/// End the caller's session: its access token and refresh tokens stop working at once.
#[utoipa::path(post, operation_id = "logOut", path = "/api/v1/auth/logout", request_body = RefreshRequest, tag = "auth",
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state.auth.logout(&auth.principal, &req.refresh_token, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}
