//! Basalt's networking: a libp2p service the node drives through two bounded channels.
//!
//! [`spawn`] starts one task that owns a libp2p swarm (TCP + noise + yamux) running
//! gossipsub (topics [`Topic::Consensus`] and [`Topic::Txs`]), the sync request-response
//! protocol `/basalt/sync/1` ([`SyncRequest`] / [`SyncResponse`]) and identify. The node
//! reads [`NetworkEvent`]s and sends [`NetworkCommand`]s through a [`NetworkHandle`].
//!
//! What it guarantees:
//! - Every queue is bounded. When the event channel is full, gossip is dropped and reported
//!   `Ignore` to gossipsub, transaction gossip is dropped first (it may use only part of the
//!   queue), inbound requests are answered [`SyncResponse::Refused`] at once, and every drop
//!   is counted in [`P2pStats`].
//! - Gossip is held until the node's [`Verdict`] and forwarded only on `Accept`. A `Reject`
//!   lowers the sender's gossipsub score; past `invalid_messages_before_disconnect` invalid
//!   messages (rejects and undecodable sync frames) within [`INVALID_MESSAGES_WINDOW`] the
//!   peer is disconnected and refused for [`BAN_DURATION`].
//! - Static peers are dialed at start, kept open while idle, and re-dialed with capped
//!   exponential backoff when they drop.
//! - No network input can make the task panic; decoding failures are typed errors.
//!
//! What it does not do: decode gossip payloads or judge them (the node does), choose which
//! peer to sync from, or discover peers beyond the static list and those that dial in.

mod behaviour;
mod codec;
mod config;
mod handle;
mod keep_alive;
mod message;
mod peers;
mod service;
mod stats;

use std::collections::VecDeque;
use std::sync::Arc;

use libp2p::{identity, noise, tcp, yamux, SwarmBuilder};
use tokio::sync::{mpsc, watch};

pub use codec::{
    decode_request, decode_response, response_encoded_len, CodecError,
    SYNC_BLOCKS_PER_RESPONSE_MAX, SYNC_PROTOCOL, SYNC_REQUEST_BYTES_MAX, SYNC_RESPONSE_BYTES_MAX,
};
pub use config::{
    peer_id_of_address, P2pConfig, BANNED_PEERS_MAX, BAN_DURATION, COMMAND_QUEUE_CAPACITY,
    CONNECTIONS_MAX, CONNECTIONS_PER_PEER_MAX, CONSENSUS_BURST_PER_PEER,
    CONSENSUS_MESSAGES_FROM_UNLISTED_PER_SEC_DEFAULT, CONSENSUS_MESSAGES_PER_PEER_PER_SEC_DEFAULT,
    CONTROL_OVERFLOW_MAX, EVENT_QUEUE_CAPACITY, GOSSIP_BYTES_MAX_DEFAULT, GOSSIP_DUPLICATE_CACHE,
    GOSSIP_ENVELOPE_BYTES, GOSSIP_HEARTBEAT, IDLE_CONNECTION_TIMEOUT,
    INVALID_MESSAGES_BEFORE_DISCONNECT_DEFAULT, INVALID_MESSAGES_WINDOW, MAINTENANCE_INTERVAL,
    PENDING_INBOUND_CONNECTIONS_MAX, REDIAL_BACKOFF_INITIAL, REDIAL_BACKOFF_MAX,
    REDIAL_BACKOFF_RESET_AFTER, REQUEST_TIMEOUT_DEFAULT, SYNC_STREAMS_PER_CONNECTION_MAX,
    TXS_QUEUE_SHARE_PERCENT,
};
pub use handle::{CommandError, NetworkHandle};
/// Re-exported so the node needs no direct libp2p dependency.
pub use libp2p::{Multiaddr, PeerId};
pub use message::{
    GossipId, NetworkCommand, NetworkEvent, RequestFailure, RequestToken, ResponseToken,
    SyncRequest, SyncResponse, Topic, Verdict,
};
pub use stats::{read as read_counter, P2pStats, TopicStats};

/// Why the networking service could not start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// [`spawn`] was called outside a tokio runtime.
    #[error("spawn must be called from within a tokio runtime")]
    NoRuntime,
    /// A static peer address does not end in `/p2p/<peer id>`.
    #[error("static peer address {0} does not end in /p2p/<peer id>")]
    PeerAddressWithoutId(Multiaddr),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// Gossipsub refused its configuration.
    #[error("gossipsub: {0}")]
    Gossipsub(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        reason: String,
    },
}

/// The libp2p identity for a node key seed.
fn keypair_from_seed(seed: [u8; 32]) -> identity::Keypair {
    // `ed25519_from_bytes` fails only when the input is not exactly 32 bytes, which the type
    // rules out; this is configuration, never network input.
    #[allow(clippy::expect_used)]
    identity::Keypair::ed25519_from_bytes(seed).expect("32 bytes are an ed25519 secret key")
}

/// The [`PeerId`] a node with this key seed will have, so `basalt init` can write peer
/// addresses for a devnet before any node runs.
pub fn peer_id_from_seed(seed: [u8; 32]) -> PeerId {
    keypair_from_seed(seed).public().to_peer_id()
}

/// A swarm on Basalt's transport (TCP without Nagle, noise, yamux; connections with no open
/// stream close after [`IDLE_CONNECTION_TIMEOUT`]) running `behaviour`. Tools that speak to
/// nodes at the wire level (the load lab's flooder) use it to match the nodes' transport.
pub fn tcp_swarm<B: libp2p::swarm::NetworkBehaviour>(
    keypair: identity::Keypair,
    behaviour: B,
) -> Result<libp2p::Swarm<B>, P2pError> {
    Ok(SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|error| P2pError::Transport(error.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|never| match never {})?
        .with_swarm_config(|swarm| swarm.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build())
}

/// Start the networking task on the current tokio runtime. Returns the handle and the
/// event channel (capacity [`EVENT_QUEUE_CAPACITY`]). The listen address is bound before
/// this returns; use [`NetworkHandle::listen_addrs`] to learn a `/tcp/0` port.
pub fn spawn(config: P2pConfig) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>), P2pError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| P2pError::NoRuntime)?;
    config.validate()?;
    let keypair = keypair_from_seed(config.node_key_seed);
    let peer_id = keypair.public().to_peer_id();
    let mut static_peers = Vec::with_capacity(config.peers.len());
    for address in &config.peers {
        let peer = peer_id_of_address(address)?;
        // A devnet may hand every node the same list, our own address included.
        if peer != peer_id {
            static_peers.push((peer, address.clone()));
        }
    }
    let behaviour = behaviour::Behaviour::new(
        &keypair,
        &config,
        static_peers.iter().map(|(peer, _)| *peer),
    )?;
    let mut swarm = tcp_swarm(keypair, behaviour)?;
    swarm
        .listen_on(config.listen.clone())
        .map_err(|error| P2pError::Listen {
            address: config.listen.clone(),
            reason: error.to_string(),
        })?;

    let now = std::time::Instant::now();
    let mut peers = peers::StaticPeers::default();
    for (peer, address) in static_peers {
        swarm.add_peer_address(peer, address.clone());
        peers.add(peer, address, now);
    }
    for (peer, address) in peers.addresses() {
        tracing::debug!(%peer, %address, "static peer");
    }

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
    let (connected_tx, connected_rx) = watch::channel(0);
    let (listening_tx, listening_rx) = watch::channel(Vec::new());
    let stats = Arc::new(P2pStats::default());
    let handle = NetworkHandle {
        commands: commands_tx,
        peer_id,
        connected: connected_rx,
        listening: listening_rx,
        stats: Arc::clone(&stats),
        events: events_tx.downgrade(),
    };
    let service = service::Service {
        swarm,
        max_gossip_bytes: config.max_gossip_bytes,
        events: events_tx,
        overflow: VecDeque::new(),
        commands: commands_rx,
        stats,
        connected: connected_tx,
        listening: listening_tx,
        static_peers: peers,
        guard: peers::PeerGuard::new(config.invalid_messages_before_disconnect),
        rates: peers::PeerRates::new(
            config.consensus_messages_per_peer_per_sec,
            config::CONSENSUS_BURST_PER_PEER,
        ),
        // One bucket shared by every unlisted peer, kept under our own id.
        unlisted_rates: peers::PeerRates::new(
            config.consensus_messages_from_unlisted_per_sec,
            config
                .consensus_messages_from_unlisted_per_sec
                .saturating_mul(2),
        ),
        slow_peers: peers::SlowPeers::default(),
        local_peer_id: peer_id,
    };
    runtime.spawn(service.run());
    tracing::info!(%peer_id, listen = %config.listen, "p2p service started");
    Ok((handle, events_rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_is_a_function_of_the_seed() {
        assert_eq!(peer_id_from_seed([1; 32]), peer_id_from_seed([1; 32]));
        assert_ne!(peer_id_from_seed([1; 32]), peer_id_from_seed([2; 32]));
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let config = P2pConfig::new([1; 32], "/ip4/127.0.0.1/tcp/0".parse().unwrap());
        assert!(matches!(spawn(config), Err(P2pError::NoRuntime)));
    }

    #[tokio::test]
    async fn bad_static_peer_address_is_an_error() {
        let mut config = P2pConfig::new([1; 32], "/ip4/127.0.0.1/tcp/0".parse().unwrap());
        config.peers.push("/ip4/127.0.0.1/tcp/1".parse().unwrap());
        assert!(matches!(
            spawn(config),
            Err(P2pError::PeerAddressWithoutId(_))
        ));
    }
}
