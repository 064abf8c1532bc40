//! The network task: decodes what peers send, runs cheap checks and dispatches into bounded
//! queues — nothing else. Signatures go to the verification pool; sync requests are served
//! from a storage snapshot on a blocking thread; transaction batches are published by the
//! batcher.

use crate::driver::DriverInput;
use crate::messages::{ConsensusGossip, ConsensusMessage, TxBatch, TX_BATCH_MAX};
use crate::metrics::Metrics;
use crate::pending::FUTURE_HEIGHTS_WINDOW;
use crate::state::{Shared, SyncState};
use crate::verify::{TxOrigin, VerifyJob};
use basalt_consensus::ROUNDS_AHEAD_MAX;
use basalt_p2p::{NetworkCommand, NetworkEvent, NetworkHandle, SyncRequest, SyncResponse, Topic};
use basalt_p2p::{PeerId, Verdict};
use basalt_types::BoundedVec;
use basalt_types::SignedTx;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Blocks per sync response at most.
pub const SYNC_RESPONSE_BLOCKS_MAX: usize = 32;
/// Bytes per sync response at most (the p2p layer refuses larger answers).
pub const SYNC_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long the batcher waits to fill a transaction batch.
pub const TX_BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Admitted transactions waiting to be gossiped.
pub const TX_GOSSIP_QUEUE_MAX: usize = 65_536;
/// Consensus messages remembered (by content, re-send number excluded) so that re-sends of
/// a message already handed to verification are not verified again.
pub const SEEN_MESSAGES_MAX: usize = 16_384;
/// Bytes of the re-send number at the start of a [`ConsensusGossip`].
const RESEND_BYTES: usize = 8;

/// The network side's outlets.
pub struct NetworkTask {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The p2p handle (peer count).
    pub handle: NetworkHandle,
    /// Commands to the p2p service.
    pub commands: mpsc::Sender<NetworkCommand>,
    /// Jobs for the verification pool.
    pub verify: crate::verify::VerifyQueue,
    /// Inputs for the driver (sync hints and results).
    pub driver: mpsc::Sender<DriverInput>,
    /// Flood protections.
    pub protections: crate::config::ProtectionsSection,
}

/// Far-ahead messages verified per validator at most once per this interval.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// When each validator's last far-ahead message was let through to verification.
#[derive(Debug, Default)]
pub struct Probes {
    last: Vec<Option<Instant>>,
}

impl Probes {
    /// True (and recorded) when a far-ahead message claiming `validator` may be verified
    /// now. `validator` is below the set's size (checked before).
    pub fn due(&mut self, validator: u16, now: Instant) -> bool {
        let index = usize::from(validator);
        if index >= self.last.len() {
            self.last.resize(index + 1, None);
        }
        match self.last.get_mut(index) {
            Some(last)
                if last.is_none_or(|at| now.saturating_duration_since(at) >= PROBE_INTERVAL) =>
            {
                *last = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// A bounded FIFO set of message digests.
#[derive(Debug, Default)]
pub struct SeenCache {
    set: std::collections::HashSet<basalt_types::Hash>,
    order: std::collections::VecDeque<basalt_types::Hash>,
}

impl SeenCache {
    /// Remember `digest`; false if it was already there. Holds at most
    /// [`SEEN_MESSAGES_MAX`] digests (the oldest is forgotten first).
    pub fn insert(&mut self, digest: basalt_types::Hash) -> bool {
        if !self.set.insert(digest) {
            return false;
        }
        self.order.push_back(digest);
        if self.order.len() > SEEN_MESSAGES_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        true
    }

    /// True if `digest` is held.
    pub fn contains(&self, digest: &basalt_types::Hash) -> bool {
        self.set.contains(digest)
    }

    /// Digests held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl NetworkTask {
    /// Run until the event channel closes.
    pub async fn run(self, mut events: mpsc::Receiver<NetworkEvent>) {
        let mut seen = SeenCache::default();
        let mut probes = Probes::default();
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Gossip {
                    from,
                    topic,
                    data,
                    id,
                } => {
                    let verdict = match topic {
                        Topic::Consensus => {
                            self.on_consensus(from, &data, &id, &mut seen, &mut probes)
                        }
                        Topic::Txs => self.on_txs(from, &data, &id),
                    };
                    if let Some(verdict) = verdict {
                        let _ =
                            self.commands
                                .try_send(NetworkCommand::Validate { id, from, verdict });
                    }
                }
                NetworkEvent::Request {
                    request, channel, ..
                } => self.serve(request, channel),
                NetworkEvent::Response {
                    request, result, ..
                } => {
                    let blocks = match result {
                        Ok(SyncResponse::Blocks(blocks)) => Some(blocks),
                        _ => None,
                    };
                    let input = DriverInput::SyncResponse {
                        token: request,
                        blocks,
                    };
                    if self.driver.try_send(input).is_err() {
                        self.shared.metrics.dropped("driver");
                    }
                }
                NetworkEvent::PeerConnected(_) | NetworkEvent::PeerDisconnected(_) => {
                    let peers = self.handle.connected_peers();
                    self.shared.peers.store(peers, Ordering::Relaxed);
                    self.shared.metrics.peers.set(peers as i64);
                }
            }
        }
    }

    fn invalid(&self, topic: &str) -> Option<Verdict> {
        self.shared
            .metrics
            .gossip_invalid
            .get_or_create(&Metrics::label("topic", topic))
            .inc();
        Some(Verdict::Reject)
    }

    fn drop_gossip(&self, reason: &str) -> Option<Verdict> {
        let state = match self.shared.sync_state() {
            SyncState::Idle => "idle",
            SyncState::Syncing => "syncing",
            SyncState::Synced => "synced",
        };
        self.shared
            .metrics
            .gossip_dropped
            .get_or_create(&Metrics::labels(&[("reason", reason), ("sync", state)]))
            .inc();
        Some(Verdict::Ignore)
    }

    /// Decode and check a consensus message; `None` means the pool will give the verdict.
    /// Everything here is cheap: what cannot be used soon is dropped before its signature
    /// is checked (seed 001).
    fn on_consensus(
        &self,
        from: PeerId,
        data: &[u8],
        id: &basalt_p2p::GossipId,
        seen: &mut SeenCache,
        probes: &mut Probes,
    ) -> Option<Verdict> {
        let current = self.shared.consensus_height.load(Ordering::Relaxed);
        let peers = self.shared.peers.load(Ordering::Relaxed);
        if self.protections.sync_gating && is_idle(current, peers) {
            return self.drop_gossip("idle");
        }
        let Ok(ConsensusGossip { message, .. }) = ConsensusGossip::from_bytes(data) else {
            return self.invalid("consensus");
        };
        let validators = self.shared.validators.len();
        let (height, round) = crate::pending::slot(&message);
        let index = match &message {
            ConsensusMessage::Vote(v) => v.vote.validator,
            ConsensusMessage::Proposal { proposal, .. } => proposal.proposal.proposer,
        };
        if usize::from(index) >= validators {
            return self.invalid("consensus");
        }
        if self.protections.early_drop {
            let current_round = self.shared.consensus_round.load(Ordering::Relaxed);
            if let Some(reason) = too_far(current, current_round, height, round) {
                // A few far-ahead messages per validator are verified anyway: signed ones
                // are how a node that fell behind learns it should sync.
                let probe = reason == "far_future_height" && probes.due(index, Instant::now());
                if !probe {
                    return self.drop_gossip(reason);
                }
            }
        }
        if let ConsensusMessage::Proposal { proposal, block } = &message {
            tracing::debug!(
                height,
                round,
                proposer = index,
                txs = block.txs.len(),
                "proposal gossip in"
            );
            if block.id() != proposal.proposal.block_id {
                return self.invalid("consensus");
            }
        }
        if self.protections.early_drop {
            let (key, value) = crate::slots::key_of(&message);
            let mut slots = self.shared.slots();
            slots.prune(current.saturating_sub(1));
            if slots.is_saturated(key, value) {
                drop(slots);
                return self.drop_gossip("equivocation");
            }
        }
        // A re-send (new gossip id, same message) of something already verified. The
        // gossip envelope is the re-send number (8 bytes) followed by the message's
        // canonical encoding, so the digest skips those 8 bytes.
        let digest = basalt_types::crypto::sha256(data.get(RESEND_BYTES..).unwrap_or_default());
        if seen.contains(&digest) {
            return self.drop_gossip("seen");
        }
        let job = VerifyJob::Consensus {
            message,
            gossip: (id.clone(), from),
        };
        if self.verify.try_send(job).is_err() {
            self.shared.metrics.dropped("verify");
            return Some(Verdict::Ignore);
        }
        seen.insert(digest);
        None
    }

    fn on_txs(&self, from: PeerId, data: &[u8], id: &basalt_p2p::GossipId) -> Option<Verdict> {
        let Ok(batch) = TxBatch::from_bytes(data) else {
            return self.invalid("txs");
        };
        let job = VerifyJob::Txs {
            txs: batch.txs.into_inner(),
            origin: TxOrigin::Gossip {
                id: id.clone(),
                from,
                relay: batch.relay,
            },
        };
        if self.verify.try_send(job).is_err() {
            self.shared.metrics.dropped("verify");
            return Some(Verdict::Ignore);
        }
        None
    }

    /// Answer a sync request from a storage snapshot, off the network task.
    fn serve(&self, request: SyncRequest, channel: basalt_p2p::ResponseToken) {
        let store = self.shared.store.clone();
        let commands = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let response = answer(&store, &request).unwrap_or(SyncResponse::Refused);
            let _ = commands.try_send(NetworkCommand::Respond { channel, response });
        });
    }
}

/// Gossip gating: with consensus not started (height 0) or no peers the node is idle and
/// drops consensus gossip. (Syncing is handled by the driver: it buffers.)
pub fn is_idle(consensus_height: u64, peers: usize) -> bool {
    consensus_height == 0 || peers == 0
}

/// Why a consensus message for (`height`, `round`) is dropped before verification when
/// consensus is at (`current`, `current_round`), or `None` when it may be useful: heights
/// already decided (the core drops every message for them: under gossip-flood ~700/s of
/// the previous height's were verified, logged to the WAL and then dropped), heights
/// [`FUTURE_HEIGHTS_WINDOW`] or more ahead (the node syncs instead), and rounds beyond the
/// core's window.
pub fn too_far(current: u64, current_round: u32, height: u64, round: u32) -> Option<&'static str> {
    if height < current {
        Some("stale_height")
    } else if height >= current.saturating_add(FUTURE_HEIGHTS_WINDOW) {
        Some("far_future_height")
    } else if height == current && round > current_round.saturating_add(ROUNDS_AHEAD_MAX) {
        Some("far_future_round")
    } else if height > current && round > ROUNDS_AHEAD_MAX {
        // The next height starts at round 0: its round 17 is at least 17 timeouts away.
        Some("far_future_round")
    } else {
        None
    }
}

fn answer(store: &basalt_storage::Store, request: &SyncRequest) -> anyhow::Result<SyncResponse> {
    let reader = store.reader()?;
    Ok(match request {
        SyncRequest::Status => {
            let height = reader.last_height()?;
            let block_id = reader.block(height)?.map(|b| b.id()).unwrap_or_default();
            SyncResponse::Status { height, block_id }
        }
        SyncRequest::BlocksByRange { from_height, count } => {
            let count = (*count as usize).min(SYNC_RESPONSE_BLOCKS_MAX);
            let blocks = reader.blocks_from(*from_height, count, SYNC_RESPONSE_BYTES_MAX)?;
            if blocks.is_empty() {
                SyncResponse::NotFound
            } else {
                SyncResponse::Blocks(blocks)
            }
        }
        SyncRequest::BlockByHash(hash) => match reader.height_of(hash)? {
            Some(height) => SyncResponse::Blocks(reader.blocks_from(height, 1, usize::MAX)?),
            None => SyncResponse::NotFound,
        },
    })
}

/// Whether the receivers of a transaction batch we publish now must forward it;
/// `validators_to_reach` is every validator but ourselves ([`validators_to_reach`]).
///
/// A publish goes to every connected peer subscribed to the topic (flood publishing). When
/// every configured peer is reached (connected, subscribed, in good standing: see
/// `TopicStats::subscribed_static_peers`), and they are at least as many as the validators
/// to reach, every validator gets the batch from us directly and forwarding would only
/// send each one `n - 2` duplicates. This takes a node's configured peers to be the
/// validators, as `basalt devnet` writes them; a node with fewer configured peers, or
/// missing one, asks for relaying (a node that listed sentries instead would have to list
/// at least that many of them for this to go wrong).
pub fn relay_needed(stats: &basalt_p2p::P2pStats, validators_to_reach: usize) -> bool {
    let listed = basalt_p2p::read_counter(&stats.static_peers);
    let reached = basalt_p2p::read_counter(&stats.txs.subscribed_static_peers);
    let others = u64::try_from(validators_to_reach).unwrap_or(u64::MAX);
    reached < listed || listed < others
}

/// The validators a node's transaction batches must reach: all of them, but itself when it
/// is one (a full node's batches must reach all `n`).
pub fn validators_to_reach(validators: usize, is_validator: bool) -> usize {
    validators.saturating_sub(usize::from(is_validator))
}

/// Publish admitted transactions in batches: a batch leaves when it is full or when the
/// oldest transaction in it has waited [`TX_BATCH_WINDOW`].
pub async fn run_tx_batcher(
    mut admitted: mpsc::Receiver<SignedTx>,
    network: NetworkHandle,
    validators_to_reach: usize,
    metrics: Metrics,
) {
    let commands = network.commands().clone();
    while let Some(first) = admitted.recv().await {
        let mut txs = vec![first];
        let deadline = tokio::time::Instant::now() + TX_BATCH_WINDOW;
        while txs.len() < TX_BATCH_MAX {
            tokio::select! {
                next = admitted.recv() => match next {
                    Some(tx) => txs.push(tx),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let relay = relay_needed(network.stats(), validators_to_reach);
        metrics
            .tx_batches_published
            .get_or_create(&Metrics::label(
                "relay",
                if relay { "true" } else { "false" },
            ))
            .inc();
        let batch = TxBatch {
            relay,
            txs: BoundedVec::new(txs).unwrap_or_default(),
        };
        if commands
            .send(NetworkCommand::Publish {
                topic: Topic::Txs,
                data: batch.to_bytes(),
            })
            .await
            .is_err()
        {
            metrics.dropped("network_commands");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gating_per_state() {
        assert!(is_idle(0, 3), "consensus not started");
        assert!(is_idle(5, 0), "no peers");
        assert!(!is_idle(5, 3));
    }

    #[test]
    fn far_messages_are_dropped_before_verification() {
        // Consensus at height 10, round 2.
        assert_eq!(too_far(10, 2, 8, 0), Some("stale_height"));
        assert_eq!(
            too_far(10, 2, 9, 0),
            Some("stale_height"),
            "the last height is decided: the core drops its messages"
        );
        assert_eq!(
            too_far(10, 2, 10, 0),
            None,
            "the current height, an earlier round"
        );
        assert_eq!(too_far(10, 2, 10, 2 + ROUNDS_AHEAD_MAX), None);
        assert_eq!(
            too_far(10, 2, 10, 3 + ROUNDS_AHEAD_MAX),
            Some("far_future_round")
        );
        assert_eq!(too_far(10, 2, 11, 3), None, "next height: buffered");
        assert_eq!(too_far(10, 2, 11, 500), Some("far_future_round"));
        assert_eq!(
            too_far(10, 2, 12, 0),
            None,
            "a node briefly behind keeps them"
        );
        assert_eq!(
            too_far(10, 2, 10 + FUTURE_HEIGHTS_WINDOW - 1, 0),
            None,
            "the last height of the window"
        );
        assert_eq!(
            too_far(10, 2, 10 + FUTURE_HEIGHTS_WINDOW, 0),
            Some("far_future_height")
        );
        let _ = too_far(u64::MAX, u32::MAX, u64::MAX, u32::MAX); // no overflow panic
    }

    #[test]
    fn batches_are_relayed_unless_every_other_validator_is_reached_directly() {
        use std::sync::atomic::AtomicU64;
        let stats = basalt_p2p::P2pStats::default();
        let set = |gauge: &AtomicU64, value: u64| gauge.store(value, Ordering::Relaxed);
        let validator = validators_to_reach(4, true);
        assert_eq!(validator, 3);
        // A validator of 4, 3 configured peers, all reached: no relay.
        set(&stats.static_peers, 3);
        set(&stats.txs.subscribed_static_peers, 3);
        assert!(!relay_needed(&stats, validator));
        // A full node with the same 3 peers misses a validator: relay.
        assert!(relay_needed(&stats, validators_to_reach(4, false)));
        // One of them down: the others forward for it.
        set(&stats.txs.subscribed_static_peers, 2);
        assert!(relay_needed(&stats, validator));
        // Fewer configured peers than other validators: relay, whatever is connected.
        set(&stats.static_peers, 2);
        assert!(relay_needed(&stats, validator));
        // A lone validator, or none configured in a set of two.
        set(&stats.static_peers, 0);
        set(&stats.txs.subscribed_static_peers, 0);
        assert!(!relay_needed(&stats, validators_to_reach(1, true)));
        assert!(relay_needed(&stats, validators_to_reach(2, true)));
    }

    #[test]
    fn far_ahead_probes_are_rate_limited_per_validator() {
        let now = Instant::now();
        let mut probes = Probes::default();
        assert!(probes.due(2, now));
        assert!(!probes.due(2, now + PROBE_INTERVAL / 2));
        assert!(probes.due(1, now), "per validator");
        assert!(probes.due(2, now + PROBE_INTERVAL));
    }

    #[test]
    fn seen_cache_is_bounded_fifo() {
        let mut seen = SeenCache::default();
        let digest = |i: u64| basalt_types::crypto::sha256(&i.to_le_bytes());
        assert!(seen.insert(digest(0)));
        assert!(!seen.insert(digest(0)));
        for i in 1..=(SEEN_MESSAGES_MAX as u64) {
            seen.insert(digest(i));
        }
        assert_eq!(seen.len(), SEEN_MESSAGES_MAX);
        assert!(!seen.contains(&digest(0)), "oldest forgotten");
        assert!(seen.contains(&digest(SEEN_MESSAGES_MAX as u64)));
    }
}
