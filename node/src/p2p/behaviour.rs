//! The composed network behaviour: one field per protocol.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fedimpute_protocol::jobs::{JOB_PROTOCOL, SignedJobMessage};
use fedimpute_protocol::messages::{FEDERATION_PROTOCOL, FederationRequest, FederationResponse};
use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse, FILE_PROTOCOL, MAX_CHUNK_BYTES};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, StreamProtocol, allow_block_list, connection_limits, dcutr, gossipsub, identify, identity, ping, relay,
    request_response,
};
use sha2::{Digest, Sha256};

use crate::config::RelaySection;

/// The current members, shared with the relay's admission checks.
pub(super) type MemberSet = Arc<RwLock<HashSet<PeerId>>>;

/// Largest gossip message (an advert with many panels is a few kB).
const MAX_GOSSIP_BYTES: usize = 256 * 1024;

#[derive(NetworkBehaviour)]
pub(super) struct NodeBehaviour {
    /// Only current members may connect, either way. First, so refusals happen before any other
    /// protocol sees the connection.
    pub allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub federation: request_response::json::Behaviour<FederationRequest, FederationResponse>,
    /// Signed job messages, both ways (requests from origins, pushed updates from hosts).
    pub jobs: request_response::json::Behaviour<SignedJobMessage, SignedJobMessage>,
    /// File chunks, pulled by the receiver. CBOR carries the bytes as they are (JSON would
    /// need base64).
    pub files: request_response::cbor::Behaviour<ChunkRequest, ChunkResponse>,
    /// Raw streams: whole files, one stream each (the file-stream protocol).
    pub streams: libp2p_stream::Behaviour,
    /// Reaching members through a relay, and being reached through one (circuit relay v2).
    pub relay_client: relay::client::Behaviour,
    /// Serving as a relay, when the node opts in.
    pub relay: Toggle<relay::Behaviour>,
    /// Upgrading relayed connections to direct ones by hole punching.
    pub dcutr: dcutr::Behaviour,
    /// Gossip neighbours' connections stay open while idle; the others close after the idle
    /// timeout.
    pub keep_alive: super::keep_alive::Behaviour,
}

impl NodeBehaviour {
    pub fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        relay_config: Option<&RelaySection>,
        members: MemberSet,
    ) -> anyhow::Result<Self> {
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            // The node judges every message (membership, signature, freshness) before gossipsub
            // forwards it.
            .validate_messages()
            .heartbeat_interval(Duration::from_millis(500))
            .max_transmit_size(MAX_GOSSIP_BYTES)
            // Content-addressed ids: the same advert relayed by two peers is one message.
            .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(hex::encode(Sha256::digest(&m.data))))
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)
                .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
        gossipsub
            .with_peer_score(peer_score_params(), gossipsub::PeerScoreThresholds::default())
            .map_err(|e| anyhow::anyhow!("gossipsub scoring: {e}"))?;

        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(128))
            // Two relayed connections (both ends dialled through a relay at once) and the direct
            // one a hole punch then opens.
            .with_max_established_per_peer(Some(3))
            .with_max_established(Some(1024));

        Ok(Self {
            allow: Default::default(),
            limits: connection_limits::Behaviour::new(limits),
            identify: identify::Behaviour::new(
                identify::Config::new(fedimpute_protocol::identify_protocol(), key.public())
                    .with_agent_version(fedimpute_protocol::agent_version()),
            ),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(5))),
            gossipsub,
            federation: request_response::json::Behaviour::new(
                [(StreamProtocol::new(FEDERATION_PROTOCOL), request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
            jobs: request_response::json::Behaviour::new(
                [(StreamProtocol::new(JOB_PROTOCOL), request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
            files: request_response::cbor::Behaviour::with_codec(
                request_response::cbor::codec::Codec::default()
                    .set_request_size_maximum(64 * 1024)
                    .set_response_size_maximum(u64::from(MAX_CHUNK_BYTES) + 64 * 1024),
                [(StreamProtocol::new(FILE_PROTOCOL), request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(256),
            ),
            streams: libp2p_stream::Behaviour::new(),
            relay_client,
            relay: relay_config.map(|c| relay_server(key.public().to_peer_id(), c, members)).into(),
            dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
            keep_alive: Default::default(),
        })
    }
}

/// A relay that admits only current members, both to hold a reservation and to open a circuit.
/// The allow list already refuses a non-member's connection; this is the second wall, in case a
/// connection outlives a member's removal by a moment.
fn relay_server(local: PeerId, config: &RelaySection, members: MemberSet) -> relay::Behaviour {
    let is_member = move |peer: PeerId, _: &libp2p::Multiaddr, _: std::time::Instant| {
        members.read().unwrap_or_else(|e| e.into_inner()).contains(&peer)
    };
    let mut relay_config = relay::Config {
        max_reservations: config.max_reservations,
        max_reservations_per_peer: 2,
        max_circuits: config.max_circuits,
        max_circuits_per_peer: config.max_circuits_per_peer,
        max_circuit_duration: Duration::from_secs(config.max_circuit_duration_secs),
        max_circuit_bytes: config.max_circuit_bytes,
        ..Default::default()
    };
    relay_config.reservation_rate_limiters.push(Box::new(is_member.clone()));
    relay_config.circuit_src_rate_limiters.push(Box::new(is_member));
    let mut relay = relay::Behaviour::new(local, relay_config);
    // Members are told to use this relay by their own config; it need not wait for an
    // external-address confirmation to offer itself.
    relay.set_status(Some(relay::Status::Enable));
    relay
}

/// Peer scoring for a federation. Membership is already gated by the signed member list, so
/// the defaults aimed at open networks do harm here: many members behind one address (an
/// institution's NAT, or every node of a test on 127.0.0.1) would be penalised as a Sybil
/// attack and graylisted. Only misbehaviour counts.
fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams { ip_colocation_factor_weight: 0.0, ..Default::default() }
}

/// Scoring for the advert topic. Invalid messages (forgeries) weigh heavily, so a member that
/// forwards them is soon pruned from meshes and then graylisted. Delivery-rate penalties are
/// off: the topic carries one small advert per member per interval, far below the rates
/// those defaults expect, and honest peers would be penalised for a quiet topic.
pub(super) fn advert_topic_score() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        ..Default::default()
    }
}
