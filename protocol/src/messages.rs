//! Request-response messages between nodes, by protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::advert::SignedAdvert;

/// `/fedimpute/federation/1`: fetching configs and catalog snapshots from a peer.
pub const FEDERATION_PROTOCOL: &str = "/fedimpute/federation/1";

/// A question to a peer about the federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FederationRequest {
    /// The peer's config of exactly this version, if it has accepted one.
    GetConfig { version: u64 },
    /// The fresh adverts the peer holds (its own included) that are newer than what the asker
    /// already has, so that a node that just connected does not wait for the next gossip
    /// round, and one that already knows most of the federation is not sent it again.
    GetCatalog {
        /// PeerId -> highest advert `seq` the asker holds.
        #[serde(default)]
        have: BTreeMap<String, u64>,
    },
    /// The advert of the asker's that carried the highest audit head the peer has seen: the
    /// asker checks its own log still holds it.
    GetWitnessedHead,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FederationResponse {
    /// The config document (the file format, compact), or none if the peer does not have it.
    Config {
        document: Option<String>,
    },
    Catalog {
        adverts: Vec<SignedAdvert>,
    },
    /// The asker's own signed advert with the highest audit head seen, if any.
    WitnessedHead {
        advert: Option<SignedAdvert>,
    },
    /// The peer refused, e.g. because the asker is not a member.
    Refused {
        reason: String,
    },
}
