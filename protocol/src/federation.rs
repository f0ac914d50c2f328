//! The signed federation config: who the admins are, who the members are, and the rules by
//! which a node moves from one version to the next.
//!
//! # Document
//!
//! ```json
//! { "signed": { "federation_id": "...", "version": 1, "issued_at": "RFC 3339", "expires_at": "RFC 3339",
//!               "admins": { "keys": [{ "id": "<hex sha256 of key>", "public_key": "<hex ed25519>" }], "threshold": 2 },
//!               "members": [{ "peer_id": "12D3Koo...", "institution": "...", "addresses": ["/ip4/.../tcp/..."],
//!                             "roles": ["host"], "tags": { "jurisdiction": "ZA" } }],
//!               "policy": { "advert_interval_secs": 30, "advert_ttl_intervals": 3, "max_clock_skew_secs": 30 } },
//!   "signatures": [{ "key_id": "<hex>", "sig": "<hex ed25519 signature>" }] }
//! ```
//!
//! # What is signed
//!
//! An admin signs `CONFIG_SIGNING_CONTEXT || canonical(signed)`, where `canonical` is
//! [`crate::canonical`] (RFC 8785) applied to the `signed` value *as received*: verifiers never
//! re-serialize their parsed view, so fields they do not know are still covered.
//!
//! # Acceptance (after TUF's root rules)
//!
//! - The first config is trusted on first use, when the node's admin installs it; it must still
//!   be signed by `threshold` of its own admins and be unexpired.
//! - Version N+1 replaces N only if signed by `threshold(N)` distinct admin keys of N **and** by
//!   `threshold(N+1)` distinct admin keys of N+1. A key counts once however often it signs.
//! - A version that is not exactly N+1 is refused: lower or equal is a rollback, higher skips
//!   versions whose signatures the node has not checked.
//! - An expired config is refused; a node whose current config expires stops federating.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::canonical::{CanonicalError, canonicalize};

/// Domain separation for admin signatures over federation configs.
pub const CONFIG_SIGNING_CONTEXT: &[u8] = b"fedimpute/federation-config/v1\0";

/// One admin's public key, as listed in a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminKey {
    /// Hex SHA-256 of the 32 public-key bytes.
    pub id: String,
    /// Hex ed25519 public key.
    pub public_key: String,
}

/// The federation's admins and how many must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSet {
    pub keys: Vec<AdminKey>,
    pub threshold: u32,
}

/// A member node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// libp2p PeerId (an ed25519 identity multihash).
    pub peer_id: String,
    pub institution: String,
    /// libp2p multiaddrs where the node listens.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Free-form roles, e.g. `host`, `origin`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Labels that policies select on, e.g. `jurisdiction = ZA`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Federation-wide settings every member follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationPolicy {
    /// Seconds between a node's periodic adverts.
    #[serde(default = "default_advert_interval")]
    pub advert_interval_secs: u64,
    /// An advert not refreshed within this many intervals marks its node unreachable.
    #[serde(default = "default_ttl_intervals")]
    pub advert_ttl_intervals: u32,
    /// How far an advert's timestamp may be in the future.
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: u64,
}

fn default_advert_interval() -> u64 {
    30
}
fn default_ttl_intervals() -> u32 {
    3
}
fn default_skew() -> u64 {
    30
}

impl Default for FederationPolicy {
    fn default() -> Self {
        Self {
            advert_interval_secs: default_advert_interval(),
            advert_ttl_intervals: default_ttl_intervals(),
            max_clock_skew_secs: default_skew(),
        }
    }
}

/// The signed part of a federation config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationDocument {
    pub federation_id: String,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub admins: AdminSet,
    pub members: Vec<Member>,
    #[serde(default)]
    pub policy: FederationPolicy,
}

impl FederationDocument {
    /// The member with this PeerId, if listed.
    pub fn member(&self, peer_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.peer_id == peer_id)
    }
}

/// One admin signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    pub key_id: String,
    /// Hex ed25519 signature.
    pub sig: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Envelope {
    signed: Value,
    signatures: Vec<SignatureEntry>,
}

/// Which admin set a signature check was against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerSet {
    /// The admins of the version currently trusted.
    Previous,
    /// The admins listed in the offered version itself.
    Own,
}

impl std::fmt::Display for SignerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignerSet::Previous => "the previous version's admins",
            SignerSet::Own => "its own admins",
        })
    }
}

/// The largest version or sequence number a node accepts: what a signed 64-bit column holds.
pub const MAX_COUNTER: u64 = i64::MAX as u64;

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRejection {
    #[error("malformed federation config: {0}")]
    Malformed(String),
    #[error("config is for federation {offered:?}, this node is in {current:?}")]
    WrongFederation { current: String, offered: String },
    #[error("rollback refused: version {offered} is not newer than the current version {current}")]
    Rollback { current: u64, offered: u64 },
    #[error("version {offered} skips ahead of the current version {current}: apply version {} first", current + 1)]
    SkipsVersion { current: u64, offered: u64 },
    #[error("config version {version} expired at {expires_at}")]
    Expired { version: u64, expires_at: String },
    #[error("not enough valid signatures by {by}: {valid} distinct valid of {threshold} required")]
    NotEnoughSignatures { by: SignerSet, valid: usize, threshold: u32 },
}

/// Why the signatures of two copies of a config cannot be combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureMergeError {
    #[error(
        "the copies differ in what they sign (version {version} and version {other_version}): \
         each admin must sign the same file, unedited"
    )]
    DifferentContent { version: u64, other_version: u64 },
    #[error(transparent)]
    Config(ConfigRejection),
}

impl ConfigRejection {
    /// A short stable name of the rule that failed, for the audit log and metrics.
    pub fn rule(&self) -> &'static str {
        match self {
            ConfigRejection::Malformed(_) => "malformed",
            ConfigRejection::WrongFederation { .. } => "wrong_federation",
            ConfigRejection::Rollback { .. } => "rollback",
            ConfigRejection::SkipsVersion { .. } => "skips_version",
            ConfigRejection::Expired { .. } => "expired",
            ConfigRejection::NotEnoughSignatures { by: SignerSet::Previous, .. } => "threshold_previous",
            ConfigRejection::NotEnoughSignatures { by: SignerSet::Own, .. } => "threshold_own",
        }
    }
}

impl From<CanonicalError> for ConfigRejection {
    fn from(e: CanonicalError) -> Self {
        ConfigRejection::Malformed(e.to_string())
    }
}

/// A federation config: the `signed` document as received, its parsed view, and signatures.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    signed: Value,
    doc: FederationDocument,
    signatures: Vec<SignatureEntry>,
}

/// The id of an ed25519 public key: hex SHA-256 of its 32 bytes.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))
}

fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("public key {hex_key:?} is not 32 hex-encoded bytes"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| format!("public key {hex_key:?} is not a valid ed25519 key"))
}

/// Formats a time as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl FederationConfig {
    /// An unsigned config holding `doc`.
    pub fn new(doc: FederationDocument) -> Result<Self, ConfigRejection> {
        let signed = serde_json::to_value(&doc).map_err(|e| ConfigRejection::Malformed(e.to_string()))?;
        let config = Self { signed, doc, signatures: Vec::new() };
        config.check_schema()?;
        Ok(config)
    }

    /// Parses a config document and checks its schema (not its signatures).
    pub fn from_json(text: &str) -> Result<Self, ConfigRejection> {
        let envelope: Envelope = serde_json::from_str(text).map_err(|e| ConfigRejection::Malformed(e.to_string()))?;
        Self::from_value_parts(envelope.signed, envelope.signatures)
    }

    fn from_value_parts(signed: Value, signatures: Vec<SignatureEntry>) -> Result<Self, ConfigRejection> {
        let doc: FederationDocument =
            serde_json::from_value(signed.clone()).map_err(|e| ConfigRejection::Malformed(e.to_string()))?;
        let config = Self { signed, doc, signatures };
        config.check_schema()?;
        Ok(config)
    }

    /// The document as pretty JSON (the file format).
    pub fn to_json_pretty(&self) -> String {
        let envelope = Envelope { signed: self.signed.clone(), signatures: self.signatures.clone() };
        serde_json::to_string_pretty(&envelope).expect("a JSON value serializes")
    }

    /// The document as compact JSON (for the wire).
    pub fn to_json(&self) -> String {
        let envelope = Envelope { signed: self.signed.clone(), signatures: self.signatures.clone() };
        serde_json::to_string(&envelope).expect("a JSON value serializes")
    }

    /// The parsed document.
    pub fn doc(&self) -> &FederationDocument {
        &self.doc
    }

    /// The signatures as they stand.
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.signatures
    }

    /// The exact bytes an admin signs.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, ConfigRejection> {
        let mut bytes = CONFIG_SIGNING_CONTEXT.to_vec();
        bytes.extend(canonicalize(&self.signed)?);
        Ok(bytes)
    }

    /// Hex SHA-256 of the canonical `signed` document: the config's identity in announcements.
    pub fn digest(&self) -> String {
        // check_schema() already canonicalized `signed` successfully.
        hex::encode(Sha256::digest(canonicalize(&self.signed).unwrap_or_default()))
    }

    /// Replaces the document (e.g. adding a member) and drops every signature, which no longer
    /// covers it.
    pub fn edit(&mut self, f: impl FnOnce(&mut FederationDocument)) -> Result<(), ConfigRejection> {
        let mut doc = self.doc.clone();
        f(&mut doc);
        *self = Self::new(doc)?;
        Ok(())
    }

    /// Adds (or replaces) the signature of `key`.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), ConfigRejection> {
        let id = key_id(&key.verifying_key());
        let sig = key.sign(&self.signing_bytes()?);
        self.signatures.retain(|s| s.key_id != id);
        self.signatures.push(SignatureEntry { key_id: id, sig: hex::encode(sig.to_bytes()) });
        Ok(())
    }

    /// Adds the signatures of `other`, a copy of the same version signed separately (each admin
    /// signs their own copy, offline). Refuses a copy whose signed content differs in any byte of
    /// its canonical form. Where both copies hold a signature of one key, the one that verifies is
    /// kept. Returns how many signatures were added.
    pub fn merge_signatures(&mut self, other: &FederationConfig) -> Result<usize, SignatureMergeError> {
        if other.digest() != self.digest() {
            return Err(SignatureMergeError::DifferentContent {
                version: self.doc.version,
                other_version: other.doc.version,
            });
        }
        let message = self.signing_bytes().map_err(SignatureMergeError::Config)?;
        let verifies = |entry: &SignatureEntry| {
            let Some(admin) = self.doc.admins.keys.iter().find(|k| k.id == entry.key_id) else { return false };
            let (Ok(public), Some(sig)) = (
                parse_public_key(&admin.public_key),
                hex::decode(&entry.sig).ok().and_then(|b| Signature::from_slice(&b).ok()),
            ) else {
                return false;
            };
            public.verify(&message, &sig).is_ok()
        };
        let mut added = 0;
        for entry in &other.signatures {
            match self.signatures.iter().position(|s| s.key_id == entry.key_id) {
                None => {
                    self.signatures.push(entry.clone());
                    added += 1;
                }
                Some(i) if self.signatures[i] != *entry && !verifies(&self.signatures[i]) && verifies(entry) => {
                    self.signatures[i] = entry.clone();
                }
                Some(_) => {}
            }
        }
        Ok(added)
    }

    /// Admins of this version who have not signed it (no valid signature), in the order listed.
    pub fn missing_signers(&self) -> Vec<&AdminKey> {
        let valid = self.valid_signers(&self.doc.admins);
        self.doc.admins.keys.iter().filter(|k| !valid.contains(&k.id)).collect()
    }

    fn check_schema(&self) -> Result<(), ConfigRejection> {
        let bad = |m: String| Err(ConfigRejection::Malformed(m));
        let d = &self.doc;
        let id_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        if d.federation_id.is_empty() || d.federation_id.len() > 64 || !d.federation_id.chars().all(id_ok) {
            return bad(format!("federation_id {:?}: 1-64 of a-z 0-9 - _ .", d.federation_id));
        }
        // Stores keep versions as signed 64-bit integers: a larger one would wrap.
        if d.version == 0 || d.version > MAX_COUNTER {
            return bad(format!("version must be between 1 and {MAX_COUNTER}"));
        }
        let p = &d.policy;
        if !(1..=86_400).contains(&p.advert_interval_secs)
            || !(1..=1000).contains(&p.advert_ttl_intervals)
            || p.max_clock_skew_secs > 86_400
        {
            return bad(
                "policy: advert_interval_secs 1 to 86400, advert_ttl_intervals 1 to 1000, max_clock_skew_secs at most 86400"
                    .into(),
            );
        }
        if d.expires_at <= d.issued_at {
            return bad("expires_at must be after issued_at".into());
        }
        let keys = &d.admins.keys;
        if d.admins.threshold == 0 || d.admins.threshold as usize > keys.len() {
            return bad(format!(
                "threshold {} must be between 1 and the {} admin keys",
                d.admins.threshold,
                keys.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for k in keys {
            let public = parse_public_key(&k.public_key).map_err(ConfigRejection::Malformed)?;
            if key_id(&public) != k.id {
                return bad(format!("admin key id {} does not match its public key", k.id));
            }
            if !seen.insert(&k.id) {
                return bad(format!("admin key {} is listed twice", k.id));
            }
        }
        let mut peers = BTreeSet::new();
        for m in &d.members {
            if m.peer_id.parse::<libp2p_identity::PeerId>().is_err() {
                return bad(format!("member peer_id {:?} is not a PeerId", m.peer_id));
            }
            if !peers.insert(&m.peer_id) {
                return bad(format!("member {} is listed twice", m.peer_id));
            }
            for a in &m.addresses {
                if a.parse::<multiaddr::Multiaddr>().is_err() {
                    return bad(format!("member {} address {a:?} is not a multiaddr", m.peer_id));
                }
            }
        }
        if d.policy.advert_interval_secs == 0 || d.policy.advert_ttl_intervals == 0 {
            return bad("policy intervals must be positive".into());
        }
        canonicalize(&self.signed)?;
        Ok(())
    }

    /// Key ids of `admins` whose signature over this config verifies; each key at most once.
    pub fn valid_signers(&self, admins: &AdminSet) -> BTreeSet<String> {
        let Ok(message) = self.signing_bytes() else { return BTreeSet::new() };
        let mut valid = BTreeSet::new();
        for entry in &self.signatures {
            let Some(admin) = admins.keys.iter().find(|k| k.id == entry.key_id) else { continue };
            let Ok(public) = parse_public_key(&admin.public_key) else { continue };
            let Some(sig) = hex::decode(&entry.sig).ok().and_then(|b| Signature::from_slice(&b).ok()) else {
                continue;
            };
            if public.verify(&message, &sig).is_ok() {
                valid.insert(entry.key_id.clone());
            }
        }
        valid
    }

    fn check_threshold(&self, admins: &AdminSet, by: SignerSet) -> Result<(), ConfigRejection> {
        let valid = self.valid_signers(admins).len();
        if valid < admins.threshold as usize {
            return Err(ConfigRejection::NotEnoughSignatures { by, valid, threshold: admins.threshold });
        }
        Ok(())
    }

    fn check_unexpired(&self, now: OffsetDateTime) -> Result<(), ConfigRejection> {
        if self.is_expired(now) {
            return Err(ConfigRejection::Expired {
                version: self.doc.version,
                expires_at: rfc3339(self.doc.expires_at),
            });
        }
        Ok(())
    }

    /// True once `expires_at` has passed.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.doc.expires_at <= now
    }

    /// Checks a config offered as the first one a node trusts.
    pub fn verify_initial(&self, now: OffsetDateTime) -> Result<(), ConfigRejection> {
        self.check_unexpired(now)?;
        self.check_threshold(&self.doc.admins, SignerSet::Own)
    }

    /// Checks a config offered to replace `current`.
    pub fn verify_update(&self, current: &FederationConfig, now: OffsetDateTime) -> Result<(), ConfigRejection> {
        let (cur, new) = (&current.doc, &self.doc);
        if new.federation_id != cur.federation_id {
            return Err(ConfigRejection::WrongFederation {
                current: cur.federation_id.clone(),
                offered: new.federation_id.clone(),
            });
        }
        if new.version <= cur.version {
            return Err(ConfigRejection::Rollback { current: cur.version, offered: new.version });
        }
        if new.version > cur.version + 1 {
            return Err(ConfigRejection::SkipsVersion { current: cur.version, offered: new.version });
        }
        self.check_unexpired(now)?;
        self.check_threshold(&cur.admins, SignerSet::Previous)?;
        self.check_threshold(&new.admins, SignerSet::Own)
    }
}

/// An admin's signing key with its public id.
pub struct AdminSigningKey(pub SigningKey);

impl AdminSigningKey {
    /// Builds a key from its 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The entry to list this key in a config.
    pub fn admin_key(&self) -> AdminKey {
        let public = self.0.verifying_key();
        AdminKey { id: key_id(&public), public_key: hex::encode(public.as_bytes()) }
    }
}

/// Builds an [`AdminKey`] entry from a hex public key.
pub fn admin_key_from_public_hex(public_hex: &str) -> Result<AdminKey, String> {
    let public = parse_public_key(public_hex)?;
    Ok(AdminKey { id: key_id(&public), public_key: hex::encode(public.as_bytes()) })
}
