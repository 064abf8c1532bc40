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

/// What travels on the consensus topic: a message and a re-send number.
///
/// Gossip ids are content hashes, and gossipsub refuses to publish an id it still has in
/// its duplicate cache — whose entries only expire when new ids arrive. A re-send of the
/// same message therefore carries a new `resend` number, so repairing lost messages works
/// even when the network is otherwise silent (a stalled round).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ConsensusGossip {
    /// 0 for the first send; distinct for each re-send.
    pub resend: u64,
    /// The message.
    pub message: ConsensusMessage,
}

impl ConsensusGossip {
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
    /// Whether receivers forward the batch. Its publisher clears it when it reached every
    /// other validator directly ([`crate::network::relay_needed`]): forwarding would then
    /// only deliver each validator duplicates, and a transaction travels once per peer.
    pub relay: bool,
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
