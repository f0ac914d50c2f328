//! Adverts: what a node tells the federation about itself, signed with its node key.
//!
//! A node signs `ADVERT_SIGNING_CONTEXT || canonical(advert)` with the ed25519 key its PeerId is
//! derived from, so anyone holding the advert can check it without trusting whoever relayed it.
//! Receivers also check (outside this crate, since they need the current config and their
//! clock) that the author is a member, the timestamp is fresh and `seq` is newer than the last
//! advert seen from that author.

use libp2p_identity::{PeerId, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{CanonicalError, canonicalize};

/// Domain separation for node signatures over adverts.
pub const ADVERT_SIGNING_CONTEXT: &[u8] = b"fedimpute/advert/v1\0";

/// Health of an imputation service as its host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Available,
    Degraded,
    Unavailable,
}

/// An imputation service a node offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAdvert {
    pub id: String,
    /// `beagle`, `minimac4`, `cloudgene` or `wes`.
    pub kind: String,
    pub status: ServiceStatus,
    pub queue_length: u32,
    /// Jobs it runs at once.
    pub capacity: u32,
}

/// A reference panel a node hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelAdvert {
    pub id: String,
    pub name: String,
    /// `hg19` or `hg38`.
    pub build: String,
    pub populations: Vec<String>,
    pub samples: u64,
    pub sites: u64,
    pub chromosomes: Vec<String>,
    /// Services that can impute against it.
    pub engines: Vec<String>,
}

/// What a host accepts, as far as others need to know before submitting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPolicyAdvert {
    /// Institutions or `tag=value` selectors allowed to submit; empty means every member.
    #[serde(default)]
    pub accepts_from: Vec<String>,
    /// Largest input accepted, in bytes; 0 means no limit stated.
    #[serde(default)]
    pub max_input_bytes: u64,
    /// Days results are kept before deletion.
    #[serde(default)]
    pub retention_days: u32,
}

/// The head of the author's audit log when it signed the advert: how many rows it holds and the
/// hash of the newest. Members keep the highest head they have seen of each other, so a node
/// cannot quietly drop the end of its log: its own signature over the head proves what it had
/// logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub count: u64,
    /// Hex SHA-256 of row `count` (the genesis hash for an empty log).
    pub hash: String,
}

/// The content of an advert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    pub federation_id: String,
    /// The author.
    pub peer_id: String,
    /// Strictly increasing per author (the node uses milliseconds since the epoch).
    pub seq: u64,
    /// Milliseconds since the epoch when it was signed.
    pub issued_at_ms: i64,
    pub node_name: String,
    pub institution: String,
    pub software_version: String,
    pub protocol_major: u32,
    #[serde(default)]
    pub api_url: Option<String>,
    /// The federation config version the author runs, and its digest: how newer configs spread.
    pub config_version: u64,
    pub config_digest: String,
    #[serde(default)]
    pub services: Vec<ServiceAdvert>,
    #[serde(default)]
    pub panels: Vec<PanelAdvert>,
    #[serde(default)]
    pub data_policy: DataPolicyAdvert,
    /// Absent in adverts of nodes from before audit heads were advertised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<AuditHead>,
}

/// An advert as it travels: the content as received and the author's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAdvert {
    pub advert: Value,
    /// Hex ed25519 signature.
    pub signature: String,
}

/// Why an advert is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    #[error("advert does not parse: {0}")]
    Schema(String),
    #[error("advert author {0:?} is not a PeerId with an embedded ed25519 key")]
    BadAuthor(String),
    #[error("advert signature does not verify with its author's key")]
    BadSignature,
    #[error("advert cannot be canonicalized: {0}")]
    Canonical(#[from] CanonicalError),
}

fn signing_bytes(advert: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut bytes = ADVERT_SIGNING_CONTEXT.to_vec();
    bytes.extend(canonicalize(advert)?);
    Ok(bytes)
}

/// The public key embedded in an ed25519 PeerId (an identity multihash of the key).
pub fn public_key_of(peer_id: &PeerId) -> Option<PublicKey> {
    let mh = peer_id.as_ref();
    if mh.code() != 0 {
        return None;
    }
    PublicKey::try_decode_protobuf(mh.digest()).ok()
}

impl SignedAdvert {
    /// Signs `advert` with `sign`, a function that signs bytes with the author's node key.
    pub fn sign(advert: &Advert, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Result<Self, AdvertError> {
        let value = serde_json::to_value(advert).map_err(|e| AdvertError::Schema(e.to_string()))?;
        let signature = hex::encode(sign(&signing_bytes(&value)?));
        Ok(Self { advert: value, signature })
    }

    /// Parses the advert and checks its signature against the key in its `peer_id`.
    pub fn verify(&self) -> Result<Advert, AdvertError> {
        let advert: Advert =
            serde_json::from_value(self.advert.clone()).map_err(|e| AdvertError::Schema(e.to_string()))?;
        let peer: PeerId = advert.peer_id.parse().map_err(|_| AdvertError::BadAuthor(advert.peer_id.clone()))?;
        let key = public_key_of(&peer).ok_or_else(|| AdvertError::BadAuthor(advert.peer_id.clone()))?;
        let sig = hex::decode(&self.signature).map_err(|_| AdvertError::BadSignature)?;
        if !key.verify(&signing_bytes(&self.advert)?, &sig) {
            return Err(AdvertError::BadSignature);
        }
        Ok(advert)
    }
}
