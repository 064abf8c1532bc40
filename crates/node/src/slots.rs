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
//! real vote. The table holds the heights around consensus and is bounded.

use basalt_types::{Hash, Height, Round};
use std::collections::HashMap;

/// Distinct values per slot that are verified: the first and one conflicting (evidence).
pub const VALUES_PER_SLOT_MAX: usize = 2;
/// Slots tracked at most; beyond, the table is cleared (the guard then forgets, which only
/// costs verification work).
pub const SLOTS_MAX: usize = 65_536;

/// (height, round, step: 0 proposal / 1 prevote / 2 precommit, validator).
pub type SlotKey = (Height, Round, u8, u16);

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
    pruned_below: Height,
}

impl SlotGuard {
    /// True when a message with `value` for `key` should not even be verified: the slot is
    /// full and `value` is not one of its values.
    pub fn is_saturated(&self, key: SlotKey, value: Option<Hash>) -> bool {
        self.slots
            .get(&key)
            .is_some_and(|values| values.len() >= VALUES_PER_SLOT_MAX && !values.contains(&value))
    }

    /// Record a verified `value` for `key`.
    pub fn record(&mut self, key: SlotKey, value: Option<Hash>) -> Recorded {
        if key.0 < self.pruned_below {
            return Recorded::Forward;
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
