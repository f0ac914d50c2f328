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

    /// Still within its time to live: its author counts as reachable.
    pub fn is_fresh(&self, config: &FederationConfig, now_ms: i64) -> bool {
        is_fresh(self.advert.issued_at_ms, config, now_ms)
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
    #[error("advert seq {0} is beyond what a node can count")]
    SeqOutOfRange(u64),
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
            AdvertRejection::SeqOutOfRange(_) => "seq_out_of_range",
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
    // Within range: the config's schema check bounds both factors.
    (p.advert_interval_secs * u64::from(p.advert_ttl_intervals) * 1000) as i64
}

/// Whether an advert issued at `issued_at_ms` is within its time to live at `now_ms`.
fn is_fresh(issued_at_ms: i64, config: &FederationConfig, now_ms: i64) -> bool {
    now_ms - issued_at_ms <= advert_ttl_ms(config)
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
        // Most adverts a node sees are ones it already has (gossip relays, catalog snapshots).
        // Telling them apart needs only the author and seq, so look before paying for a
        // signature check; dropping an unverified advert accepts nothing.
        if let (Some(author), Some(seq)) =
            (signed.advert.get("peer_id").and_then(|v| v.as_str()), signed.advert.get("seq").and_then(|v| v.as_u64()))
            && self.known_seq(author).is_some_and(|known| known >= seq)
        {
            return Verdict::Ignore("not newer");
        }
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
        // At most a day (the config's schema check), so in range.
        let skew_ms = (doc.policy.max_clock_skew_secs * 1000) as i64;
        if advert.issued_at_ms > now_ms + skew_ms {
            return Verdict::Reject(AdvertRejection::FromTheFuture((advert.issued_at_ms - now_ms) / 1000));
        }
        if require_fresh && !is_fresh(advert.issued_at_ms, config, now_ms) {
            return Verdict::Ignore("stale");
        }
        // The store keeps seq as a signed 64-bit integer; a larger one would wrap negative.
        if advert.seq > fedimpute_protocol::federation::MAX_COUNTER {
            return Verdict::Reject(AdvertRejection::SeqOutOfRange(advert.seq));
        }
        if self.known_seq(&advert.peer_id).is_some_and(|known| known >= advert.seq) {
            return Verdict::Ignore("not newer");
        }
        Verdict::Accept(Box::new(advert))
    }

    fn known_seq(&self, peer_id: &str) -> Option<u64> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.get(peer_id).map(|e| e.advert.seq)
    }

    /// PeerId -> seq of every advert held, for a catalog request.
    pub fn held_seqs(&self) -> std::collections::BTreeMap<String, u64> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(peer, e)| (peer.clone(), e.advert.seq)).collect()
    }

    /// Stores an accepted advert, in memory and in SQLite.
    pub async fn insert(&self, advert: Advert, signed: SignedAdvert, now_ms: i64) -> anyhow::Result<()> {
        let text = serde_json::to_string(&signed)?;
        // check() refused a seq beyond MAX_COUNTER.
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

    /// Signed adverts still within their time to live and newer than what the asker `has`,
    /// for a peer's catalog request.
    pub fn fresh_signed(
        &self,
        config: &FederationConfig,
        now_ms: i64,
        has: &std::collections::BTreeMap<String, u64>,
    ) -> Vec<SignedAdvert> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|e| e.is_fresh(config, now_ms))
            .filter(|e| has.get(&e.advert.peer_id).is_none_or(|seq| *seq < e.advert.seq))
            .map(|e| e.signed.clone())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NodeIdentity;
    use fedimpute_protocol::federation::{AdminSet, AdminSigningKey, FederationDocument, FederationPolicy, Member};

    fn config(members: &[&NodeIdentity]) -> FederationConfig {
        let now = time::OffsetDateTime::now_utc();
        let doc = FederationDocument {
            federation_id: "t".into(),
            version: 1,
            issued_at: now - time::Duration::hours(1),
            expires_at: now + time::Duration::days(1),
            admins: AdminSet { keys: vec![AdminSigningKey::from_seed([1; 32]).admin_key()], threshold: 1 },
            members: members
                .iter()
                .map(|m| Member {
                    peer_id: m.peer_id().to_string(),
                    institution: "I".into(),
                    addresses: vec![],
                    roles: vec![],
                    tags: Default::default(),
                })
                .collect(),
            policy: FederationPolicy::default(),
        };
        FederationConfig::new(doc).unwrap()
    }

    fn signed(author: &NodeIdentity, seq: u64, now: i64) -> SignedAdvert {
        let advert = Advert { seq, issued_at_ms: now, ..crate::federation::test_advert(&author.peer_id().to_string()) };
        SignedAdvert::sign(&advert, |m| author.sign(m)).unwrap()
    }

    async fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db"), true).await.unwrap();
        (dir, Catalog::new(store))
    }

    async fn accept(catalog: &Catalog, signed: &SignedAdvert, config: &FederationConfig, now: i64) -> Verdict {
        let verdict = catalog.check(signed, config, None, now);
        if let Verdict::Accept(advert) = &verdict {
            catalog.insert((**advert).clone(), signed.clone(), now).await.unwrap();
        }
        verdict
    }

    #[tokio::test]
    async fn only_newer_adverts_of_members_are_accepted() {
        let (_d, catalog) = catalog().await;
        let (a, stranger) = (NodeIdentity::generate(), NodeIdentity::generate());
        let config = config(&[&a]);
        let now = crate::time::now_ms();
        assert!(matches!(accept(&catalog, &signed(&a, 5, now), &config, now).await, Verdict::Accept(_)));
        assert_eq!(accept(&catalog, &signed(&a, 5, now), &config, now).await, Verdict::Ignore("not newer"));
        assert_eq!(accept(&catalog, &signed(&a, 4, now), &config, now).await, Verdict::Ignore("not newer"));
        assert!(matches!(accept(&catalog, &signed(&a, 6, now), &config, now).await, Verdict::Accept(_)));
        assert!(matches!(
            accept(&catalog, &signed(&stranger, 1, now), &config, now).await,
            Verdict::Reject(AdvertRejection::NotAMember(_))
        ));
        let stale = now - advert_ttl_ms(&config) - 1;
        assert_eq!(accept(&catalog, &signed(&a, 7, stale), &config, now).await, Verdict::Ignore("stale"));
        let future = now + 3_600_000;
        assert!(matches!(
            accept(&catalog, &signed(&a, 8, future), &config, now).await,
            Verdict::Reject(AdvertRejection::FromTheFuture(_))
        ));
        // A seq past what the store counts would wrap negative and pin the author's catalog entry.
        assert_eq!(
            accept(&catalog, &signed(&a, u64::MAX, now), &config, now).await,
            Verdict::Reject(AdvertRejection::SeqOutOfRange(u64::MAX))
        );
        assert!(matches!(accept(&catalog, &signed(&a, 9, now), &config, now).await, Verdict::Accept(_)));
    }

    #[test]
    fn a_config_whose_numbers_would_overflow_is_refused() {
        let base = config(&[]);
        let mut doc = base.doc().clone();
        doc.version = u64::MAX;
        assert!(FederationConfig::new(doc.clone()).is_err(), "a version past i64");
        doc.version = 1;
        doc.policy.advert_interval_secs = u64::MAX / 2;
        assert!(FederationConfig::new(doc).is_err(), "an interval whose TTL in ms overflows");
    }

    #[tokio::test]
    async fn a_tampered_advert_is_rejected_when_new_and_ignored_when_old() {
        let (_d, catalog) = catalog().await;
        let a = NodeIdentity::generate();
        let config = config(&[&a]);
        let now = crate::time::now_ms();
        accept(&catalog, &signed(&a, 5, now), &config, now).await;
        for (seq, expect_reject) in [(5, false), (9, true)] {
            let mut forged = signed(&a, seq, now);
            forged.advert["node_name"] = "forged".into();
            let verdict = catalog.check(&forged, &config, None, now);
            // An old seq is dropped before its signature is checked: nothing is accepted either way.
            assert_eq!(
                matches!(verdict, Verdict::Reject(AdvertRejection::NotAuthentic(_))),
                expect_reject,
                "{verdict:?}"
            );
            assert!(!matches!(verdict, Verdict::Accept(_)));
        }
    }

    #[tokio::test]
    async fn catalog_snapshots_send_only_what_the_asker_lacks() {
        let (_d, catalog) = catalog().await;
        let (a, b) = (NodeIdentity::generate(), NodeIdentity::generate());
        let config = config(&[&a, &b]);
        let now = crate::time::now_ms();
        accept(&catalog, &signed(&a, 5, now), &config, now).await;
        accept(&catalog, &signed(&b, 7, now), &config, now).await;
        assert_eq!(catalog.fresh_signed(&config, now, &Default::default()).len(), 2);
        let has = [(a.peer_id().to_string(), 5), (b.peer_id().to_string(), 3)].into();
        let sent = catalog.fresh_signed(&config, now, &has);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].advert["peer_id"], b.peer_id().to_string());
        assert_eq!(catalog.held_seqs(), [(a.peer_id().to_string(), 5), (b.peer_id().to_string(), 7)].into());
    }
}
