//! Configuration of the networking service and the named bounds it runs with.

use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::P2pError;

/// Default largest gossip payload, in bytes. A proposal carries its whole block, so this
/// is one maximal block ([`basalt_types::limits::BLOCK_BYTES_MAX`]).
pub const GOSSIP_BYTES_MAX_DEFAULT: usize = basalt_types::limits::BLOCK_BYTES_MAX;

/// Room for gossipsub's own framing (protobuf envelope, topic, control messages piggybacked
/// on the same RPC) on top of the payload limit, so a payload of exactly
/// `max_gossip_bytes` still fits in one RPC frame.
pub const GOSSIP_ENVELOPE_BYTES: usize = 64 * 1024;

/// Default number of invalid messages (rejected gossip, undecodable sync frames) a peer may
/// send within [`INVALID_MESSAGES_WINDOW`] before it is disconnected and banned. High enough
/// that a peer which relayed a few stale or racing messages is not cut off, low enough that a
/// garbage sender is gone after a handful of kilobytes.
pub const INVALID_MESSAGES_BEFORE_DISCONNECT_DEFAULT: u32 = 16;

/// Window over which invalid messages are counted; the count restarts after it, so an honest
/// peer that occasionally relays something invalid is never banned over a long uptime.
pub const INVALID_MESSAGES_WINDOW: Duration = Duration::from_secs(60);

/// How long a peer that crossed the invalid-message threshold is refused (inbound and
/// outbound). Long enough to make flooding costly, short enough that a validator that was
/// briefly faulty (a bad release) comes back on its own.
pub const BAN_DURATION: Duration = Duration::from_secs(60);

/// Most peers banned at once; past this the ban that ends soonest is lifted early so a
/// flood of fresh identities cannot grow the ban list without bound.
pub const BANNED_PEERS_MAX: usize = 1024;

/// Default timeout of one sync request (inbound and outbound).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Capacity of the event channel to the node. A gossip flood fills it rather than memory;
/// when full, gossip is dropped (and reported `Ignore`) and requests are answered `Refused`.
pub const EVENT_QUEUE_CAPACITY: usize = 4096;

/// Share of [`EVENT_QUEUE_CAPACITY`] that transaction gossip may occupy. Past it, transaction
/// batches are dropped while consensus gossip, requests and peer events still get in, so a
/// transaction flood cannot crowd consensus messages out of the queue.
pub const TXS_QUEUE_SHARE_PERCENT: usize = 75;

/// Capacity of the command channel from the node. The node publishes and validates through
/// it; a full channel is a typed error for `try_*` calls and back-pressure for async ones.
pub const COMMAND_QUEUE_CAPACITY: usize = 4096;

/// Peer-connected/disconnected events and request responses that found the event channel
/// full wait in a side queue of at most this many entries (then they are dropped and
/// counted). These are rare and must not be lost to a gossip flood.
pub const CONTROL_OVERFLOW_MAX: usize = 1024;

/// First wait before re-dialing a static peer after it disconnected or a dial failed.
pub const REDIAL_BACKOFF_INITIAL: Duration = Duration::from_millis(250);

/// Longest wait between re-dials of a static peer (the backoff doubles up to this).
pub const REDIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A connection that stayed up at least this long resets the re-dial backoff when it drops;
/// a connection that flaps faster keeps growing it.
pub const REDIAL_BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Period of the housekeeping tick: re-dials, ban expiry, mesh gauges.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(100);

/// Gossipsub heartbeat. Short, because a validator set is small and consensus rounds are
/// tens of milliseconds: mesh repair must not take seconds.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(200);

/// How long a gossip message id is remembered for de-duplication. Covers the gossip window
/// (history of 5 heartbeats, 1 s) with margin; a deliberate re-broadcast after it goes out
/// again.
pub const GOSSIP_DUPLICATE_CACHE: Duration = Duration::from_secs(2);

/// Messages gossipsub queues per connection (each of its data and control queues) before
/// refusing more for that peer. gossipsub's default, 5,000, let a peer that stops reading
/// (the lab's flooders) pin 5,000 of our messages per connection: under gossip-flood the
/// flooded validator's memory climbed for a minute as those queues filled. A healthy peer
/// drains its queue within milliseconds; 1,024 is seconds of this node's own traffic.
pub const GOSSIP_PEER_QUEUE_LEN: usize = 1024;
/// A peer whose gossip send queue has overflowed at every heartbeat for this long is
/// disconnected (a static peer is then re-dialed on a fresh connection): a link that stops
/// taking messages loses everything sent to that peer until it is replaced.
pub const SLOW_PEER_DISCONNECT_AFTER: Duration = Duration::from_secs(5);
/// A pause this long in a peer's overflow reports starts its count over.
pub const SLOW_PEER_QUIET: Duration = Duration::from_secs(1);

/// Most established connections in total (validators plus a margin for sync peers).
pub const CONNECTIONS_MAX: u32 = 256;
/// Most connections still in their handshake from the outside; bounds what garbage-sending
/// sockets can hold.
pub const PENDING_INBOUND_CONNECTIONS_MAX: u32 = 64;
/// Most connections per peer (two peers that dial each other at once end up with two).
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;
/// Most concurrent sync streams per connection (inbound + outbound).
pub const SYNC_STREAMS_PER_CONNECTION_MAX: usize = 32;
/// Connections with no open stream are closed after this long.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Consensus gossip messages per second one peer may hand to the node (beyond: ignored and
/// counted). A validator sends a few hundred per second at the fastest block times.
pub const CONSENSUS_MESSAGES_PER_PEER_PER_SEC_DEFAULT: u64 = 2_000;
/// Burst of consensus gossip one peer may send above its rate.
pub const CONSENSUS_BURST_PER_PEER: u64 = 4_000;

/// Consensus gossip messages per second that all peers outside the configured peer list
/// may hand to the node together. A per-peer limit alone does not bound a flood from many
/// identities: ten flooding identities at validator 0 got 8,100 messages/s through, and in
/// those runs the flooded validator fell behind its validator peers (halts of up to 1 s).
/// Validators reach each other through configured peers, which only the per-peer limit
/// binds.
pub const CONSENSUS_MESSAGES_FROM_UNLISTED_PER_SEC_DEFAULT: u64 = 2_000;

/// Configuration of [`crate::spawn`].
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Ed25519 secret of the libp2p identity; the [`PeerId`] follows from it.
    pub node_key_seed: [u8; 32],
    /// Where to listen, e.g. `/ip4/127.0.0.1/tcp/0`.
    pub listen: Multiaddr,
    /// Static peers, each ending in `/p2p/<peer id>`; dialed at start and re-dialed with
    /// capped exponential backoff whenever disconnected.
    pub peers: Vec<Multiaddr>,
    /// Largest gossip payload in bytes (published or accepted).
    pub max_gossip_bytes: usize,
    /// Invalid messages tolerated from one peer within [`INVALID_MESSAGES_WINDOW`].
    pub invalid_messages_before_disconnect: u32,
    /// Timeout of one sync request (also how long an inbound request may wait for the
    /// node's answer).
    pub request_timeout: Duration,
    /// Consensus gossip messages per second one peer may hand to the node; 0 = unlimited.
    pub consensus_messages_per_peer_per_sec: u64,
    /// Consensus gossip messages per second all peers not in `peers` may hand to the node
    /// together (bursts of twice that); 0 = unlimited.
    pub consensus_messages_from_unlisted_per_sec: u64,
    /// gossipsub's own peer scoring (a graded response to rejected messages before our ban).
    /// Off by default: libp2p-gossipsub 0.50 keeps a delivery record of every message for a
    /// fixed 120 s when scoring is on — under a flood of 6,000 messages/s that is about
    /// 200 MiB of resident memory. Peers that send invalid messages are banned by this
    /// crate's own guard either way.
    pub gossip_peer_scoring: bool,
}

impl P2pConfig {
    /// A configuration with the named defaults and no static peers.
    pub fn new(node_key_seed: [u8; 32], listen: Multiaddr) -> Self {
        Self {
            node_key_seed,
            listen,
            peers: Vec::new(),
            max_gossip_bytes: GOSSIP_BYTES_MAX_DEFAULT,
            invalid_messages_before_disconnect: INVALID_MESSAGES_BEFORE_DISCONNECT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            consensus_messages_per_peer_per_sec: CONSENSUS_MESSAGES_PER_PEER_PER_SEC_DEFAULT,
            consensus_messages_from_unlisted_per_sec:
                CONSENSUS_MESSAGES_FROM_UNLISTED_PER_SEC_DEFAULT,
            gossip_peer_scoring: false,
        }
    }

    /// Check the values that are not enforced by their types.
    pub(crate) fn validate(&self) -> Result<(), P2pError> {
        if self.max_gossip_bytes == 0 {
            return Err(P2pError::Config("max_gossip_bytes must be positive".into()));
        }
        if self.request_timeout.is_zero() {
            return Err(P2pError::Config("request_timeout must be positive".into()));
        }
        Ok(())
    }
}

/// The peer id at the end of `address` (`.../p2p/<peer id>`).
pub fn peer_id_of_address(address: &Multiaddr) -> Result<PeerId, P2pError> {
    match address.iter().last() {
        Some(Protocol::P2p(peer_id)) => Ok(peer_id),
        _ => Err(P2pError::PeerAddressWithoutId(address.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_address_must_end_in_peer_id() {
        let peer = PeerId::random();
        let good: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        assert_eq!(peer_id_of_address(&good).unwrap(), peer);
        let bad: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert!(matches!(
            peer_id_of_address(&bad),
            Err(P2pError::PeerAddressWithoutId(_))
        ));
    }

    #[test]
    fn zero_values_are_refused() {
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        let mut config = P2pConfig::new([1; 32], listen);
        assert!(config.validate().is_ok());
        config.max_gossip_bytes = 0;
        assert!(config.validate().is_err());
    }
}
