//! The network task: decodes what peers send, runs cheap checks and dispatches into bounded
//! queues — nothing else. Signatures go to the verification pool; sync requests are served
//! from a storage snapshot on a blocking thread; transaction batches are published by the
//! batcher.

use crate::driver::DriverInput;
use crate::messages::{ConsensusGossip, ConsensusMessage, TxBatch, TX_BATCH_MAX};
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::verify::{TxOrigin, VerifyJob};
use basalt_p2p::{NetworkCommand, NetworkEvent, NetworkHandle, SyncRequest, SyncResponse, Topic};
use basalt_p2p::{PeerId, Verdict};
use basalt_types::BoundedVec;
use basalt_types::SignedTx;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Blocks per sync response at most.
pub const SYNC_RESPONSE_BLOCKS_MAX: usize = 32;
/// Bytes per sync response at most (the p2p layer refuses larger answers).
pub const SYNC_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// How long the batcher waits to fill a transaction batch.
pub const TX_BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Admitted transactions waiting to be gossiped.
pub const TX_GOSSIP_QUEUE_MAX: usize = 65_536;
/// Messages this many heights above ours are not verified: we are behind and sync.
const AHEAD_HEIGHTS: u64 = 2;

/// The network side's outlets.
pub struct NetworkTask {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The p2p handle (peer count).
    pub handle: NetworkHandle,
    /// Commands to the p2p service.
    pub commands: mpsc::Sender<NetworkCommand>,
    /// Jobs for the verification pool.
    pub verify: crossbeam_channel::Sender<VerifyJob>,
    /// Inputs for the driver (sync hints and results).
    pub driver: mpsc::Sender<DriverInput>,
}

impl NetworkTask {
    /// Run until the event channel closes.
    pub async fn run(self, mut events: mpsc::Receiver<NetworkEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetworkEvent::Gossip {
                    from,
                    topic,
                    data,
                    id,
                } => {
                    let verdict = match topic {
                        Topic::Consensus => self.on_consensus(from, &data, &id),
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
                NetworkEvent::Response { result, .. } => {
                    let input = match result {
                        Ok(SyncResponse::Blocks(blocks)) => DriverInput::SyncBlocks(blocks),
                        _ => DriverInput::SyncFailed,
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

    /// Decode and check a consensus message; `None` means the pool will give the verdict.
    fn on_consensus(
        &self,
        from: PeerId,
        data: &[u8],
        id: &basalt_p2p::GossipId,
    ) -> Option<Verdict> {
        let Ok(ConsensusGossip { message, .. }) = ConsensusGossip::from_bytes(data) else {
            return self.invalid("consensus");
        };
        let validators = self.shared.validators.len();
        let (height, index) = match &message {
            ConsensusMessage::Vote(v) => (v.vote.height, v.vote.validator),
            ConsensusMessage::Proposal { proposal, block } => {
                if block.id() != proposal.proposal.block_id {
                    return self.invalid("consensus");
                }
                (proposal.proposal.height, proposal.proposal.proposer)
            }
        };
        if usize::from(index) >= validators {
            return self.invalid("consensus");
        }
        let current = self.shared.consensus_height.load(Ordering::Relaxed);
        if height + 1 < current {
            return Some(Verdict::Ignore); // An old height: nothing to do with it.
        }
        if height > current {
            self.shared.saw_peer_height(from, height);
        }
        if height >= current + AHEAD_HEIGHTS {
            return Some(Verdict::Ignore); // Far ahead: the driver will sync instead.
        }
        let job = VerifyJob::Consensus {
            message,
            gossip: (id.clone(), from),
        };
        if self.verify.try_send(job).is_err() {
            self.shared.metrics.dropped("verify");
            return Some(Verdict::Ignore);
        }
        None
    }

    fn on_txs(&self, from: PeerId, data: &[u8], id: &basalt_p2p::GossipId) -> Option<Verdict> {
        let Ok(batch) = TxBatch::from_bytes(data) else {
            return self.invalid("txs");
        };
        let job = VerifyJob::Txs {
            txs: batch.txs.into_inner(),
            origin: TxOrigin::Gossip(id.clone(), from),
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

/// Publish admitted transactions in batches: a batch leaves when it is full or when the
/// oldest transaction in it has waited [`TX_BATCH_WINDOW`].
pub async fn run_tx_batcher(
    mut admitted: mpsc::Receiver<SignedTx>,
    commands: mpsc::Sender<NetworkCommand>,
    metrics: Metrics,
) {
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
        let batch = TxBatch {
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
