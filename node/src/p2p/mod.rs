//! The libp2p side of a node.
//!
//! One task (the [`event_loop`]) owns the `Swarm`; the rest of the node holds a cloneable
//! [`Network`] handle that sends commands and awaits replies, and receives inbound traffic as
//! [`NetworkEvent`]s. Nothing outside this module touches the Swarm, and this module never calls
//! into jobs or the API: what to do with an advert or a request is decided by whoever consumes
//! the events.
//!
//! Transport: TCP + TLS 1.3 (libp2p-tls: both ends prove their PeerId) + yamux. Only members of
//! the current federation config may connect, in either direction (an allow list rebuilt on
//! every config change; removing a member closes its connections at once).
//!
//! Members behind firewalls (`reachability = "outbound"`) take reservations at members that
//! serve as relays (circuit relay v2) and are reached through them; the relayed connection is
//! TLS end to end between the two members, and DCUtR upgrades it to a direct one where a hole
//! punch succeeds.

mod behaviour;
mod event_loop;
mod keep_alive;
pub mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fedimpute_protocol::federation::FederationConfig;
use fedimpute_protocol::jobs::SignedJobMessage;
use fedimpute_protocol::messages::{FederationRequest, FederationResponse};
use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse, FILE_STREAM_PROTOCOL};
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Reachability, RelaySection};
use crate::identity::NodeIdentity;

/// Something the network could not do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    #[error("the network task has stopped")]
    Stopped,
    #[error("request to {peer} failed: {reason}")]
    Request { peer: String, reason: String },
    #[error("publish failed: {0}")]
    Publish(String),
}

/// Inbound traffic and connection changes, for the node to act on.
#[derive(Debug)]
pub enum NetworkEvent {
    /// A gossip message on the advert topic, awaiting a verdict via [`Network::report_advert`].
    Advert { message_id: MessageId, propagation_source: PeerId, author: Option<PeerId>, data: Vec<u8> },
    /// A peer asks something; answer with [`Network::respond`].
    Request { peer: PeerId, request: FederationRequest, channel: ResponseChannel<FederationResponse> },
    /// A peer is connected and speaking (its identify exchange completed).
    Connected { peer: PeerId, address: Multiaddr },
    /// Last connection to a peer closed.
    Disconnected { peer: PeerId },
    /// A ping round trip.
    Rtt { peer: PeerId, rtt_ms: f64 },
    /// A connection from or to a node that is not a member was refused.
    Refused { peer: PeerId, address: Option<Multiaddr>, inbound: bool },
    /// A member speaks a protocol major this node does not; its connections were closed.
    Incompatible { peer: PeerId, reason: String },
    /// The node listens on a new address.
    Listening { address: Multiaddr },
    /// How a connected peer is reached changed: through this relay, or (None) directly.
    Route { peer: PeerId, relay: Option<PeerId> },
}

/// Inbound job traffic, for the jobs core to act on (kept apart from federation events so
/// that neither waits behind the other).
#[derive(Debug)]
pub enum JobNetworkEvent {
    /// A signed job message; answer with [`Network::respond_job`].
    Message { peer: PeerId, message: SignedJobMessage, channel: ResponseChannel<SignedJobMessage> },
    /// A peer pulls a chunk of a file; answer with [`Network::respond_chunk`].
    Chunk { peer: PeerId, request: ChunkRequest, channel: ResponseChannel<ChunkResponse> },
    /// A peer is connected and speaking: jobs waiting on it can go on.
    Connected { peer: PeerId },
}

/// The inbound event streams of the network.
pub struct NetworkEvents {
    pub federation: mpsc::Receiver<NetworkEvent>,
    pub jobs: mpsc::Receiver<JobNetworkEvent>,
    /// Peers' file streams (the file-stream protocol), each opened by a peer pulling a file.
    /// Dropping this stops the node offering the protocol: peers then pull by chunks.
    pub file_streams: libp2p_stream::IncomingStreams,
}

pub(crate) enum Command {
    Publish {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetworkError>>,
    },
    Report {
        message_id: MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    Request {
        peer: PeerId,
        request: FederationRequest,
        reply: oneshot::Sender<Result<FederationResponse, NetworkError>>,
    },
    Respond {
        channel: ResponseChannel<FederationResponse>,
        response: FederationResponse,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    JobRequest {
        peer: PeerId,
        message: SignedJobMessage,
        reply: oneshot::Sender<Result<SignedJobMessage, NetworkError>>,
    },
    JobRespond {
        channel: ResponseChannel<SignedJobMessage>,
        message: SignedJobMessage,
    },
    ChunkRequest {
        peer: PeerId,
        request: ChunkRequest,
        reply: oneshot::Sender<Result<ChunkResponse, NetworkError>>,
    },
    ChunkRespond {
        channel: ResponseChannel<ChunkResponse>,
        response: ChunkResponse,
    },
}

/// Cloneable handle on the network task.
#[derive(Clone)]
pub struct Network {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    /// Opens raw streams without a round trip through the event loop.
    streams: libp2p_stream::Control,
    streams_in_use: StreamsInUse,
}

/// File streams open per peer, so the event loop does not close an on-demand connection that
/// is carrying one (it sees requests, but streams bypass it).
#[derive(Clone, Default)]
pub(crate) struct StreamsInUse(Arc<std::sync::Mutex<HashMap<PeerId, usize>>>);

impl StreamsInUse {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn any(&self, peer: &PeerId) -> bool {
        self.map().get(peer).is_some_and(|n| *n > 0)
    }
}

/// A file stream in use with a peer, until dropped.
pub struct StreamInUse {
    peer: PeerId,
    registry: StreamsInUse,
}

impl Drop for StreamInUse {
    fn drop(&mut self) {
        let mut map = self.registry.map();
        if let Some(n) = map.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

/// Why a file stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenStreamError {
    /// The peer does not speak the file-stream protocol (an older node of this major).
    #[error("the peer does not speak {FILE_STREAM_PROTOCOL}")]
    Unsupported,
    #[error("opening a file stream to {peer}: {reason}")]
    Failed { peer: String, reason: String },
}

/// How the network is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub listen: Vec<Multiaddr>,
    pub reachability: Reachability,
    /// Relays an `outbound` node may use; empty: any member that serves as one.
    pub relays: Vec<PeerId>,
    /// Serve as a relay with these limits.
    pub relay: Option<RelaySection>,
    /// Gossip neighbours to stay connected to (0: every member).
    pub gossip_peers: usize,
    /// How long an idle on-demand connection stays open.
    pub idle_connection: Duration,
}

impl NetworkConfig {
    /// A directly reachable node that serves no relay.
    pub fn listening_on(listen: Vec<Multiaddr>) -> Self {
        Self {
            listen,
            reachability: Reachability::Direct,
            relays: Vec::new(),
            relay: None,
            gossip_peers: 12,
            idle_connection: Duration::from_secs(60),
        }
    }
}

impl Network {
    /// Starts the network task. It follows `federation` (member list, topic) by itself.
    pub fn spawn(
        identity: &NodeIdentity,
        config: NetworkConfig,
        federation: watch::Receiver<Option<Arc<FederationConfig>>>,
    ) -> anyhow::Result<(Self, NetworkEvents)> {
        let (command_tx, command_rx) = mpsc::channel(256);
        let (event_tx, event_rx) = mpsc::channel(1024);
        let (job_tx, job_rx) = mpsc::channel(1024);
        let streams_in_use = StreamsInUse::default();
        let event_loop = event_loop::EventLoop::new(
            identity,
            &config,
            federation,
            command_rx,
            event_tx,
            job_tx,
            streams_in_use.clone(),
        )?;
        let mut streams = event_loop.stream_control();
        let file_streams = streams
            .accept(StreamProtocol::new(FILE_STREAM_PROTOCOL))
            .map_err(|e| anyhow::anyhow!("cannot accept file streams: {e}"))?;
        tokio::spawn(event_loop.run());
        let events = NetworkEvents { federation: event_rx, jobs: job_rx, file_streams };
        Ok((Self { commands: command_tx, local_peer_id: identity.peer_id(), streams, streams_in_use }, events))
    }

    /// Marks a file stream with `peer` as in use while the guard lives: the connection it runs
    /// on is not closed as idle meanwhile.
    pub fn stream_in_use(&self, peer: PeerId) -> StreamInUse {
        *self.streams_in_use.map().entry(peer).or_default() += 1;
        StreamInUse { peer, registry: self.streams_in_use.clone() }
    }

    /// Opens a file stream to a connected member (dialling it if it is not connected).
    pub async fn open_file_stream(&self, peer: PeerId) -> Result<libp2p::Stream, OpenStreamError> {
        match self.streams.clone().open_stream(peer, StreamProtocol::new(FILE_STREAM_PROTOCOL)).await {
            Ok(stream) => Ok(stream),
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => Err(OpenStreamError::Unsupported),
            Err(e) => Err(OpenStreamError::Failed { peer: peer.to_string(), reason: e.to_string() }),
        }
    }

    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn send(&self, command: Command) -> Result<(), NetworkError> {
        self.commands.send(command).await.map_err(|_| NetworkError::Stopped)
    }

    /// Publishes an advert (already signed) on the federation's advert topic.
    pub async fn publish_advert(&self, data: Vec<u8>) -> Result<(), NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Publish { data, reply }).await?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Tells gossipsub whether to forward (accept), drop (ignore) or drop and penalise (reject).
    pub async fn report_advert(&self, message_id: MessageId, source: PeerId, acceptance: MessageAcceptance) {
        let _ = self.send(Command::Report { message_id, source, acceptance }).await;
    }

    /// Asks a connected peer something and waits for the answer.
    pub async fn request(&self, peer: PeerId, request: FederationRequest) -> Result<FederationResponse, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request { peer, request, reply }).await?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Answers a peer's request.
    pub async fn respond(&self, channel: ResponseChannel<FederationResponse>, response: FederationResponse) {
        let _ = self.send(Command::Respond { channel, response }).await;
    }

    /// Sends a signed job message to a peer and waits for its signed answer.
    pub async fn job_request(&self, peer: PeerId, message: SignedJobMessage) -> Result<SignedJobMessage, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::JobRequest { peer, message, reply }).await?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Answers a peer's job message.
    pub async fn respond_job(&self, channel: ResponseChannel<SignedJobMessage>, message: SignedJobMessage) {
        let _ = self.send(Command::JobRespond { channel, message }).await;
    }

    /// Asks a peer for a chunk of a file.
    pub async fn chunk_request(&self, peer: PeerId, request: ChunkRequest) -> Result<ChunkResponse, NetworkError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::ChunkRequest { peer, request, reply }).await?;
        rx.await.map_err(|_| NetworkError::Stopped)?
    }

    /// Answers a peer's chunk request.
    pub async fn respond_chunk(&self, channel: ResponseChannel<ChunkResponse>, response: ChunkResponse) {
        let _ = self.send(Command::ChunkRespond { channel, response }).await;
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::ListenAddrs { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}
