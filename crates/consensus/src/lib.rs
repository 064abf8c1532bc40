//! Basalt's consensus core: Tendermint (Algorithm 1 of Buchman, Kwon and Milosevic, *The
//! latest gossip on BFT consensus*, 2018) as a pure state machine.
//!
//! [`Core::step`] takes one [`Input`] and returns the [`Output`]s the host must carry out:
//! sign and broadcast a vote, schedule a timeout, validate a block, commit a block. The core
//! owns no socket, clock, thread, key or random number generator, so the simulator and the
//! node drive the same code and a run is a function of its inputs.
//!
//! Guarantees, given at most f byzantine validators out of n = 3f+1 (by power), signatures
//! checked by the host before input, and a host that signs what the core asks for only once:
//! no two honest validators decide different blocks at one height; with eventual synchrony
//! every honest validator keeps deciding. Memory per height is bounded: votes are kept for
//! rounds up to [`ROUNDS_AHEAD_MAX`] ahead of the current one, one per validator and kind,
//! and messages for later heights wait in a FIFO of [`FUTURE_MESSAGES_MAX`] entries.
//!
//! Not done here: signature checks, block validity (asked of the host through
//! [`Output::ValidateBlock`]), the signing-state guard against double signing across restarts
//! (the host's signer), fetching missing blocks.

mod core;
mod validators;
mod votes;

pub use crate::core::{Core, RoundView, Step};
pub use validators::{ValidatorSet, ValidatorSetError};
pub use votes::VoteSet;

use basalt_types::{CommitCertificate, Evidence, Hash, Height, Proposal, Round, SignedProposal};
use basalt_types::{SignedVote, Vote};

/// How many rounds ahead of the current round votes and proposals are kept. Honest
/// validators are at most a few rounds apart; more only costs memory a byzantine peer chose.
pub const ROUNDS_AHEAD_MAX: Round = 16;
/// How many heights ahead of the current height messages are buffered for replay.
pub const FUTURE_HEIGHTS_MAX: u64 = 2;
/// Most messages buffered for future heights (FIFO, oldest evicted). Two heights of votes
/// and proposals from a full validator set fit several times over.
pub const FUTURE_MESSAGES_MAX: usize = 2048;

/// Round timeouts. Each grows linearly with the round so that, after GST, rounds eventually
/// last long enough for every honest message to arrive (a "round escalation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Wait for a proposal in round 0.
    pub propose_ms: u64,
    /// Added per round to the propose timeout.
    pub propose_delta_ms: u64,
    /// Wait after 2f+1 prevotes of any kind in round 0.
    pub prevote_ms: u64,
    /// Added per round to the prevote timeout.
    pub prevote_delta_ms: u64,
    /// Wait after 2f+1 precommits of any kind in round 0.
    pub precommit_ms: u64,
    /// Added per round to the precommit timeout.
    pub precommit_delta_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            propose_ms: 1000,
            propose_delta_ms: 500,
            prevote_ms: 200,
            prevote_delta_ms: 200,
            precommit_ms: 200,
            precommit_delta_ms: 200,
        }
    }
}

/// Consensus configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// Round timeouts.
    pub timeouts: Timeouts,
    /// Wait after a decision before starting the next height (0 = start at once). A
    /// longer wait collects more transactions per block and late precommits.
    pub commit_wait_ms: u64,
    /// TEST ONLY: ignore the locking rule (lines 23 and 29 of Algorithm 1). This breaks
    /// safety on purpose, so that tests can show the simulator's safety checker catches it.
    pub test_disable_locking: bool,
}

/// Which timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeoutKind {
    /// OnTimeoutPropose (line 57).
    Propose,
    /// OnTimeoutPrevote (line 61).
    Prevote,
    /// OnTimeoutPrecommit (line 65).
    Precommit,
    /// End of the commit wait: start the next height.
    Commit,
}

/// A timeout, identified by what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeout {
    /// Kind.
    pub kind: TimeoutKind,
    /// Height it was scheduled in.
    pub height: Height,
    /// Round it was scheduled in.
    pub round: Round,
}

/// Something that happened outside the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Start consensus at this height (after genesis or recovery). Line 10.
    StartHeight(Height),
    /// A proposal whose signature the host checked. Its block travels beside it; the core
    /// asks for the block's validity with [`Output::ValidateBlock`].
    Proposal(SignedProposal),
    /// The host's verdict on a block asked about with [`Output::ValidateBlock`].
    BlockValidity {
        /// Height of the block.
        height: Height,
        /// Block id.
        block_id: Hash,
        /// `valid(v)` of Algorithm 1.
        valid: bool,
    },
    /// A vote whose signature the host checked (our own votes come back through here).
    Vote(SignedVote),
    /// The block the host built after [`Output::GetValue`] (line 18).
    ProposeValue {
        /// Height asked for.
        height: Height,
        /// Round asked for.
        round: Round,
        /// Id of the built block.
        block_id: Hash,
    },
    /// A timeout the core scheduled has expired.
    Timeout(Timeout),
    /// A commit certificate for the current height obtained by sync, with a block the host
    /// has checked and holds. Decides at once, without commit wait.
    SyncedCommit(CommitCertificate),
}

/// Why an input was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// For a height already decided.
    PastHeight,
    /// For a height more than [`FUTURE_HEIGHTS_MAX`] ahead.
    TooFarFuture,
    /// For a round more than [`ROUNDS_AHEAD_MAX`] ahead.
    TooFarRound,
    /// From an index outside the validator set.
    UnknownValidator,
    /// A proposal from someone who is not the round's proposer.
    WrongProposer,
    /// Already have exactly this message.
    Duplicate,
    /// A second, different message from the same validator (evidence is emitted).
    Equivocation,
    /// The future-height buffer was full: the oldest entry was evicted for this one.
    FutureBufferEvicted,
    /// The input does not apply in the current state (stale timeout, unasked value, ...).
    Stale,
    /// The core has not been started.
    NotStarted,
}

/// What the host must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Sign this proposal (refusing if it conflicts with something already signed), attach
    /// its block, broadcast it, and feed it back as [`Input::Proposal`].
    Propose(Proposal),
    /// Sign this vote (same guard), broadcast it, and feed it back as [`Input::Vote`].
    Vote(Vote),
    /// Build a block for (height, round) and answer with [`Input::ProposeValue`].
    GetValue {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// Check the block and answer with [`Input::BlockValidity`].
    ValidateBlock {
        /// Height.
        height: Height,
        /// Round of the proposal that carried it.
        round: Round,
        /// Block id.
        block_id: Hash,
    },
    /// Call back with [`Input::Timeout`] after `duration_ms`.
    ScheduleTimeout {
        /// What.
        timeout: Timeout,
        /// After how long.
        duration_ms: u64,
    },
    /// The block is committed (line 51): execute and persist it.
    Decide(CommitCertificate),
    /// A validator equivocated.
    Evidence(Evidence),
    /// A new round started (for metrics: rounds > 0 are escalations).
    NewRound {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// The step changed (for metrics: time in each step).
    StepChanged {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// New step.
        step: Step,
    },
    /// 2f+1 precommits (of any value) seen for the first time in this round (for the
    /// precommit latency metric).
    PrecommitQuorum {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
    },
    /// An input was not used, and why (for metrics and peer scoring).
    Dropped(DropReason),
}
