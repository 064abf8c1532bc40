//! The simulated network and clock: a time-ordered event queue.

use basalt_consensus::Timeout;
use basalt_types::{Block, CommitCertificate, SignedProposal, SignedVote};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// What travels between simulated nodes.
#[derive(Debug, Clone)]
pub enum Message {
    /// A proposal with its block.
    Proposal(SignedProposal, Arc<Block>),
    /// A vote.
    Vote(SignedVote),
    /// "Send me decided blocks from this height on."
    SyncRequest { from_height: u64 },
    /// Decided blocks with their certificates, in height order.
    SyncResponse(Vec<(Arc<Block>, CommitCertificate)>),
}

/// Something that happens at a simulated instant.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message arrives at node `to`.
    Deliver {
        to: usize,
        from: usize,
        message: Message,
    },
    /// A consensus timeout fires at `node` (ignored if the node restarted since).
    Timer {
        node: usize,
        incarnation: u32,
        timeout: Timeout,
    },
    /// Periodic re-send of the node's own current messages (messages can be lost).
    Rebroadcast { node: usize, incarnation: u32 },
    /// The node stops (loses volatile state).
    Crash { node: usize },
    /// The node starts again from durable state.
    Restart { node: usize },
    /// Clients submit new transactions.
    ClientLoad,
    /// A partition starts: `side[i]` says which side node i is on.
    PartitionStart { side: Vec<bool> },
    /// The partition heals.
    PartitionHeal,
}

/// Events ordered by (time, insertion sequence): ties break by arrival order, so the
/// order is a function of the seed alone.
#[derive(Default)]
pub struct EventQueue {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    sequence: u64,
}

impl EventQueue {
    /// Schedule `event` at `time_ms`.
    pub fn push(&mut self, time_ms: u64, event: Event) {
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(entry) = self.slots.get_mut(slot) {
                    *entry = Some(event);
                }
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.sequence += 1;
        self.heap.push(Reverse((time_ms, self.sequence, slot)));
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        let Reverse((time_ms, _, slot)) = self.heap.pop()?;
        let event = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some((time_ms, event))
    }
}
