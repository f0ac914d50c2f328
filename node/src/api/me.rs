//! `/api/v1/me`: the caller's own account and API tokens.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, Auth, ClientIp};
use super::users::UserView;
use crate::store::sessions::ApiToken;
use crate::time::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me).patch(update_me))
        .route("/me/password", put(change_password))
        .route("/me/tokens", get(list_tokens).post(create_token))
        .route("/me/tokens/{id}", delete(revoke_token))
}

/// The caller, and how much of their storage quota their jobs' inputs and results use.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeView {
    #[serde(flatten)]
    user: UserView,
    /// Bytes of inputs and results the caller's jobs hold on this node.
    stored_bytes: i64,
    /// The most they may hold (`jobs.max_stored_bytes_per_user`).
    storage_quota_bytes: u64,
}

/// The caller.
#[utoipa::path(get, operation_id = "getMe", path = "/api/v1/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<MeView>, ApiError> {
    Ok(axum::Json(me_view(&state, &auth.principal.user).await?))
}

async fn me_view(state: &AppState, user: &crate::store::users::User) -> Result<MeView, ApiError> {
    Ok(MeView {
        user: UserView::from(user),
        stored_bytes: state.store.stored_bytes_of(user.id).await?,
        storage_quota_bytes: state.config.jobs.max_stored_bytes_per_user,
    })
}

/// What a user may change of their own account besides the password.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"email": "ada@example.org", "email_notifications": true}))]
pub struct UpdateMeRequest {
    /// Where mails about your jobs go; `""` removes it.
    email: Option<String>,
    /// Whether a mail goes out when a job of yours ends.
    email_notifications: Option<bool>,
}

/// Set your e-mail address, or turn the mails about your jobs on or off.
#[utoipa::path(patch, operation_id = "updateMe", path = "/api/v1/me", tag = "account", security(("bearer" = [])),
    request_body = UpdateMeRequest, responses((status = 200, body = MeView)))]
async fn update_me(
    State(state): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<UpdateMeRequest>,
) -> Result<axum::Json<MeView>, ApiError> {
    let user = &auth.principal.user;
    let actor = format!("user:{}", user.username);
    super::users::set_mail_settings(&state, user, req.email, req.email_notifications, &actor, &ip).await?;
    let user = state.store.user_by_id(user.id).await?.ok_or_else(|| ApiError::NotFound("no such user".into()))?;
    Ok(axum::Json(me_view(&state, &user).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"name": "analysis scripts", "expires_in_days": 30, "password": "correct horse battery staple"}))]
pub struct CreateTokenRequest {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// At most `auth.max_api_token_days` (90 unless the node says otherwise).
    #[schema(minimum = 1)]
    expires_in_days: u32,
    /// The caller's password, again: a stolen access token must not become a lasting one.
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// Change the caller's own password. Every session of theirs ends; the answer is a fresh one.
#[utoipa::path(put, operation_id = "changeMyPassword", path = "/api/v1/me/password", tag = "account", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 200, body = super::auth::TokenResponse),
              (status = 403, description = "the current password is wrong", body = ErrorBody),
              (status = 422, description = "the new password breaks the policy", body = ErrorBody),
              (status = 429, body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> Result<axum::Json<super::auth::TokenResponse>, ApiError> {
    let tokens = state.auth.change_own_password(&auth.principal, &req.current_password, &req.new_password, &ip).await?;
    Ok(axum::Json(tokens.into()))
}

/// An API token, without its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    id: i64,
    name: String,
    created_at: String,
    expires_at: String,
    last_used_at: Option<String>,
    revoked: bool,
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked: t.revoked_at.is_some(),
        }
    }
}

/// A new API token: `token` is shown this once and never again.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    token: String,
    #[serde(flatten)]
    info: TokenView,
}

/// The caller's API tokens.
#[utoipa::path(get, operation_id = "listMyTokens", path = "/api/v1/me/tokens", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = [TokenView])))]
async fn list_tokens(State(state): State<AppState>, auth: Auth) -> Result<axum::Json<Vec<TokenView>>, ApiError> {
    let tokens = state.store.list_api_tokens(auth.principal.user.id).await?;
    Ok(axum::Json(tokens.iter().map(TokenView::from).collect()))
}

/// Create an API token for scripts; accepted wherever a JWT is.
#[utoipa::path(post, operation_id = "createMyToken", path = "/api/v1/me/tokens", tag = "account", security(("bearer" = [])),
    request_body = CreateTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 403, description = "the password is wrong", body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<(StatusCode, axum::Json<CreatedToken>), ApiError> {
    let (token, stored) =
        state.auth.create_api_token(&auth.principal.user, &req.password, &req.name, req.expires_in_days, &ip).await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedToken { token, info: TokenView::from(&stored) })))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(delete, operation_id = "revokeMyToken", path = "/api/v1/me/tokens/{id}", tag = "account", security(("bearer" = [])),
    params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state.auth.revoke_api_token(&auth.principal.user, id, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}
