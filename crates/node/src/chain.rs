//! The chain worker: executes decided blocks, updates the mempool and announces each
//! import; its persist thread makes them durable (group commits) and then publishes them
//! (RPC snapshot, commit times, block events).
//!
//! Both run on their own OS threads, so execution and fsync never run on the consensus
//! driver's thread, and execution never waits for an fsync.

use crate::state::{Latest, Shared};
use basalt_app::App;
use basalt_rpc::BlockEvent;
use basalt_storage::BlockRecord;
use basalt_types::{Block, CommitCertificate, Hash, Receipt, SignedTx};
use std::sync::Arc;
use std::time::Instant;

/// Decided blocks waiting for execution. Consensus cannot decide faster than execution for
/// long (the next proposal needs the previous state root), so a few suffice; sync sends
/// a batch at most this size.
pub const CHAIN_QUEUE_MAX: usize = 256;

/// Executed blocks waiting to be made durable; past this the chain thread waits for the
/// disk (memory stays bounded when storage is slower than consensus).
pub const PERSIST_QUEUE_MAX: usize = 256;

/// Most blocks made durable in one storage transaction.
pub const PERSIST_BATCH_MAX: usize = 64;

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

/// A block executed and announced, waiting to be made durable.
pub struct Persist {
    block: Arc<Block>,
    certificate: CommitCertificate,
    receipts: Vec<Receipt>,
    state_root: Hash,
}

/// Execute one block: `announce` gets what the driver needs as soon as the block is
/// executed (the next proposal builds on it); returns what must be persisted.
pub fn execute(
    shared: &Shared,
    app: &mut App,
    commit: &Commit,
    announce: impl FnOnce(Executed),
) -> Result<Persist, ChainError> {
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
    // once the block is durable (`persist`).
    shared.app.store(Arc::new(app.clone()));
    announce(Executed {
        height,
        block_id: block.id(),
        time_ms: block.header.time_ms,
        state_root: outcome.state_root,
        certificate: Some(commit.certificate.clone()),
    });
    Ok(Persist {
        block: commit.block.clone(),
        certificate: commit.certificate.clone(),
        receipts: outcome.receipts,
        state_root: outcome.state_root,
    })
}

/// Make executed blocks durable in one storage transaction, then publish them: the RPC
/// snapshot, commit times, metrics, and one event per block for subscribers.
pub fn persist(shared: &Shared, batch: Vec<Persist>) -> Result<(), ChainError> {
    let Some(last) = batch.last().map(|e| e.block.header.height) else {
        return Ok(());
    };
    let started = Instant::now();
    let records: Vec<BlockRecord<'_>> = batch
        .iter()
        .map(|e| BlockRecord {
            block: &e.block,
            certificate: &e.certificate,
            receipts: &e.receipts,
            state_root_after: e.state_root,
        })
        .collect();
    shared.store.commit_blocks(&records)?;
    shared
        .metrics
        .persist_duration
        .observe(started.elapsed().as_secs_f64());
    shared.metrics.persist_batch.observe(batch.len() as f64);
    // A height's WAL is needed until its block is durable (a crash before this replays
    // it), not after.
    shared.store.prune_consensus(last)?;
    let now = std::time::SystemTime::now();
    for done in batch {
        let block = &done.block;
        let height = block.header.height;
        shared.latest.store(Arc::new(Latest {
            height,
            block_id: block.id(),
            state_root: done.state_root,
            time_ms: block.header.time_ms,
        }));
        shared.commit_times().record(height, now);
        shared.metrics.height.set(height as i64);
        shared.metrics.committed_txs.inc_by(block.txs.len() as u64);
        let _ = shared.events.send(Arc::new(BlockEvent {
            height,
            block_id: block.id(),
            time_ms: block.header.time_ms,
            txs: block.txs.iter().map(SignedTx::hash).collect(),
            receipts: done.receipts,
        }));
    }
    Ok(())
}

/// Run the chain worker until the commit channel closes or the chain diverges: this
/// thread executes each decided block and announces it; a second one ("persist") makes
/// them durable, as many as have queued up per fsync. Execution never waits for an
/// fsync, so a slow disk delays when blocks become durable and visible to clients, not
/// when consensus can build on them.
pub fn run(
    shared: Arc<Shared>,
    mut app: App,
    commits: crossbeam_channel::Receiver<Commit>,
    executed: tokio::sync::mpsc::UnboundedSender<Executed>,
) {
    let (to_persist, persist_queue) = crossbeam_channel::bounded::<Persist>(PERSIST_QUEUE_MAX);
    let persister = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("persist".into())
            .spawn(move || persist_loop(&shared, &persist_queue))
    };
    let persister = match persister {
        Ok(handle) => handle,
        Err(error) => {
            tracing::error!(%error, "chain worker stopped: no persist thread");
            return;
        }
    };
    while let Ok(commit) = commits.recv() {
        shared.metrics.depth("chain", commits.len());
        if commit.block.header.height <= app.height() {
            continue; // Already applied (sync and consensus raced).
        }
        let mut driver_gone = false;
        let done = execute(&shared, &mut app, &commit, |done| {
            driver_gone = executed.send(done).is_err();
        });
        match done {
            // Waits while the persister is PERSIST_QUEUE_MAX blocks behind; fails once it
            // stopped (it logged why).
            Ok(done) => {
                if to_persist.send(done).is_err() || driver_gone {
                    break;
                }
            }
            Err(error) => {
                tracing::error!(%error, "chain worker stopped: this node can no longer follow the chain");
                break;
            }
        }
    }
    drop(to_persist);
    let _ = persister.join();
}

fn persist_loop(shared: &Shared, queue: &crossbeam_channel::Receiver<Persist>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < PERSIST_BATCH_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        shared.metrics.depth("persist", queue.len());
        if let Err(error) = persist(shared, batch) {
            tracing::error!(%error, "persist thread stopped: this node can no longer store the chain");
            return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{BlockHeader, BoundedVec, Keypair};

    #[test]
    fn every_executed_block_is_announced_then_made_durable_in_order() {
        let dir = std::env::temp_dir().join(format!("basalt-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shared = crate::state::test_shared(&dir, &[Keypair::from_seed([5; 32])], 0);
        let mut events = shared.events.subscribe();
        let app = (**shared.app.load()).clone();
        // A chain of empty blocks, each built on the state root its parent leaves.
        let mut scratch = app.clone();
        let mut parent = Hash::ZERO;
        let mut commits = Vec::new();
        for height in 1..=40u64 {
            let block = Block {
                header: BlockHeader {
                    height,
                    round: 0,
                    proposer: 0,
                    parent_hash: parent,
                    state_root: scratch.state_root(),
                    txs_root: basalt_types::block::txs_root(&[]),
                    time_ms: height,
                    last_commit_hash: Hash::ZERO,
                },
                txs: BoundedVec::new(Vec::new()).unwrap(),
                last_commit: None,
            };
            scratch.execute_block(height, &[]).unwrap();
            parent = block.id();
            commits.push(Commit {
                certificate: CommitCertificate {
                    height,
                    round: 0,
                    block_id: block.id(),
                    signatures: BoundedVec::empty(),
                },
                block: Arc::new(block),
            });
        }
        let (to_chain, chain_queue) = crossbeam_channel::bounded(CHAIN_QUEUE_MAX);
        let (announce, mut announced) = tokio::sync::mpsc::unbounded_channel();
        // All queued before the worker starts: the persister sees them pile up.
        for commit in commits {
            to_chain.send(commit).unwrap();
        }
        drop(to_chain);
        run(shared.clone(), app, chain_queue, announce);

        let heights: Vec<u64> = std::iter::from_fn(|| announced.try_recv().ok())
            .map(|e| e.height)
            .collect();
        assert_eq!(heights, (1..=40).collect::<Vec<_>>());
        let reader = shared.store.reader().unwrap();
        assert_eq!(
            reader.last_height().unwrap(),
            40,
            "nothing lost at shutdown"
        );
        assert_eq!(
            reader.state_root_after(40).unwrap(),
            Some(scratch.state_root())
        );
        assert_eq!(shared.latest.load().height, 40);
        let published: Vec<u64> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.height)
            .collect();
        assert_eq!(published, (1..=40).collect::<Vec<_>>(), "events in order");
        assert_eq!(shared.commit_times().from(1, 100).len(), 40);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
