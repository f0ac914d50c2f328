//! Login, refresh, logout, API tokens and user administration, with their audit records.
//!
//! The HTTP API and the admin CLI both go through [`AuthService`], so a rule (password policy,
//! throttling, what gets audited) exists once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::jwt::JwtKeys;
use super::password::{self, HashingGate};
use super::throttle::{FinishedBurst, LoginThrottle, ThrottleLimits};
use crate::config::AuthSection;
use crate::identity::NodeIdentity;
use crate::secrets::{random_token, token_digest};
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::sessions::{ApiToken, RefreshUse};
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
    /// The session of the access token used, if the caller came with a JWT.
    pub session_id: Option<String>,
}

/// Tokens handed out by login and refresh.
#[derive(Debug, Clone)]
pub struct SessionTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    /// The password is a one-time one: until it is changed, only that is allowed.
    pub must_change_password: bool,
}

/// Why an auth operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("the node is busy checking passwords; retry in a second")]
    Busy,
    #[error("the password is wrong")]
    WrongPassword,
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
    throttle: Arc<Mutex<LoginThrottle>>,
    hashing: HashingGate,
}

/// Keys the login throttle holds at most (a few hundred bytes each).
const MAX_THROTTLE_KEYS: usize = 100_000;
/// How often finished bursts of refused logins are written to the audit log.
const THROTTLE_SWEEP: Duration = Duration::from_secs(10);

impl AuthService {
    pub fn new(store: Store, jwt: Arc<JwtKeys>, identity: NodeIdentity, config: AuthSection) -> Self {
        let limits = ThrottleLimits {
            pair_free_failures: config.max_failed_logins,
            address_budget: config.address_failure_budget,
            window: Duration::from_secs(config.failed_login_window_secs),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(config.max_login_delay_secs.max(1)),
            max_entries: MAX_THROTTLE_KEYS,
        };
        let hashing = HashingGate::new(config.parallel_password_checks);
        Self { store, jwt, identity, config, throttle: Arc::new(Mutex::new(LoginThrottle::new(limits))), hashing }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        // The table holds counters only; a panic mid-update leaves nothing worth refusing over.
        self.throttle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Password work (argon2) through the node's bounded gate.
    async fn hashing<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        self.hashing.run(work).await.map_err(|_| AuthError::Busy)
    }

    /// Writes one audit row per finished burst of throttled logins, every few seconds, until
    /// the process ends. A burst of a thousand refused attempts is one row with its count.
    pub fn spawn_throttle_auditor(&self) {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(THROTTLE_SWEEP);
            loop {
                tick.tick().await;
                let finished = auth.throttle().sweep(Instant::now());
                for burst in finished {
                    if let Err(e) = auth.audit_burst(&burst).await {
                        tracing::warn!(error = %e, "cannot audit a burst of throttled logins");
                    }
                }
            }
        });
    }

    async fn audit_burst(&self, burst: &FinishedBurst) -> Result<(), AuthError> {
        self.audit(
            AuditEvent::new("node", "local", "auth.login_throttled", Outcome::Denied)
                .target(burst.key.target())
                .details(json!({ "by": burst.key.scope(), "refused_attempts": burst.refused })),
        )
        .await
    }

    /// Refuses an attempt the throttle holds back; the first refusal of a burst is audited at
    /// once, the rest are counted ([`Self::spawn_throttle_auditor`]).
    async fn admit_attempt(&self, username: &str, source: &str, action: &str) -> Result<(), AuthError> {
        let refusal = match self.throttle().check(username, source, Instant::now()) {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        };
        let retry_after_secs = refusal.retry_after.as_millis().div_ceil(1000).max(1) as u64;
        if refusal.starts_burst {
            let actor = Actor::user(username, source);
            self.audit(AuditEvent::new(&actor.name, &actor.source, action, Outcome::Denied).target(username).details(
                json!({"reason": "throttled", "by": refusal.key.scope(), "retry_after_secs": retry_after_secs}),
            ))
            .await?;
        }
        Err(AuthError::Throttled { retry_after_secs })
    }

    /// Checks `password` for `user` as a repeat confirmation (API-token creation, own password
    /// change), throttled like a login.
    async fn confirm_password(&self, user: &User, password: &str, source: &str, action: &str) -> Result<(), AuthError> {
        self.admit_attempt(&user.username, source, action).await?;
        let (given, stored) = (password.to_string(), user.password_hash.clone());
        if self.hashing(move || password::verify(&given, &stored)).await? {
            return Ok(());
        }
        self.failed_attempt(&user.username, source, action, "wrong password").await?;
        Err(AuthError::WrongPassword)
    }

    /// A password check that failed: it lengthens the throttle's delay and is audited.
    async fn failed_attempt(&self, username: &str, source: &str, action: &str, reason: &str) -> Result<(), AuthError> {
        self.throttle().record_failure(username, source, Instant::now());
        let actor = Actor::user(username, source);
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, action, Outcome::Failure)
                .target(username)
                .details(json!({ "reason": reason })),
        )
        .await
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

    /// Checks a password and opens a session. Throttled per (user name, address) and per
    /// address, known name or not, so the answer does not reveal whether a name exists.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source: &str,
    ) -> Result<(SessionTokens, User), AuthError> {
        self.admit_attempt(username, source, "auth.login").await?;
        let actor = Actor::user(username, source);
        let user = self.store.user_by_name(username).await?;
        let given = password.to_string();
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self
            .hashing(move || match stored {
                Some(stored) => password::verify(&given, &stored),
                None => {
                    password::verify_against_dummy(&given);
                    false
                }
            })
            .await?;
        let user = match user {
            Some(u) if verified && !u.disabled => u,
            other => {
                let reason = match other {
                    Some(u) if u.disabled && verified => "account disabled",
                    Some(_) => "wrong password",
                    None => "unknown user",
                };
                self.failed_attempt(username, source, "auth.login", reason).await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        self.throttle().record_success(username, source);
        let tokens = self.open_session(&user).await?;
        self.audit(AuditEvent::new(&actor.name, &actor.source, "auth.login", Outcome::Success).target(username))
            .await?;
        Ok((tokens, user))
    }

    fn refresh_expiry(&self) -> i64 {
        now_ms() + self.config.refresh_token_ttl_secs as i64 * 1000
    }

    async fn open_session(&self, user: &User) -> Result<SessionTokens, AuthError> {
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX);
        let session_id = self.store.open_session(user.id, &token_digest(&refresh_token), self.refresh_expiry()).await?;
        Ok(self.tokens_for(user, &session_id, refresh_token))
    }

    fn tokens_for(&self, user: &User, session_id: &str, refresh_token: String) -> SessionTokens {
        SessionTokens {
            access_token: self.jwt.issue(user, session_id),
            refresh_token,
            expires_in: self.jwt.ttl_secs(),
            must_change_password: user.must_change_password,
        }
    }

    /// Trades a refresh token for a new access token and a new refresh token (rotation: the old
    /// refresh token stops working). A spent token presented again ends its whole session.
    pub async fn refresh(&self, refresh_token: &str, source: &str) -> Result<SessionTokens, AuthError> {
        let successor = random_token(REFRESH_TOKEN_PREFIX);
        let used = self
            .store
            .use_refresh_token(&token_digest(refresh_token), &token_digest(&successor), self.refresh_expiry())
            .await?;
        let (user_id, session_id) = match used {
            RefreshUse::Rotated { user_id, session_id } => (user_id, session_id),
            RefreshUse::Replayed { user_id, session_id } => {
                let user = self.store.user_by_id(user_id).await?;
                let name = user.map(|u| u.username).unwrap_or_default();
                let actor = Actor::user(&name, source);
                self.audit(
                    AuditEvent::new(&actor.name, &actor.source, "auth.refresh", Outcome::Denied)
                        .target(&name)
                        .details(json!({"reason": "a spent refresh token was replayed; its session is ended",
                                        "session": session_id})),
                )
                .await?;
                return Err(AuthError::Unauthenticated);
            }
            RefreshUse::Refused => return Err(AuthError::Unauthenticated),
        };
        let user = self.store.user_by_id(user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.disabled {
            return Err(AuthError::Unauthenticated);
        }
        Ok(self.tokens_for(&user, &session_id, successor))
    }

    /// Ends the caller's session (its access token and refresh tokens) and the session of the
    /// refresh token given, if it is the caller's. Idempotent.
    pub async fn logout(&self, principal: &Principal, refresh_token: &str, source: &str) -> Result<(), AuthError> {
        let mut ended = Vec::new();
        if let Some(session_id) = &principal.session_id {
            ended.push(session_id.clone());
        }
        if let Some(session_id) =
            self.store.session_of_refresh_token(&token_digest(refresh_token), principal.user.id).await?
            && !ended.contains(&session_id)
        {
            ended.push(session_id);
        }
        for session_id in &ended {
            self.store.end_session(session_id, "logout").await?;
        }
        let actor = Actor::user(&principal.user.username, source);
        let outcome = if ended.is_empty() { Outcome::Failure } else { Outcome::Success };
        self.audit(AuditEvent::new(&actor.name, &actor.source, "auth.logout", outcome)).await
    }

    /// Resolves an `Authorization: Bearer` credential (JWT or API token) to a live user.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        let (user_id, api_token_id, session_id) = if bearer.starts_with(API_TOKEN_PREFIX) {
            let (user_id, token_id) =
                self.store.use_api_token(&token_digest(bearer)).await?.ok_or(AuthError::Unauthenticated)?;
            (user_id, Some(token_id), None)
        } else {
            let claims = self.jwt.verify(bearer).map_err(|_| AuthError::Unauthenticated)?;
            let user_id = claims.sub.parse::<i64>().map_err(|_| AuthError::Unauthenticated)?;
            (user_id, None, Some(claims.sid))
        };
        // Re-reading the user makes a disable or role change take effect on the next request,
        // not when the 15-minute token expires.
        let user = self.store.user_by_id(user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.disabled {
            return Err(AuthError::Unauthenticated);
        }
        if let Some(session_id) = &session_id {
            let session = self.store.live_session(session_id).await?.ok_or(AuthError::Unauthenticated)?;
            if session.user_id != user.id || session.created_at < user.sessions_valid_after {
                return Err(AuthError::Unauthenticated);
            }
        }
        Ok(Principal { user, api_token_id, session_id })
    }

    /// Creates an API token for `user`, who confirms with their password (a stolen access
    /// token must not turn into a long-lived credential). The token is returned once and
    /// stored only as a digest.
    pub async fn create_api_token(
        &self,
        user: &User,
        password: &str,
        name: &str,
        expires_in_days: u32,
        source: &str,
    ) -> Result<(String, ApiToken), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AuthError::Invalid("a token name has 1 to 100 characters".into()));
        }
        if expires_in_days == 0 || expires_in_days > self.config.max_api_token_days {
            return Err(AuthError::Invalid(format!(
                "expires_in_days must be between 1 and {}",
                self.config.max_api_token_days
            )));
        }
        self.confirm_password(user, password, source, "token.create").await?;
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

    /// Creates a user after checking the name and the password policy. A `one_time` password
    /// (one the node generated) must be changed at first login.
    pub async fn create_user(
        &self,
        actor: &Actor,
        username: &str,
        password: &str,
        role: Role,
        one_time: bool,
    ) -> Result<User, AuthError> {
        password::check_username(username).map_err(AuthError::Invalid)?;
        password::check_policy(username, password).map_err(AuthError::Invalid)?;
        let pw = password.to_string();
        let hash = self.hashing(move || password::hash(&pw)).await?;
        let user = self.store.create_user(username, &hash, role, one_time).await?;
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.create", Outcome::Success)
                .target(username)
                .details(json!({ "role": role, "one_time_password": one_time })),
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

    /// Changes a user's role, ending every session and API token they have: what was granted
    /// under the old role is not carried into the new one.
    pub async fn set_role(&self, actor: &Actor, user: &User, role: Role) -> Result<(), AuthError> {
        if role != Role::Admin {
            self.keep_an_admin(user).await?;
        }
        self.store.set_user_role(user.id, role).await?;
        if role != user.role {
            self.store.end_all_sessions(user.id, "role changed", true).await?;
        }
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.set_role", Outcome::Success)
                .target(&user.username)
                .details(json!({ "from": user.role, "to": role })),
        )
        .await
    }

    /// Disables (ending every session and API token) or re-enables a user.
    pub async fn set_disabled(&self, actor: &Actor, user: &User, disabled: bool) -> Result<(), AuthError> {
        if disabled {
            self.keep_an_admin(user).await?;
        }
        self.store.set_user_disabled(user.id, disabled).await?;
        if disabled {
            self.store.end_all_sessions(user.id, "user disabled", true).await?;
        }
        let action = if disabled { "user.disable" } else { "user.enable" };
        self.audit(AuditEvent::new(&actor.name, &actor.source, action, Outcome::Success).target(&user.username)).await
    }

    /// Sets a new password (policy-checked) for someone else and ends every session and API
    /// token of theirs. A `one_time` password must be changed at their next login.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        user: &User,
        new_password: &str,
        one_time: bool,
    ) -> Result<(), AuthError> {
        password::check_policy(&user.username, new_password).map_err(AuthError::Invalid)?;
        let pw = new_password.to_string();
        let hash = self.hashing(move || password::hash(&pw)).await?;
        self.store.set_user_password(user.id, &hash, one_time).await?;
        self.store.end_all_sessions(user.id, "password reset", true).await?;
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.reset_password", Outcome::Success)
                .target(&user.username)
                .details(json!({ "one_time_password": one_time })),
        )
        .await
    }

    /// A user changes their own password, confirming the current one. Every session of theirs
    /// ends (a thief's included); the caller gets a fresh one. API tokens stay: the user
    /// revokes those they no longer trust.
    pub async fn change_own_password(
        &self,
        principal: &Principal,
        current: &str,
        new_password: &str,
        source: &str,
    ) -> Result<SessionTokens, AuthError> {
        let user = &principal.user;
        self.confirm_password(user, current, source, "user.change_password").await?;
        password::check_policy(&user.username, new_password).map_err(AuthError::Invalid)?;
        if current == new_password {
            return Err(AuthError::Invalid("the new password must differ from the current one".into()));
        }
        let pw = new_password.to_string();
        let hash = self.hashing(move || password::hash(&pw)).await?;
        self.store.set_user_password(user.id, &hash, false).await?;
        self.store.end_all_sessions(user.id, "password changed", false).await?;
        let user = self.store.user_by_id(user.id).await?.ok_or(AuthError::NotFound("user"))?;
        let tokens = self.open_session(&user).await?;
        let actor = Actor::user(&user.username, source);
        self.audit(
            AuditEvent::new(&actor.name, &actor.source, "user.change_password", Outcome::Success)
                .target(&user.username),
        )
        .await?;
        Ok(tokens)
    }
}
