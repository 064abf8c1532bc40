//! The chain worker: executes decided blocks, persists each in one storage transaction,
//! updates the mempool and the RPC snapshot, and announces the import.
//!
//! It runs on its own OS thread so execution and fsync never run on the consensus
//! driver's thread.

use crate::state::{Latest, Shared};
use basalt_app::App;
use basalt_rpc::BlockEvent;
use basalt_types::{Block, CommitCertificate, Hash, SignedTx};
use std::sync::Arc;
use std::time::Instant;

/// Decided blocks waiting for execution. Consensus cannot decide faster than execution for
/// long (the next proposal needs the previous state root), so a few suffice; sync sends
/// a batch at most this size.
pub const CHAIN_QUEUE_MAX: usize = 256;

/// A decided block to execute.
pub struct Commit {
    /// The block.
    pub block: Arc<Block>,
    /// The certificate that committed it.
    pub certificate: CommitCertificate,
}

/// What the chain worker tells the driver.
#[derive(Debug, Clone)]
pub struct Executed {
    /// Height executed.
    pub height: u64,
    /// Its block id.
    pub block_id: Hash,
    /// Its time.
    pub time_ms: u64,
    /// State root after it.
    pub state_root: Hash,
    /// The certificate that committed it (the next block's last commit).
    pub certificate: Option<CommitCertificate>,
}

/// Why the chain worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The block's pre-state root differs from ours: this node has diverged.
    #[error("state root mismatch at height {height}: block says {block}, we have {ours}")]
    RootMismatch {
        /// Height.
        height: u64,
        /// Root in the block header.
        block: Hash,
        /// Our root.
        ours: Hash,
    },
    /// Execution failed.
    #[error("execute: {0}")]
    App(#[from] basalt_app::AppError),
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] basalt_storage::StoreError),
}

/// Execute and persist one block: `announce` gets what the driver needs as soon as the block
/// is executed (the next proposal builds on it while this persists); returns the event for
/// subscribers, sent once the block is durable.
pub fn apply(
    shared: &Shared,
    app: &mut App,
    commit: &Commit,
    announce: impl FnOnce(Executed),
) -> Result<BlockEvent, ChainError> {
    let block = &commit.block;
    let height = block.header.height;
    if block.header.state_root != app.state_root() {
        shared.metrics.state_root_mismatches.inc();
        return Err(ChainError::RootMismatch {
            height,
            block: block.header.state_root,
            ours: app.state_root(),
        });
    }
    let started = Instant::now();
    let outcome = app.execute_block(height, block.txs.as_slice())?;
    shared
        .metrics
        .execute_duration
        .observe(started.elapsed().as_secs_f64());
    let hashes: Vec<Hash> = outcome.receipts.iter().map(|r| r.tx_hash).collect();
    {
        let mut pool = shared.mempool();
        let waits = pool.remove_committed(&hashes, |sender| app.account(sender).nonce);
        shared.mempool_gauges(&pool);
        for wait in waits {
            shared.metrics.mempool_wait.observe(wait.as_secs_f64());
        }
    }
    // The block is decided (final) and executed: consensus may build on it while it is
    // persisted. Account state is served from here on; blocks, receipts and events only
    // once the block is durable (below).
    shared.app.store(Arc::new(app.clone()));
    announce(Executed {
        height,
        block_id: block.id(),
        time_ms: block.header.time_ms,
        state_root: outcome.state_root,
        certificate: Some(commit.certificate.clone()),
    });
    let started = Instant::now();
    shared.store.commit_block(
        block,
        &commit.certificate,
        &outcome.receipts,
        outcome.state_root,
    )?;
    shared
        .metrics
        .persist_duration
        .observe(started.elapsed().as_secs_f64());
    // The height's WAL is needed until its block is durable (a crash before this replays
    // it), not after.
    shared.store.prune_consensus(height)?;
    shared.latest.store(Arc::new(Latest {
        height,
        block_id: block.id(),
        state_root: outcome.state_root,
        time_ms: block.header.time_ms,
    }));
    shared
        .commit_times()
        .record(height, std::time::SystemTime::now());
    shared.metrics.height.set(height as i64);
    shared.metrics.committed_txs.inc_by(block.txs.len() as u64);
    Ok(BlockEvent {
        height,
        block_id: block.id(),
        time_ms: block.header.time_ms,
        txs: block.txs.iter().map(SignedTx::hash).collect(),
        receipts: outcome.receipts,
    })
}

/// Run the chain worker until the commit channel closes or the chain diverges.
pub fn run(
    shared: Arc<Shared>,
    mut app: App,
    commits: crossbeam_channel::Receiver<Commit>,
    executed: tokio::sync::mpsc::UnboundedSender<Executed>,
) {
    while let Ok(commit) = commits.recv() {
        shared.metrics.depth("chain", commits.len());
        if commit.block.header.height <= app.height() {
            continue; // Already applied (sync and consensus raced).
        }
        let mut driver_gone = false;
        let applied = apply(&shared, &mut app, &commit, |done| {
            driver_gone = executed.send(done).is_err();
        });
        match applied {
            Ok(event) => {
                let _ = shared.events.send(Arc::new(event));
                if driver_gone {
                    return;
                }
            }
            Err(error) => {
                tracing::error!(%error, "chain worker stopped: this node can no longer follow the chain");
                return;
            }
        }
    }
}

/// Rebuild the application from the stored chain, checking every stored post-state root.
pub fn recover(shared_store: &basalt_storage::Store, mut app: App) -> anyhow::Result<App> {
    let reader = shared_store.reader()?;
    let last = reader.last_height()?;
    for height in 1..=last {
        let block = reader
            .block(height)?
            .ok_or_else(|| anyhow::anyhow!("block {height} missing from the store"))?;
        anyhow::ensure!(
            block.header.state_root == app.state_root(),
            "stored block {height} was built on state root {} but replay gives {}",
            block.header.state_root,
            app.state_root()
        );
        let outcome = app.execute_block(height, block.txs.as_slice())?;
        let stored = reader.state_root_after(height)?;
        anyhow::ensure!(
            stored == Some(outcome.state_root),
            "state root after height {height}: stored {stored:?}, replay gives {}",
            outcome.state_root
        );
    }
    Ok(app)
}
