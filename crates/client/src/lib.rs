//! Basalt's client SDK: a typed client for the node API, key loading and signing, nonce
//! pipelining, receipt waiting, balancing over several nodes, and the batch submitter.
//!
//! # Parts
//!
//! - [`Client`]: typed async HTTP client for one node (`/v1/txs`, `/v1/txs/{hash}`,
//!   `/v1/blocks/..`, `/v1/accounts/..`, `/v1/status`, `/v1/simulate`); every call has a
//!   timeout and fails with a typed [`ClientError`].
//! - [`BalancedClient`]: the same calls over several nodes through tower's
//!   power-of-two-choices balancer, fed by a health checker; failed endpoints leave the set
//!   until healthy again and a failed call is retried once on another endpoint.
//! - [`Subscription`]: receipt waiting over one WebSocket (`/v1/subscribe`) shared by any
//!   number of waiters, with reconnects and an HTTP polling fallback.
//! - [`NonceManager`]: one signer's nonces, assigned locally (pipelined), repaired from the
//!   chain after a refusal or a gap.
//! - [`BatchSubmitter`]: operations folded into native batch transactions by several
//!   signers, each operation answered on its own ([`OpOutcome`]), with dependencies,
//!   strip-and-retry of poison items, backoff, gap repair, panic-proof loops and metrics.
//! - [`keys`]: key files and devnet keys.
//!
//! # Example
//!
//! Create a task and answer it, each operation awaited for its own outcome, through every
//! node of a devnet:
//!
//! ```no_run
//! use basalt_client::types::{sha256, BatchItem};
//! use basalt_client::{
//!     keys, BalancedClient, BatchSubmitter, OpOutcome, Subscription, SubmitterConfig,
//!     WithSubscription,
//! };
//!
//! # async fn example() -> Result<(), basalt_client::ClientError> {
//! let urls = ["http://127.0.0.1:26650", "http://127.0.0.1:26660"];
//! let balanced = BalancedClient::new(&urls).await?;
//! let chain = WithSubscription::new(balanced, Subscription::connect(&urls)?);
//! let signers = (0..4).map(keys::devnet_account).collect();
//! let submitter = BatchSubmitter::start(chain, signers, SubmitterConfig::default()).await?;
//!
//! let task_id = sha256(b"task 1");
//! let created = submitter.submit(BatchItem::CreateTask { task_id, payload_hash: sha256(b"in") });
//! let answer = BatchItem::RespondTask { task_id, result_hash: sha256(b"out") };
//! let answered = submitter.submit_after(answer, &created);
//! match answered.await {
//!     OpOutcome::Committed { height, .. } => println!("answered at height {height}"),
//!     OpOutcome::Rejected { reason } => println!("not answered: {reason}"),
//!     OpOutcome::TimedOut => println!("unknown: no verdict before the deadline"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! One node, one call at a time:
//!
//! ```no_run
//! use basalt_client::types::{BatchItem, Payload, SignedTx};
//! use basalt_client::{keys, Client};
//! use std::time::{Duration, Instant};
//!
//! # async fn example() -> Result<(), basalt_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:26650")?;
//! let chain_id = client.status().await?.chain_id;
//! let key = keys::devnet_account(7);
//! let nonce = client.account(key.public()).await?.nonce;
//! let item = BatchItem::Transfer { to: keys::devnet_account(8).public(), asset: 0, amount: 5 };
//! let tx = SignedTx::sign(&key, &chain_id, nonce, Payload::Single(item));
//! match client.submit(std::slice::from_ref(&tx)).await?.remove(0) {
//!     Ok(hash) => {
//!         let deadline = Instant::now() + Duration::from_secs(10);
//!         let receipt = client.wait_receipt_polling(hash, deadline).await?;
//!         println!("committed at height {}", receipt.height);
//!     }
//!     Err(rejection) => println!("refused: {rejection}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # What it guarantees
//!
//! - **Nothing waits forever.** Every HTTP call has a timeout, every receipt wait and every
//!   operation a deadline; background loops are bounded per step. A deadline answers
//!   "timed out", which means "unknown", never "failed".
//! - **Typed outcomes.** Calls fail with [`ClientError`] (transport, timeout, HTTP status
//!   with the server's code, overload, decode); operations end as committed, rejected with
//!   a typed [`OpError`], or timed out.
//! - **No double application.** Content is re-signed under a new nonce only after a node
//!   shows the old nonce consumed by another transaction; a re-sent transaction keeps its
//!   bytes, so nodes deduplicate it by hash.
//! - **Bounded queues**: the submitter's operation queue (a full queue rejects at once with
//!   [`OpError::QueueFull`]), the balancer's request queue, the subscription's waiter table
//!   (its command channel carries at most two commands per waiter), batches in flight per
//!   signer. The balancer's discovery channel carries one change per endpoint health flip
//!   and is drained by every request.
//!
//! # What it does not do
//!
//! - TLS: endpoints are plain `http://` (put a TLS-terminating proxy in front of nodes on
//!   untrusted networks).
//! - Verify state proofs returned with accounts, or check receipts against block headers:
//!   it trusts the nodes it talks to.
//! - Order operations other than through [`BatchSubmitter::submit_after`]; keep state
//!   across restarts (a restarted submitter resynchronises nonces from the chain).
//! - Decide that a timed-out operation did not apply: after a deadline its transaction may
//!   still commit.

pub mod api;
pub mod balance;
pub mod client;
pub mod error;
pub mod keys;
pub mod nonce;
pub mod submitter;
pub mod subscription;

pub use api::{Admission, ChainClient, CommittedReceipt};
pub use balance::{BalancedClient, BalancedConfig};
pub use client::{Client, ClientConfig};
pub use error::ClientError;
pub use nonce::{NonceError, NonceManager, PendingKind, RepairReport};
pub use submitter::metrics::{FlushReason, RetryReason, SubmitterMetrics};
pub use submitter::op::{OpError, OpHandle, OpId, OpOutcome};
pub use submitter::{BatchSubmitter, SubmitterConfig};
pub use subscription::{Subscription, SubscriptionConfig, WithSubscription};

/// The node API's JSON shapes and records, as this client returns them.
pub use basalt_rpc::json::{
    AccountJson, BlockJson, ErrorBody, ItemResultJson, ReceiptJson, ReceiptStatusJson,
    TxStatusJson, TxStatusKind,
};
pub use basalt_rpc::{BlockAt, NodeStatus, Rejection};
/// Basalt's wire types (transactions, items, keys, hashes), re-exported for convenience.
pub use basalt_types as types;

/// The tokio runtime the caller runs in: background tasks are spawned on it.
pub(crate) fn runtime() -> Result<tokio::runtime::Handle, ClientError> {
    tokio::runtime::Handle::try_current().map_err(|_| ClientError::Invalid {
        message: "must be called from inside a tokio runtime (its background tasks run there)"
            .into(),
    })
}
