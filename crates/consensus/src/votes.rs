//! Vote keeping: one vote per validator per (round, kind), power tallied per value.

use basalt_types::{CommitSignature, Hash, SignedVote, ValidatorIndex};
use std::collections::BTreeMap;

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddVote {
    /// New vote, counted.
    Added,
    /// The same vote again; nothing changed.
    Duplicate,
    /// A different vote from a validator that already voted: not counted; the first vote
    /// is returned for evidence.
    Conflict(SignedVote),
}

/// The votes of one kind in one round of one height.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteSet {
    votes: BTreeMap<ValidatorIndex, SignedVote>,
    power_by_value: BTreeMap<Option<Hash>, u64>,
    power_any: u64,
}

impl VoteSet {
    /// Add `vote` carrying `power`.
    pub fn add(&mut self, vote: SignedVote, power: u64) -> AddVote {
        if let Some(existing) = self.votes.get(&vote.vote.validator) {
            return if existing.vote == vote.vote {
                AddVote::Duplicate
            } else {
                AddVote::Conflict(*existing)
            };
        }
        self.votes.insert(vote.vote.validator, vote);
        let tally = self.power_by_value.entry(vote.vote.block_id).or_insert(0);
        *tally = tally.saturating_add(power);
        self.power_any = self.power_any.saturating_add(power);
        AddVote::Added
    }

    /// Power voting for `value` (`None` = nil).
    pub fn power_for(&self, value: Option<Hash>) -> u64 {
        self.power_by_value.get(&value).copied().unwrap_or(0)
    }

    /// Power voting for anything.
    pub fn power_any(&self) -> u64 {
        self.power_any
    }

    /// Validators that voted.
    pub fn voters(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.votes.keys().copied()
    }

    /// The values with their power, in value order.
    pub fn tallies(&self) -> impl Iterator<Item = (Option<Hash>, u64)> + '_ {
        self.power_by_value.iter().map(|(value, power)| (*value, *power))
    }

    /// Signatures of the votes for `block_id`, in validator order.
    pub fn signatures_for(&self, block_id: Hash) -> Vec<CommitSignature> {
        self.votes
            .values()
            .filter(|v| v.vote.block_id == Some(block_id))
            .map(|v| CommitSignature {
                validator: v.vote.validator,
                signature: v.signature,
            })
            .collect()
    }
}
