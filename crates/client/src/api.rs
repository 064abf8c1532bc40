//! What the nonce manager and the batch submitter need from "the chain": the
//! [`ChainClient`] trait, implemented by [`crate::Client`] (one node),
//! [`crate::BalancedClient`] (several) and [`crate::WithSubscription`] (either, with
//! WebSocket receipts).

use crate::error::ClientError;
use basalt_rpc::json::{AccountJson, ReceiptJson, TxStatusJson, TxStatusKind};
use basalt_rpc::{NodeStatus, Rejection};
use basalt_types::{Hash, PublicKey, SignedTx};
use std::future::Future;
use std::time::Instant;

/// The receipt of a transaction in a committed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedReceipt {
    /// Transaction hash.
    pub hash: Hash,
    /// Height of the block that holds it.
    pub height: u64,
    /// Position in that block.
    pub index: u32,
    /// What executing it did.
    pub receipt: ReceiptJson,
}

impl CommittedReceipt {
    /// The committed receipt a status answer carries, if it says committed.
    pub fn from_status(status: &TxStatusJson) -> Option<CommittedReceipt> {
        if status.status != TxStatusKind::Committed {
            return None;
        }
        Some(CommittedReceipt {
            hash: status.hash,
            height: status.height?,
            index: status.index.unwrap_or(0),
            receipt: status.receipt.clone()?,
        })
    }
}

/// A transaction's admission result: its hash, or why the node refused it.
pub type Admission = Result<Hash, Rejection>;

/// The calls the SDK's higher layers make. Every call is bounded in time by the
/// implementation (a timeout or a deadline): none can wait forever.
///
/// Implementations are cheap to clone (handles to shared state).
pub trait ChainClient: Clone + Send + Sync + 'static {
    /// `POST /v1/txs`: one admission result per transaction, same order.
    fn submit(
        &self,
        txs: &[SignedTx],
    ) -> impl Future<Output = Result<Vec<Admission>, ClientError>> + Send;

    /// `GET /v1/txs/{hash}`.
    fn tx_status(
        &self,
        hash: Hash,
    ) -> impl Future<Output = Result<TxStatusJson, ClientError>> + Send;

    /// `GET /v1/accounts/{address}`.
    fn account(
        &self,
        address: PublicKey,
    ) -> impl Future<Output = Result<AccountJson, ClientError>> + Send;

    /// `GET /v1/status`.
    fn status(&self) -> impl Future<Output = Result<NodeStatus, ClientError>> + Send;

    /// `POST /v1/simulate`: the receipt `tx` would get as the sender's next transaction.
    fn simulate(
        &self,
        tx: &SignedTx,
    ) -> impl Future<Output = Result<ReceiptJson, ClientError>> + Send;

    /// The account's next nonce, then the status of `hash`, both read from the same node in
    /// that order. A node persists a block's transactions before it publishes the state
    /// after it, so when the nonce is past a transaction's nonce and the status still says
    /// "not committed", that transaction is not in the chain (another one took its nonce).
    fn nonce_and_status(
        &self,
        address: PublicKey,
        hash: Hash,
    ) -> impl Future<Output = Result<(u64, TxStatusJson), ClientError>> + Send;

    /// Dry runs pinned to one node: read `address`'s next nonce, build transactions for that
    /// nonce with `build`, and simulate each (at most `concurrency` at once) on the same
    /// node. One result per built transaction, same order. Pinning matters because a dry
    /// run only executes when its nonce is the sender's next one on the node that runs it.
    fn dry_run<F>(
        &self,
        address: PublicKey,
        build: F,
        concurrency: usize,
    ) -> impl Future<Output = Result<Vec<Result<ReceiptJson, ClientError>>, ClientError>> + Send
    where
        F: FnOnce(u64) -> Vec<SignedTx> + Send;

    /// The committed receipt of `hash`, or [`ClientError::Timeout`] at `deadline`.
    fn wait_receipt(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> impl Future<Output = Result<CommittedReceipt, ClientError>> + Send;
}
