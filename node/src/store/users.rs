//! Users of this node and their roles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::time::now_ms;

/// What a user may do on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users, panels, services and policy.
    Admin,
    /// Submits jobs and reads their own results.
    Researcher,
    /// Reads the audit log and every job, changes nothing.
    Auditor,
    /// Reads the federation and catalog, nothing else.
    Viewer,
}

impl Role {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Researcher => "researcher",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "researcher" => Ok(Role::Researcher),
            "auditor" => Ok(Role::Auditor),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role {other:?} (expected admin, researcher, auditor or viewer)")),
        }
    }
}

/// A user as stored.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Sessions opened before this instant (ms) are not honoured.
    pub sessions_valid_after: i64,
    /// The password was generated for them: they must change it before anything else.
    pub must_change_password: bool,
    /// Where mails about their jobs go (none: no mails).
    pub email: Option<String>,
    /// Whether they want a mail when a job of theirs ends.
    pub email_notifications: bool,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    password_hash: String,
    role: String,
    disabled: bool,
    created_at: i64,
    updated_at: i64,
    sessions_valid_after: i64,
    must_change_password: bool,
    email: Option<String>,
    email_notifications: bool,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        // The CHECK constraint keeps roles valid; a bad one means the file was edited by hand.
        let role = row.role.parse().map_err(|e: String| StoreError::Database(sqlx::Error::Decode(e.into())))?;
        Ok(User {
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            role,
            disabled: row.disabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sessions_valid_after: row.sessions_valid_after,
            must_change_password: row.must_change_password,
            email: row.email,
            email_notifications: row.email_notifications,
        })
    }
}

const USER_COLUMNS: &str = "id, username, password_hash, role, disabled, created_at, updated_at, \
     sessions_valid_after, must_change_password, email, email_notifications";

impl Store {
    /// Adds a user; a taken user name is [`StoreError::Conflict`]. With `one_time`, the
    /// password must be changed at first login.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        one_time: bool,
    ) -> Result<User, StoreError> {
        let now = now_ms();
        let id = sqlx::query(
            "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at, must_change_password) \
             VALUES (?, ?, ?, 0, ?, ?, ?)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .bind(now)
        .bind(one_time)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, "user"))?
        .last_insert_rowid();
        self.user_by_id(id).await?.ok_or(StoreError::NotFound("user"))
    }

    /// The user with this id, if any.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row: Option<UserRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?;
        row.map(User::try_from).transpose()
    }

    /// The user with this name, if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?");
        let row: Option<UserRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(username).fetch_optional(self.pool()).await?;
        row.map(User::try_from).transpose()
    }

    /// Every user, by id.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        // Other nodes' principals (`peer:...`, see federated_jobs) are not people: not listed.
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username NOT LIKE 'peer:%' ORDER BY id");
        let rows: Vec<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?;
        rows.into_iter().map(User::try_from).collect()
    }

    /// Number of users; zero means the node has not been initialised.
    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(self.pool()).await?)
    }

    /// Number of enabled admins.
    pub async fn count_active_admins(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0")
            .fetch_one(self.pool())
            .await?)
    }

    /// Changes a user's role.
    pub async fn set_user_role(&self, id: i64, role: Role) -> Result<(), StoreError> {
        self.update_user(id, "UPDATE users SET role = ?, updated_at = ? WHERE id = ?", role.as_str()).await
    }

    /// Disables or re-enables a user. The caller ends their sessions ([`Store::end_all_sessions`]).
    pub async fn set_user_disabled(&self, id: i64, disabled: bool) -> Result<(), StoreError> {
        self.update_user(id, "UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?", disabled).await
    }

    /// Sets (or, with `None`, removes) the address mails about the user's jobs go to.
    pub async fn set_user_email(&self, id: i64, email: Option<&str>) -> Result<(), StoreError> {
        self.update_user(id, "UPDATE users SET email = ?, updated_at = ? WHERE id = ?", email).await
    }

    /// Turns the mails about a user's jobs on or off.
    pub async fn set_user_email_notifications(&self, id: i64, on: bool) -> Result<(), StoreError> {
        self.update_user(id, "UPDATE users SET email_notifications = ?, updated_at = ? WHERE id = ?", on).await
    }

    /// Replaces a user's password hash; `one_time` makes them change it at their next login.
    /// The caller ends their sessions ([`Store::end_all_sessions`]).
    pub async fn set_user_password(&self, id: i64, password_hash: &str, one_time: bool) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE users SET password_hash = ?, must_change_password = ?, updated_at = ? WHERE id = ?")
                .bind(password_hash)
                .bind(one_time)
                .bind(now_ms())
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    async fn update_user<'q, T>(&self, id: i64, sql: &'static str, value: T) -> Result<(), StoreError>
    where
        T: sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + 'q,
    {
        let done = sqlx::query(sql).bind(value).bind(now_ms()).bind(id).execute(self.pool()).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }
}
