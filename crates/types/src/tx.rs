//! Signed transactions and their payloads.

use crate::codec::{decode, encode, BoundedString, BoundedVec, DecodeError};
use crate::crypto::{sha256, Hash, Keypair, PublicKey, Signature};
use crate::limits::{BATCH_ITEMS_MAX, CHAIN_ID_BYTES_MAX, TX_BYTES_MAX};
use borsh::{BorshDeserialize, BorshSerialize};

/// Domain separation prefix for transaction signatures.
pub const TX_SIGN_DOMAIN: &[u8] = b"basalt/tx/v1\0";

/// An asset (a token), numbered in genesis.
pub type AssetId = u32;
/// A market (base asset / quote asset pair), numbered in genesis.
pub type MarketId = u32;
/// A validator's position in the validator set.
pub type ValidatorIndex = u16;

/// The side of a limit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Side {
    /// Buy the base asset, paying the quote asset.
    Buy = 0,
    /// Sell the base asset for the quote asset.
    Sell = 1,
}

/// How a batch applies its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum BatchMode {
    /// All items apply or none does; the receipt lists each failing index.
    Atomic = 0,
    /// Each item applies or fails on its own, with a per-item result.
    Independent = 1,
}

/// One operation. Batches hold these; a batch cannot hold a batch, so decoding depth is
/// bounded by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum BatchItem {
    /// Move `amount` of `asset` from the sender to `to`.
    Transfer {
        /// Recipient address.
        to: PublicKey,
        /// Asset moved.
        asset: AssetId,
        /// Amount in the asset's smallest unit.
        amount: u64,
    },
    /// Place a limit order; it matches at once as far as it can, the rest rests on the book.
    PlaceOrder {
        /// Market.
        market: MarketId,
        /// Buy or sell.
        side: Side,
        /// Limit price in quote units per base unit (integer ticks).
        price_ticks: u64,
        /// Quantity in base units.
        quantity: u64,
    },
    /// Cancel a resting order of the sender's.
    CancelOrder {
        /// Market.
        market: MarketId,
        /// Order id, as returned in the placing receipt.
        order_id: u64,
    },
    /// Create a task (allow-listed generators only).
    CreateTask {
        /// Task id, chosen by the generator, unique.
        task_id: Hash,
        /// Hash of the task's payload, kept off chain.
        payload_hash: Hash,
    },
    /// Respond to a created, not yet answered task.
    RespondTask {
        /// Task id.
        task_id: Hash,
        /// Hash of the result, kept off chain.
        result_hash: Hash,
    },
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum Payload {
    /// One operation.
    Single(BatchItem),
    /// Several operations under one signature and one nonce.
    Batch {
        /// Atomic or independent.
        mode: BatchMode,
        /// The operations, at most [`BATCH_ITEMS_MAX`].
        items: BoundedVec<BatchItem, BATCH_ITEMS_MAX>,
    },
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct TxBody {
    /// The chain this transaction is for (replay protection across chains).
    pub chain_id: BoundedString<CHAIN_ID_BYTES_MAX>,
    /// Sender; pays and is the owner of orders and tasks it creates.
    pub sender: PublicKey,
    /// The sender's next nonce (starts at 0, +1 per executed transaction).
    pub nonce: u64,
    /// What to do.
    pub payload: Payload,
}

/// A transaction with its signature over the canonical bytes of its body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct SignedTx {
    /// The signed content.
    pub body: TxBody,
    /// ed25519 over `TX_SIGN_DOMAIN ‖ borsh(body)`.
    pub signature: Signature,
}

impl SignedTx {
    /// Build and sign a transaction.
    pub fn sign(keypair: &Keypair, chain_id: &str, nonce: u64, payload: Payload) -> SignedTx {
        let body = TxBody {
            chain_id: BoundedString::truncating(chain_id),
            sender: keypair.public(),
            nonce,
            payload,
        };
        let signature = keypair.sign(TX_SIGN_DOMAIN, &encode(&body));
        SignedTx { body, signature }
    }

    /// Canonical bytes (what is gossiped, stored and hashed).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decode from canonical bytes, at most [`TX_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedTx, DecodeError> {
        decode(bytes, TX_BYTES_MAX)
    }

    /// Transaction hash: sha256 of the canonical bytes, as in CometBFT.
    pub fn hash(&self) -> Hash {
        sha256(&self.to_bytes())
    }

    /// Check the signature (only the signature: nonce and balance are the app's business).
    pub fn verify_signature(&self) -> bool {
        self.body
            .sender
            .verify(TX_SIGN_DOMAIN, &encode(&self.body), &self.signature)
    }

    /// The operations, whether single or batched.
    pub fn items(&self) -> &[BatchItem] {
        match &self.body.payload {
            Payload::Single(item) => std::slice::from_ref(item),
            Payload::Batch { items, .. } => items.as_slice(),
        }
    }
}
