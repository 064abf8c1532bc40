//! The node's side of the RPC contract: reads come from storage snapshots and the latest
//! application snapshot, never from a lock the driver or chain worker holds.

use crate::state::{Shared, SyncState};
use crate::verify::{TxOrigin, VerifyJob};
use basalt_rpc::{
    AccountRecord, BlockAt, BlockEvent, BlockRecord, NodeApi, NodeStatus, Rejection, SyncStatus,
    TxStatus,
};
use basalt_types::{Hash, PublicKey, Receipt, SignedTx};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a submission waits for the verification pool before it is refused.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The node API handed to the RPC server.
#[derive(Clone)]
pub struct Api {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Jobs for the verification pool.
    pub verify: crate::verify::VerifyQueue,
    /// The metrics registry (RPC metrics included).
    pub registry: Arc<std::sync::OnceLock<Registry>>,
}

fn all_rejected(count: usize, code: &str, message: &str) -> Vec<Result<Hash, Rejection>> {
    (0..count)
        .map(|_| Err(Rejection::new(code, message)))
        .collect()
}

impl NodeApi for Api {
    fn admit(&self, txs: usize) -> Result<std::time::Duration, String> {
        self.shared
            .admission
            .admit(txs)
            .map_err(|congested| congested.to_string())
    }

    async fn submit(&self, txs: Vec<SignedTx>) -> Vec<Result<Hash, Rejection>> {
        let count = txs.len();
        let hashes: Vec<Hash> = txs.iter().map(SignedTx::hash).collect();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = VerifyJob::Txs {
            txs,
            origin: TxOrigin::Rpc(reply),
        };
        if self.verify.try_send(job).is_err() {
            self.shared.metrics.dropped("verify");
            return all_rejected(count, "overloaded", "the verification queue is full");
        }
        let results = match tokio::time::timeout(SUBMIT_TIMEOUT, answer).await {
            Ok(Ok(results)) => results,
            _ => all_rejected(count, "overloaded", "verification did not finish in time"),
        };
        let mut rejected = self.shared.rejected();
        for (hash, result) in hashes.iter().zip(&results) {
            if let Err(rejection) = result {
                if rejection.code != "duplicate" {
                    rejected.insert(*hash, rejection.clone());
                }
            }
        }
        results
    }

    fn tx_status(&self, hash: Hash) -> TxStatus {
        if self.shared.mempool().contains(&hash) {
            return TxStatus::Pending;
        }
        if let Ok(Some(record)) = self.shared.store.reader().and_then(|r| r.tx(&hash)) {
            return TxStatus::Committed {
                height: record.height,
                index: record.index,
                receipt: record.receipt,
            };
        }
        match self.shared.rejected().get(&hash) {
            Some(rejection) => TxStatus::Rejected(rejection),
            None => TxStatus::Unknown,
        }
    }

    fn block(&self, at: BlockAt) -> Option<BlockRecord> {
        let reader = self.shared.store.reader().ok()?;
        let height = match at {
            BlockAt::Latest => reader.last_height().ok()?,
            BlockAt::Height(height) => height,
        };
        let block = reader.block(height).ok()??;
        let certificate = reader.certificate(height).ok()?;
        Some(BlockRecord { block, certificate })
    }

    fn account(&self, address: PublicKey) -> Option<AccountRecord> {
        let app = self.shared.app.load();
        let (account, proof) = match app.account_with_proof(&address) {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "account proof failed");
                return None;
            }
        };
        Some(AccountRecord {
            exists: account.is_some(),
            account: account.unwrap_or_default(),
            proof,
            state_root: app.state_root(),
            height: app.height(),
        })
    }

    fn book(&self, market: u32) -> Option<basalt_app::BookView> {
        self.shared.app.load().book(market)
    }

    fn status(&self) -> NodeStatus {
        let latest = self.shared.latest.load();
        NodeStatus {
            chain_id: self.shared.chain_id.clone(),
            node_id: self.shared.node_id.clone(),
            height: latest.height,
            round: self.shared.consensus_round.load(Ordering::Relaxed),
            sync: match self.shared.sync_state() {
                SyncState::Idle => SyncStatus::Idle,
                SyncState::Syncing => SyncStatus::Syncing,
                SyncState::Synced => SyncStatus::Synced,
            },
            peers: self.shared.peers.load(Ordering::Relaxed),
            validators: self.shared.validators.validators().to_vec(),
            validator_index: self.shared.validator_index,
            latest_block_id: latest.block_id,
            latest_state_root: latest.state_root,
            latest_time_ms: latest.time_ms,
        }
    }

    fn simulate(&self, tx: SignedTx) -> Result<Receipt, Rejection> {
        if tx.body.chain_id.as_str() != self.shared.chain_id {
            return Err(Rejection::new(
                "wrong_chain_id",
                "transaction is for another chain",
            ));
        }
        if !tx.verify_signature() {
            return Err(Rejection::new("bad_signature", "signature does not verify"));
        }
        Ok(self.shared.app.load().simulate(&tx))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<BlockEvent>> {
        self.shared.events.subscribe()
    }

    fn commit_times(&self, from: u64, limit: usize) -> Vec<basalt_rpc::CommitTime> {
        self.shared.commit_times().from(from, limit)
    }

    fn metrics_text(&self) -> String {
        let mut text = String::new();
        if let Some(registry) = self.registry.get() {
            let _ = prometheus_client::encoding::text::encode(&mut text, registry);
        }
        text
    }
}
