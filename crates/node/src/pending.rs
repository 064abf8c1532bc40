//! The pending buffer: verified consensus messages that cannot be processed yet (a later
//! height, or any height while the node is syncing), kept in a bounded FIFO and replayed
//! after each block import and each height or round advance (seed 001).
//!
//! The buffer never grows past [`PENDING_MAX`]: a push into a full buffer evicts the oldest
//! entry. Messages beyond the window ([`FUTURE_HEIGHTS_WINDOW`] heights ahead) never reach
//! it: the network task drops them before their signatures are checked.

use crate::messages::ConsensusMessage;
use basalt_types::{Height, Round};
use std::collections::VecDeque;

/// Most messages the pending buffer holds (FIFO, oldest evicted).
pub const PENDING_MAX: usize = 1024;
/// Messages for heights this far above the one being decided, or further, are dropped
/// before any lookup or signature check: the node is behind and syncs instead.
///
/// Not 2: a node whose chain thread falls a few blocks behind for a moment (a slow
/// fsync, a CPU-starved box) is two heights behind its peers at fast block times, and
/// with a window of 2 it dropped the votes of the height it was about to reach. It then
/// held that height's proposal but none of its votes, learned of nothing ahead (its peers
/// were waiting for *its* proposal of the next height) and sat until the propose timeout
/// (gossip-flood: 1.3 s round-1 escalations). Four heights cover ~40 ms of lag at
/// commit wait 0; what the wider window admits is still bounded by [`PENDING_MAX`].
pub const FUTURE_HEIGHTS_WINDOW: u64 = 4;

/// Why a message was buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferReason {
    /// It is for a later height than the one being decided.
    FutureHeight,
    /// The node is syncing: consensus waits until it has caught up.
    Syncing,
}

impl BufferReason {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            BufferReason::FutureHeight => "future_height",
            BufferReason::Syncing => "syncing",
        }
    }
}

/// What replaying one buffered message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Handed to consensus.
    Accepted,
    /// Still not processable: back into the buffer.
    Rebuffered,
    /// For a height already decided: dropped.
    Dropped,
}

impl ReplayOutcome {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            ReplayOutcome::Accepted => "accepted",
            ReplayOutcome::Rebuffered => "rebuffered",
            ReplayOutcome::Dropped => "dropped",
        }
    }
}

/// The kind of a consensus message (metric label).
pub fn kind(message: &ConsensusMessage) -> &'static str {
    match message {
        ConsensusMessage::Vote(_) => "vote",
        ConsensusMessage::Proposal { .. } => "proposal",
    }
}

/// Height and round a consensus message is for.
pub fn slot(message: &ConsensusMessage) -> (Height, Round) {
    match message {
        ConsensusMessage::Vote(v) => (v.vote.height, v.vote.round),
        ConsensusMessage::Proposal { proposal, .. } => {
            (proposal.proposal.height, proposal.proposal.round)
        }
    }
}

/// A bounded FIFO of consensus messages waiting for their height (or for sync to end).
#[derive(Debug)]
pub struct PendingBuffer {
    entries: VecDeque<ConsensusMessage>,
    capacity: usize,
}

impl PendingBuffer {
    /// A buffer of at most `capacity` messages (at least one).
    pub fn new(capacity: usize) -> PendingBuffer {
        PendingBuffer {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add `message` at the back; returns the evicted oldest one when the buffer was full.
    pub fn push(&mut self, message: ConsensusMessage) -> Option<ConsensusMessage> {
        let evicted = if self.entries.len() >= self.capacity {
            self.entries.pop_front()
        } else {
            None
        };
        self.entries.push_back(message);
        evicted
    }

    /// Take every message out, oldest first, deciding each one's fate with `decide`;
    /// messages it re-buffers keep their order. Returns the messages to process now and
    /// the outcome of each message taken out.
    pub fn replay(
        &mut self,
        mut decide: impl FnMut(&ConsensusMessage) -> ReplayOutcome,
    ) -> (Vec<ConsensusMessage>, Vec<(&'static str, ReplayOutcome)>) {
        let mut ready = Vec::new();
        let mut outcomes = Vec::with_capacity(self.entries.len());
        let mut kept = VecDeque::new();
        for message in self.entries.drain(..) {
            let outcome = decide(&message);
            outcomes.push((kind(&message), outcome));
            match outcome {
                ReplayOutcome::Accepted => ready.push(message),
                ReplayOutcome::Rebuffered => kept.push_back(message),
                ReplayOutcome::Dropped => {}
            }
        }
        self.entries = kept;
        (ready, outcomes)
    }
}

/// The fate of a buffered message when consensus is at `height` and `syncing` tells
/// whether the node is still catching up.
pub fn replay_outcome(message: &ConsensusMessage, height: Height, syncing: bool) -> ReplayOutcome {
    let (message_height, _) = slot(message);
    if message_height < height {
        ReplayOutcome::Dropped
    } else if message_height > height || syncing {
        ReplayOutcome::Rebuffered
    } else {
        ReplayOutcome::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{Hash, Keypair, Vote, VoteKind};

    fn vote(height: Height, round: Round) -> ConsensusMessage {
        let keypair = Keypair::from_seed([7; 32]);
        ConsensusMessage::Vote(
            Vote {
                kind: VoteKind::Prevote,
                height,
                round,
                block_id: Some(Hash([height as u8; 32])),
                validator: 0,
            }
            .sign(&keypair),
        )
    }

    #[test]
    fn full_buffer_evicts_the_oldest_first() {
        let mut buffer = PendingBuffer::new(3);
        for round in 0..3 {
            assert!(buffer.push(vote(5, round)).is_none());
        }
        let evicted = buffer.push(vote(5, 3)).map(|m| slot(&m));
        assert_eq!(evicted, Some((5, 0)));
        let evicted = buffer.push(vote(5, 4)).map(|m| slot(&m));
        assert_eq!(evicted, Some((5, 1)));
        assert_eq!(buffer.len(), 3);
        let (ready, _) = buffer.replay(|_| ReplayOutcome::Accepted);
        let rounds: Vec<Round> = ready.iter().map(|m| slot(m).1).collect();
        assert_eq!(rounds, vec![2, 3, 4], "FIFO order kept");
    }

    #[test]
    fn replay_after_import_hands_over_the_new_height_and_keeps_later_ones() {
        let mut buffer = PendingBuffer::new(PENDING_MAX);
        buffer.push(vote(4, 0)); // decided already by the time of replay
        buffer.push(vote(6, 0));
        buffer.push(vote(5, 1));
        buffer.push(vote(5, 0));
        // Consensus moved to height 5.
        let (ready, outcomes) = buffer.replay(|m| replay_outcome(m, 5, false));
        let slots: Vec<_> = ready.iter().map(slot).collect();
        assert_eq!(slots, vec![(5, 1), (5, 0)]);
        let names: Vec<_> = outcomes.iter().map(|(_, o)| o.name()).collect();
        assert_eq!(names, vec!["dropped", "rebuffered", "accepted", "accepted"]);
        assert_eq!(buffer.len(), 1);
        // Height 6 later.
        let (ready, _) = buffer.replay(|m| replay_outcome(m, 6, false));
        assert_eq!(ready.iter().map(slot).collect::<Vec<_>>(), vec![(6, 0)]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn while_syncing_current_height_messages_wait() {
        let mut buffer = PendingBuffer::new(8);
        buffer.push(vote(5, 0));
        let (ready, outcomes) = buffer.replay(|m| replay_outcome(m, 5, true));
        assert!(ready.is_empty());
        assert_eq!(outcomes[0].1, ReplayOutcome::Rebuffered);
        let (ready, _) = buffer.replay(|m| replay_outcome(m, 5, false));
        assert_eq!(ready.len(), 1);
    }

    #[test]
    fn buffer_never_exceeds_its_capacity() {
        let mut buffer = PendingBuffer::new(PENDING_MAX);
        let mut evicted = 0;
        for i in 0..(3 * PENDING_MAX) {
            if buffer.push(vote(9, i as Round)).is_some() {
                evicted += 1;
            }
            assert!(buffer.len() <= PENDING_MAX);
        }
        assert_eq!(evicted, 2 * PENDING_MAX);
    }
}
