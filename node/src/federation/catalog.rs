//! The federation catalog: the newest valid advert of every member, in memory and in SQLite.
//!
//! Every advert, from gossip or from a peer's catalog snapshot, passes [`Catalog::check`] before
//! it is stored or forwarded: authentic (signed by the key of its `peer_id`), from the gossip
//! author it claims, of this federation, by a current member, not from the future, not stale,
//! and newer than what we hold.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fedimpute_protocol::advert::{Advert, AdvertError, SignedAdvert};
use fedimpute_protocol::federation::FederationConfig;

use crate::store::Store;

/// One member's advert as held here.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub advert: Advert,
    pub signed: SignedAdvert,
    /// When this node received it (ms since the epoch).
    pub received_at_ms: i64,
}

impl CatalogEntry {
    /// Age of the advert itself, by its author's clock.
    pub fn age_ms(&self, now_ms: i64) -> i64 {
        (now_ms - self.advert.issued_at_ms).max(0)
    }
}

/// Why an advert is refused outright (and its forwarder penalised).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertRejection {
    #[error(transparent)]
    NotAuthentic(#[from] AdvertError),
    #[error("advert for federation {0:?}, not ours")]
    WrongFederation(String),
    #[error("advert author {0} is not a member")]
    NotAMember(String),
    #[error("gossip author {author} published an advert of {claimed}")]
    AuthorMismatch { author: String, claimed: String },
    #[error("advert timestamp is {0} s in the future")]
    FromTheFuture(i64),
    #[error("message is not a JSON signed advert: {0}")]
    Unparseable(String),
}

impl AdvertRejection {
    /// Short label for metrics and the audit log.
    pub fn label(&self) -> &'static str {
        match self {
            AdvertRejection::NotAuthentic(AdvertError::BadSignature) => "bad_signature",
            AdvertRejection::NotAuthentic(_) => "not_authentic",
            AdvertRejection::WrongFederation(_) => "wrong_federation",
            AdvertRejection::NotAMember(_) => "not_a_member",
            AdvertRejection::AuthorMismatch { .. } => "author_mismatch",
            AdvertRejection::FromTheFuture(_) => "from_the_future",
            AdvertRejection::Unparseable(_) => "unparseable",
        }
    }
}

/// What to do with an advert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and news: store and forward.
    Accept(Box<Advert>),
    /// Valid but not news (old sequence number, stale): drop quietly, no penalty.
    Ignore(&'static str),
    /// Invalid: drop and penalise whoever forwarded it.
    Reject(AdvertRejection),
}

/// The catalog.
#[derive(Clone)]
pub struct Catalog {
    entries: Arc<RwLock<HashMap<String, CatalogEntry>>>,
    store: Store,
}

/// How long an advert stays valid without a refresh, per the federation policy.
pub fn advert_ttl_ms(config: &FederationConfig) -> i64 {
    let p = &config.doc().policy;
    (p.advert_interval_secs * u64::from(p.advert_ttl_intervals) * 1000) as i64
}

impl Catalog {
    /// An empty catalog over `store`.
    pub fn new(store: Store) -> Self {
        Self { entries: Arc::default(), store }
    }

    /// Reloads persisted adverts that still check out against `config`.
    pub async fn load(&self, config: &FederationConfig, now_ms: i64) -> anyhow::Result<usize> {
        let mut loaded = 0;
        for (peer, text, received_at_ms) in self.store.stored_adverts().await? {
            let Ok(signed) = serde_json::from_str::<SignedAdvert>(&text) else { continue };
            // Stale adverts still load (they show a node as unreachable until it speaks again).
            match self.check_inner(&signed, config, None, now_ms, false) {
                Verdict::Accept(advert) => {
                    self.put(CatalogEntry { advert: *advert, signed, received_at_ms });
                    loaded += 1;
                }
                _ => self.store.delete_advert(&peer).await?,
            }
        }
        Ok(loaded)
    }

    fn put(&self, entry: CatalogEntry) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        map.insert(entry.advert.peer_id.clone(), entry);
    }

    /// Judges an advert against the current config without storing it. `gossip_author` is the
    /// signer of the gossip message that carried it, when it came by gossip.
    pub fn check(
        &self,
        signed: &SignedAdvert,
        config: &FederationConfig,
        gossip_author: Option<&str>,
        now_ms: i64,
    ) -> Verdict {
        self.check_inner(signed, config, gossip_author, now_ms, true)
    }

    fn check_inner(
        &self,
        signed: &SignedAdvert,
        config: &FederationConfig,
        gossip_author: Option<&str>,
        now_ms: i64,
        require_fresh: bool,
    ) -> Verdict {
        let advert = match signed.verify() {
            Ok(a) => a,
            Err(e) => return Verdict::Reject(e.into()),
        };
        if let Some(author) = gossip_author
            && author != advert.peer_id
        {
            return Verdict::Reject(AdvertRejection::AuthorMismatch {
                author: author.to_string(),
                claimed: advert.peer_id.clone(),
            });
        }
        let doc = config.doc();
        if advert.federation_id != doc.federation_id {
            return Verdict::Reject(AdvertRejection::WrongFederation(advert.federation_id.clone()));
        }
        if doc.member(&advert.peer_id).is_none() {
            return Verdict::Reject(AdvertRejection::NotAMember(advert.peer_id.clone()));
        }
        let skew_ms = (doc.policy.max_clock_skew_secs * 1000) as i64;
        if advert.issued_at_ms > now_ms + skew_ms {
            return Verdict::Reject(AdvertRejection::FromTheFuture((advert.issued_at_ms - now_ms) / 1000));
        }
        if require_fresh && now_ms - advert.issued_at_ms > advert_ttl_ms(config) {
            return Verdict::Ignore("stale");
        }
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = map.get(&advert.peer_id)
            && known.advert.seq >= advert.seq
        {
            return Verdict::Ignore("not newer");
        }
        Verdict::Accept(Box::new(advert))
    }

    /// Stores an accepted advert, in memory and in SQLite.
    pub async fn insert(&self, advert: Advert, signed: SignedAdvert, now_ms: i64) -> anyhow::Result<()> {
        let text = serde_json::to_string(&signed)?;
        self.store.upsert_advert(&advert.peer_id, advert.seq as i64, &text).await?;
        self.put(CatalogEntry { advert, signed, received_at_ms: now_ms });
        Ok(())
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Vec<CatalogEntry> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// One member's entry.
    pub fn get(&self, peer_id: &str) -> Option<CatalogEntry> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.get(peer_id).cloned()
    }

    /// Signed adverts still within their time to live, for a peer's catalog request.
    pub fn fresh_signed(&self, config: &FederationConfig, now_ms: i64) -> Vec<SignedAdvert> {
        let ttl = advert_ttl_ms(config);
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|e| now_ms - e.advert.issued_at_ms <= ttl).map(|e| e.signed.clone()).collect()
    }

    /// Drops the adverts of nodes that `config` no longer lists.
    pub async fn retain_members(&self, config: &FederationConfig) -> anyhow::Result<()> {
        let gone: Vec<String> = {
            let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
            map.keys().filter(|p| config.doc().member(p).is_none()).cloned().collect()
        };
        for peer in gone {
            self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(&peer);
            self.store.delete_advert(&peer).await?;
        }
        Ok(())
    }
}
