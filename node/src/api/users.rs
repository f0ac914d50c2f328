//! `/api/v1/users`: user administration (admin only).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminOnly, ApiJson, ApiPath, Auth, ClientIp};
use crate::auth::service::Actor;
use crate::secrets::random_password;
use crate::store::users::{Role, User};
use crate::time::rfc3339;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", patch(update_user))
        .route("/users/{id}/reset-password", post(reset_password))
}

/// A user as the API shows it (never the password hash).
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    id: i64,
    username: String,
    role: Role,
    disabled: bool,
    /// Holds a one-time password it has yet to change.
    must_change_password: bool,
    /// Where mails about their jobs go.
    email: Option<String>,
    /// Whether a mail goes out when a job of theirs ends (if the node sends mails).
    email_notifications: bool,
    created_at: String,
    updated_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            role: u.role,
            disabled: u.disabled,
            must_change_password: u.must_change_password,
            email: u.email.clone(),
            email_notifications: u.email_notifications,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateUserRequest {
    username: String,
    role: Role,
    /// If absent, the node generates a one-time password, returns it once, and the user must
    /// change it at first login.
    password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    user: UserView,
    /// Present only when the node generated the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    role: Option<Role>,
    disabled: Option<bool>,
    /// Where mails about their jobs go; `""` removes it.
    #[schema(example = "ada@example.org")]
    email: Option<String>,
    email_notifications: Option<bool>,
}

/// Sets a user's e-mail address (`""` removes it) and whether they get mails, auditing it.
pub(super) async fn set_mail_settings(
    state: &AppState,
    user: &User,
    email: Option<String>,
    notifications: Option<bool>,
    actor: &str,
    ip: &str,
) -> Result<(), ApiError> {
    use crate::store::audit::{AuditEvent, Outcome};
    if let Some(email) = email.map(|e| e.trim().to_string()) {
        if !email.is_empty() && !crate::mail::valid_address(&email) {
            return Err(ApiError::Unprocessable(format!("{email:?} is not an e-mail address")));
        }
        state.store.set_user_email(user.id, Some(email.as_str()).filter(|e| !e.is_empty())).await?;
        let event = AuditEvent::new(actor, ip, "user.email_changed", Outcome::Success)
            .target(&user.username)
            .details(serde_json::json!({ "email_set": !email.is_empty() }));
        state.store.append_audit(&state.identity, event).await?;
    }
    if let Some(on) = notifications.filter(|on| *on != user.email_notifications) {
        state.store.set_user_email_notifications(user.id, on).await?;
        let event = AuditEvent::new(actor, ip, "user.email_notifications", Outcome::Success)
            .target(&user.username)
            .details(serde_json::json!({ "on": on }));
        state.store.append_audit(&state.identity, event).await?;
    }
    Ok(())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetPasswordRequest {
    /// If absent, the node generates a one-time password, returns it once, and the user must
    /// change it at first login.
    password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResetPasswordResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<String>,
}

fn actor(auth: &Auth<AdminOnly>, ip: &str) -> Actor {
    Actor::user(&auth.principal.user.username, ip)
}

async fn target(state: &AppState, id: i64) -> Result<User, ApiError> {
    state.store.user_by_id(id).await?.ok_or_else(|| ApiError::NotFound(format!("no user with id {id}")))
}

/// Every user of this node.
#[utoipa::path(get, operation_id = "listUsers", path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = [UserView]), (status = 403, body = ErrorBody)))]
async fn list_users(State(state): State<AppState>, _: Auth<AdminOnly>) -> Result<axum::Json<Vec<UserView>>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(axum::Json(users.iter().map(UserView::from).collect()))
}

/// Create a user.
#[utoipa::path(post, operation_id = "createUser", path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, axum::Json<CreatedUser>), ApiError> {
    let generated = req.password.is_none().then(random_password);
    let password = req.password.or_else(|| generated.clone()).unwrap_or_default();
    let user =
        state.auth.create_user(&actor(&auth, &ip), &req.username, &password, req.role, generated.is_some()).await?;
    Ok((StatusCode::CREATED, axum::Json(CreatedUser { user: UserView::from(&user), generated_password: generated })))
}

/// Change a user's role, disable / re-enable them, or set their e-mail address.
#[utoipa::path(patch, operation_id = "updateUser", path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> Result<axum::Json<UserView>, ApiError> {
    let user = target(&state, id).await?;
    let actor = actor(&auth, &ip);
    if let Some(role) = req.role.filter(|r| *r != user.role) {
        state.auth.set_role(&actor, &user, role).await?;
    }
    if let Some(disabled) = req.disabled.filter(|d| *d != user.disabled) {
        state.auth.set_disabled(&actor, &user, disabled).await?;
    }
    let who = format!("user:{}", auth.principal.user.username);
    set_mail_settings(&state, &user, req.email, req.email_notifications, &who, &ip).await?;
    Ok(axum::Json(UserView::from(&target(&state, id).await?)))
}

/// Set a new password for a user; every session and API token of theirs ends. A generated
/// password is a one-time one.
#[utoipa::path(post, operation_id = "resetUserPassword", path = "/api/v1/users/{id}/reset-password", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ResetPasswordRequest,
    responses((status = 200, body = ResetPasswordResponse), (status = 404, body = ErrorBody)))]
async fn reset_password(
    State(state): State<AppState>,
    auth: Auth<AdminOnly>,
    ClientIp(ip): ClientIp,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ResetPasswordRequest>,
) -> Result<axum::Json<ResetPasswordResponse>, ApiError> {
    let user = target(&state, id).await?;
    let generated = req.password.is_none().then(random_password);
    let password = req.password.or_else(|| generated.clone()).unwrap_or_default();
    state.auth.reset_password(&actor(&auth, &ip), &user, &password, generated.is_some()).await?;
    Ok(axum::Json(ResetPasswordResponse { generated_password: generated }))
}
