//! State shared between the node's tasks. Each field is either immutable, atomic, an
//! `ArcSwap` snapshot (readers never block the writer) or a short-held mutex that the
//! consensus driver never takes.

use crate::mempool::Mempool;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use basalt_app::App;
use basalt_consensus::ValidatorSet;
use basalt_rpc::{BlockEvent, Rejection};
use basalt_storage::Store;
use basalt_types::{Hash, Keypair};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Rejected transaction hashes remembered for `GET /v1/txs/{hash}`.
pub const REJECTED_REMEMBERED_MAX: usize = 100_000;

/// Recent heights whose commit time the node remembers for `GET /v1/commits` (16 bytes
/// each: 256 KiB; at 100 blocks/s, the last 2.7 minutes).
pub const COMMIT_TIMES_MAX: usize = 16_384;

/// When each recent height became durable here, oldest first, consecutive heights.
#[derive(Debug, Default)]
pub struct CommitTimes {
    times: VecDeque<basalt_rpc::CommitTime>,
}

impl CommitTimes {
    /// Remember that `height` became durable now. A height at or below the last one
    /// remembered (a restart does not happen in-process; a resync would) starts over.
    pub fn record(&mut self, height: u64, at: std::time::SystemTime) {
        let at_unix_us = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        if self.times.back().is_some_and(|last| last.height >= height) {
            self.times.clear();
        }
        self.times
            .push_back(basalt_rpc::CommitTime { height, at_unix_us });
        while self.times.len() > COMMIT_TIMES_MAX {
            self.times.pop_front();
        }
    }

    /// Up to `limit` commit times from height `from` on, oldest first.
    pub fn from(&self, from: u64, limit: usize) -> Vec<basalt_rpc::CommitTime> {
        let start = self.times.partition_point(|t| t.height < from);
        self.times.iter().skip(start).take(limit).copied().collect()
    }
}

/// The latest committed block, as RPC shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latest {
    /// Height.
    pub height: u64,
    /// Block id.
    pub block_id: Hash,
    /// State root after it.
    pub state_root: Hash,
    /// Its time.
    pub time_ms: u64,
}

/// Sync status: what gossip is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SyncState {
    /// No peers or not started.
    Idle = 0,
    /// Behind peers: blocks are fetched.
    Syncing = 1,
    /// Following the chain.
    Synced = 2,
}

/// Bounded memory of rejected hashes.
#[derive(Default)]
pub struct Rejected {
    reasons: HashMap<Hash, Rejection>,
    order: VecDeque<Hash>,
}

impl Rejected {
    /// Remember a rejection.
    pub fn insert(&mut self, hash: Hash, rejection: Rejection) {
        if self.reasons.insert(hash, rejection).is_none() {
            self.order.push_back(hash);
        }
        while self.order.len() > REJECTED_REMEMBERED_MAX {
            if let Some(old) = self.order.pop_front() {
                self.reasons.remove(&old);
            }
        }
    }
    /// The rejection of `hash`, if remembered.
    pub fn get(&self, hash: &Hash) -> Option<Rejection> {
        self.reasons.get(hash).cloned()
    }
}

/// State shared by the node's tasks.
pub struct Shared {
    /// Chain id.
    pub chain_id: String,
    /// Validator set.
    pub validators: ValidatorSet,
    /// This node's validator index, if it is a validator.
    pub validator_index: Option<u16>,
    /// This node's consensus key.
    pub keypair: Keypair,
    /// libp2p peer id, as text.
    pub node_id: String,
    /// Durable store.
    pub store: Arc<Store>,
    /// Latest committed application state (RPC reads and nonce lookups).
    pub app: ArcSwap<App>,
    /// Pending transactions.
    pub mempool: Mutex<Mempool>,
    /// Recently rejected transactions.
    pub rejected: Mutex<Rejected>,
    /// Metrics.
    pub metrics: Metrics,
    /// Latest committed block.
    pub latest: ArcSwap<Latest>,
    /// Height being decided.
    pub consensus_height: AtomicU64,
    /// Round being decided.
    pub consensus_round: AtomicU32,
    /// Sync status.
    pub sync: AtomicU8,
    /// Connected peers.
    pub peers: AtomicUsize,
    /// New blocks and receipts for subscribers.
    pub events: tokio::sync::broadcast::Sender<Arc<BlockEvent>>,
    /// Verified heights per validator and who relayed them: how far ahead the network is
    /// (the driver syncs when it stays behind).
    pub tips: Mutex<crate::tips::Tips>,
    /// Verified values per (height, round, step, validator): the equivocation guard.
    pub slots: Mutex<crate::slots::SlotGuard>,
    /// When recent heights became durable here (the chain worker writes, RPC reads).
    pub commit_times: Mutex<CommitTimes>,
    /// Transaction admission by consensus latency (the driver feeds it, the RPC asks it).
    pub admission: crate::admission::Admission,
}

impl Shared {
    /// Current sync status.
    pub fn sync_state(&self) -> SyncState {
        match self.sync.load(Ordering::Relaxed) {
            1 => SyncState::Syncing,
            2 => SyncState::Synced,
            _ => SyncState::Idle,
        }
    }

    /// Set the sync status (and its metric).
    pub fn set_sync_state(&self, state: SyncState) {
        self.sync.store(state as u8, Ordering::Relaxed);
        self.metrics.sync_status.set(state as i64);
    }

    /// Lock the equivocation guard (a poisoned lock is recovered: its state is valid
    /// between calls).
    pub fn slots(&self) -> std::sync::MutexGuard<'_, crate::slots::SlotGuard> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lock the mempool. A poisoned lock (a panic while held) is recovered: the pool's
    /// invariants hold between method calls.
    pub fn mempool(&self) -> std::sync::MutexGuard<'_, Mempool> {
        self.mempool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lock the rejected-hash memory.
    pub fn rejected(&self) -> std::sync::MutexGuard<'_, Rejected> {
        self.rejected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lock the commit times.
    pub fn commit_times(&self) -> std::sync::MutexGuard<'_, CommitTimes> {
        self.commit_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lock the tips.
    pub fn tips(&self) -> std::sync::MutexGuard<'_, crate::tips::Tips> {
        self.tips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The height validators with more than a third of the power signed messages for, and
    /// a peer to fetch from; `None` when nothing verified says so.
    pub fn peer_ahead(&self) -> Option<(basalt_p2p::PeerId, u64)> {
        self.tips()
            .ahead(&self.validators, std::time::Instant::now())
    }

    /// Update mempool gauges.
    pub fn mempool_gauges(&self, pool: &Mempool) {
        self.metrics.mempool_size.set(pool.len() as i64);
        self.metrics.mempool_bytes.set(pool.bytes() as i64);
    }
}

/// A node's shared state for tests: validators `keys` (power 1 each, no accounts), this
/// node being `index`, its store in `dir`.
#[cfg(test)]
pub(crate) fn test_shared(dir: &std::path::Path, keys: &[Keypair], index: u16) -> Arc<Shared> {
    use basalt_types::{Genesis, ValidatorInfo};
    let validators: Vec<ValidatorInfo> = keys
        .iter()
        .map(|key| ValidatorInfo {
            public_key: key.public(),
            power: 1,
        })
        .collect();
    let genesis = Genesis {
        chain_id: "c".into(),
        genesis_time_ms: 1,
        validators: validators.clone(),
        assets: vec![],
        accounts: vec![],
        markets: vec![],
        task_generators: vec![],
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (events, _) = tokio::sync::broadcast::channel(1024);
    Arc::new(Shared {
        chain_id: "c".into(),
        validators: ValidatorSet::new(validators).expect("test validator set"),
        validator_index: Some(index),
        keypair: keys[usize::from(index)].clone(),
        node_id: "test".into(),
        store: Arc::new(Store::open(&dir.join("db.redb")).expect("test store")),
        app: ArcSwap::from_pointee(App::from_genesis(&genesis).expect("test genesis")),
        mempool: Mutex::new(Mempool::new(Default::default())),
        rejected: Mutex::new(Rejected::default()),
        metrics: Metrics::register(&mut registry),
        latest: ArcSwap::from_pointee(Latest::default()),
        consensus_height: AtomicU64::new(1),
        consensus_round: AtomicU32::new(0),
        sync: AtomicU8::new(0),
        peers: AtomicUsize::new(0),
        events,
        tips: Mutex::new(crate::tips::Tips::default()),
        slots: Mutex::new(crate::slots::SlotGuard::default()),
        commit_times: Mutex::new(CommitTimes::default()),
        admission: crate::admission::Admission::new(Default::default(), &mut registry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn commit_times_are_bounded_and_answered_from_a_height() {
        let mut times = CommitTimes::default();
        let at = |us: u64| UNIX_EPOCH + Duration::from_micros(us);
        let total = COMMIT_TIMES_MAX as u64 + 10;
        for height in 1..=total {
            times.record(height, at(height * 1000));
        }
        let oldest = total - COMMIT_TIMES_MAX as u64 + 1;
        let first = times.from(0, 2);
        assert_eq!(first.len(), 2);
        assert_eq!(
            (first[0].height, first[0].at_unix_us),
            (oldest, oldest * 1000)
        );
        assert_eq!(times.from(total - 1, 10).len(), 2);
        assert_eq!(times.from(total + 1, 10), vec![]);
        assert_eq!(times.from(0, usize::MAX).len(), COMMIT_TIMES_MAX);
        // Going back (a resync to a lower height) starts the window over.
        times.record(5, at(1));
        assert_eq!(
            times
                .from(0, 10)
                .iter()
                .map(|t| t.height)
                .collect::<Vec<_>>(),
            vec![5]
        );
    }
}
