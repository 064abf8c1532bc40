//! The JSON shapes of the API, with conversions from the wire types.
//!
//! Hashes, keys and signatures are lower-case hex; amounts are JSON numbers. Every type here
//! also deserializes, so clients and tests can read responses with the same definitions.

use crate::api::{AccountRecord, BlockEvent, Rejection, TxStatus};
use basalt_types::{
    BatchItem, BatchMode, Block, BlockHeader, CommitCertificate, Hash, ItemResult, Payload,
    PublicKey, Receipt, ReceiptStatus, Side, SignedTx, TxError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `{ "code", "message" }`: a typed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable snake-case code.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

impl From<&TxError> for ErrorBody {
    fn from(error: &TxError) -> Self {
        ErrorBody {
            code: error.code().to_owned(),
            message: error.to_string(),
        }
    }
}

impl From<&Rejection> for ErrorBody {
    fn from(rejection: &Rejection) -> Self {
        ErrorBody {
            code: rejection.code.clone(),
            message: rejection.message.clone(),
        }
    }
}

/// `{ "error": { "code", "message" } }`: the body of every 4xx/5xx response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// Overall status of a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatusJson {
    /// The transaction took effect.
    Success,
    /// Nothing applied; see `error`.
    Failed,
}

/// One item's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ItemResultJson {
    /// Applied.
    Applied {
        /// Id of the order the item placed, if it placed one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<u64>,
    },
    /// Failed.
    Failed {
        /// Why.
        error: ErrorBody,
    },
    /// Not applied because another item of the atomic batch failed.
    RolledBack,
}

impl From<&ItemResult> for ItemResultJson {
    fn from(result: &ItemResult) -> Self {
        match result {
            ItemResult::Applied { order_id } => ItemResultJson::Applied {
                order_id: *order_id,
            },
            ItemResult::Failed(error) => ItemResultJson::Failed {
                error: error.into(),
            },
            ItemResult::RolledBack => ItemResultJson::RolledBack,
        }
    }
}

/// A receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptJson {
    /// Transaction hash.
    pub tx_hash: Hash,
    /// `success` or `failed`.
    pub status: ReceiptStatusJson,
    /// Why it failed, when `status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// One result per item.
    pub items: Vec<ItemResultJson>,
}

impl From<&Receipt> for ReceiptJson {
    fn from(receipt: &Receipt) -> Self {
        let (status, error) = match &receipt.status {
            ReceiptStatus::Success => (ReceiptStatusJson::Success, None),
            ReceiptStatus::Failed(error) => (ReceiptStatusJson::Failed, Some(error.into())),
        };
        ReceiptJson {
            tx_hash: receipt.tx_hash,
            status,
            error,
            items: receipt.items.iter().map(ItemResultJson::from).collect(),
        }
    }
}

/// `"buy"` or `"sell"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SideJson {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl From<Side> for SideJson {
    fn from(side: Side) -> Self {
        match side {
            Side::Buy => SideJson::Buy,
            Side::Sell => SideJson::Sell,
        }
    }
}

/// `"atomic"` or `"independent"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchModeJson {
    /// All or nothing.
    Atomic,
    /// Each item on its own.
    Independent,
}

impl From<BatchMode> for BatchModeJson {
    fn from(mode: BatchMode) -> Self {
        match mode {
            BatchMode::Atomic => BatchModeJson::Atomic,
            BatchMode::Independent => BatchModeJson::Independent,
        }
    }
}

/// One operation, tagged by `"op"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BatchItemJson {
    /// Move an amount of an asset.
    Transfer {
        /// Recipient.
        to: PublicKey,
        /// Asset.
        asset: u32,
        /// Amount.
        amount: u64,
    },
    /// Place a limit order.
    PlaceOrder {
        /// Market.
        market: u32,
        /// Buy or sell.
        side: SideJson,
        /// Limit price.
        price_ticks: u64,
        /// Quantity.
        quantity: u64,
    },
    /// Cancel a resting order.
    CancelOrder {
        /// Market.
        market: u32,
        /// Order id.
        order_id: u64,
    },
    /// Create a task.
    CreateTask {
        /// Task id.
        task_id: Hash,
        /// Hash of the task's payload.
        payload_hash: Hash,
    },
    /// Respond to a task.
    RespondTask {
        /// Task id.
        task_id: Hash,
        /// Hash of the result.
        result_hash: Hash,
    },
}

impl From<&BatchItem> for BatchItemJson {
    fn from(item: &BatchItem) -> Self {
        match item {
            BatchItem::Transfer { to, asset, amount } => BatchItemJson::Transfer {
                to: *to,
                asset: *asset,
                amount: *amount,
            },
            BatchItem::PlaceOrder {
                market,
                side,
                price_ticks,
                quantity,
            } => BatchItemJson::PlaceOrder {
                market: *market,
                side: (*side).into(),
                price_ticks: *price_ticks,
                quantity: *quantity,
            },
            BatchItem::CancelOrder { market, order_id } => BatchItemJson::CancelOrder {
                market: *market,
                order_id: *order_id,
            },
            BatchItem::CreateTask {
                task_id,
                payload_hash,
            } => BatchItemJson::CreateTask {
                task_id: *task_id,
                payload_hash: *payload_hash,
            },
            BatchItem::RespondTask {
                task_id,
                result_hash,
            } => BatchItemJson::RespondTask {
                task_id: *task_id,
                result_hash: *result_hash,
            },
        }
    }
}

/// A payload, tagged by `"type"`: `single` with one `item`, or `batch` with `mode` and
/// `items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PayloadJson {
    /// One operation.
    Single {
        /// The operation.
        item: BatchItemJson,
    },
    /// Several operations under one signature.
    Batch {
        /// Atomic or independent.
        mode: BatchModeJson,
        /// The operations.
        items: Vec<BatchItemJson>,
    },
}

impl From<&Payload> for PayloadJson {
    fn from(payload: &Payload) -> Self {
        match payload {
            Payload::Single(item) => PayloadJson::Single { item: item.into() },
            Payload::Batch { mode, items } => PayloadJson::Batch {
                mode: (*mode).into(),
                items: items.iter().map(BatchItemJson::from).collect(),
            },
        }
    }
}

/// A transaction inside a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxJson {
    /// Hash (sha256 of the canonical bytes).
    pub hash: Hash,
    /// Chain id the transaction was signed for.
    pub chain_id: String,
    /// Sender.
    pub sender: PublicKey,
    /// Nonce.
    pub nonce: u64,
    /// What it does.
    pub payload: PayloadJson,
    /// ed25519 signature, hex.
    pub signature: String,
}

impl From<&SignedTx> for TxJson {
    fn from(tx: &SignedTx) -> Self {
        TxJson {
            hash: tx.hash(),
            chain_id: tx.body.chain_id.as_str().to_owned(),
            sender: tx.body.sender,
            nonce: tx.body.nonce,
            payload: (&tx.body.payload).into(),
            signature: hex::encode(tx.signature.0),
        }
    }
}

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderJson {
    /// Height.
    pub height: u64,
    /// Round it was proposed in.
    pub round: u32,
    /// Proposer's validator index.
    pub proposer: u16,
    /// Parent block id.
    pub parent_hash: Hash,
    /// State root before this block (after the parent).
    pub state_root: Hash,
    /// Merkle root of the transaction hashes.
    pub txs_root: Hash,
    /// Proposer's time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Hash of `last_commit`.
    pub last_commit_hash: Hash,
}

impl From<&BlockHeader> for HeaderJson {
    fn from(header: &BlockHeader) -> Self {
        HeaderJson {
            height: header.height,
            round: header.round,
            proposer: header.proposer,
            parent_hash: header.parent_hash,
            state_root: header.state_root,
            txs_root: header.txs_root,
            time_ms: header.time_ms,
            last_commit_hash: header.last_commit_hash,
        }
    }
}

/// One precommit signature of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSignatureJson {
    /// Validator index.
    pub validator: u16,
    /// Signature, hex.
    pub signature: String,
}

/// A commit certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateJson {
    /// Height.
    pub height: u64,
    /// Round of the precommits.
    pub round: u32,
    /// Committed block id.
    pub block_id: Hash,
    /// Precommit signatures.
    pub signatures: Vec<CommitSignatureJson>,
}

impl From<&CommitCertificate> for CertificateJson {
    fn from(certificate: &CommitCertificate) -> Self {
        CertificateJson {
            height: certificate.height,
            round: certificate.round,
            block_id: certificate.block_id,
            signatures: certificate
                .signatures
                .iter()
                .map(|commit| CommitSignatureJson {
                    validator: commit.validator,
                    signature: hex::encode(commit.signature.0),
                })
                .collect(),
        }
    }
}

/// A block with its committing certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJson {
    /// Block id (hash of the header).
    pub id: Hash,
    /// Header.
    pub header: HeaderJson,
    /// Transactions in execution order.
    pub txs: Vec<TxJson>,
    /// The certificate that committed the parent (null at height 1).
    pub last_commit: Option<CertificateJson>,
    /// The certificate that committed this block, if known.
    pub certificate: Option<CertificateJson>,
}

impl BlockJson {
    /// Render a block and its certificate.
    pub fn new(block: &Block, certificate: Option<&CommitCertificate>) -> Self {
        BlockJson {
            id: block.id(),
            header: (&block.header).into(),
            txs: block.txs.iter().map(TxJson::from).collect(),
            last_commit: block.last_commit.as_ref().map(CertificateJson::from),
            certificate: certificate.map(CertificateJson::from),
        }
    }
}

/// An account with its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountJson {
    /// Address.
    pub address: PublicKey,
    /// Next nonce.
    pub nonce: u64,
    /// Free balances by asset id (as a decimal string key).
    pub balances: BTreeMap<String, u64>,
    /// Whether the account exists in state.
    pub exists: bool,
    /// Hex of the borsh encoding of the account proof (`basalt_app::AccountProof`).
    pub proof: String,
    /// State root the proof is against.
    pub state_root: Hash,
    /// Height of that state.
    pub height: u64,
}

impl AccountJson {
    /// Render an account record for `address`.
    pub fn new(address: PublicKey, record: &AccountRecord) -> Self {
        AccountJson {
            address,
            nonce: record.account.nonce,
            balances: record
                .account
                .balances
                .iter()
                .map(|(asset, amount)| (asset.to_string(), *amount))
                .collect(),
            exists: record.exists,
            proof: hex::encode(basalt_types::encode(&record.proof)),
            state_root: record.state_root,
            height: record.height,
        }
    }
}

/// A resting order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderJson {
    /// Order id.
    pub order_id: u64,
    /// Owner.
    pub owner: PublicKey,
    /// Limit price.
    pub price_ticks: u64,
    /// Open quantity.
    pub quantity: u64,
}

impl From<&basalt_app::Order> for OrderJson {
    fn from(order: &basalt_app::Order) -> Self {
        OrderJson {
            order_id: order.id,
            owner: order.owner,
            price_ticks: order.price_ticks,
            quantity: order.quantity,
        }
    }
}

/// A market's book, best first on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookJson {
    /// Market id.
    pub market: u32,
    /// Base asset.
    pub base: u32,
    /// Quote asset.
    pub quote: u32,
    /// Buy orders, highest price first.
    pub bids: Vec<OrderJson>,
    /// Sell orders, lowest price first.
    pub asks: Vec<OrderJson>,
}

impl From<&basalt_app::BookView> for BookJson {
    fn from(book: &basalt_app::BookView) -> Self {
        BookJson {
            market: book.market,
            base: book.base,
            quote: book.quote,
            bids: book.bids.iter().map(OrderJson::from).collect(),
            asks: book.asks.iter().map(OrderJson::from).collect(),
        }
    }
}

/// `"hex"` (default) or `"base64"`: how transaction bytes are written in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Hex digits (either case).
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// `POST /v1/txs` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Signed transactions' canonical bytes, encoded as `encoding` says.
    pub txs: Vec<String>,
    /// How `txs` are encoded.
    #[serde(default)]
    pub encoding: Encoding,
}

/// One transaction's admission result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResult {
    /// sha256 of the submitted bytes.
    pub hash: Hash,
    /// Whether the mempool took it.
    pub accepted: bool,
    /// Why not, when not accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// `POST /v1/txs` response: one result per submitted transaction, same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// Results.
    pub results: Vec<SubmitResult>,
}

/// `pending`, `committed`, `rejected` or `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatusKind {
    /// In the mempool.
    Pending,
    /// In a block.
    Committed,
    /// Refused.
    Rejected,
    /// Not known here.
    Unknown,
}

/// `GET /v1/txs/{hash}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxStatusJson {
    /// The hash asked about.
    pub hash: Hash,
    /// Where it is.
    pub status: TxStatusKind,
    /// Block height, when committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Position in the block, when committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Receipt, when committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptJson>,
    /// Why, when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl TxStatusJson {
    /// Render the status of `hash`.
    pub fn new(hash: Hash, status: &TxStatus) -> Self {
        let mut json = TxStatusJson {
            hash,
            status: TxStatusKind::Unknown,
            height: None,
            index: None,
            receipt: None,
            error: None,
        };
        match status {
            TxStatus::Pending => json.status = TxStatusKind::Pending,
            TxStatus::Committed {
                height,
                index,
                receipt,
            } => {
                json.status = TxStatusKind::Committed;
                json.height = Some(*height);
                json.index = Some(*index);
                json.receipt = Some(receipt.into());
            }
            TxStatus::Rejected(rejection) => {
                json.status = TxStatusKind::Rejected;
                json.error = Some(rejection.into());
            }
            TxStatus::Unknown => {}
        }
        json
    }
}

/// `POST /v1/simulate` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulateRequest {
    /// The signed transaction's canonical bytes.
    pub tx: String,
    /// How `tx` is encoded.
    #[serde(default)]
    pub encoding: Encoding,
}

/// `POST /v1/simulate` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulateResponse {
    /// The receipt the transaction would get.
    pub receipt: ReceiptJson,
}

/// A subscription topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Every committed block.
    Blocks,
    /// Receipts of watched transaction hashes.
    Receipts,
}

/// A message the server pushes on `/v1/subscribe`, tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A subscribe request took effect.
    Subscribed {
        /// Topic.
        topic: Topic,
        /// Hashes now watched (receipts only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watching: Option<usize>,
        /// Of the hashes asked for, how many were already committed and were pushed at once
        /// (before this message).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        already_committed: Option<usize>,
    },
    /// An unsubscribe request took effect.
    Unsubscribed {
        /// Topic.
        topic: Topic,
        /// Hashes still watched (receipts only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        watching: Option<usize>,
    },
    /// A committed block.
    Block {
        /// Height.
        height: u64,
        /// Block id.
        id: Hash,
        /// Block time.
        time_ms: u64,
        /// Number of transactions.
        txs: usize,
    },
    /// The receipt of a watched transaction (sent once; the hash is then unwatched).
    Receipt {
        /// Transaction hash.
        hash: Hash,
        /// Block height.
        height: u64,
        /// Position in the block.
        index: u32,
        /// The receipt.
        receipt: ReceiptJson,
    },
    /// This connection fell behind and `missed` block events were dropped for it. Watched
    /// hashes committed in them are re-checked and pushed right after this message.
    Lagged {
        /// Events dropped.
        missed: u64,
    },
    /// A request on this connection failed; the connection stays open.
    Error {
        /// Why.
        error: ErrorBody,
    },
}

impl ServerMessage {
    /// The block message for an event.
    pub fn block(event: &BlockEvent) -> Self {
        ServerMessage::Block {
            height: event.height,
            id: event.block_id,
            time_ms: event.time_ms,
            txs: event.txs.len(),
        }
    }

    /// An error message.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            error: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }
}
