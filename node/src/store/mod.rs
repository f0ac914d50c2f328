//! The node's local stores in SQLite (WAL mode), through sqlx.
//!
//! One module per table group; each owns its SQL. Migrations are embedded in the binary and run
//! whenever a store is opened, so `init`, `run` and the admin CLI (which may run beside a live
//! daemon: WAL allows it) always see the current schema.

pub mod audit;
pub mod engine_tasks;
pub mod federated_jobs;
pub mod federation;
pub mod jobs;
pub mod mail;
pub mod panels;
pub mod services;
pub mod sessions;
pub mod users;
pub mod witness;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
}

impl StoreError {
    /// Maps a UNIQUE-constraint violation to [`StoreError::Conflict`].
    pub(crate) fn unique_as_conflict(err: sqlx::Error, what: &'static str) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Database(err),
        }
    }
}

/// Handle on the node database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if asked) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path, create: bool) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL loses no committed transaction on a process crash, only
            // (possibly) the last ones on power loss; FULL would fsync every commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The admin CLI and the daemon share the file; wait for each other's write locks.
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("src/store/migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for the store modules.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Writes a consistent copy of the whole database to `dest` (which must not exist) while
    /// the node keeps running: `VACUUM INTO` reads one snapshot and takes no write lock.
    pub async fn snapshot_into(&self, dest: &Path) -> Result<(), StoreError> {
        sqlx::query("VACUUM INTO ?").bind(dest.to_string_lossy().into_owned()).execute(&self.pool).await?;
        Ok(())
    }

    /// The newest migration applied to this database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await?;
        Ok(version.unwrap_or(0))
    }

    /// The newest migration this build knows: databases up to it open, newer ones do not.
    pub fn latest_schema_version() -> i64 {
        sqlx::migrate!("src/store/migrations").iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Checkpoints the WAL and closes every connection.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migrations are forward-only: a database made by any earlier set of them (each schema the
    /// node has had), holding a user, opens with today's set and keeps the user.
    #[tokio::test]
    async fn a_database_of_every_earlier_schema_upgrades_to_todays() {
        let today = sqlx::migrate!("src/store/migrations");
        let count = today.migrations.len();
        for shipped in 1..count {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("node.db");
            let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
            let mut earlier = sqlx::migrate!("src/store/migrations");
            earlier.migrations = std::borrow::Cow::Owned(today.migrations[..shipped].to_vec());
            earlier.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) \
                 VALUES ('ada', 'hash', 'researcher', 0, 1, 1)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
            let store = Store::open(&path, false)
                .await
                .unwrap_or_else(|e| panic!("a database of migrations 1..={shipped} does not upgrade: {e}"));
            let ada = store.user_by_name("ada").await.unwrap().expect("the user survives the upgrade");
            assert_eq!(ada.role, users::Role::Researcher);
            assert!(!ada.must_change_password && ada.email.is_none() && ada.email_notifications);
            store.close().await;
        }
    }
}
