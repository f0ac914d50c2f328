//! The task that owns the Swarm.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fedimpute_protocol::federation::FederationConfig;
use fedimpute_protocol::messages::FederationResponse;
use futures_util::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, dcutr, gossipsub, identify, ping, relay, tcp, tls, yamux};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::behaviour::{MemberSet, NodeBehaviour, NodeBehaviourEvent, advert_topic_score};
use super::topology::{Neighbours, gossip_neighbours};
use super::{Command, JobNetworkEvent, NetworkConfig, NetworkError, NetworkEvent, StreamsInUse};
use crate::config::Reachability;
use crate::identity::NodeIdentity;
use fedimpute_protocol::jobs::SignedJobMessage;
use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse};

/// First retry after a failed dial; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const DIAL_TICK: Duration = Duration::from_millis(250);
/// How long a member that speaks another protocol major is left alone before it is dialled
/// again (it may have been upgraded meanwhile).
const INCOMPATIBLE_RETRY: Duration = Duration::from_secs(300);

struct Backoff {
    next_attempt: Instant,
    delay: Duration,
}

pub(super) struct EventLoop {
    swarm: Swarm<NodeBehaviour>,
    local: PeerId,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetworkEvent>,
    job_events: mpsc::Sender<JobNetworkEvent>,
    federation: watch::Receiver<Option<Arc<FederationConfig>>>,
    /// Members to stay connected to (never ourselves), with their listed addresses.
    members: HashMap<PeerId, Vec<Multiaddr>>,
    /// The config the member set was derived from, to notice expiry (freeze).
    config: Option<Arc<FederationConfig>>,
    topic: Option<gossipsub::IdentTopic>,
    backoff: HashMap<PeerId, Backoff>,
    pending: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<FederationResponse, NetworkError>>)>,
    pending_jobs: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<SignedJobMessage, NetworkError>>)>,
    pending_chunks: HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<ChunkResponse, NetworkError>>)>,
    listen_addrs: Vec<Multiaddr>,
    /// Remote address of each peer's first open connection.
    remote_addrs: HashMap<PeerId, Multiaddr>,
    /// Peers announced as connected: those whose identify exchange completed. A bare transport
    /// connection is not enough: a node that does not list us completes the TLS handshake and
    /// only then closes the connection, so "established" would flicker for a non-member.
    announced: HashSet<PeerId>,
    /// The members, as the relay server's admission check reads them.
    member_set: MemberSet,
    reachability: Reachability,
    /// Relays an `outbound` node may use (empty: any member that serves as one).
    allowed_relays: HashSet<PeerId>,
    /// Connected members that serve as relays, with the listed address to reach them by.
    relays: HashMap<PeerId, Multiaddr>,
    /// This node's reservations at relays (an `outbound` node listens through each).
    reservations: HashMap<PeerId, ListenerId>,
    /// Each open connection, per peer, with the relay it runs through (None: direct).
    connections: HashMap<PeerId, HashMap<ConnectionId, Option<PeerId>>>,
    /// The route last announced for each peer, so a change is announced once.
    routes: HashMap<PeerId, Option<PeerId>>,
    /// How many gossip neighbours to keep (0: every member).
    gossip_peers: usize,
    /// The members this node dials and keeps connected for gossip; others are dialled on demand.
    neighbours: Neighbours,
    /// When each peer's connection last carried a request or answer.
    last_used: HashMap<PeerId, Instant>,
    /// An on-demand connection unused this long is closed.
    idle_connection: Duration,
    streams_in_use: StreamsInUse,
}

impl EventLoop {
    pub fn new(
        identity: &NodeIdentity,
        config: &NetworkConfig,
        federation: watch::Receiver<Option<Arc<FederationConfig>>>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetworkEvent>,
        job_events: mpsc::Sender<JobNetworkEvent>,
        streams_in_use: StreamsInUse,
    ) -> anyhow::Result<Self> {
        let member_set = MemberSet::default();
        let relay_config = config.relay.as_ref();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity.keypair().clone())
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), tls::Config::new, yamux::Config::default)?
            // Relayed connections get the same TLS 1.3 + yamux, end to end between the two
            // members: the relay forwards ciphertext it cannot read.
            .with_relay_client(tls::Config::new, yamux::Config::default)?
            .with_behaviour(|key, relay_client| {
                NodeBehaviour::new(key, relay_client, relay_config, member_set.clone()).map_err(|e| e.into())
            })?
            // A connection no protocol needs closes after this. Gossipsub's own long-lived
            // streams keep every connection it runs on open, so on-demand connections are also
            // closed by the event loop once unused (close_idle_connections).
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        }
        Ok(Self {
            swarm,
            local: identity.peer_id(),
            commands,
            events,
            job_events,
            federation,
            members: HashMap::new(),
            config: None,
            topic: None,
            backoff: HashMap::new(),
            pending: HashMap::new(),
            pending_jobs: HashMap::new(),
            pending_chunks: HashMap::new(),
            listen_addrs: Vec::new(),
            remote_addrs: HashMap::new(),
            announced: HashSet::new(),
            member_set,
            reachability: config.reachability,
            allowed_relays: config.relays.iter().copied().collect(),
            relays: HashMap::new(),
            reservations: HashMap::new(),
            connections: HashMap::new(),
            routes: HashMap::new(),
            gossip_peers: config.gossip_peers,
            neighbours: Neighbours::default(),
            last_used: HashMap::new(),
            idle_connection: config.idle_connection,
            streams_in_use,
        })
    }

    /// A control for the raw-stream behaviour, for the [`super::Network`] handle.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().streams.new_control()
    }

    pub async fn run(mut self) {
        let initial = self.federation.borrow_and_update().clone();
        self.apply_config(initial);
        let mut dial_tick = tokio::time::interval(DIAL_TICK);
        dial_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break, // every handle is gone: the node is shutting down
                },
                changed = self.federation.changed() => {
                    if changed.is_err() { break; }
                    let config = self.federation.borrow_and_update().clone();
                    self.apply_config(config);
                }
                _ = dial_tick.tick() => {
                    self.check_freeze();
                    self.dial_members();
                    self.close_idle_connections();
                }
            }
        }
        tracing::debug!("network task stopped");
    }

    /// The members this node should talk to under `config`: none if it has no config, if the
    /// config has expired (freeze), or if this node is not listed.
    fn effective_members(&self, config: Option<&FederationConfig>) -> HashMap<PeerId, Vec<Multiaddr>> {
        let Some(config) = config else { return HashMap::new() };
        let doc = config.doc();
        if config.is_expired(OffsetDateTime::now_utc()) || doc.member(&self.local.to_string()).is_none() {
            return HashMap::new();
        }
        doc.members
            .iter()
            .filter_map(|m| {
                let peer: PeerId = m.peer_id.parse().ok()?;
                let addrs = m.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                (peer != self.local).then_some((peer, addrs))
            })
            .collect()
    }

    fn apply_config(&mut self, config: Option<Arc<FederationConfig>>) {
        let members = self.effective_members(config.as_deref());
        let old: HashSet<PeerId> = self.members.keys().copied().collect();
        let new: HashSet<PeerId> = members.keys().copied().collect();
        for gone in old.difference(&new) {
            // disallow_peer closes every open connection to it at once.
            self.swarm.behaviour_mut().allow.disallow_peer(*gone);
            self.backoff.remove(gone);
            tracing::info!(peer = %gone, "peer is no longer a member: disconnected");
        }
        for added in new.difference(&old) {
            self.swarm.behaviour_mut().allow.allow_peer(*added);
        }
        self.members = members;
        *self.member_set.write().unwrap_or_else(|e| e.into_inner()) = self.members.keys().copied().collect();
        let everyone: Vec<PeerId> = self.members.keys().copied().chain([self.local]).collect();
        self.neighbours = gossip_neighbours(&everyone, self.local, self.gossip_peers);
        self.refresh_kept();
        // Listed addresses in the swarm's address book: a job message, chunk request or file
        // stream to a member that is not a neighbour dials it there.
        let listed: Vec<(PeerId, Multiaddr)> =
            self.members.iter().flat_map(|(p, addrs)| addrs.iter().map(|a| (*p, a.clone()))).collect();
        for (peer, addr) in listed {
            self.swarm.add_peer_address(peer, addr);
        }
        self.relays.retain(|peer, _| new.contains(peer));
        if self.swarm.behaviour().relay.is_enabled() {
            // A relay hands its reservation holders the addresses it is listed with; without
            // one it cannot accept a reservation.
            let own = config
                .as_deref()
                .and_then(|c| c.doc().member(&self.local.to_string()).map(|m| m.addresses.clone()))
                .unwrap_or_default();
            for addr in own.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
                self.swarm.add_external_address(addr);
            }
        }

        let topic = config
            .as_deref()
            .filter(|_| !self.members.is_empty())
            .map(|c| gossipsub::IdentTopic::new(fedimpute_protocol::advert_topic(&c.doc().federation_id)));
        if topic.as_ref().map(|t| t.hash()) != self.topic.as_ref().map(|t| t.hash()) {
            let gossip = &mut self.swarm.behaviour_mut().gossipsub;
            if let Some(old_topic) = self.topic.take() {
                gossip.unsubscribe(&old_topic);
            }
            if let Some(t) = &topic {
                if let Err(e) = gossip.subscribe(t) {
                    tracing::error!(error = %e, "cannot subscribe to the advert topic");
                }
                if let Err(e) = gossip.set_topic_params(t.clone(), advert_topic_score()) {
                    tracing::warn!(error = %e, "cannot set advert topic scoring");
                }
            }
            self.topic = topic;
        }
        self.config = config;
    }

    fn check_freeze(&mut self) {
        if !self.members.is_empty() && self.config.as_ref().is_some_and(|c| c.is_expired(OffsetDateTime::now_utc())) {
            tracing::warn!("federation config expired: closing every peer connection (frozen)");
            let config = self.config.clone();
            self.apply_config(config);
        }
    }

    /// The peers whose connections stay open while idle: gossip neighbours and the relays this
    /// node is reachable through.
    fn refresh_kept(&mut self) {
        let kept = self.members.keys().filter(|p| self.is_kept(p)).copied().collect();
        self.swarm.behaviour_mut().keep_alive.set_kept(kept);
    }

    fn is_kept(&self, peer: &PeerId) -> bool {
        self.neighbours.keep.contains(peer) || self.reservations.contains_key(peer)
    }

    /// Whether the dial loop keeps this member connected: a gossip neighbour it dials, or, for
    /// a node that can only dial out, a relay to be reached through (any listed member while
    /// it has no reservation and was not told its relays: one of them may serve as one).
    fn stays_connected(&self, peer: &PeerId) -> bool {
        if self.neighbours.dial.contains(peer) {
            return true;
        }
        if self.reachability != Reachability::Outbound {
            return false;
        }
        self.reservations.contains_key(peer)
            || self.allowed_relays.contains(peer)
            || (self.allowed_relays.is_empty() && self.reservations.is_empty())
    }

    /// Starts a connection to a member that is not connected, for a request about to be sent
    /// (request-response waits for it; without this it would dial only the address book).
    fn dial_on_demand(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        let Some(listed) = self.members.get(&peer) else { return };
        if self.backoff.get(&peer).is_some_and(|b| b.delay == INCOMPATIBLE_RETRY && b.next_attempt > Instant::now()) {
            return; // it speaks another protocol major: left alone until the retry
        }
        let addrs = self.dial_addresses(peer, listed);
        if addrs.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "on-demand dial not started");
        }
    }

    /// Closes connections that are neither gossip nor a relay this node needs once no request,
    /// answer or file stream has used them for the idle time.
    fn close_idle_connections(&mut self) {
        let now = Instant::now();
        let busy: HashSet<PeerId> = self
            .pending
            .values()
            .map(|(p, _)| *p)
            .chain(self.pending_jobs.values().map(|(p, _)| *p))
            .chain(self.pending_chunks.values().map(|(p, _)| *p))
            .collect();
        let idle: Vec<PeerId> = self
            .connections
            .keys()
            .filter(|p| !self.is_kept(p))
            .filter(|p| !(self.reachability == Reachability::Outbound && self.relays.contains_key(p)))
            .filter(|p| !busy.contains(p) && !self.streams_in_use.any(p))
            .filter(|p| self.last_used.get(p).is_none_or(|t| now.duration_since(*t) >= self.idle_connection))
            .copied()
            .collect();
        for peer in idle {
            tracing::debug!(%peer, "closing an idle on-demand connection");
            self.last_used.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn used(&mut self, peer: PeerId) {
        self.last_used.insert(peer, Instant::now());
    }

    fn dial_members(&mut self) {
        let now = Instant::now();
        let targets: Vec<(PeerId, Vec<Multiaddr>)> = self
            .members
            .iter()
            .filter(|(peer, _)| self.stays_connected(peer) && !self.swarm.is_connected(peer))
            .filter(|(peer, _)| self.backoff.get(peer).is_none_or(|b| b.next_attempt <= now))
            .map(|(p, a)| (*p, self.dial_addresses(*p, a)))
            .filter(|(_, addrs)| !addrs.is_empty())
            .collect();
        for (peer, addrs) in targets {
            let entry = self.backoff.entry(peer).or_insert(Backoff { next_attempt: now, delay: FIRST_BACKOFF });
            entry.next_attempt = now + entry.delay;
            entry.delay = (entry.delay * 2).min(MAX_BACKOFF);
            let opts =
                DialOpts::peer_id(peer).addresses(addrs).condition(PeerCondition::DisconnectedAndNotDialing).build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(%peer, error = %e, "dial not started");
            }
        }
    }

    /// Where to dial a member: its listed addresses, and, through every connected relay, a
    /// circuit to it when it is listed with no address (it dials out only), when this node can
    /// only dial out, or when a direct dial has failed before. The swarm tries them side by
    /// side and keeps the first that connects.
    fn dial_addresses(&self, peer: PeerId, listed: &[Multiaddr]) -> Vec<Multiaddr> {
        let direct_failed = self.backoff.get(&peer).is_some_and(|b| b.delay > FIRST_BACKOFF);
        let mut addrs = listed.to_vec();
        if listed.is_empty() || self.reachability == Reachability::Outbound || direct_failed {
            addrs.extend(
                self.relays
                    .iter()
                    .filter(|(relay, _)| **relay != peer)
                    .map(|(relay, addr)| circuit_through(addr, *relay).with(Protocol::P2p(peer))),
            );
        }
        addrs
    }

    /// A connected member offers the relay protocol: remember it for circuits, and if this node
    /// can only dial out, take a reservation there so members can reach it.
    fn on_relay_seen(&mut self, relay: PeerId) {
        let Some(addr) = self.members.get(&relay).and_then(|a| a.first()).cloned() else {
            return; // a relay must be listed with an address; one that is not cannot be used
        };
        self.relays.insert(relay, addr.clone());
        // Members that dial out only are reached through this relay, also by file streams,
        // which dial from the address book.
        let unlisted: Vec<PeerId> =
            self.members.iter().filter(|(p, a)| a.is_empty() && **p != relay).map(|(p, _)| *p).collect();
        for peer in unlisted {
            self.swarm.add_peer_address(peer, circuit_through(&addr, relay).with(Protocol::P2p(peer)));
        }
        let wanted = self.reachability == Reachability::Outbound
            && (self.allowed_relays.is_empty() || self.allowed_relays.contains(&relay));
        if wanted && !self.reservations.contains_key(&relay) {
            match self.swarm.listen_on(circuit_through(&addr, relay)) {
                Ok(listener) => {
                    tracing::info!(%relay, "asking for a reservation at a relay");
                    self.reservations.insert(relay, listener);
                    self.refresh_kept();
                }
                Err(e) => tracing::warn!(%relay, error = %e, "cannot listen through the relay"),
            }
        }
    }

    /// Records a connection's route and announces the peer's route when it changes: direct as
    /// soon as one direct connection is open (a hole punch succeeded), else the relay's.
    /// Once a direct connection is open, the relayed ones are closed: they hold one of the
    /// relay's circuits and its bandwidth for nothing.
    async fn note_route(&mut self, peer: PeerId) {
        let Some(conns) = self.connections.get(&peer) else { return };
        let direct = conns.values().any(Option::is_none);
        if direct {
            for (id, _) in conns.iter().filter(|(_, relay)| relay.is_some()) {
                self.swarm.close_connection(*id);
            }
        }
        let route = if direct { None } else { conns.values().flatten().next().copied() };
        if self.announced.contains(&peer) && self.routes.insert(peer, route) != Some(route) {
            emit(&self.events, NetworkEvent::Route { peer, relay: route }).await;
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                self.listen_addrs.push(address.clone());
                emit(&self.events, NetworkEvent::Listening { address }).await;
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                // A fresh connection gets the idle time to be used before it counts as idle.
                self.used(peer_id);
                if num_established.get() == 1 {
                    self.remote_addrs.insert(peer_id, endpoint.get_remote_address().clone());
                }
                self.connections.entry(peer_id).or_default().insert(connection_id, relay_of(&endpoint));
                self.note_route(peer_id).await;
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                if let Some(conns) = self.connections.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                }
                if num_established > 0 {
                    self.note_route(peer_id).await;
                    return;
                }
                self.connections.remove(&peer_id);
                self.last_used.remove(&peer_id);
                self.routes.remove(&peer_id);
                self.relays.remove(&peer_id);
                self.remote_addrs.remove(&peer_id);
                if self.announced.remove(&peer_id) {
                    tracing::info!(peer = %peer_id, "disconnected");
                    emit(&self.events, NetworkEvent::Disconnected { peer: peer_id }).await;
                }
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                // A reservation ends with its relay's connection; it is asked for again when
                // the relay is back.
                if let Some(relay) = self.reservations.iter().find(|(_, id)| **id == listener_id).map(|(r, _)| *r) {
                    tracing::info!(%relay, ?reason, "reservation at the relay closed");
                    self.reservations.remove(&relay);
                    self.refresh_kept();
                }
            }
            SwarmEvent::IncomingConnectionError { peer_id, send_back_addr, error, .. } => match (error, peer_id) {
                (ListenError::Denied { cause }, Some(peer)) if cause.downcast_ref::<NotAllowed>().is_some() => {
                    tracing::warn!(%peer, address = %send_back_addr, "refused a connection from a non-member");
                    emit(&self.events, NetworkEvent::Refused { peer, address: Some(send_back_addr), inbound: true })
                        .await;
                }
                (error, peer) => tracing::debug!(?peer, %error, "incoming connection failed"),
            },
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => match (error, peer_id) {
                (DialError::Denied { cause }, Some(peer)) if cause.downcast_ref::<NotAllowed>().is_some() => {
                    emit(&self.events, NetworkEvent::Refused { peer, address: None, inbound: false }).await;
                }
                (error, peer) => tracing::debug!(?peer, %error, "dial failed"),
            },
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: NodeBehaviourEvent) {
        match event {
            NodeBehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                emit(
                    &self.events,
                    NetworkEvent::Advert { message_id, propagation_source, author: message.source, data: message.data },
                )
                .await;
            }
            NodeBehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }) => {
                emit(&self.events, NetworkEvent::Rtt { peer, rtt_ms: rtt.as_secs_f64() * 1000.0 }).await;
            }
            NodeBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
                if let Err(reason) =
                    fedimpute_protocol::check_peer_protocol(&info.protocol_version, &info.agent_version)
                {
                    self.refuse_incompatible(peer_id, reason).await;
                    return;
                }
                if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) && self.members.contains_key(&peer_id) {
                    self.on_relay_seen(peer_id);
                }
                if self.swarm.is_connected(&peer_id) && self.announced.insert(peer_id) {
                    // Only a connection that gets this far resets the dial backoff: a node that
                    // does not list us completes the TLS handshake before it closes the
                    // connection, and must not be redialled at every tick.
                    self.backoff.remove(&peer_id);
                    let address = self.remote_addrs.get(&peer_id).cloned().unwrap_or_else(Multiaddr::empty);
                    tracing::info!(peer = %peer_id, %address, "connected");
                    emit(&self.events, NetworkEvent::Connected { peer: peer_id, address }).await;
                    emit(&self.job_events, JobNetworkEvent::Connected { peer: peer_id }).await;
                    self.note_route(peer_id).await;
                }
            }
            NodeBehaviourEvent::RelayClient(event) => match event {
                relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal: false, .. } => {
                    tracing::info!(relay = %relay_peer_id, "reachable through the relay");
                }
                event => tracing::debug!(?event, "relay client"),
            },
            NodeBehaviourEvent::Relay(event) => on_relay_server_event(event),
            NodeBehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punch succeeded: now connected directly"),
                Err(e) => tracing::debug!(peer = %remote_peer_id, error = %e, "hole punch failed: staying relayed"),
            },
            NodeBehaviourEvent::Federation(event) => self.on_federation_event(event).await,
            NodeBehaviourEvent::Jobs(event) => self.on_job_event(event).await,
            NodeBehaviourEvent::Files(event) => self.on_file_event(event).await,
            _ => {}
        }
    }

    /// Closes the connections to a member whose protocol major this node does not speak, and
    /// leaves it alone for [`INCOMPATIBLE_RETRY`]; the other members are not touched.
    async fn refuse_incompatible(&mut self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "refused a peer of another protocol version");
        let _ = self.swarm.disconnect_peer_id(peer);
        self.backoff
            .insert(peer, Backoff { next_attempt: Instant::now() + INCOMPATIBLE_RETRY, delay: INCOMPATIBLE_RETRY });
        emit(&self.events, NetworkEvent::Incompatible { peer, reason }).await;
    }

    async fn on_federation_event(
        &mut self,
        event: request_response::Event<fedimpute_protocol::messages::FederationRequest, FederationResponse>,
    ) {
        if let request_response::Event::Message { peer, .. } = &event {
            self.used(*peer);
        }
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    emit(&self.events, NetworkEvent::Request { peer, request, channel }).await;
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some((_, reply)) = self.pending.remove(&request_id) {
                    let _ =
                        reply.send(Err(NetworkError::Request { peer: peer.to_string(), reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "answering a federation request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    async fn on_job_event(&mut self, event: request_response::Event<SignedJobMessage, SignedJobMessage>) {
        if let request_response::Event::Message { peer, .. } = &event {
            self.used(*peer);
        }
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    emit(&self.job_events, JobNetworkEvent::Message { peer, message: request, channel }).await;
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.pending_jobs.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some((_, reply)) = self.pending_jobs.remove(&request_id) {
                    let _ =
                        reply.send(Err(NetworkError::Request { peer: peer.to_string(), reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "answering a job message failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    async fn on_file_event(&mut self, event: request_response::Event<ChunkRequest, ChunkResponse>) {
        if let request_response::Event::Message { peer, .. } = &event {
            self.used(*peer);
        }
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    emit(&self.job_events, JobNetworkEvent::Chunk { peer, request, channel }).await;
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some((_, reply)) = self.pending_chunks.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                if let Some((_, reply)) = self.pending_chunks.remove(&request_id) {
                    let _ =
                        reply.send(Err(NetworkError::Request { peer: peer.to_string(), reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "serving a file chunk failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { data, reply } => {
                let result = match &self.topic {
                    None => Err(NetworkError::Publish("not federating".into())),
                    Some(topic) => self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .publish(topic.clone(), data)
                        .map(|_| ())
                        .map_err(|e| NetworkError::Publish(e.to_string())),
                };
                let _ = reply.send(result);
            }
            Command::Report { message_id, source, acceptance } => {
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &source, acceptance);
            }
            Command::Request { peer, request, reply } => {
                self.used(peer);
                self.dial_on_demand(peer);
                let id = self.swarm.behaviour_mut().federation.send_request(&peer, request);
                self.pending.insert(id, (peer, reply));
            }
            Command::Respond { channel, response } => {
                if self.swarm.behaviour_mut().federation.send_response(channel, response).is_err() {
                    tracing::debug!("peer went away before our response");
                }
            }
            Command::JobRequest { peer, message, reply } => {
                self.used(peer);
                self.dial_on_demand(peer);
                let id = self.swarm.behaviour_mut().jobs.send_request(&peer, message);
                self.pending_jobs.insert(id, (peer, reply));
            }
            Command::JobRespond { channel, message } => {
                if self.swarm.behaviour_mut().jobs.send_response(channel, message).is_err() {
                    tracing::debug!("peer went away before our job answer");
                }
            }
            Command::ChunkRequest { peer, request, reply } => {
                self.used(peer);
                self.dial_on_demand(peer);
                let id = self.swarm.behaviour_mut().files.send_request(&peer, request);
                self.pending_chunks.insert(id, (peer, reply));
            }
            Command::ChunkRespond { channel, response } => {
                if self.swarm.behaviour_mut().files.send_response(channel, response).is_err() {
                    tracing::debug!("peer went away before our chunk");
                }
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen_addrs.clone());
            }
        }
    }
}

/// Hands an event to the node. Borrows only the sender, so no borrow of the (non-`Sync`) Swarm
/// is held across the await.
async fn emit<E>(events: &mpsc::Sender<E>, event: E) {
    if events.send(event).await.is_err() {
        tracing::debug!("no consumer for network events");
    }
}

/// `/<relay address>/p2p/<relay>/p2p-circuit`: listened on, it asks the relay for a
/// reservation; with `/p2p/<member>` added, it dials that member through the relay.
fn circuit_through(relay_addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    relay_addr.clone().with(Protocol::P2p(relay)).with(Protocol::P2pCircuit)
}

/// The relay a connection runs through, if it is relayed: the PeerId just before `/p2p-circuit`
/// in its address (the dialled address, or for an inbound circuit the local listen address).
fn relay_of(endpoint: &ConnectedPoint) -> Option<PeerId> {
    let addr = match endpoint {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { local_addr, .. } => local_addr,
    };
    let mut last_peer = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::P2p(peer) => last_peer = Some(peer),
            Protocol::P2pCircuit => return last_peer,
            _ => {}
        }
    }
    None
}

fn on_relay_server_event(event: relay::Event) {
    match event {
        relay::Event::ReservationReqAccepted { src_peer_id, renewed: false } => {
            tracing::info!(peer = %src_peer_id, "relay: reservation accepted");
        }
        relay::Event::ReservationReqDenied { src_peer_id, status } => {
            tracing::warn!(peer = %src_peer_id, ?status, "relay: reservation denied");
        }
        relay::Event::CircuitReqAccepted { src_peer_id, dst_peer_id } => {
            tracing::info!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened");
        }
        relay::Event::CircuitReqDenied { src_peer_id, dst_peer_id, status } => {
            tracing::warn!(src = %src_peer_id, dst = %dst_peer_id, ?status, "relay: circuit denied");
        }
        relay::Event::CircuitClosed { src_peer_id, dst_peer_id, error } => {
            tracing::info!(src = %src_peer_id, dst = %dst_peer_id, ?error, "relay: circuit closed");
        }
        event => tracing::debug!(?event, "relay"),
    }
}

/// The error allow_block_list gives when it denies a connection.
type NotAllowed = libp2p::allow_block_list::NotAllowed;

#[cfg(test)]
mod tests {
    use libp2p::core::Endpoint;
    use libp2p::core::transport::PortUse;

    use super::*;

    #[test]
    fn a_connection_names_its_relay_whichever_side_dialled() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let relay_addr: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().unwrap();
        let dialled = ConnectedPoint::Dialer {
            address: relay_addr
                .clone()
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit)
                .with(Protocol::P2p(target)),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        assert_eq!(relay_of(&dialled), Some(relay));
        let accepted = ConnectedPoint::Listener {
            local_addr: relay_addr.clone().with(Protocol::P2p(relay)).with(Protocol::P2pCircuit),
            send_back_addr: Protocol::P2p(target).into(),
        };
        assert_eq!(relay_of(&accepted), Some(relay));
        let direct = ConnectedPoint::Dialer {
            address: relay_addr.with(Protocol::P2p(target)),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        assert_eq!(relay_of(&direct), None);
    }
}
