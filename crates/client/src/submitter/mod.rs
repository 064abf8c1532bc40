//! [`BatchSubmitter`]: many callers' operations folded into native batch transactions, sent
//! by several signers with pipelined nonces, each operation answered on its own.
//!
//! This is the design of seed 002 done fully. Flow:
//!
//! ```text
//! submit(op) ──► queue (bounded) ──► accumulator ──flush on size or window──► lane (signer)
//!                                   (one task,      round-robin over signers with a free
//!                                    supervised)    in-flight slot
//!                                                          │ one task per batch
//!          sign with the lane's next nonce ─► POST /v1/txs ─► wait receipt (WebSocket)
//!                 ▲          │ transient: backoff, same tx      │ stall: gap repair
//!                 │          │ refused: dry-run each item       │ nonce taken: re-sign
//!                 └──────────┴──── healthy items again ◄────────┘ per-item outcomes
//! submit_after(op, dep) ─► parked until dep commits ─► queue   (dep fails ─► op fails)
//! ```
//!
//! Failure handling, as the seed's decision matrix:
//!
//! - one item fails in an independent batch → that operation is rejected with the item's
//!   error; the others commit;
//! - the whole batch is refused (a node's refusal, a failed atomic batch) → every item is
//!   dry-run alone through `/v1/simulate`; items that fail are rejected with their reason,
//!   the rest are sent again (each operation at most `op_attempts_max` times);
//! - transient (connection refused, timeout, 5xx, 503/429, `mempool_full`) → the same
//!   signed transaction again after an exponential backoff;
//! - another transaction took the nonce → the content is re-signed with a fresh nonce;
//! - the batch is stuck behind a nonce gap → the signer's [`crate::NonceManager`] repairs
//!   (fills the gap, re-sends what is pending, in order);
//! - no receipt by the deadline → [`OpOutcome::TimedOut`].

mod batch;
pub mod metrics;
pub mod op;
#[cfg(test)]
mod tests;

use crate::api::ChainClient;
use crate::error::ClientError;
use crate::nonce::NonceManager;
use basalt_types::limits::BATCH_ITEMS_MAX;
use basalt_types::{BatchItem, BatchMode, Keypair, PublicKey};
use futures::FutureExt;
use metrics::{FlushReason, SubmitterMetrics};
use op::{OpError, OpHandle, OpOutcome, OpSlot, HANDLE_GRACE};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Default most operations per batch: the chain's limit ([`BATCH_ITEMS_MAX`]).
pub const BATCH_ITEMS_DEFAULT: usize = BATCH_ITEMS_MAX;
/// Default batch window: a batch is flushed this long after its first operation arrived
/// if it did not fill first. Short against a block interval (tens to hundreds of ms) so
/// batching adds little latency, long enough to gather a burst.
pub const FLUSH_INTERVAL_DEFAULT: Duration = Duration::from_millis(20);
/// Default batches in flight per signer (sent, receipt not yet in).
pub const IN_FLIGHT_PER_SIGNER_DEFAULT: usize = 4;
/// Default deadline of one operation, from when it is queued.
pub const OP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);
/// Default time a batch waits for its receipt before checking why it is not committed.
pub const STALL_CHECK_INTERVAL_DEFAULT: Duration = Duration::from_secs(2);
/// Default most whole-batch failures one operation goes through before it is rejected.
pub const OP_ATTEMPTS_MAX_DEFAULT: u32 = 4;
/// Default most sends of one signed transaction after transient failures.
pub const SUBMIT_ATTEMPTS_MAX_DEFAULT: u32 = 8;
/// Default first backoff after a transient failure (doubles per failure).
pub const BACKOFF_MIN_DEFAULT: Duration = Duration::from_millis(50);
/// Default longest backoff.
pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(2);
/// Default bound of the operation queue; an operation beyond it is rejected at once with
/// [`OpError::QueueFull`].
pub const QUEUE_MAX_DEFAULT: usize = 100_000;
/// Default dry runs in flight at once when a refused batch is stripped.
pub const DRY_RUN_CONCURRENCY_DEFAULT: usize = 16;
/// Pause before an accumulator that panicked is restarted (a panic on every operation
/// must not spin a core).
const RESTART_DELAY: Duration = Duration::from_millis(10);

/// How a [`BatchSubmitter`] batches, retries and gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitterConfig {
    /// Most operations per batch transaction (1 ..= [`BATCH_ITEMS_MAX`]).
    pub max_batch_items: usize,
    /// A batch is flushed this long after its first operation if it did not fill first.
    pub flush_interval: Duration,
    /// How batches apply: [`BatchMode::Independent`] (default: per-item results) or
    /// [`BatchMode::Atomic`] (a failing item fails the batch; it is then stripped).
    pub batch_mode: BatchMode,
    /// Batches in flight per signer.
    pub max_in_flight_per_signer: usize,
    /// Deadline of one operation from when it is queued (for a dependent operation: from
    /// when its dependency committed).
    pub op_timeout: Duration,
    /// A batch without receipt after this long checks for a nonce gap or a lost
    /// transaction, and repeats the check each interval until its deadline.
    pub stall_check_interval: Duration,
    /// Whole-batch failures one operation may go through before it is rejected.
    pub op_attempts_max: u32,
    /// Sends of one signed transaction after transient failures, per attempt.
    pub submit_attempts_max: u32,
    /// First backoff after a transient failure.
    pub backoff_min: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Bound of the operation queue.
    pub queue_max: usize,
    /// Dry runs in flight at once.
    pub dry_run_concurrency: usize,
    /// The chain id to sign for; read from `/v1/status` when `None`.
    pub chain_id: Option<String>,
}

impl Default for SubmitterConfig {
    fn default() -> Self {
        SubmitterConfig {
            max_batch_items: BATCH_ITEMS_DEFAULT,
            flush_interval: FLUSH_INTERVAL_DEFAULT,
            batch_mode: BatchMode::Independent,
            max_in_flight_per_signer: IN_FLIGHT_PER_SIGNER_DEFAULT,
            op_timeout: OP_TIMEOUT_DEFAULT,
            stall_check_interval: STALL_CHECK_INTERVAL_DEFAULT,
            op_attempts_max: OP_ATTEMPTS_MAX_DEFAULT,
            submit_attempts_max: SUBMIT_ATTEMPTS_MAX_DEFAULT,
            backoff_min: BACKOFF_MIN_DEFAULT,
            backoff_max: BACKOFF_MAX_DEFAULT,
            queue_max: QUEUE_MAX_DEFAULT,
            dry_run_concurrency: DRY_RUN_CONCURRENCY_DEFAULT,
            chain_id: None,
        }
    }
}

impl SubmitterConfig {
    fn validate(&self) -> Result<(), ClientError> {
        let invalid = |message: String| Err(ClientError::Invalid { message });
        if self.max_batch_items == 0 || self.max_batch_items > BATCH_ITEMS_MAX {
            return invalid(format!(
                "max_batch_items is {}; it must be 1..={BATCH_ITEMS_MAX}",
                self.max_batch_items
            ));
        }
        if self.max_in_flight_per_signer == 0
            || u32::try_from(self.max_in_flight_per_signer).is_err()
        {
            return invalid("max_in_flight_per_signer must be at least 1".into());
        }
        if self.queue_max == 0 || self.op_attempts_max == 0 || self.submit_attempts_max == 0 {
            return invalid("queue_max and the attempt bounds must be at least 1".into());
        }
        Ok(())
    }
}

/// One signer: its nonces and its in-flight slots.
pub(crate) struct Lane {
    pub(crate) nonces: NonceManager,
    permits: Arc<Semaphore>,
}

/// What the accumulator and the batch tasks share.
pub(crate) struct Core<C> {
    pub(crate) client: C,
    pub(crate) config: SubmitterConfig,
    pub(crate) metrics: SubmitterMetrics,
    lanes: Vec<Arc<Lane>>,
    next_lane: AtomicUsize,
}

/// The submitter's entry side, shared by its handles and by dependency watchers.
struct Entry {
    queue: mpsc::Sender<OpSlot>,
    closed: AtomicBool,
    metrics: SubmitterMetrics,
    capacity: usize,
}

impl Entry {
    /// Queue `slot`, or reject it at once when the queue is full or closed.
    fn enqueue(&self, slot: OpSlot) {
        if self.closed.load(Ordering::Acquire) {
            slot.reject(OpError::ShutDown);
            return;
        }
        self.metrics.queued(1);
        match self.queue.try_send(slot) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(slot)) => {
                self.metrics.dequeued(1);
                slot.reject(OpError::QueueFull {
                    capacity: self.capacity,
                });
            }
            Err(mpsc::error::TrySendError::Closed(slot)) => {
                self.metrics.dequeued(1);
                slot.reject(OpError::ShutDown);
            }
        }
    }
}

/// Folds operations into batch transactions and answers each operation on its own.
/// Cheap to clone (handles to the same submitter).
///
/// Guarantees:
/// - every [`OpHandle`] resolves, by its deadline, to exactly one of committed (with the
///   operation's own receipt item and height), rejected (with a typed reason) or timed out;
/// - an operation submitted with [`BatchSubmitter::submit_after`] is sent only after its
///   dependency's receipt shows it committed, so it lands in a later block; if the
///   dependency is rejected or times out, the operation is rejected with
///   [`OpError::DependencyFailed`] and never sent;
/// - an operation is never applied twice: content is re-signed under a new nonce only
///   after the chain shows the old nonce taken by another transaction;
/// - a panic in the accumulator restarts it (queued operations are kept); a panic in a
///   batch task rejects that batch's operations with [`OpError::Internal`]; both are
///   counted in `submitter_panics_total`.
///
/// Not guaranteed: an order between operations other than the one `submit_after` gives
/// (batches of different signers commit in any order); that a timed-out operation did not
/// apply (a timeout means the outcome is unknown); dry runs see the latest committed state,
/// not the effects of earlier items of the same batch.
pub struct BatchSubmitter<C: ChainClient> {
    core: Arc<Core<C>>,
    entry: Arc<Entry>,
    next_id: Arc<AtomicU64>,
    shutdown: Arc<watch::Sender<bool>>,
    accumulator_done: watch::Receiver<bool>,
    runtime: tokio::runtime::Handle,
}

impl<C: ChainClient> Clone for BatchSubmitter<C> {
    fn clone(&self) -> Self {
        BatchSubmitter {
            core: self.core.clone(),
            entry: self.entry.clone(),
            next_id: self.next_id.clone(),
            shutdown: self.shutdown.clone(),
            accumulator_done: self.accumulator_done.clone(),
            runtime: self.runtime.clone(),
        }
    }
}

impl<C: ChainClient> std::fmt::Debug for BatchSubmitter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSubmitter")
            .field("signers", &self.signers())
            .field("config", &self.core.config)
            .finish()
    }
}

impl<C: ChainClient> BatchSubmitter<C> {
    /// Start a submitter sending through `client` with one lane per key in `signers` (each
    /// its own nonce space). Reads the chain id (unless configured) and every signer's nonce
    /// before returning; fails if the chain cannot be reached. Its tasks run on the caller's
    /// tokio runtime. Dropping every handle shuts it down like [`BatchSubmitter::shutdown`]
    /// (queued operations are flushed; batches in flight finish), without waiting.
    pub async fn start(
        client: C,
        signers: Vec<Keypair>,
        config: SubmitterConfig,
    ) -> Result<BatchSubmitter<C>, ClientError> {
        let runtime = crate::runtime()?;
        config.validate()?;
        if signers.is_empty() {
            return Err(ClientError::Invalid {
                message: "a batch submitter needs at least one signer".into(),
            });
        }
        let chain_id = match &config.chain_id {
            Some(chain_id) => chain_id.clone(),
            None => client.status().await?.chain_id,
        };
        let lanes: Vec<Arc<Lane>> = signers
            .into_iter()
            .map(|keypair| {
                Arc::new(Lane {
                    nonces: NonceManager::new(keypair, &chain_id),
                    permits: Arc::new(Semaphore::new(config.max_in_flight_per_signer)),
                })
            })
            .collect();
        let syncs = lanes.iter().map(|lane| lane.nonces.sync(&client));
        for synced in futures::future::join_all(syncs).await {
            synced?;
        }
        let metrics = SubmitterMetrics::new();
        let (queue, receiver) = mpsc::channel(config.queue_max);
        let (shutdown, shutdown_signal) = watch::channel(false);
        let (done_sender, accumulator_done) = watch::channel(false);
        let entry = Arc::new(Entry {
            queue,
            closed: AtomicBool::new(false),
            metrics: metrics.clone(),
            capacity: config.queue_max,
        });
        let core = Arc::new(Core {
            client,
            config,
            metrics,
            lanes,
            next_lane: AtomicUsize::new(0),
        });
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        runtime.spawn(supervise(
            core.clone(),
            receiver,
            shutdown_signal,
            done_sender,
        ));
        Ok(BatchSubmitter {
            core,
            entry,
            next_id: Arc::new(AtomicU64::new(0)),
            shutdown: Arc::new(shutdown),
            accumulator_done,
            runtime,
        })
    }

    /// The submitter's metrics (register them with [`SubmitterMetrics::register`]).
    pub fn metrics(&self) -> &SubmitterMetrics {
        &self.core.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &SubmitterConfig {
        &self.core.config
    }

    /// The signers' addresses, in lane order.
    pub fn signers(&self) -> Vec<PublicKey> {
        self.core
            .lanes
            .iter()
            .map(|lane| lane.nonces.address())
            .collect()
    }

    /// The nonce manager of signer `index` (lane order).
    pub fn nonce_manager(&self, index: usize) -> Option<&NonceManager> {
        self.core.lanes.get(index).map(|lane| &lane.nonces)
    }

    /// Submit one operation; await the handle for its own outcome. Never blocks: when the
    /// queue is full or the submitter is shut down the handle is already rejected.
    pub fn submit(&self, item: BatchItem) -> OpHandle {
        let deadline = Instant::now() + self.core.config.op_timeout;
        let (slot, handle) = OpSlot::new(
            self.next_id(),
            item,
            deadline,
            deadline,
            self.core.metrics.clone(),
        );
        self.entry.enqueue(slot);
        handle
    }

    /// Submit `item` to be sent only once `dependency` has committed. If the dependency is
    /// rejected or times out, this operation is rejected with [`OpError::DependencyFailed`]
    /// and never sent. Its deadline counts from the dependency's commit.
    pub fn submit_after(&self, item: BatchItem, dependency: &OpHandle) -> OpHandle {
        let timeout = self.core.config.op_timeout;
        let hard_deadline = dependency.deadline() + HANDLE_GRACE + timeout;
        let (mut slot, handle) = OpSlot::new(
            self.next_id(),
            item,
            hard_deadline,
            hard_deadline,
            self.core.metrics.clone(),
        );
        let dependency = dependency.clone();
        let entry = self.entry.clone();
        let metrics = self.core.metrics.clone();
        metrics.waiting(1);
        self.runtime.spawn(async move {
            let outcome = dependency.outcome().await;
            metrics.waiting(-1);
            let reason = match outcome {
                OpOutcome::Committed { .. } => {
                    slot.deadline = (Instant::now() + timeout).min(hard_deadline);
                    entry.enqueue(slot);
                    return;
                }
                OpOutcome::Rejected { reason } => format!("rejected: {reason}"),
                OpOutcome::TimedOut => "timed out; its outcome is unknown".to_owned(),
            };
            slot.reject(OpError::DependencyFailed {
                dependency: dependency.id(),
                reason,
            });
        });
        handle
    }

    /// Stop taking operations (later ones are rejected with [`OpError::ShutDown`]), flush
    /// what is queued, and wait until every batch in flight is decided or `deadline`
    /// passes. Returns true when everything was decided in time.
    pub async fn shutdown(&self, deadline: Instant) -> bool {
        self.entry.closed.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut done = self.accumulator_done.clone();
        // The watch guard is dropped in this statement: held across the next await it
        // would make this future !Send.
        let flushed = matches!(
            tokio::time::timeout_at(deadline, done.wait_for(|done| *done)).await,
            Ok(Ok(_))
        );
        if !flushed {
            return false;
        }
        let slots = u32::try_from(self.core.config.max_in_flight_per_signer).unwrap_or(u32::MAX);
        let drained = async {
            for lane in &self.core.lanes {
                let _ = lane.permits.acquire_many(slots).await;
            }
        };
        tokio::time::timeout_at(deadline, drained).await.is_ok()
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl<C: ChainClient> Core<C> {
    /// A signer with a free in-flight slot, round-robin; when all are busy, the first to
    /// free one.
    async fn acquire_lane(&self) -> (Arc<Lane>, OwnedSemaphorePermit) {
        let count = self.lanes.len().max(1);
        let start = self.next_lane.fetch_add(1, Ordering::Relaxed) % count;
        for offset in 0..count {
            if let Some(lane) = self.lanes.get((start + offset) % count) {
                if let Ok(permit) = lane.permits.clone().try_acquire_owned() {
                    return (lane.clone(), permit);
                }
            }
        }
        loop {
            let waits = self.lanes.iter().map(|lane| {
                let lane = lane.clone();
                Box::pin(async move {
                    let permit = lane.permits.clone().acquire_owned().await;
                    (lane, permit)
                })
            });
            let ((lane, permit), _, _) = futures::future::select_all(waits).await;
            // The semaphores are never closed, so this always holds.
            if let Ok(permit) = permit {
                return (lane, permit);
            }
        }
    }

    /// Hand `ops` to a signer as one batch, in its own task.
    async fn flush(self: &Arc<Self>, ops: Vec<OpSlot>, reason: FlushReason) {
        if ops.is_empty() {
            return;
        }
        self.metrics.flushed(reason, ops.len());
        let (lane, permit) = self.acquire_lane().await;
        let core = self.clone();
        self.metrics.batch_started();
        tokio::spawn(async move {
            let _permit = permit;
            let run = AssertUnwindSafe(batch::run(core.clone(), lane, ops)).catch_unwind();
            let result = run.await;
            core.metrics.batch_finished();
            if let Err(panic) = result {
                core.metrics.panicked("batch");
                tracing::error!(
                    panic = %panic_message(panic.as_ref()),
                    "batch task panicked; its operations are rejected as internal failures"
                );
            }
        });
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic".to_owned()
    }
}

/// Run the accumulator, restarting it after a panic, until it ends.
async fn supervise<C: ChainClient>(
    core: Arc<Core<C>>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<OpSlot>>>,
    shutdown: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    loop {
        let task = tokio::spawn(accumulate(core.clone(), receiver.clone(), shutdown.clone()));
        match task.await {
            Ok(()) => break,
            Err(error) if error.is_panic() => {
                core.metrics.panicked("accumulator");
                tracing::error!(
                    panic = %panic_message(error.into_panic().as_ref()),
                    "batch accumulator panicked; restarting it"
                );
                tokio::time::sleep(RESTART_DELAY).await;
            }
            Err(_) => break, // Cancelled: the runtime is shutting down.
        }
    }
    done.send_replace(true);
}

/// Gather operations into batches; flush at the size limit, at the end of the window, and
/// at shutdown. Returns when shut down or when every sender is gone.
async fn accumulate<C: ChainClient>(
    core: Arc<Core<C>>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<OpSlot>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut receiver = receiver.lock().await;
    let max = core.config.max_batch_items;
    let mut batch: Vec<OpSlot> = Vec::with_capacity(max);
    let mut window_end: Option<tokio::time::Instant> = None;
    loop {
        let window = async {
            match window_end {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = window => {
                window_end = None;
                core.flush(std::mem::take(&mut batch), FlushReason::Interval).await;
            }
            () = stopped(&mut shutdown) => {
                // Closed first: nothing can slip in after the drain.
                receiver.close();
                while let Ok(op) = receiver.try_recv() {
                    core.metrics.dequeued(1);
                    batch.push(op);
                    if batch.len() >= max {
                        core.flush(std::mem::take(&mut batch), FlushReason::Shutdown).await;
                    }
                }
                core.flush(std::mem::take(&mut batch), FlushReason::Shutdown).await;
                return;
            }
            op = receiver.recv() => {
                let Some(op) = op else {
                    core.flush(std::mem::take(&mut batch), FlushReason::Shutdown).await;
                    return;
                };
                core.metrics.dequeued(1);
                #[cfg(test)]
                test_hooks::before_accumulate(&op.item);
                if op.is_expired() {
                    op.resolve(OpOutcome::TimedOut);
                    continue;
                }
                if batch.is_empty() {
                    window_end = Some(tokio::time::Instant::now() + core.config.flush_interval);
                }
                batch.push(op);
                if batch.len() >= max {
                    window_end = None;
                    core.flush(std::mem::take(&mut batch), FlushReason::Size).await;
                }
            }
        }
    }
}

/// Resolves when shutdown is asked, or when every submitter handle is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
pub(crate) mod test_hooks {
    //! Fault injection for unit tests: an operation whose transfer amount equals a marker
    //! makes the accumulator (or a batch task) panic.
    use basalt_types::BatchItem;

    /// A transfer of this amount panics the accumulator when it takes the operation.
    pub(crate) const PANIC_ACCUMULATOR_AMOUNT: u64 = 0xDEAD_0001;
    /// A transfer of this amount panics the batch task that signs it.
    pub(crate) const PANIC_BATCH_AMOUNT: u64 = 0xDEAD_0002;

    fn amount(item: &BatchItem) -> Option<u64> {
        match item {
            BatchItem::Transfer { amount, .. } => Some(*amount),
            _ => None,
        }
    }

    pub(crate) fn before_accumulate(item: &BatchItem) {
        if amount(item) == Some(PANIC_ACCUMULATOR_AMOUNT) {
            panic!("injected accumulator panic");
        }
    }

    pub(crate) fn before_sign(items: &[BatchItem]) {
        if items
            .iter()
            .any(|item| amount(item) == Some(PANIC_BATCH_AMOUNT))
        {
            panic!("injected batch panic");
        }
    }
}
