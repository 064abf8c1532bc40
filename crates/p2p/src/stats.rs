//! Counters and gauges of the networking task, as plain atomics the node exports.
//!
//! Counters only grow. Gauges (`*_peers`) are refreshed on the housekeeping tick. All use
//! relaxed ordering: they are observations, never synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::Topic;

/// Per-topic gossip counters.
#[derive(Debug, Default)]
pub struct TopicStats {
    /// Messages received from peers and handed to (or dropped before) the node.
    pub received: AtomicU64,
    /// Received messages dropped because the event channel was full (reported `Ignore`).
    pub dropped_queue_full: AtomicU64,
    /// Received messages dropped because their peer exceeded its rate (consensus topic).
    pub rate_limited: AtomicU64,
    /// Messages we published.
    pub published: AtomicU64,
    /// Publishes that failed (no subscribed peer, too large, queues full).
    pub publish_failed: AtomicU64,
    /// Publishes refused as duplicates of a message still in the duplicate cache.
    pub publish_duplicate: AtomicU64,
    /// Gauge: connected peers subscribed to the topic.
    pub subscribed_peers: AtomicU64,
    /// Gauge: peers in our mesh for the topic.
    pub mesh_peers: AtomicU64,
    /// Gauge: configured (static) peers that are connected and subscribed to the topic,
    /// scored at or above the publish threshold and not overflowing lately: when it equals
    /// [`P2pStats::static_peers`], a publish reaches every one of them directly (publishing
    /// floods to every such peer). Refreshed every maintenance tick (100 ms).
    pub subscribed_static_peers: AtomicU64,
}

/// Everything the networking task counts.
#[derive(Debug, Default)]
pub struct P2pStats {
    /// Consensus topic.
    pub consensus: TopicStats,
    /// Transactions topic.
    pub txs: TopicStats,
    /// `Accept` verdicts.
    pub gossip_accepted: AtomicU64,
    /// `Reject` verdicts (also: received payloads above the size limit).
    pub gossip_rejected: AtomicU64,
    /// `Ignore` verdicts from the node.
    pub gossip_ignored: AtomicU64,
    /// Invalid messages counted against peers (rejected gossip, undecodable sync frames).
    pub invalid_messages: AtomicU64,
    /// Peers disconnected and banned for invalid messages.
    pub peers_banned: AtomicU64,
    /// Messages gossipsub could not queue for one peer because that peer's send queue was
    /// full (its `SlowPeer` reports): the peer misses them, others still get them.
    pub gossip_slow_peer_dropped: AtomicU64,
    /// Peers disconnected because their gossip send queue overflowed for
    /// [`crate::config::SLOW_PEER_DISCONNECT_AFTER`] (static peers are re-dialed).
    pub slow_peer_disconnects: AtomicU64,
    /// Inbound sync requests received.
    pub requests_inbound: AtomicU64,
    /// Inbound sync requests answered `Refused` at once because the event channel was full.
    pub requests_inbound_refused: AtomicU64,
    /// Inbound sync requests that failed (timeout, closed, undecodable, unanswered).
    pub requests_inbound_failed: AtomicU64,
    /// Responses the node sent too late (request already timed out or closed).
    pub responses_late: AtomicU64,
    /// Responses replaced by `Refused` because they exceeded the size limits.
    pub responses_oversize: AtomicU64,
    /// Outbound sync requests sent.
    pub requests_outbound: AtomicU64,
    /// Outbound sync requests that failed.
    pub request_failures: AtomicU64,
    /// Peer events and responses dropped because both the event channel and its side queue
    /// were full.
    pub events_dropped: AtomicU64,
    /// Inbound connections that failed their handshake (garbage, wrong protocol, banned).
    pub inbound_handshake_failures: AtomicU64,
    /// Dials to static peers started.
    pub static_peer_dials: AtomicU64,
    /// Gauge: connected peers.
    pub connected_peers: AtomicU64,
    /// Peers in the configured list (`P2pConfig::peers` with a `/p2p/` id).
    pub static_peers: AtomicU64,
    /// Gauge: peers currently banned.
    pub banned_peers: AtomicU64,
}

impl P2pStats {
    /// The counters of one topic.
    pub fn topic(&self, topic: Topic) -> &TopicStats {
        match topic {
            Topic::Consensus => &self.consensus,
            Topic::Txs => &self.txs,
        }
    }
}

/// Add one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Set a gauge.
pub(crate) fn set(gauge: &AtomicU64, value: usize) {
    gauge.store(u64::try_from(value).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Read a counter or gauge.
pub fn read(value: &AtomicU64) -> u64 {
    value.load(Ordering::Relaxed)
}
