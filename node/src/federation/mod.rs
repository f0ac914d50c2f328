//! The node's place in the federation: the config it trusts, the catalog of what members offer,
//! and what it knows of each peer's connection.
//!
//! This is core, not network: the API reads it, the p2p layer feeds it through
//! [`runtime`], and neither calls the other.

pub mod catalog;
pub mod expiry;
pub mod naming;
pub mod peers;
pub mod policy;
pub mod refusals;
pub mod runtime;
pub mod witness;

/// An advert with plain values, for tests to adjust.
#[cfg(test)]
pub(crate) fn test_advert(peer_id: &str) -> fedimpute_protocol::advert::Advert {
    fedimpute_protocol::advert::Advert {
        federation_id: "t".into(),
        peer_id: peer_id.into(),
        seq: 1,
        issued_at_ms: 0,
        node_name: "n".into(),
        institution: "I".into(),
        software_version: "0".into(),
        protocol_major: 1,
        api_url: None,
        config_version: 1,
        config_digest: String::new(),
        services: vec![],
        panels: vec![],
        data_policy: Default::default(),
        audit_head: None,
    }
}

use std::sync::Arc;

use fedimpute_protocol::federation::{ConfigRejection, FederationConfig, rfc3339};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::identity::NodeIdentity;
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::{Store, StoreError};

/// Who offered a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `fedimpute federation apply` on this host.
    Cli { actor: String },
    /// `POST /api/v1/federation/config` by an admin.
    Api { actor: String, ip: String },
    /// A member that announced a newer version.
    Peer(String),
}

impl ConfigSource {
    fn label(&self) -> String {
        match self {
            ConfigSource::Cli { .. } => "cli".into(),
            ConfigSource::Api { .. } => "api".into(),
            ConfigSource::Peer(p) => format!("peer:{p}"),
        }
    }

    fn actor_and_source(&self) -> (String, String) {
        match self {
            ConfigSource::Cli { actor } => (actor.clone(), "local".into()),
            ConfigSource::Api { actor, ip } => (actor.clone(), ip.clone()),
            ConfigSource::Peer(p) => (format!("peer:{p}"), p.clone()),
        }
    }

    fn is_local_admin(&self) -> bool {
        !matches!(self, ConfigSource::Peer(_))
    }
}

/// Why an offered config was not adopted.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error(transparent)]
    Rejected(#[from] ConfigRejection),
    #[error("this node trusts no federation config yet; the first one must be installed by its admin")]
    NoTrustedConfig,
    #[error("another process adopted a config at the same time; retry")]
    Raced,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an accepted offer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    Adopted {
        version: u64,
    },
    /// The node already runs this version (a peer repeating it): nothing to do.
    AlreadyCurrent,
}

/// Whether the node is federating, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FederationStatus {
    /// No config installed: the node works alone.
    Standalone,
    Active {
        version: u64,
    },
    /// The config expired or no longer lists this node: it stopped federating.
    Frozen {
        reason: String,
    },
}

/// The federation config this node trusts, persisted and observable.
#[derive(Clone)]
pub struct Federation {
    store: Store,
    identity: NodeIdentity,
    current: Arc<watch::Sender<Option<Arc<FederationConfig>>>>,
}

impl Federation {
    /// Loads the highest accepted config from the store.
    pub async fn load(store: Store, identity: NodeIdentity) -> anyhow::Result<Self> {
        let current = match store.current_federation_config().await? {
            Some(row) => Some(Arc::new(
                FederationConfig::from_json(&row.document)
                    .map_err(|e| anyhow::anyhow!("stored federation config v{} does not parse: {e}", row.version))?,
            )),
            None => None,
        };
        Ok(Self { store, identity, current: Arc::new(watch::channel(current).0) })
    }

    /// This node's PeerId, as text.
    pub fn local_peer(&self) -> String {
        self.identity.peer_id().to_string()
    }

    /// The trusted config, if any.
    pub fn current(&self) -> Option<Arc<FederationConfig>> {
        self.current.borrow().clone()
    }

    /// Notified whenever a new config is adopted.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<FederationConfig>>> {
        self.current.subscribe()
    }

    /// Federating or not, and why.
    pub fn status(&self, now: OffsetDateTime) -> FederationStatus {
        match self.current() {
            None => FederationStatus::Standalone,
            Some(c) if c.is_expired(now) => FederationStatus::Frozen {
                reason: format!(
                    "federation config version {} expired at {}; a federation admin must issue a new version",
                    c.doc().version,
                    rfc3339(c.doc().expires_at)
                ),
            },
            Some(c) if c.doc().member(&self.identity.peer_id().to_string()).is_none() => FederationStatus::Frozen {
                reason: format!("this node is not a member in federation config version {}", c.doc().version),
            },
            Some(c) => FederationStatus::Active { version: c.doc().version },
        }
    }

    /// Checks `candidate` against the rules and, if it holds, persists it, records it in the
    /// audit log and makes it current. Refusals are audited with the rule that failed.
    pub async fn offer(&self, candidate: FederationConfig, source: ConfigSource) -> Result<Adoption, OfferError> {
        let now = OffsetDateTime::now_utc();
        let current = self.current();
        if let (Some(cur), ConfigSource::Peer(_)) = (&current, &source) {
            // Peers repeat what everyone already has; only news is worth a check and a record.
            if candidate.doc().version <= cur.doc().version && candidate.digest() == cur.digest() {
                return Ok(Adoption::AlreadyCurrent);
            }
        }
        let verdict = match &current {
            None if !source.is_local_admin() => Err(OfferError::NoTrustedConfig),
            None => candidate.verify_initial(now).map_err(OfferError::from),
            Some(cur) => candidate.verify_update(cur, now).map_err(OfferError::from),
        };
        let (actor, from) = source.actor_and_source();
        let doc = candidate.doc();
        if let Err(err) = verdict {
            let rule = match &err {
                OfferError::Rejected(r) => r.rule(),
                _ => "no_trusted_config",
            };
            self.audit(
                AuditEvent::new(&actor, &from, "federation.config", Outcome::Denied)
                    .target(format!("{} v{}", doc.federation_id, doc.version))
                    .details(json!({ "rule": rule, "reason": err.to_string(), "source": source.label() })),
            )
            .await;
            return Err(err);
        }
        let previous = current.as_ref().map(|c| c.doc().version as i64);
        let inserted = self
            .store
            .insert_federation_config(
                previous,
                doc.version as i64,
                &doc.federation_id,
                &candidate.digest(),
                &candidate.to_json(),
                &source.label(),
            )
            .await?;
        if !inserted {
            self.reload_from_store().await?;
            return Err(OfferError::Raced);
        }
        self.audit(
            AuditEvent::new(&actor, &from, "federation.config", Outcome::Success)
                .target(format!("{} v{}", doc.federation_id, doc.version))
                .details(json!({
                    "digest": candidate.digest(),
                    "members": doc.members.len(),
                    "expires_at": rfc3339(doc.expires_at),
                    "source": source.label(),
                })),
        )
        .await;
        let version = doc.version;
        self.current.send_replace(Some(Arc::new(candidate)));
        tracing::info!(version, source = %source.label(), "adopted federation config");
        Ok(Adoption::Adopted { version })
    }

    /// Adopts a newer version that another process (the admin CLI) wrote to the store. Returns
    /// true if the current config changed.
    pub async fn reload_from_store(&self) -> Result<bool, StoreError> {
        let Some(row) = self.store.current_federation_config().await? else { return Ok(false) };
        let known = self.current().map(|c| c.doc().version as i64);
        if Some(row.version) <= known {
            return Ok(false);
        }
        match FederationConfig::from_json(&row.document) {
            Ok(config) => {
                tracing::info!(version = row.version, source = %row.source, "loaded a newer federation config from the store");
                self.current.send_replace(Some(Arc::new(config)));
                Ok(true)
            }
            Err(e) => {
                tracing::error!(version = row.version, error = %e, "stored federation config does not parse");
                Ok(false)
            }
        }
    }

    async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.store.append_audit(&self.identity, event).await {
            tracing::error!(error = %e, "could not write to the audit log");
        }
    }
}
