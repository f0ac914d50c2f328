//! A node's own state opened from its node.toml: the database, identity and auth service.
//!
//! The daemon runs on it and every admin command (user, panel, backup, restore, ...) opens it,
//! so it lives below both: the CLI depends on the daemon and this, the daemon only on this.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::auth::{AuthService, JwtKeys};
use crate::config::NodeConfig;
use crate::identity::NodeIdentity;
use crate::store::Store;

/// An initialised node opened for an admin command or the daemon.
pub struct NodeHandle {
    pub config: NodeConfig,
    pub store: Store,
    pub identity: NodeIdentity,
    pub auth: AuthService,
}

impl NodeHandle {
    /// Opens the node described by `config_path` (its database must exist).
    pub async fn open(config_path: &Path) -> anyhow::Result<Self> {
        Self::from_config(NodeConfig::load(config_path)?).await
    }

    /// Opens the node of an already loaded config: its store, identity and auth service.
    pub async fn from_config(config: NodeConfig) -> anyhow::Result<Self> {
        let db = config.database_path();
        anyhow::ensure!(db.exists(), "no database at {}; run `fedimpute init` first", db.display());
        let store = Store::open(&db, false).await.with_context(|| format!("opening {}", db.display()))?;
        let identity = NodeIdentity::load(&config.node_key_path())?;
        let jwt =
            JwtKeys::load(&config.jwt_key_path(), &identity.peer_id().to_string(), config.auth.access_token_ttl_secs)?;
        let auth = AuthService::new(store.clone(), Arc::new(jwt), identity.clone(), config.auth.clone());
        Ok(Self { config, store, identity, auth })
    }
}
