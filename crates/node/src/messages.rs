//! What validators gossip, in canonical borsh.

use basalt_types::codec::{decode, encode, BoundedVec, DecodeError};
use basalt_types::limits::BLOCK_BYTES_MAX;
use basalt_types::{Block, SignedProposal, SignedTx, SignedVote};
use borsh::{BorshDeserialize, BorshSerialize};

/// Most transactions in one gossiped batch: a few milliseconds of a busy node's intake.
pub const TX_BATCH_MAX: usize = 1024;
/// Largest gossiped transaction batch, bytes.
pub const TX_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A message on the consensus topic.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ConsensusMessage {
    /// A proposal with the block it proposes.
    Proposal {
        /// The signed proposal.
        proposal: SignedProposal,
        /// Its block (`proposal.block_id == block.id()` is checked on receipt).
        block: Box<Block>,
    },
    /// A vote.
    Vote(SignedVote),
}

impl ConsensusMessage {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
    /// Decode, at most a block's size plus a little.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, BLOCK_BYTES_MAX + 1024)
    }
}

/// A batch of transactions on the transactions topic: transactions travel between
/// validators in batches, never one gossip message each.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxBatch {
    /// The transactions.
    pub txs: BoundedVec<SignedTx, TX_BATCH_MAX>,
}

impl TxBatch {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }
    /// Decode.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, TX_BATCH_BYTES_MAX)
    }
}
