//! What the RPC needs from a node: the [`NodeApi`] trait and the records it returns.
//!
//! The node crate implements the trait over its snapshots and queues; tests mock it. Every
//! method except [`NodeApi::submit`] is synchronous. Those that may touch storage are called
//! on the server's blocking pool, never on its async workers; [`NodeApi::status`] and
//! [`NodeApi::account`] read in-memory snapshots only and are called on the workers.

use basalt_types::{Block, CommitCertificate, Hash, PublicKey, Receipt, SignedTx, ValidatorInfo};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// What the RPC needs from a node. Implemented by basalt-node; mocked in tests.
///
/// Implementations must be cheap to clone (an `Arc` inside) and must never block the caller
/// on consensus: they read snapshots and push into bounded queues.
pub trait NodeApi: Clone + Send + Sync + 'static {
    /// Admit transactions to the mempool (signature checks happen inside, batched). One
    /// result per tx, same order.
    fn submit(
        &self,
        txs: Vec<SignedTx>,
    ) -> impl Future<Output = Vec<Result<Hash, Rejection>>> + Send;

    /// May a client's request of `txs` transactions go to [`NodeApi::submit`], and after
    /// how long a wait? Asked before the transactions are decoded. `Ok(wait)`: the
    /// request is served after `wait` (zero: at once; the node keeps it short, well
    /// inside the request deadline); `Err` carries why not, and the whole request is
    /// refused with 503 `congested` (retryable). The default admits everything at once.
    fn admit(&self, txs: usize) -> Result<std::time::Duration, String> {
        let _ = txs;
        Ok(std::time::Duration::ZERO)
    }

    /// Where a transaction is: in the mempool, committed (with its receipt), rejected, or
    /// unknown to this node.
    fn tx_status(&self, hash: Hash) -> TxStatus;

    /// A committed block with the certificate that committed it, if this node has it.
    fn block(&self, at: BlockAt) -> Option<BlockRecord>;

    /// An account with a proof against the latest state root: an absent account comes back
    /// as the default account with an exclusion proof. `None` only when the node cannot
    /// build a proof (its state tree is unusable); the route answers 500.
    ///
    /// Called on the RPC's async workers, like [`NodeApi::status`]: it must read in-memory
    /// snapshots only and answer in microseconds. (The calls that may touch storage run on
    /// the blocking pool; handing every read to it cost two thread switches per request,
    /// and under `http-flood` the RPC threads switched 8,400 times a second.)
    fn account(&self, address: PublicKey) -> Option<AccountRecord>;

    /// A market's order book, or `None` when the market does not exist.
    fn book(&self, market: u32) -> Option<basalt_app::BookView>;

    /// The node's view of the chain and of itself. Called on the RPC's async workers: it
    /// must read atomics and snapshots only.
    fn status(&self) -> NodeStatus;

    /// The receipt `tx` would get if executed now, or why the mempool would refuse it.
    fn simulate(&self, tx: SignedTx) -> Result<Receipt, Rejection>;

    /// A receiver of committed-block events. A slow receiver lags (and is told so); it
    /// never slows the sender.
    ///
    /// The node must make a block's transactions visible to [`NodeApi::tx_status`] before
    /// it sends the block's event, so that a subscriber that checks first and then waits
    /// cannot miss a receipt.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<BlockEvent>>;

    /// Prometheus text exposition of the node registry.
    fn metrics_text(&self) -> String;

    /// When this node made each height from `from` on durable, by its own wall clock,
    /// oldest first, at most `limit` of them. The node remembers a bounded window of recent
    /// heights; older ones are not answered. With every validator's answers on one clock
    /// (a devnet on one machine), how far apart the validators were at any instant is
    /// exact, which polling each one's height is not.
    fn commit_times(&self, from: u64, limit: usize) -> Vec<CommitTime>;
}

/// When a node made a height durable (`GET /v1/commits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitTime {
    /// Height.
    pub height: u64,
    /// Microseconds since the Unix epoch, by the node's clock.
    pub at_unix_us: u64,
}

/// Why the node refused a transaction: a stable snake-case code and a human message.
///
/// Codes used by the node include `bad_signature`, `wrong_chain_id`, `stale_nonce`,
/// `duplicate`, `mempool_full`, `too_large` and `decode`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rejection {
    /// Machine-readable reason (snake case).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

impl Rejection {
    /// A rejection with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Rejection {
        Rejection {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Where a transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Admitted to the mempool, not yet committed.
    Pending,
    /// Committed in a block.
    Committed {
        /// Height of the block.
        height: u64,
        /// Position in the block.
        index: u32,
        /// What executing it did.
        receipt: Receipt,
    },
    /// Refused by the mempool (kept for a while so clients can learn why).
    Rejected(Rejection),
    /// Never seen, or forgotten.
    Unknown,
}

/// Which block to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockAt {
    /// The latest committed block.
    Latest,
    /// The block at this height.
    Height(u64),
}

/// A committed block and, when known, the certificate that committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    /// The block.
    pub block: Block,
    /// The certificate that committed it, if known (the next block carries it too).
    pub certificate: Option<CommitCertificate>,
}

/// An account at the latest height with a proof of its value (or absence).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    /// The account (the default account when absent).
    pub account: basalt_app::Account,
    /// Whether the account exists in state.
    pub exists: bool,
    /// Inclusion proof (or exclusion proof when absent) against `state_root`.
    pub proof: basalt_app::AccountProof,
    /// The state root the proof is against.
    pub state_root: Hash,
    /// The height whose state this is.
    pub height: u64,
}

/// Whether the node is catching up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    /// Not syncing and not known to be behind (e.g. just started).
    Idle,
    /// Fetching blocks from peers.
    Syncing,
    /// At the tip, following consensus.
    Synced,
}

/// The node's view of the chain and of itself. Serializes as the `/v1/status` JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Chain id.
    pub chain_id: String,
    /// This node's id (its p2p peer id or a configured name).
    pub node_id: String,
    /// Latest committed height.
    pub height: u64,
    /// Current consensus round (at the height being decided).
    pub round: u32,
    /// Sync state.
    pub sync: SyncStatus,
    /// Connected peers.
    pub peers: usize,
    /// The validator set.
    pub validators: Vec<ValidatorInfo>,
    /// This node's index in the validator set, if it is a validator.
    pub validator_index: Option<u16>,
    /// Id of the latest committed block.
    pub latest_block_id: Hash,
    /// State root after the latest committed block.
    pub latest_state_root: Hash,
    /// Time of the latest committed block, ms since the Unix epoch.
    pub latest_time_ms: u64,
}

/// A committed block, as pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    /// Height.
    pub height: u64,
    /// Block id.
    pub block_id: Hash,
    /// Block time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Transaction hashes in block order.
    pub txs: Vec<Hash>,
    /// Receipts, one per transaction, same order.
    pub receipts: Vec<Receipt>,
}
