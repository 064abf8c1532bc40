//! Vote keeping for one (height, round, kind).
//!
//! Counting follows the paper's model: "2f+1 ⟨PREVOTE, h, r, id(v)⟩" counts every validator
//! from which a prevote for v was received, even if that validator (necessarily byzantine)
//! also sent a different one; "2f+1 ⟨PREVOTE, h, r, ∗⟩" counts each validator once.
//! Without this an honest validator that first heard a byzantine nil vote could never see a
//! polka that every other honest validator saw, and a re-proposal would stall forever.
//! A validator's distinct votes are capped at [`VALUES_PER_VALIDATOR_MAX`] so an equivocator
//! cannot grow memory; the core only admits a conflicting vote for nil or for a block that
//! was proposed at this height, so junk values cannot use up the cap.

use basalt_types::{CommitSignature, Hash, SignedVote, ValidatorIndex};
use std::collections::BTreeMap;

/// Distinct votes kept per validator per (round, kind): the first one and a few
/// conflicting ones (each is evidence; more add nothing).
pub const VALUES_PER_VALIDATOR_MAX: usize = 16;

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddVote {
    /// New vote, counted.
    Added,
    /// The same vote again; nothing changed.
    Duplicate,
    /// A different vote from a validator that already voted: counted for its value (not
    /// again for "any"); the first vote is returned for evidence.
    Conflict(SignedVote),
    /// Conflicting votes beyond the cap: ignored.
    Ignored,
}

/// The votes of one kind in one round of one height.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteSet {
    votes: BTreeMap<ValidatorIndex, Vec<SignedVote>>,
    power_by_value: BTreeMap<Option<Hash>, u64>,
    power_any: u64,
}

impl VoteSet {
    /// Add `vote` carrying `power`.
    pub fn add(&mut self, vote: SignedVote, power: u64) -> AddVote {
        let existing = self.votes.entry(vote.vote.validator).or_default();
        if existing.iter().any(|v| v.vote == vote.vote) {
            return AddVote::Duplicate;
        }
        if existing.len() >= VALUES_PER_VALIDATOR_MAX {
            return AddVote::Ignored;
        }
        let first = existing.first().copied();
        existing.push(vote);
        let tally = self.power_by_value.entry(vote.vote.block_id).or_insert(0);
        *tally = tally.saturating_add(power);
        match first {
            Some(first) => AddVote::Conflict(first),
            None => {
                self.power_any = self.power_any.saturating_add(power);
                AddVote::Added
            }
        }
    }

    /// The first vote received from `validator`, if any.
    pub fn first_vote(&self, validator: ValidatorIndex) -> Option<SignedVote> {
        self.votes.get(&validator).and_then(|v| v.first()).copied()
    }

    /// Every value `validator` voted for, first one first.
    pub fn values_of(&self, validator: ValidatorIndex) -> Vec<Option<Hash>> {
        self.votes
            .get(&validator)
            .map_or_else(Vec::new, |v| v.iter().map(|v| v.vote.block_id).collect())
    }

    /// Power of the validators that voted for `value` (`None` = nil).
    pub fn power_for(&self, value: Option<Hash>) -> u64 {
        self.power_by_value.get(&value).copied().unwrap_or(0)
    }

    /// Power of the validators that voted at all (each counted once).
    pub fn power_any(&self) -> u64 {
        self.power_any
    }

    /// Values (never nil) that `is_quorum` says have enough power.
    pub fn values_with(&self, is_quorum: impl Fn(u64) -> bool) -> Vec<Hash> {
        self.power_by_value
            .iter()
            .filter_map(|(value, power)| value.filter(|_| is_quorum(*power)))
            .collect()
    }

    /// Validators that voted.
    pub fn voters(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.votes.keys().copied()
    }

    /// The votes for `value`, in validator order.
    pub fn votes_for(&self, value: Option<Hash>) -> Vec<SignedVote> {
        self.votes
            .values()
            .flatten()
            .filter(|v| v.vote.block_id == value)
            .copied()
            .collect()
    }

    /// Signatures of the votes for `block_id`, in validator order.
    pub fn signatures_for(&self, block_id: Hash) -> Vec<CommitSignature> {
        self.votes_for(Some(block_id))
            .into_iter()
            .map(|v| CommitSignature {
                validator: v.vote.validator,
                signature: v.signature,
            })
            .collect()
    }
}
