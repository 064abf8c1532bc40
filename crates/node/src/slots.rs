//! The equivocation guard: which values each validator has been seen (with a valid
//! signature) to vote or propose in each slot (height, round, step). An honest validator
//! signs one value per slot; a second one is evidence; more add nothing. So:
//!
//! - a message for a slot that already holds [`VALUES_PER_SLOT_MAX`] verified values, with
//!   yet another value, is dropped before its signature is checked (an equivocating key
//!   holder cannot make every validator verify an unbounded stream of votes — seed 001's
//!   attestations for unknown blocks);
//! - a verified message whose value is not the slot's first is processed (evidence) but not
//!   forwarded: gossip carries each validator's one vote per slot, never a flood of
//!   conflicting ones.
//!
//! Only verified messages are recorded, so junk signatures cannot fill a slot ahead of the
//! real vote. But a key holder's own junk can: a vote for nil or for a block proposed at the
//! vote's height is therefore verified whatever fills its slot, as the core counts such a
//! vote even from an equivocator. Under gossip-flood the byzantine validator's junk filled
//! its precommit slots at the flooded validator, which then dropped that validator's real
//! precommit unverified, was left one vote short of a commit its peers had made, and
//! decided that height by sync a second later (a round-1 escalation of the next height).
//! The table holds the heights around consensus and is bounded.

use basalt_types::{Hash, Height, Round};
use std::collections::HashMap;

/// Distinct values per slot that are verified: the first and one conflicting (evidence).
pub const VALUES_PER_SLOT_MAX: usize = 2;
/// Slots tracked at most; beyond, the table is cleared (the guard then forgets, which only
/// costs verification work).
pub const SLOTS_MAX: usize = 65_536;

/// Distinct proposed block ids remembered per height (an equivocating proposer's beyond
/// are not).
pub const PROPOSED_PER_HEIGHT_MAX: usize = 64;
/// Heights whose proposed block ids are remembered at most (pruning keeps far fewer).
pub const PROPOSED_HEIGHTS_MAX: usize = 64;

/// (height, round, step: 0 proposal / 1 prevote / 2 precommit, validator).
pub type SlotKey = (Height, Round, u8, u16);

/// The step of a proposal in a [`SlotKey`].
const STEP_PROPOSAL: u8 = 0;

/// The slot a consensus message is signed for, and its value.
pub fn key_of(message: &crate::messages::ConsensusMessage) -> (SlotKey, Option<Hash>) {
    use crate::messages::ConsensusMessage;
    use basalt_types::VoteKind;
    match message {
        ConsensusMessage::Vote(v) => {
            let step = match v.vote.kind {
                VoteKind::Prevote => 1,
                VoteKind::Precommit => 2,
            };
            (
                (v.vote.height, v.vote.round, step, v.vote.validator),
                v.vote.block_id,
            )
        }
        ConsensusMessage::Proposal { proposal, .. } => {
            let p = &proposal.proposal;
            ((p.height, p.round, 0, p.proposer), Some(p.block_id))
        }
    }
}

/// What recording a verified value said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The slot's first value, or one already recorded: forward it.
    Forward,
    /// A conflicting value (evidence): process, do not forward.
    Conflict,
}

/// Verified values per slot.
#[derive(Debug, Default)]
pub struct SlotGuard {
    slots: HashMap<SlotKey, Vec<Option<Hash>>>,
    /// Block ids of verified proposals, per height.
    proposed: HashMap<Height, Vec<Hash>>,
    pruned_below: Height,
}

impl SlotGuard {
    /// True when a message with `value` for `key` should not even be verified: the slot is
    /// full, `value` is not one of its values, and it is not a vote the core would count
    /// (for nil, or for a block proposed at its height).
    pub fn is_saturated(&self, key: SlotKey, value: Option<Hash>) -> bool {
        let Some(values) = self.slots.get(&key) else {
            return false;
        };
        if values.len() < VALUES_PER_SLOT_MAX || values.contains(&value) {
            return false;
        }
        let counted = key.2 != STEP_PROPOSAL
            && value.is_none_or(|id| {
                self.proposed
                    .get(&key.0)
                    .is_some_and(|ids| ids.contains(&id))
            });
        !counted
    }

    /// Record a verified `value` for `key`.
    pub fn record(&mut self, key: SlotKey, value: Option<Hash>) -> Recorded {
        if key.0 < self.pruned_below {
            return Recorded::Forward;
        }
        if key.2 == STEP_PROPOSAL {
            if let Some(id) = value {
                if self.proposed.len() >= PROPOSED_HEIGHTS_MAX
                    && !self.proposed.contains_key(&key.0)
                {
                    self.proposed.clear();
                }
                let ids = self.proposed.entry(key.0).or_default();
                if !ids.contains(&id) && ids.len() < PROPOSED_PER_HEIGHT_MAX {
                    ids.push(id);
                }
            }
        }
        if self.slots.len() >= SLOTS_MAX && !self.slots.contains_key(&key) {
            self.slots.clear();
        }
        let values = self.slots.entry(key).or_default();
        match values.iter().position(|v| *v == value) {
            Some(0) => Recorded::Forward,
            Some(_) => Recorded::Conflict,
            None if values.is_empty() => {
                values.push(value);
                Recorded::Forward
            }
            None => {
                if values.len() < VALUES_PER_SLOT_MAX {
                    values.push(value);
                }
                Recorded::Conflict
            }
        }
    }

    /// Forget slots of heights below `height`.
    pub fn prune(&mut self, height: Height) {
        if height > self.pruned_below {
            self.pruned_below = height;
            self.slots.retain(|(h, ..), _| *h >= height);
            self.proposed.retain(|h, _| *h >= height);
        }
    }

    /// Slots tracked.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no slot is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Option<Hash> {
        Some(Hash([b; 32]))
    }

    #[test]
    fn first_value_forwards_a_conflict_is_processed_not_forwarded_more_are_not_verified() {
        let mut guard = SlotGuard::default();
        let key = (5, 0, 1, 2);
        assert!(!guard.is_saturated(key, h(1)));
        assert_eq!(guard.record(key, h(1)), Recorded::Forward);
        assert_eq!(guard.record(key, h(1)), Recorded::Forward, "same again");
        assert!(!guard.is_saturated(key, h(2)), "one conflict is evidence");
        assert_eq!(guard.record(key, h(2)), Recorded::Conflict);
        assert!(
            guard.is_saturated(key, h(3)),
            "a third value is not verified"
        );
        assert!(!guard.is_saturated(key, h(1)), "known values still pass");
        assert!(!guard.is_saturated(key, None) || guard.record(key, None) == Recorded::Conflict);
        assert!(
            !guard.is_saturated((5, 0, 1, 3), h(3)),
            "other validators unaffected"
        );
    }

    #[test]
    fn a_vote_for_nil_or_a_proposed_block_is_verified_whatever_junk_filled_its_slot() {
        let mut guard = SlotGuard::default();
        guard.record((5, 0, 0, 1), h(9)); // validator 1 proposed block 9 at height 5
        guard.record((6, 0, 0, 2), h(7)); // and validator 2 block 7 at height 6
        let slot = (5, 0, 2, 3); // validator 3's precommit at height 5
        guard.record(slot, h(1));
        guard.record(slot, h(2));
        assert!(guard.is_saturated(slot, h(3)), "more junk is not verified");
        assert!(!guard.is_saturated(slot, h(9)), "the proposed block is");
        assert!(!guard.is_saturated(slot, None), "nil is");
        assert!(
            guard.is_saturated(slot, h(7)),
            "a block proposed at another height is junk here"
        );
        let proposal = (5, 0, 0, 1);
        guard.record(proposal, h(8));
        assert!(
            guard.is_saturated(proposal, h(10)),
            "a proposer's third value is not verified"
        );
        guard.prune(6);
        assert_eq!(guard.proposed.len(), 1, "pruned with the slots");
        for i in 0..(PROPOSED_PER_HEIGHT_MAX as u32 + 10) {
            guard.record((7, i, 0, 0), Some(Hash([i as u8; 32])));
            guard.record((1000 + u64::from(i), 0, 0, 0), h(1));
            assert!(guard.proposed.len() <= PROPOSED_HEIGHTS_MAX);
        }
        assert!(guard
            .proposed
            .values()
            .all(|ids| ids.len() <= PROPOSED_PER_HEIGHT_MAX));
    }

    #[test]
    fn pruning_forgets_old_heights_and_the_table_is_bounded() {
        let mut guard = SlotGuard::default();
        guard.record((4, 0, 1, 0), h(1));
        guard.record((5, 0, 1, 0), h(1));
        guard.prune(5);
        assert_eq!(guard.len(), 1);
        for i in 0..(SLOTS_MAX as u32 + 10) {
            guard.record((6, i, 1, 0), h(1));
            assert!(guard.len() <= SLOTS_MAX);
        }
    }
}
