//! Receipts: what executing a transaction did, with typed errors.

use crate::codec::BoundedVec;
use crate::crypto::Hash;
use crate::limits::BATCH_ITEMS_MAX;
use crate::tx::AssetId;
use borsh::{BorshDeserialize, BorshSerialize};

/// Why a transaction or one of its items failed. Every failure has a variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, thiserror::Error)]
pub enum TxError {
    /// The transaction names another chain.
    #[error("wrong chain id")]
    WrongChainId,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The nonce was already used.
    #[error("stale nonce: expected {expected}, got {got}")]
    StaleNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce is ahead of the account's next nonce (a gap).
    #[error("future nonce: expected {expected}, got {got}")]
    FutureNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// Not enough balance of an asset.
    #[error("insufficient balance of asset {asset}: need {needed}, have {available}")]
    InsufficientBalance {
        /// Asset.
        asset: AssetId,
        /// Needed amount.
        needed: u64,
        /// Available amount.
        available: u64,
    },
    /// An amount or quantity of zero.
    #[error("zero amount")]
    ZeroAmount,
    /// Arithmetic would overflow.
    #[error("arithmetic overflow")]
    Overflow,
    /// The asset does not exist.
    #[error("unknown asset {0}")]
    UnknownAsset(AssetId),
    /// The market does not exist.
    #[error("unknown market {0}")]
    UnknownMarket(u32),
    /// The order does not exist (or is no longer resting).
    #[error("unknown order {0}")]
    UnknownOrder(u64),
    /// Only the owner may cancel an order.
    #[error("not the order's owner")]
    NotOrderOwner,
    /// The sender is not an allow-listed task generator.
    #[error("sender is not a task generator")]
    NotTaskGenerator,
    /// A task with this id already exists.
    #[error("task already exists")]
    TaskExists,
    /// No task with this id exists.
    #[error("unknown task")]
    UnknownTask,
    /// The task already has a response.
    #[error("task already answered")]
    TaskAlreadyAnswered,
    /// A batch with no items.
    #[error("empty batch")]
    EmptyBatch,
    /// An atomic batch failed; the receipt's item results say which items and why.
    #[error("atomic batch failed")]
    BatchFailed,
    /// The transaction is larger than allowed.
    #[error("transaction too large")]
    TooLarge,
}

impl TxError {
    /// A stable machine-readable code (snake case), for JSON APIs and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::WrongChainId => "wrong_chain_id",
            TxError::BadSignature => "bad_signature",
            TxError::StaleNonce { .. } => "stale_nonce",
            TxError::FutureNonce { .. } => "future_nonce",
            TxError::InsufficientBalance { .. } => "insufficient_balance",
            TxError::ZeroAmount => "zero_amount",
            TxError::Overflow => "overflow",
            TxError::UnknownAsset(_) => "unknown_asset",
            TxError::UnknownMarket(_) => "unknown_market",
            TxError::UnknownOrder(_) => "unknown_order",
            TxError::NotOrderOwner => "not_order_owner",
            TxError::NotTaskGenerator => "not_task_generator",
            TxError::TaskExists => "task_exists",
            TxError::UnknownTask => "unknown_task",
            TxError::TaskAlreadyAnswered => "task_already_answered",
            TxError::EmptyBatch => "empty_batch",
            TxError::BatchFailed => "batch_failed",
            TxError::TooLarge => "too_large",
        }
    }
}

/// The result of one item of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum ItemResult {
    /// Applied. For a placed order, `order_id` is its id (it may have filled fully).
    Applied {
        /// Id of a placed order, if the item placed one.
        order_id: Option<u64>,
    },
    /// Failed for this reason. In an atomic batch nothing applied.
    Failed(TxError),
    /// Not applied because another item of the same atomic batch failed.
    RolledBack,
}

/// Whether the transaction as a whole took effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum ReceiptStatus {
    /// Every item applied (atomic or single), or the independent batch ran (see items).
    Success,
    /// Nothing applied; the nonce was still consumed when the error is not a nonce error.
    Failed(TxError),
}

/// What executing one transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    /// Transaction hash.
    pub tx_hash: Hash,
    /// Overall status.
    pub status: ReceiptStatus,
    /// One result per item (a single-operation transaction has one).
    pub items: BoundedVec<ItemResult, BATCH_ITEMS_MAX>,
}

impl Receipt {
    /// True when the transaction took effect.
    pub fn is_success(&self) -> bool {
        self.status == ReceiptStatus::Success
    }
}
