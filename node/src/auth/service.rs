//! Login, refresh, logout, API tokens and user administration, with their audit records.
//!
//! The HTTP API and the admin CLI both go through [`AuthService`], so a rule (password policy,
//! throttling, what gets audited) exists once.

use std::sync::Arc;

use serde_json::json;

use super::jwt::JwtKeys;
use super::password;
use crate::config::AuthSection;
use crate::identity::NodeIdentity;
use crate::secrets::{random_token, token_digest};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::sessions::ApiToken;
use crate::store::users::{Role, User};
use crate::store::{Store, StoreError};
use crate::time::now_ms;

/// Prefix of API tokens; JWTs never start with it, so the two are told apart without parsing.
pub const API_TOKEN_PREFIX: &str = "fit_";
const REFRESH_TOKEN_PREFIX: &str = "fir_";

/// Who is acting, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user:<name>` or `cli:<os user>`.
    pub name: String,
    /// Client IP address, or `local`.
    pub source: String,
}

impl Actor {
    /// A logged-in user calling the API from `source`.
    pub fn user(username: &str, source: &str) -> Self {
        Self { name: format!("user:{username}"), source: source.to_string() }
    }

    /// The admin CLI on this host, named after the operating-system user running it.
    pub fn cli() -> Self {
        let os_user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions and cannot fail.
            format!("uid{}", unsafe { libc::getuid() })
        });
        Self { name: format!("cli:{os_user}"), source: "local".to_string() }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// The API token used, if the caller came with one rather than a JWT.
    pub api_token_id: Option<i64>,
}

/// Tokens handed out by login and refresh.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

/// Why an auth operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this would leave the node without an enabled admin")]
    LastAdmin,
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => AuthError::NotFound(what),
            StoreError::Conflict(what) => AuthError::Conflict(what),
            other => AuthError::Store(other),
        }
    }
}

/// Authentication and accounts over one store.
#[derive(Clone)]
pub struct AuthService {
    store: Store,
    jwt: Arc<JwtKeys>,
    identity: NodeIdentity,
    config: AuthSection,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| AuthError::Internal(e.to_string()))
}

impl AuthService {
    pub fn new(store: Store, jwt: Arc<JwtKeys>, identity: NodeIdentity, config: AuthSection) -> Self {
        Self { store, jwt, identity, config }
    }

    /// The store, for callers that also need it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends to the audit log, signed by this node.
    pub async fn audit(&self, event: AuditEvent) -> Result<(), AuthError> {
        self.store.append_audit(&self.identity, event).await?;
        Ok(())
    }

    /// Checks a password and opens a session. Throttled per user name (known or not), so the
    /// answer does not reveal whether a name exists.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: &str,
    ) -> Result<(SessionTokens, User), AuthError> {
        let window_ms = self.config.failed_login_window_secs as i64 * 1000;
        let since = now_ms() - window_ms;
        let (failures, oldest) = self.store.recent_login_failures(username, since).await?;
        let actor = Actor::user(username, source);
        if failures >= i64::from(self.config.max_failed_logins) {
            let retry_after_ms = oldest.unwrap_or(now_ms()) + window_ms - now_ms();
            let retry_after_secs = (retry_after_ms.max(1000) as u64).div_ceil(1000);
            self.audit(
                AuditEvent::new(&actor.name, &actor.source, "auth.login", Outcome::Denied)
                    .target(username)
                    .details(json!({"reason": "throttled", "recent_failures": failures})),
            )
            .await?;
            return Err(AuthError::Throttled { retry_after_secs });
        }

        let user = self.store.user_by_name(username).await?;
        let password_owned = password.to_string();
        let verified = match &user {
            Some(u) => {
                let stored = u.password_hash.clone();
                blocking(move || password::verify(&password_owned, &stored)).await?
            }
            None => {
                blocking(move || password::verify_against_dummy(&password_owned)).await?;
                false
            }
        };
        let user = match user {
            Some(u) if verified && !u.disabled => u,
            other => {
                let reason = match other {
                    Some(u) if u.disabled && verified => "account disabled",
                    Some(_) => "wrong password",
                    None => "unknown user",
                };
                self.store.record_login_failure(username, since).await?;
                self.audit(
                    AuditEvent::new(&actor.name, &actor.source, "auth.login", Outcome::Failure)
                        .target(username)
                        .details(json!({ "reason": reason })),
                )
                .await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        self.store.clear_login_failures(username).await?;
        let tokens = self.open_session(&user).await?;
        self.audit(AuditEvent::new(&actor.name, &actor.source, "auth.login", Outcome::Success).target(username))
            .await?;
        Ok((tokens, user))
    }

    async fn open_session(&self, user: &User) -> Result<SessionTokens, AuthError> {
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX);
        let expires_at = now_ms() + self.config.refresh_token_ttl_secs as i64 * 1000;
        self.store.insert_refresh_token(user.id, &token_digest(&refresh_token), expires_at).await?;
        Ok(SessionTokens { access_token: self.jwt.issue(user), refresh_token, expires_in: self.jwt.ttl_secs() })
    }

    /// Trades a refresh token for a new access token and a new refresh token (rotation: the old
    /// refresh token stops working).
    pub async fn refresh(&self, refresh_token: &str) -> Result<SessionTokens, AuthError> {
        let user_id =
            self.store.consume_refresh_token(&token_digest(refresh_token)).await?.ok_or(AuthError::Unauthenticated)?;
        let user = self.store.user_by_id(user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.disabled {
            return Err(AuthError::Unauthenticated);
        }
        self.open_session(&user).await
    }

    /// Revokes a refresh token (logout). Unknown tokens are not an error: logout is idempotent.
    pub async fn logout(&self, principal: &Principal, refresh_token: &str, source: &str) -> Result<(), AuthError> {
        let revoked = self.store.consume_refresh_token(&token_digest(refresh_token)).await?;
        let actor = Actor::user(&principal.user.username, source);
        let outcome = if revoked == Some(principal.user.id) { Outcome::Success } else { Outcome::Failure };
        self.audit(AuditEvent::new(&actor.name, &actor.source, "auth.logout", outcome)).await
    }

    /// Resolves an `Authorization: Bearer` credential (JWT or API token) to a live user.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let (user_id, api_token_id) = if bearer.starts_with(API_TOKEN_PREFIX) {
            let (user_id, token_id) =
                self.store.use_api_token(&token_digest(bearer)).await?.ok_or(AuthError::Unauthenticated)?;
            (user_id, Some(token_id))
        } else {
            let claims = self.jwt.verify(bearer).map_err(|_| AuthError::Unauthenticated)?;
            (claims.sub.parse::<i64>().map_err(|_| AuthError::Unauthenticated)?, None)
        };
        // Re-reading the user makes a disable or role change take effect on the next request,
        // not when the 15-minute token expires.
        let user = self.store.user_by_id(user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.disabled {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal { user, api_token_id })
    }

    /// Creates an API token for `user`; the token is returned once and stored only as a digest.
    pub async fn create_api_token(
        &self,
        user: &User,
        name: &str,
        expires_in_days: u32,
        source: &str,
    ) -> Result<(String, ApiToken), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(AuthError::Invalid("a token name has 1 to 100 characters".into()));
        }
        if expires_in_days == 0 || expires_in_days > self.config.max_api_token_days {
            return Err(AuthError::Invalid(format!(
                "expires_in_days must be between 1 and {}",
                self.config.max_api_token_days
            )));
        }
        let token = random_token(API_TOKEN_PREFIX);
        let expires_at = now_ms() + i64::from(expires_in_days) * 86_400_000;
        let stored = self.store.insert_api_token(user.id, name, &token_digest(&token), expires_at).await?;
        let actor = Actor::user(&user.username, source);
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "token.create", Outcome::Success)
                .target(stored.id.to_string())
                .details(json!({ "name": name, "expires_at": stored.expires_at })),
        )
        .await?;
        Ok((token, stored))
    }

    /// Revokes one of `user`'s API tokens.
    pub async fn revoke_api_token(&self, user: &User, token_id: i64, source: &str) -> Result<(), AuthError> {
        self.store.revoke_api_token(user.id, token_id).await?;
        let actor = Actor::user(&user.username, source);
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "token.revoke", Outcome::Success).target(token_id.to_string()),
        )
        .await
    }

    /// Creates a user after checking the name and the password policy.
    pub async fn create_user(
        &self,
        actor: &Actor,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<User, AuthError> {
        password::check_username(username).map_err(AuthError::Invalid)?;
        password::check_policy(username, password).map_err(AuthError::Invalid)?;
        let pw = password.to_string();
        let hash = blocking(move || password::hash(&pw)).await?;
        let user = self.store.create_user(username, &hash, role).await?;
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.create", Outcome::Success)
                .target(username)
                .details(json!({ "role": role })),
        )
        .await?;
        Ok(user)
    }

    /// Refuses a change that would leave the node without an enabled admin: nobody could
    /// then manage it except by editing the database.
    async fn keep_an_admin(&self, user: &User) -> Result<(), AuthError> {
        if user.role == Role::Admin && !user.disabled && self.store.count_active_admins().await? <= 1 {
            return Err(AuthError::LastAdmin);
        }
        Ok(())
    }

    /// Changes a user's role.
    pub async fn set_role(&self, actor: &Actor, user: &User, role: Role) -> Result<(), AuthError> {
        if role != Role::Admin {
            self.keep_an_admin(user).await?;
        }
        self.store.set_user_role(user.id, role).await?;
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.set_role", Outcome::Success)
                .target(&user.username)
                .details(json!({ "from": user.role, "to": role })),
        )
        .await
    }

    /// Disables (revoking every session and token) or re-enables a user.
    pub async fn set_disabled(&self, actor: &Actor, user: &User, disabled: bool) -> Result<(), AuthError> {
        if disabled {
            self.keep_an_admin(user).await?;
        }
        self.store.set_user_disabled(user.id, disabled).await?;
        let action = if disabled { "user.disable" } else { "user.enable" };
        self.audit(AuditEvent::new(&actor.name, &actor.source, action, Outcome::Success).target(&user.username)).await
    }

    /// Sets a new password (policy-checked) and ends the user's sessions.
    pub async fn reset_password(&self, actor: &Actor, user: &User, new_password: &str) -> Result<(), AuthError> {
        password::check_policy(&user.username, new_password).map_err(AuthError::Invalid)?;
        let pw = new_password.to_string();
        let hash = blocking(move || password::hash(&pw)).await?;
        self.store.set_user_password(user.id, &hash).await?;
        self.store.clear_login_failures(&user.username).await?;
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.reset_password", Outcome::Success).target(&user.username),
        )
        .await
    }
}
