//! Operations: what a caller submits, the handle it awaits, and the outcome it gets.

use super::metrics::SubmitterMetrics;
use basalt_rpc::json::ItemResultJson;
use basalt_types::{BatchItem, Hash};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Identifies an operation within one submitter (assigned in submission order).
pub type OpId = u64;

/// How long past an operation's deadline its handle waits for the submitter's own verdict
/// before it answers [`OpOutcome::TimedOut`] by itself. The submitter resolves every
/// operation by its deadline; this only covers a task that died without resolving.
pub const HANDLE_GRACE: Duration = Duration::from_secs(2);

/// The final outcome of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// The operation is in a committed block and applied.
    Committed {
        /// The operation's own result from the receipt's `items`.
        receipt_item: ItemResultJson,
        /// Height of the block.
        height: u64,
        /// Hash of the batch transaction that carried it.
        tx_hash: Hash,
    },
    /// The operation did not and will not apply, for this reason.
    Rejected {
        /// Why.
        reason: OpError,
    },
    /// No verdict before the operation's deadline. Its transaction may still commit later:
    /// a timeout means "unknown", not "failed".
    TimedOut,
}

impl OpOutcome {
    /// True for [`OpOutcome::Committed`].
    pub fn is_committed(&self) -> bool {
        matches!(self, OpOutcome::Committed { .. })
    }

    /// The block height, when committed.
    pub fn height(&self) -> Option<u64> {
        match self {
            OpOutcome::Committed { height, .. } => Some(*height),
            _ => None,
        }
    }

    /// The metric label of this outcome: `committed`, `rejected` or `timed_out`.
    pub fn kind(&self) -> &'static str {
        match self {
            OpOutcome::Committed { .. } => "committed",
            OpOutcome::Rejected { .. } => "rejected",
            OpOutcome::TimedOut => "timed_out",
        }
    }
}

/// Why an operation was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The chain executed the operation (or, after a whole batch was refused, a dry run of
    /// it alone) and it failed: `code` is the application's error code (`unknown_task`,
    /// `task_exists`, `not_task_generator`, `insufficient_balance`, ...).
    #[error("{code}: {message}")]
    Failed {
        /// Stable snake-case code.
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// A node refused the transaction and a dry run of this operation alone was refused
    /// the same way (e.g. `wrong_chain_id`, `bad_signature`).
    #[error("refused by the node: {code}: {message}")]
    Refused {
        /// The node's rejection code.
        code: String,
        /// The node's message.
        message: String,
    },
    /// The operation this one depends on did not commit, so this one was never sent.
    #[error("dependency {dependency} did not commit ({reason}); this operation was not sent")]
    DependencyFailed {
        /// The dependency's id.
        dependency: OpId,
        /// What happened to the dependency.
        reason: String,
    },
    /// The operation's batch failed transiently (or was refused as a whole) too often.
    #[error("gave up after {attempts} attempts; last error: {last_error}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last_error: String,
    },
    /// The submitter's queue was full when the operation arrived; it was not queued.
    #[error("the submitter queue is full ({capacity} operations); retry later")]
    QueueFull {
        /// The queue's bound.
        capacity: usize,
    },
    /// The submitter was shut down before the operation was sent.
    #[error("the submitter is shut down")]
    ShutDown,
    /// A submitter task failed (panicked) while it held the operation; whether its
    /// transaction reached a node is unknown.
    #[error("internal failure: {0}")]
    Internal(String),
}

impl OpError {
    /// The metric label of this reason.
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::Failed { .. } => "failed",
            OpError::Refused { .. } => "refused",
            OpError::DependencyFailed { .. } => "dependency_failed",
            OpError::RetriesExhausted { .. } => "retries_exhausted",
            OpError::QueueFull { .. } => "queue_full",
            OpError::ShutDown => "shut_down",
            OpError::Internal(_) => "internal",
        }
    }
}

/// A submitted operation's future outcome. Cheap to clone; every clone sees the same
/// outcome. Await it (`handle.await` or [`OpHandle::outcome`]); the wait ends by the
/// operation's deadline (plus [`HANDLE_GRACE`]) whatever happens.
#[derive(Debug, Clone)]
pub struct OpHandle {
    id: OpId,
    deadline: Instant,
    outcome: watch::Receiver<Option<OpOutcome>>,
}

impl OpHandle {
    /// The operation's id.
    pub fn id(&self) -> OpId {
        self.id
    }

    /// The latest instant the submitter may take to decide this operation.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The outcome, if decided.
    pub fn try_outcome(&self) -> Option<OpOutcome> {
        self.outcome.borrow().clone()
    }

    /// Wait for the outcome.
    pub async fn outcome(&self) -> OpOutcome {
        let mut receiver = self.outcome.clone();
        let limit = tokio::time::Instant::from_std(self.deadline + HANDLE_GRACE);
        let waited = tokio::time::timeout_at(limit, async {
            let decided = receiver
                .wait_for(Option::is_some)
                .await
                .map(|outcome| outcome.clone());
            match decided {
                Ok(outcome) => outcome,
                Err(_) => receiver.borrow().clone(),
            }
        })
        .await;
        match waited {
            Ok(Some(outcome)) => outcome,
            Ok(None) => OpOutcome::Rejected {
                reason: OpError::Internal("the submitter dropped the operation".into()),
            },
            Err(_) => OpOutcome::TimedOut,
        }
    }
}

impl IntoFuture for OpHandle {
    type Output = OpOutcome;
    type IntoFuture = Pin<Box<dyn Future<Output = OpOutcome> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.outcome().await })
    }
}

/// The submitter's side of an operation. It resolves exactly once: by
/// [`OpSlot::resolve`], or, if dropped unresolved (a task panicked while holding it), with
/// [`OpError::Internal`], so no handle waits for a verdict that cannot come.
pub(crate) struct OpSlot {
    pub(crate) id: OpId,
    pub(crate) item: BatchItem,
    /// When the submitter must have decided.
    pub(crate) deadline: Instant,
    /// Whole-batch failures this operation went through.
    pub(crate) attempts: u32,
    sender: Option<watch::Sender<Option<OpOutcome>>>,
    metrics: SubmitterMetrics,
}

impl std::fmt::Debug for OpSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpSlot")
            .field("id", &self.id)
            .field("item", &self.item)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl OpSlot {
    /// A new operation and its handle. The handle's deadline is `hard_deadline`; the slot's
    /// own deadline starts at `deadline` (moved later, never past the hard one, when a
    /// dependent operation is released).
    pub(crate) fn new(
        id: OpId,
        item: BatchItem,
        deadline: Instant,
        hard_deadline: Instant,
        metrics: SubmitterMetrics,
    ) -> (OpSlot, OpHandle) {
        let (sender, receiver) = watch::channel(None);
        let slot = OpSlot {
            id,
            item,
            deadline,
            attempts: 0,
            sender: Some(sender),
            metrics,
        };
        let handle = OpHandle {
            id,
            deadline: hard_deadline,
            outcome: receiver,
        };
        (slot, handle)
    }

    pub(crate) fn resolve(mut self, outcome: OpOutcome) {
        self.finish(outcome);
    }

    pub(crate) fn reject(self, reason: OpError) {
        self.resolve(OpOutcome::Rejected { reason });
    }

    pub(crate) fn is_expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    fn finish(&mut self, outcome: OpOutcome) {
        if let Some(sender) = self.sender.take() {
            self.metrics.outcome(&outcome);
            sender.send_replace(Some(outcome));
        }
    }
}

impl Drop for OpSlot {
    fn drop(&mut self) {
        if self.sender.is_some() {
            self.finish(OpOutcome::Rejected {
                reason: OpError::Internal(
                    "a submitter task failed while holding this operation".into(),
                ),
            });
        }
    }
}
