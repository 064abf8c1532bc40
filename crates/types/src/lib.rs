//! Basalt wire types.
//!
//! Everything that is hashed, signed, stored or sent between validators is defined here,
//! with one canonical binary encoding (borsh). Decoding is total: truncated input, trailing
//! bytes, lengths or counts above the named maxima in [`limits`], and unknown enum variants
//! all come back as a typed [`DecodeError`], never a panic.
//!
//! What this crate does not do: check signatures against state (nonces, balances) or decide
//! anything. It only gives names, bounds and bytes.

pub mod block;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod genesis;
pub mod limits;
pub mod receipt;
pub mod tx;

pub use block::{Block, BlockHeader};
pub use codec::{decode, encode, BoundedBytes, BoundedString, BoundedVec, DecodeError};
pub use consensus::{
    CommitCertificate, CommitSignature, Evidence, Proposal, SignedProposal, SignedVote, Vote,
    VoteKind,
};
pub use crypto::{sha256, Hash, Keypair, PublicKey, Signature};
pub use genesis::{AccountGenesis, Genesis, MarketGenesis, ValidatorInfo};
pub use receipt::{ItemResult, Receipt, ReceiptStatus, TxError};
pub use tx::{
    AssetId, BatchItem, BatchMode, MarketId, Payload, Side, SignedTx, TxBody, ValidatorIndex,
};

/// A block height. Height 1 is the first block after genesis.
pub type Height = u64;
/// A consensus round within one height, starting at 0.
pub type Round = u32;
