//! Blocks: header, transactions and the commit certificate of the parent.

use crate::codec::{decode, encode, BoundedVec, DecodeError};
use crate::consensus::CommitCertificate;
use crate::crypto::{sha256, sha256_parts, Hash};
use crate::limits::{BLOCK_BYTES_MAX, BLOCK_TXS_MAX};
use crate::tx::{SignedTx, ValidatorIndex};
use crate::{Height, Round};
use borsh::{BorshDeserialize, BorshSerialize};

/// The hashed part of a block. Its hash is the block id that validators vote on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    /// Height, 1 for the first block.
    pub height: Height,
    /// Round in which it was proposed.
    pub round: Round,
    /// Index of the proposer in the validator set.
    pub proposer: ValidatorIndex,
    /// Id of the parent block (zero for height 1).
    pub parent_hash: Hash,
    /// State root after executing the parent (genesis state root for height 1). A validator
    /// whose state differs cannot accept the block, so disagreement halts instead of forking.
    pub state_root: Hash,
    /// Merkle root of the transaction hashes.
    pub txs_root: Hash,
    /// Proposer's clock, in ms since the Unix epoch; strictly above the parent's.
    pub time_ms: u64,
    /// Hash of `last_commit` (zero for height 1).
    pub last_commit_hash: Hash,
}

impl BlockHeader {
    /// The block id.
    pub fn id(&self) -> Hash {
        sha256(&encode(self))
    }
}

/// A block.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Block {
    /// Header.
    pub header: BlockHeader,
    /// Transactions, in execution order.
    pub txs: BoundedVec<SignedTx, BLOCK_TXS_MAX>,
    /// The certificate that committed the parent (none for height 1).
    pub last_commit: Option<CommitCertificate>,
}

impl Block {
    /// The block id (hash of the header).
    pub fn id(&self) -> Hash {
        self.header.id()
    }

    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decode from canonical bytes, at most [`BLOCK_BYTES_MAX`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Block, DecodeError> {
        decode(bytes, BLOCK_BYTES_MAX)
    }

    /// True when the header's roots match the body.
    pub fn body_matches_header(&self) -> bool {
        let commit_hash = self
            .last_commit
            .as_ref()
            .map_or(Hash::ZERO, CommitCertificate::hash);
        self.header.txs_root == txs_root(self.txs.as_slice())
            && self.header.last_commit_hash == commit_hash
    }
}

/// Merkle root of the transactions' hashes (RFC 6962 shape: leaves and inner nodes
/// are domain-separated; an odd node is promoted; the empty list has the zero root).
pub fn txs_root(txs: &[SignedTx]) -> Hash {
    let leaves: Vec<Hash> = txs.iter().map(|tx| tx.hash()).collect();
    merkle_root(&leaves)
}

/// Merkle root over `leaves` (see [`txs_root`]).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = leaves
        .iter()
        .map(|leaf| sha256_parts(&[&[0u8], &leaf.0]))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => sha256_parts(&[&[1u8], &left.0, &right.0]),
                [single] => *single,
                _ => Hash::ZERO,
            })
            .collect();
    }
    level.first().copied().unwrap_or(Hash::ZERO)
}
