//! What this node knows of each peer's connection: state, last seen, round-trip time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::time::now_ms;

/// One peer's connection as seen from here.
#[derive(Debug, Clone, Default)]
pub struct PeerStatus {
    pub connected: bool,
    /// Last time a connection was open (ms since the epoch).
    pub last_seen_ms: Option<i64>,
    pub rtt_ms: Option<f64>,
    /// Remote address of the current connection.
    pub address: Option<String>,
    /// Why the member was refused on its last connection: it speaks another protocol major.
    /// Set only while it is not connected (a connection that gets through clears it).
    pub incompatible: Option<String>,
    /// The relay the connection runs through (PeerId text); None: direct.
    pub relayed_via: Option<String>,
}

/// Shared table of peer statuses, keyed by PeerId text.
#[derive(Clone, Default)]
pub struct PeerTable(Arc<RwLock<HashMap<String, PeerStatus>>>);

impl PeerTable {
    fn update(&self, peer: &str, f: impl FnOnce(&mut PeerStatus)) {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still usable.
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        f(map.entry(peer.to_string()).or_default());
    }

    pub fn connected(&self, peer: &str, address: Option<String>) {
        self.update(peer, |s| {
            s.connected = true;
            s.last_seen_ms = Some(now_ms());
            s.address = address;
            s.incompatible = None;
        });
    }

    pub fn incompatible(&self, peer: &str, reason: String) {
        self.update(peer, |s| {
            s.connected = false;
            s.last_seen_ms = Some(now_ms());
            s.incompatible = Some(reason);
        });
    }

    pub fn disconnected(&self, peer: &str) {
        self.update(peer, |s| {
            s.connected = false;
            s.last_seen_ms = Some(now_ms());
            s.relayed_via = None;
        });
    }

    pub fn route(&self, peer: &str, relay: Option<String>) {
        self.update(peer, |s| s.relayed_via = relay);
    }

    pub fn rtt(&self, peer: &str, rtt_ms: f64) {
        self.update(peer, |s| {
            s.rtt_ms = Some(rtt_ms);
            s.last_seen_ms = Some(now_ms());
        });
    }

    /// A copy of one peer's status.
    pub fn get(&self, peer: &str) -> PeerStatus {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(peer).cloned().unwrap_or_default()
    }
}
