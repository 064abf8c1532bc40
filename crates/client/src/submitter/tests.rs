//! The submitter against an in-memory chain: panics in the accumulator and in batch tasks,
//! transient failures with backoff, a full queue, dependencies, shutdown.

use super::test_hooks::{PANIC_ACCUMULATOR_AMOUNT, PANIC_BATCH_AMOUNT};
use super::*;
use crate::api::{Admission, CommittedReceipt};
use crate::submitter::metrics::RetryReason;
use basalt_rpc::json::{
    AccountJson, ErrorBody, ItemResultJson, ReceiptJson, ReceiptStatusJson, TxStatusJson,
    TxStatusKind,
};
use basalt_rpc::{NodeStatus, Rejection, SyncStatus};
use basalt_types::{Hash, SignedTx};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A chain in memory: every submission is executed at once into a new block (transactions
/// in nonce order per sender). A transfer of amount 0 fails with `zero_amount`.
#[derive(Clone, Default)]
struct MemoryChain {
    state: Arc<Mutex<ChainState>>,
}

#[derive(Default)]
struct ChainState {
    nonces: HashMap<PublicKey, u64>,
    pending: HashMap<PublicKey, BTreeMap<u64, SignedTx>>,
    committed: HashMap<Hash, CommittedReceipt>,
    height: u64,
    /// The next this many submissions fail with a transport error.
    failing_submits: u32,
    submits: u32,
}

fn item_result(item: &BatchItem) -> ItemResultJson {
    match item {
        BatchItem::Transfer { amount: 0, .. } => ItemResultJson::Failed {
            error: ErrorBody {
                code: "zero_amount".into(),
                message: "zero amount".into(),
            },
        },
        _ => ItemResultJson::Applied { order_id: None },
    }
}

impl ChainState {
    fn execute(&mut self) {
        let senders: Vec<PublicKey> = self.pending.keys().copied().collect();
        let mut any = false;
        for sender in senders {
            loop {
                let next = self.nonces.get(&sender).copied().unwrap_or(0);
                let Some(tx) = self.pending.get_mut(&sender).and_then(|p| p.remove(&next)) else {
                    break;
                };
                if !any {
                    self.height += 1;
                    any = true;
                }
                self.nonces.insert(sender, next + 1);
                let receipt = ReceiptJson {
                    tx_hash: tx.hash(),
                    status: ReceiptStatusJson::Success,
                    error: None,
                    items: tx.items().iter().map(item_result).collect(),
                };
                self.committed.insert(
                    tx.hash(),
                    CommittedReceipt {
                        hash: tx.hash(),
                        height: self.height,
                        index: 0,
                        receipt,
                    },
                );
            }
        }
    }
}

impl MemoryChain {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.state.lock().unwrap()
    }
}

impl ChainClient for MemoryChain {
    async fn submit(&self, txs: &[SignedTx]) -> Result<Vec<Admission>, ClientError> {
        let mut state = self.lock();
        state.submits += 1;
        if state.failing_submits > 0 {
            state.failing_submits -= 1;
            return Err(ClientError::Transport {
                endpoint: "memory".into(),
                message: "connection refused".into(),
            });
        }
        let mut results = Vec::new();
        for tx in txs {
            let sender = tx.body.sender;
            let next = state.nonces.get(&sender).copied().unwrap_or(0);
            if state.committed.contains_key(&tx.hash()) {
                results.push(Err(Rejection::new("duplicate", "seen")));
            } else if tx.body.nonce < next {
                results.push(Err(Rejection::new("stale_nonce", "stale")));
            } else {
                state
                    .pending
                    .entry(sender)
                    .or_default()
                    .insert(tx.body.nonce, tx.clone());
                results.push(Ok(tx.hash()));
            }
        }
        state.execute();
        Ok(results)
    }

    async fn tx_status(&self, hash: Hash) -> Result<TxStatusJson, ClientError> {
        let state = self.lock();
        Ok(match state.committed.get(&hash) {
            Some(committed) => TxStatusJson {
                hash,
                status: TxStatusKind::Committed,
                height: Some(committed.height),
                index: Some(0),
                receipt: Some(committed.receipt.clone()),
                error: None,
            },
            None => TxStatusJson {
                hash,
                status: TxStatusKind::Unknown,
                height: None,
                index: None,
                receipt: None,
                error: None,
            },
        })
    }

    async fn account(&self, address: PublicKey) -> Result<AccountJson, ClientError> {
        let state = self.lock();
        Ok(AccountJson {
            address,
            nonce: state.nonces.get(&address).copied().unwrap_or(0),
            balances: Default::default(),
            exists: true,
            proof: String::new(),
            state_root: Hash::ZERO,
            height: state.height,
        })
    }

    async fn status(&self) -> Result<NodeStatus, ClientError> {
        Ok(NodeStatus {
            chain_id: "memory".into(),
            node_id: "memory".into(),
            height: self.lock().height,
            round: 0,
            sync: SyncStatus::Synced,
            peers: 0,
            validators: Vec::new(),
            validator_index: None,
            latest_block_id: Hash::ZERO,
            latest_state_root: Hash::ZERO,
            latest_time_ms: 0,
        })
    }

    async fn simulate(&self, tx: &SignedTx) -> Result<ReceiptJson, ClientError> {
        let items: Vec<ItemResultJson> = tx.items().iter().map(item_result).collect();
        let failed = items
            .iter()
            .find(|item| matches!(item, ItemResultJson::Failed { .. }));
        Ok(ReceiptJson {
            tx_hash: tx.hash(),
            status: if failed.is_some() {
                ReceiptStatusJson::Failed
            } else {
                ReceiptStatusJson::Success
            },
            error: failed.and_then(|item| match item {
                ItemResultJson::Failed { error } => Some(error.clone()),
                _ => None,
            }),
            items,
        })
    }

    async fn nonce_and_status(
        &self,
        address: PublicKey,
        hash: Hash,
    ) -> Result<(u64, TxStatusJson), ClientError> {
        let nonce = self.account(address).await?.nonce;
        Ok((nonce, self.tx_status(hash).await?))
    }

    async fn dry_run<F>(
        &self,
        address: PublicKey,
        build: F,
        _concurrency: usize,
    ) -> Result<Vec<Result<ReceiptJson, ClientError>>, ClientError>
    where
        F: FnOnce(u64) -> Vec<SignedTx> + Send,
    {
        let nonce = self.account(address).await?.nonce;
        let mut results = Vec::new();
        for tx in build(nonce) {
            results.push(self.simulate(&tx).await);
        }
        Ok(results)
    }

    async fn wait_receipt(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> Result<CommittedReceipt, ClientError> {
        loop {
            if let Some(found) = self.lock().committed.get(&hash).cloned() {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::timeout("memory receipt", Duration::ZERO));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn transfer(amount: u64) -> BatchItem {
    BatchItem::Transfer {
        to: PublicKey::default(),
        asset: 0,
        amount,
    }
}

fn config() -> SubmitterConfig {
    SubmitterConfig {
        flush_interval: Duration::from_millis(5),
        op_timeout: Duration::from_secs(10),
        stall_check_interval: Duration::from_millis(200),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..SubmitterConfig::default()
    }
}

async fn submitter(chain: &MemoryChain, config: SubmitterConfig) -> BatchSubmitter<MemoryChain> {
    let signers = (0..2)
        .map(|i| Keypair::from_label(&format!("memory-signer-{i}")))
        .collect();
    BatchSubmitter::start(chain.clone(), signers, config)
        .await
        .unwrap()
}

#[tokio::test]
async fn operations_commit_with_their_own_results() {
    let chain = MemoryChain::default();
    let submitter = submitter(&chain, config()).await;
    let handles: Vec<OpHandle> = (0..600).map(|i| submitter.submit(transfer(i))).collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let outcome = handle.await;
        if i == 0 {
            match &outcome {
                OpOutcome::Rejected {
                    reason: OpError::Failed { code, .. },
                } => assert_eq!(code, "zero_amount"),
                other => panic!("{other:?}"),
            }
        } else {
            assert!(outcome.is_committed(), "op {i}: {outcome:?}");
        }
    }
    let metrics = submitter.metrics();
    assert_eq!(metrics.outcomes("committed"), 599);
    assert_eq!(metrics.outcomes("rejected"), 1);
    assert!(
        metrics.flushes(FlushReason::Size) >= 2,
        "600 ops make full batches"
    );
    let mut registry = prometheus_client::registry::Registry::with_prefix("basalt");
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for series in [
        "basalt_submitter_queue_depth 0",
        "basalt_submitter_batch_items_count 3",
        "basalt_submitter_flushes_total{reason=\"size\"} 2",
        "basalt_submitter_outcomes_total{kind=\"committed\"} 599",
        "basalt_submitter_rejections_total{reason=\"failed\"} 1",
        "basalt_submitter_panics_total{task=\"accumulator\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff() {
    let chain = MemoryChain::default();
    let submitter = submitter(&chain, config()).await;
    chain.lock().failing_submits = 3;
    let outcome = submitter.submit(transfer(5)).await;
    assert!(outcome.is_committed(), "{outcome:?}");
    assert!(submitter.metrics().retries(RetryReason::Transient) >= 3);
}

#[tokio::test]
async fn persistent_transport_failures_end_in_a_verdict() {
    let chain = MemoryChain::default();
    let submitter = submitter(
        &chain,
        SubmitterConfig {
            op_timeout: Duration::from_millis(800),
            stall_check_interval: Duration::from_millis(100),
            ..config()
        },
    )
    .await;
    chain.lock().failing_submits = u32::MAX;
    let started = Instant::now();
    let outcome = submitter.submit(transfer(5)).await;
    // Transport errors are ambiguous (the node may have taken the transaction), so the
    // answer is a timeout, and it comes by the deadline.
    assert_eq!(outcome, OpOutcome::TimedOut);
    assert!(started.elapsed() < Duration::from_millis(800) + HANDLE_GRACE);
}

#[tokio::test]
async fn a_full_queue_rejects_at_once() {
    let chain = MemoryChain::default();
    let submitter = submitter(
        &chain,
        SubmitterConfig {
            queue_max: 1,
            max_in_flight_per_signer: 1,
            ..config()
        },
    )
    .await;
    let handles: Vec<OpHandle> = (1..2000).map(|i| submitter.submit(transfer(i))).collect();
    let mut full = 0;
    for handle in handles {
        match handle.await {
            OpOutcome::Rejected {
                reason: OpError::QueueFull { capacity: 1 },
            } => full += 1,
            outcome => assert!(outcome.is_committed(), "{outcome:?}"),
        }
    }
    assert!(full > 0, "a one-slot queue must overflow under a burst");
}

#[tokio::test]
async fn the_accumulator_survives_a_panic() {
    let chain = MemoryChain::default();
    let submitter = submitter(&chain, config()).await;
    let before = submitter.submit(transfer(1)).await;
    assert!(before.is_committed());
    let poisoned = submitter.submit(transfer(PANIC_ACCUMULATOR_AMOUNT)).await;
    assert!(
        matches!(
            poisoned,
            OpOutcome::Rejected {
                reason: OpError::Internal(_)
            }
        ),
        "{poisoned:?}"
    );
    let after: Vec<OpHandle> = (2..50).map(|i| submitter.submit(transfer(i))).collect();
    for handle in after {
        let outcome = handle.await;
        assert!(outcome.is_committed(), "{outcome:?}");
    }
    assert_eq!(submitter.metrics().panics("accumulator"), 1);
}

#[tokio::test]
async fn a_panicking_batch_fails_only_its_operations() {
    let chain = MemoryChain::default();
    let submitter = submitter(
        &chain,
        SubmitterConfig {
            max_batch_items: 1,
            ..config()
        },
    )
    .await;
    let poisoned = submitter.submit(transfer(PANIC_BATCH_AMOUNT));
    let healthy: Vec<OpHandle> = (1..20).map(|i| submitter.submit(transfer(i))).collect();
    assert!(matches!(
        poisoned.await,
        OpOutcome::Rejected {
            reason: OpError::Internal(_)
        }
    ));
    for handle in healthy {
        assert!(handle.await.is_committed());
    }
    assert_eq!(submitter.metrics().panics("batch"), 1);
}

#[tokio::test]
async fn dependents_wait_for_commit_and_fail_with_their_dependency() {
    let chain = MemoryChain::default();
    let submitter = submitter(&chain, config()).await;
    let create = submitter.submit(transfer(7));
    let respond = submitter.submit_after(transfer(8), &create);
    let (create, respond) = (create.await, respond.await);
    assert!(respond.height() > create.height(), "{create:?} {respond:?}");

    let failing = submitter.submit(transfer(0));
    let dependent = submitter.submit_after(transfer(9), &failing);
    match dependent.await {
        OpOutcome::Rejected {
            reason: OpError::DependencyFailed { dependency, reason },
        } => {
            assert_eq!(dependency, failing.id());
            assert!(reason.contains("zero_amount"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn shutdown_flushes_and_then_refuses() {
    let chain = MemoryChain::default();
    let submitter = submitter(
        &chain,
        SubmitterConfig {
            flush_interval: Duration::from_secs(30),
            ..config()
        },
    )
    .await;
    let queued = submitter.submit(transfer(3));
    assert!(
        submitter
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await
    );
    assert!(queued.await.is_committed(), "flushed at shutdown");
    assert_eq!(
        submitter.submit(transfer(4)).await,
        OpOutcome::Rejected {
            reason: OpError::ShutDown
        }
    );
    assert_eq!(submitter.metrics().flushes(FlushReason::Shutdown), 1);
}

#[tokio::test]
async fn a_nonce_gap_is_filled() {
    let chain = MemoryChain::default();
    let submitter = submitter(
        &chain,
        SubmitterConfig {
            stall_check_interval: Duration::from_millis(50),
            ..config()
        },
    )
    .await;
    for lane in 0..2 {
        submitter.nonce_manager(lane).unwrap().skip_nonce().unwrap();
    }
    let outcome = submitter.submit(transfer(3)).await;
    assert!(outcome.is_committed(), "{outcome:?}");
    assert!(submitter.metrics().fillers() >= 1);
    let payload_of_filler = chain.lock().committed.values().any(|c| {
        c.receipt.items.len() == 1 && matches!(c.receipt.items[0], ItemResultJson::Failed { .. })
    });
    assert!(
        payload_of_filler,
        "the filler committed (and failed harmlessly)"
    );
}

#[tokio::test]
async fn shutdown_can_run_on_another_task() {
    let chain = MemoryChain::default();
    let submitter = Arc::new(submitter(&chain, config()).await);
    // Compiles only if the shutdown future is Send.
    let task = tokio::spawn({
        let submitter = Arc::clone(&submitter);
        async move {
            submitter
                .shutdown(std::time::Instant::now() + std::time::Duration::from_secs(5))
                .await
        }
    });
    assert!(task.await.unwrap(), "an idle submitter shuts down at once");
}
