//! Connects the network to the federation core: judges inbound adverts, answers peers'
//! requests, syncs catalogs on connect, fetches newer configs, audits refusals, and publishes
//! this node's own advert on start, on every change and at the policy's interval.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedimpute_protocol::advert::{Advert, DataPolicyAdvert, ServiceAdvert, SignedAdvert};
use fedimpute_protocol::federation::FederationConfig;
use fedimpute_protocol::messages::{FederationRequest, FederationResponse};
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use serde_json::json;
use tokio::sync::{Mutex, Notify, mpsc};

use super::catalog::{AdvertRejection, Catalog, Verdict};
use super::peers::PeerTable;
use super::refusals::{self, RefusalLedger, RefusalLimits, RefusalRow};
use super::witness;
use super::{ConfigSource, Federation, FederationStatus};
use crate::identity::NodeIdentity;
use crate::metrics::Metrics;
use crate::p2p::{Network, NetworkEvent};
use crate::store::Store;
use crate::store::audit::{AuditEvent, Outcome};
use crate::time::now_ms;

/// Shortest gap between two adverts of this node.
const REPUBLISH_GAP: Duration = Duration::from_millis(750);
/// How often the store is checked for a config applied by the admin CLI.
const STORE_POLL: Duration = Duration::from_secs(1);

/// What this node says about itself besides its config.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub institution: String,
    pub api_url: Option<String>,
    /// The imputation engines this node runs.
    pub services: Vec<fedimpute_protocol::advert::ServiceAdvert>,
    /// What this node tells the federation of its data policy as a host.
    pub data_policy: DataPolicyAdvert,
    /// Where to write the p2p listen addresses once known (for operators and scripts).
    pub p2p_addr_file: PathBuf,
}

/// The federation state the API reads.
#[derive(Clone)]
pub struct FederationHandle {
    pub federation: Federation,
    pub catalog: Catalog,
    pub peers: PeerTable,
    /// Ask the advertiser to publish now (something local changed).
    pub republish: Arc<Notify>,
}

impl FederationHandle {
    /// How a member is named to people: its signed institution, or its PeerId if it is not listed.
    pub fn member_label(&self, peer: &str) -> String {
        self.federation
            .current()
            .and_then(|c| c.doc().member(peer).map(|m| m.institution.clone()))
            .unwrap_or_else(|| peer.to_string())
    }

    /// Members of the current config: listed, connected to this node, and reachable (a fresh
    /// advert in the catalog, this node's own included).
    pub fn member_counts(&self, now_ms: i64) -> MemberCounts {
        let Some(config) = self.federation.current() else { return MemberCounts::default() };
        let members = &config.doc().members;
        let statuses: Vec<_> = members.iter().map(|m| self.peers.get(&m.peer_id)).collect();
        MemberCounts {
            listed: members.len(),
            connected: statuses.iter().filter(|s| s.connected).count(),
            reachable: members
                .iter()
                .filter(|m| self.catalog.get(&m.peer_id).is_some_and(|e| e.is_fresh(&config, now_ms)))
                .count(),
            incompatible: statuses.iter().filter(|s| s.incompatible.is_some()).count(),
        }
    }
}

/// Members of the current config by how this node sees them, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemberCounts {
    pub listed: usize,
    /// Other than this node.
    pub connected: usize,
    /// With a fresh advert, this node included.
    pub reachable: usize,
    /// Refused on their last connection: another protocol major.
    pub incompatible: usize,
}

struct Runtime {
    handle: FederationHandle,
    network: Network,
    store: Store,
    identity: NodeIdentity,
    metrics: Arc<Metrics>,
    node: NodeInfo,
    fetching_config: Mutex<()>,
    refusals: std::sync::Mutex<RefusalLedger>,
    listen_addrs: std::sync::Mutex<Vec<String>>,
    /// When each peer was last asked what it witnessed of our audit head.
    last_witness_check: std::sync::Mutex<HashMap<PeerId, Instant>>,
}

/// Starts the runtime's tasks; they run until the network's event stream ends.
pub fn start(
    handle: FederationHandle,
    network: Network,
    events: mpsc::Receiver<NetworkEvent>,
    store: Store,
    identity: NodeIdentity,
    metrics: Arc<Metrics>,
    node: NodeInfo,
) {
    let runtime = Arc::new(Runtime {
        handle,
        network,
        store,
        identity,
        metrics,
        node,
        fetching_config: Mutex::new(()),
        refusals: std::sync::Mutex::new(RefusalLedger::new(RefusalLimits::default(), Instant::now())),
        listen_addrs: Default::default(),
        last_witness_check: Default::default(),
    });
    tokio::spawn(runtime.clone().route_events(events));
    tokio::spawn(runtime.clone().advertise());
    tokio::spawn(runtime.clone().follow_config());
    tokio::spawn(runtime.clone().warn_of_expiry());
}

impl Runtime {
    fn config(&self) -> Option<Arc<FederationConfig>> {
        self.handle.federation.current()
    }

    async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.store.append_audit(&self.identity, event).await {
            tracing::error!(error = %e, "could not write to the audit log");
        }
    }

    /// Once a day while the config expires within `expiry::WARN_DAYS` (checked hourly, and at
    /// start): a warning in the log and a row in the audit log.
    async fn warn_of_expiry(self: Arc<Self>) {
        let mut warned: Option<(u64, time::Date)> = None;
        loop {
            let now = time::OffsetDateTime::now_utc();
            if let Some(config) = self.config()
                && let Some(message) = super::expiry::warning(&config, now)
                && warned != Some((config.doc().version, now.date()))
            {
                warned = Some((config.doc().version, now.date()));
                tracing::warn!(
                    version = config.doc().version,
                    days_left = super::expiry::days_left(&config, now),
                    "{message}"
                );
                let details = json!({
                    "version": config.doc().version,
                    "expires_at": fedimpute_protocol::federation::rfc3339(config.doc().expires_at),
                    "days_left": super::expiry::days_left(&config, now),
                });
                self.audit(
                    AuditEvent::new("node", "local", "federation.config_expiring", Outcome::Success)
                        .target(config.doc().federation_id.clone())
                        .details(details),
                )
                .await;
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    async fn route_events(self: Arc<Self>, mut events: mpsc::Receiver<NetworkEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Advert { message_id, propagation_source, author, data } => {
                    let (acceptance, newer_config) = self.on_gossip_advert(propagation_source, author, &data).await;
                    let accepted = matches!(acceptance, MessageAcceptance::Accept);
                    self.network.report_advert(message_id, propagation_source, acceptance).await;
                    if let Some(author) = author.filter(|a| accepted && *a == propagation_source) {
                        tokio::spawn(self.clone().check_witness(author, false));
                    }
                    if let Some(version) = newer_config {
                        // Not inline: the fetch waits on the network, which may be waiting on us.
                        let this = self.clone();
                        tokio::spawn(async move { this.fetch_configs_from(propagation_source, version).await });
                    }
                }
                NetworkEvent::Request { peer, request, channel } => {
                    let response = self.answer(peer, request).await;
                    self.network.respond(channel, response).await;
                }
                NetworkEvent::Connected { peer, address } => {
                    self.handle.peers.connected(&peer.to_string(), Some(address.to_string()));
                    tokio::spawn(self.clone().sync_catalog_from(peer));
                    tokio::spawn(self.clone().check_witness(peer, true));
                }
                NetworkEvent::Disconnected { peer } => self.handle.peers.disconnected(&peer.to_string()),
                NetworkEvent::Rtt { peer, rtt_ms } => self.handle.peers.rtt(&peer.to_string(), rtt_ms),
                NetworkEvent::Refused { peer, address, inbound } => self.on_refused(peer, address, inbound).await,
                NetworkEvent::Incompatible { peer, reason } => self.on_incompatible(peer, reason).await,
                NetworkEvent::Listening { address } => self.on_listening(address),
                NetworkEvent::Route { peer, relay } => {
                    self.handle.peers.route(&peer.to_string(), relay.map(|r| r.to_string()));
                }
            }
        }
    }

    fn on_listening(&self, address: libp2p::Multiaddr) {
        let mut addrs = self.listen_addrs.lock().unwrap_or_else(|e| e.into_inner());
        addrs.push(format!("{address}/p2p/{}", self.identity.peer_id()));
        let text = addrs.join("\n") + "\n";
        if let Err(e) = std::fs::write(&self.node.p2p_addr_file, text) {
            tracing::warn!(error = %e, file = %self.node.p2p_addr_file.display(), "cannot write p2p addresses");
        }
    }

    /// Judges a gossiped advert; returns the verdict for gossipsub and, if the advert's author
    /// runs a newer config than ours, that version.
    async fn on_gossip_advert(
        &self,
        source: PeerId,
        author: Option<PeerId>,
        data: &[u8],
    ) -> (MessageAcceptance, Option<u64>) {
        let Some(config) = self.config() else { return (MessageAcceptance::Ignore, None) };
        let mut newer_config = None;
        let verdict = match serde_json::from_slice::<SignedAdvert>(data) {
            Ok(signed) => {
                let author = author.map(|a| a.to_string());
                let verdict = self.handle.catalog.check(&signed, &config, author.as_deref(), now_ms());
                if let Verdict::Accept(advert) = &verdict {
                    newer_config = self.store_advert((**advert).clone(), signed).await;
                }
                verdict
            }
            Err(e) => Verdict::Reject(AdvertRejection::Unparseable(e.to_string())),
        };
        self.count_and_audit(&verdict, source, author).await;
        let acceptance = match verdict {
            Verdict::Accept(_) => MessageAcceptance::Accept,
            Verdict::Ignore(_) => MessageAcceptance::Ignore,
            Verdict::Reject(_) => MessageAcceptance::Reject,
        };
        (acceptance, newer_config)
    }

    async fn count_and_audit(&self, verdict: &Verdict, source: PeerId, author: Option<PeerId>) {
        match verdict {
            Verdict::Accept(_) => self.metrics.advert("accept", ""),
            Verdict::Ignore(reason) => self.metrics.advert("ignore", reason),
            Verdict::Reject(rejection) => {
                self.metrics.advert("reject", rejection.label());
                tracing::warn!(%source, reason = %rejection, "rejected an advert");
                let author = author.map(|a| a.to_string()).unwrap_or_default();
                self.audit(
                    AuditEvent::new(format!("peer:{source}"), source.to_string(), "federation.advert", Outcome::Denied)
                        .target(author)
                        .details(json!({ "reason": rejection.label(), "detail": rejection.to_string() })),
                )
                .await;
            }
        }
    }

    /// Stores an accepted advert; returns the author's config version if it is newer than ours.
    async fn store_advert(&self, advert: Advert, signed: SignedAdvert) -> Option<u64> {
        let advertised_config = advert.config_version;
        if advert.peer_id != self.identity.peer_id().to_string()
            && let Err(e) = witness::witness(&self.store, &advert, &signed).await
        {
            tracing::error!(error = %e, "could not keep a peer's audit head");
        }
        if let Err(e) = self.handle.catalog.insert(advert, signed, now_ms()).await {
            tracing::error!(error = %e, "could not store an advert");
        }
        self.config().is_some_and(|c| advertised_config > c.doc().version).then_some(advertised_config)
    }

    /// Fetches and offers every config version after ours up to `target`, from `peer`. One
    /// fetch at a time: whoever holds the lock brings the node up to date for everyone.
    async fn fetch_configs_from(&self, peer: PeerId, target: u64) {
        let Ok(_guard) = self.fetching_config.try_lock() else { return };
        loop {
            let Some(current) = self.config() else { return };
            let next = current.doc().version + 1;
            if next > target {
                return;
            }
            let document = match self.network.request(peer, FederationRequest::GetConfig { version: next }).await {
                Ok(FederationResponse::Config { document: Some(d) }) => d,
                Ok(other) => {
                    tracing::debug!(%peer, version = next, ?other, "peer did not send the config");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%peer, version = next, error = %e, "config fetch failed");
                    return;
                }
            };
            let candidate = match FederationConfig::from_json(&document) {
                Ok(c) if c.doc().version == next => c,
                Ok(_) | Err(_) => {
                    tracing::warn!(%peer, version = next, "peer sent a malformed or mislabelled config");
                    return;
                }
            };
            if let Err(e) = self.handle.federation.offer(candidate, ConfigSource::Peer(peer.to_string())).await {
                tracing::warn!(%peer, version = next, error = %e, "refused a config offered by a peer");
                return;
            }
        }
    }

    async fn answer(&self, peer: PeerId, request: FederationRequest) -> FederationResponse {
        let Some(config) = self.config() else {
            return FederationResponse::Refused { reason: "not federating".into() };
        };
        if config.doc().member(&peer.to_string()).is_none() {
            return FederationResponse::Refused { reason: "not a member".into() };
        }
        match request {
            FederationRequest::GetConfig { version } => {
                let stored = match i64::try_from(version) {
                    Ok(version) => self.store.federation_config(version).await,
                    Err(_) => Ok(None),
                };
                let document = match stored {
                    Ok(row) => row.map(|r| r.document),
                    Err(e) => {
                        tracing::error!(error = %e, "reading a stored config");
                        None
                    }
                };
                FederationResponse::Config { document }
            }
            FederationRequest::GetCatalog { have } => {
                FederationResponse::Catalog { adverts: self.handle.catalog.fresh_signed(&config, now_ms(), &have) }
            }
            FederationRequest::GetWitnessedHead => {
                FederationResponse::WitnessedHead { advert: witness::witnessed(&self.store, &peer.to_string()).await }
            }
        }
    }

    /// Asks `peer` what it witnessed of this node's audit head and checks the log still holds
    /// it; a mismatch is recorded and audited once. `always`: on connecting; otherwise at most
    /// once per advert interval per peer (adverts arrive that often).
    async fn check_witness(self: Arc<Self>, peer: PeerId, always: bool) {
        let interval = self.config().map(|c| c.doc().policy.advert_interval_secs).unwrap_or(30);
        {
            let mut last = self.last_witness_check.lock().unwrap_or_else(|e| e.into_inner());
            if !always && last.get(&peer).is_some_and(|t| t.elapsed() < Duration::from_secs(interval.max(1))) {
                return;
            }
            last.insert(peer, Instant::now());
        }
        let signed = match self.network.request(peer, FederationRequest::GetWitnessedHead).await {
            Ok(FederationResponse::WitnessedHead { advert: Some(signed) }) => signed,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not ask a peer what it witnessed of our audit log");
                return;
            }
        };
        let mismatch = match witness::judge(&self.store, &self.identity.peer_id(), &peer.to_string(), &signed).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "a peer's witness of our audit head is unusable");
                return;
            }
        };
        match self.store.record_head_mismatch(&mismatch).await {
            Ok(true) => {
                let institution = self.handle.member_label(&peer.to_string());
                tracing::error!(%peer, %institution, witnessed = mismatch.witnessed_count, own = mismatch.own_count,
                    "this node's audit log no longer holds the head a peer witnessed: rows were deleted or rewritten");
                self.audit(
                    AuditEvent::new("node", "local", "audit.head_mismatch", Outcome::Failure)
                        .target(peer.to_string())
                        .details(json!({ "institution": institution, "witnessed_count": mismatch.witnessed_count,
                                         "witnessed_hash": mismatch.witnessed_hash, "own_count": mismatch.own_count })),
                )
                .await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not record an audit head mismatch"),
        }
    }

    /// Asks a newly connected peer for its catalog, so a node that just joined does not wait
    /// for the next round of gossip.
    async fn sync_catalog_from(self: Arc<Self>, peer: PeerId) {
        let request = FederationRequest::GetCatalog { have: self.handle.catalog.held_seqs() };
        let adverts = match self.network.request(peer, request).await {
            Ok(FederationResponse::Catalog { adverts }) => adverts,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "catalog sync failed");
                return;
            }
        };
        let Some(config) = self.config() else { return };
        let mut newest_config = None;
        for signed in adverts {
            let verdict = self.handle.catalog.check(&signed, &config, None, now_ms());
            if let Verdict::Accept(advert) = &verdict {
                newest_config = newest_config.max(self.store_advert((**advert).clone(), signed).await);
            }
            self.count_and_audit(&verdict, peer, None).await;
        }
        if let Some(version) = newest_config {
            self.fetch_configs_from(peer, version).await;
        }
    }

    async fn on_refused(&self, peer: PeerId, address: Option<libp2p::Multiaddr>, inbound: bool) {
        self.metrics.refused_connection(inbound);
        // Keyed by address: a dialer mints PeerIds for free, not addresses.
        let key = address.as_ref().and_then(refusals::ip_of).unwrap_or_else(|| peer.to_string());
        let row = self.refusals.lock().unwrap_or_else(|e| e.into_inner()).note(&key, Instant::now());
        if let RefusalRow::Write { held_back } = row {
            let address = address.map(|a| a.to_string()).unwrap_or_default();
            self.audit(
                AuditEvent::new(format!("peer:{peer}"), &address, "p2p.connection", Outcome::Denied)
                    .target(peer.to_string())
                    .details(json!({
                        "reason": "not a member of the federation",
                        "direction": if inbound { "inbound" } else { "outbound" },
                        "address": address,
                        "refused_since_last_row": held_back,
                    })),
            )
            .await;
        }
    }

    /// A member of another protocol major: shown in the federation view, audited (at most a
    /// row a minute per member, like refused non-members).
    async fn on_incompatible(&self, peer: PeerId, reason: String) {
        self.handle.peers.incompatible(&peer.to_string(), reason.clone());
        let row =
            self.refusals.lock().unwrap_or_else(|e| e.into_inner()).note(&format!("protocol:{peer}"), Instant::now());
        if let RefusalRow::Write { held_back } = row {
            self.audit(
                AuditEvent::new(format!("peer:{peer}"), peer.to_string(), "p2p.connection", Outcome::Denied)
                    .target(peer.to_string())
                    .details(json!({ "reason": reason, "refused_since_last_row": held_back })),
            )
            .await;
        }
    }

    async fn build_advert(&self, config: &FederationConfig, seq: u64) -> Advert {
        let panels = match crate::imputation::catalog_entry::local_panels(&self.store).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "could not list panels for the advert");
                Vec::new()
            }
        };
        // Jobs waiting for an engine here: origins prefer the shorter queue.
        let queue = self.store.queue_length().await.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
        let mut services: Vec<ServiceAdvert> =
            self.node.services.iter().map(|s| ServiceAdvert { queue_length: queue, ..s.clone() }).collect();
        let mut panels = panels;
        // External services this node wraps, with their own health, queue and panels.
        for service in self.store.services().await.unwrap_or_default() {
            let (advert, service_panels) = crate::imputation::catalog_entry::external_service(&service);
            services.push(advert);
            panels.extend(service_panels);
        }
        Advert {
            federation_id: config.doc().federation_id.clone(),
            peer_id: self.identity.peer_id().to_string(),
            seq,
            issued_at_ms: now_ms(),
            node_name: self.node.name.clone(),
            institution: self.node.institution.clone(),
            software_version: fedimpute_protocol::SOFTWARE_VERSION.to_string(),
            protocol_major: fedimpute_protocol::PROTOCOL_MAJOR,
            api_url: self.node.api_url.clone(),
            config_version: config.doc().version,
            config_digest: config.digest(),
            services,
            panels,
            data_policy: self.node.data_policy.clone(),
            audit_head: match self.store.audit_head().await {
                Ok(head) => Some(head),
                Err(e) => {
                    tracing::error!(error = %e, "could not read the audit head for the advert");
                    None
                }
            },
        }
    }

    /// Publishes this node's advert at start, whenever the config changes, a peer connects or
    /// something else asks, and at the federation's advert interval.
    async fn advertise(self: Arc<Self>) {
        let mut config_changes = self.handle.federation.subscribe();
        let mut last_seq = 0u64;
        let mut last_publish: Option<Instant> = None;
        loop {
            // Peers connect in bursts (at start, after an outage): one advert per burst, and at
            // most one per REPUBLISH_GAP, reaches them all with flood publishing.
            if let Some(at) = last_publish {
                let next = at + REPUBLISH_GAP;
                tokio::time::sleep_until(next.into()).await;
            }
            last_publish = Some(Instant::now());
            let interval = match self.config() {
                Some(config)
                    if matches!(
                        self.handle.federation.status(time::OffsetDateTime::now_utc()),
                        FederationStatus::Active { .. }
                    ) =>
                {
                    // Milliseconds since the epoch, but always increasing even if the clock steps back.
                    last_seq = (now_ms() as u64).max(last_seq + 1);
                    let advert = self.build_advert(&config, last_seq).await;
                    match SignedAdvert::sign(&advert, |m| self.identity.sign(m)) {
                        Ok(signed) => {
                            if let Err(e) = self.handle.catalog.insert(advert, signed.clone(), now_ms()).await {
                                tracing::error!(error = %e, "could not store our own advert");
                            }
                            let data = serde_json::to_vec(&signed).unwrap_or_default();
                            if let Err(e) = self.network.publish_advert(data).await {
                                // No peer yet is normal at start; the catalog sync on connect covers it.
                                tracing::debug!(error = %e, "advert not published");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "could not sign our advert"),
                    }
                    Duration::from_secs(config.doc().policy.advert_interval_secs)
                }
                _ => Duration::from_secs(5),
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = config_changes.changed() => if changed.is_err() { return },
                _ = self.handle.republish.notified() => {}
            }
        }
    }

    /// Picks up configs applied with the CLI, drops catalog entries of removed members, and
    /// republishes our advert when panels change (also when changed from the CLI).
    async fn follow_config(self: Arc<Self>) {
        let mut panels_seen = self.store.panels_fingerprint().await.ok();
        let mut config_changes = self.handle.federation.subscribe();
        if let Some(config) = self.config() {
            match self.handle.catalog.load(&config, now_ms()).await {
                Ok(n) => tracing::info!(adverts = n, "catalog loaded"),
                Err(e) => tracing::error!(error = %e, "could not load the catalog"),
            }
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(STORE_POLL) => {
                    if let Err(e) = self.handle.federation.reload_from_store().await {
                        tracing::error!(error = %e, "could not read federation configs");
                    }
                    let panels_now = self.store.panels_fingerprint().await.ok();
                    if panels_now != panels_seen {
                        panels_seen = panels_now;
                        self.handle.republish.notify_one();
                    }
                }
                changed = config_changes.changed() => {
                    if changed.is_err() { return; }
                    let config = config_changes.borrow_and_update().clone();
                    if let Some(config) = config
                        && let Err(e) = self.handle.catalog.retain_members(&config).await
                    {
                        tracing::error!(error = %e, "could not prune the catalog");
                    }
                }
            }
        }
    }
}
