//! The round state machine. Rules carry the line numbers of Algorithm 1 of *The latest
//! gossip on BFT consensus*; hold the paper next to this file.
//!
//! Shape: every input only records facts (a proposal, a vote, a validity verdict, an
//! expired timeout). Then [`Core::evaluate`] applies the first `upon` rule whose condition
//! holds, and repeats until none does. Rules that must fire once ("for the first time")
//! carry a flag in their round's state.

use crate::validators::ValidatorSet;
use crate::votes::{AddVote, VoteSet};
use crate::{
    Config, DropReason, Input, Output, Timeout, TimeoutKind, FUTURE_HEIGHTS_MAX,
    FUTURE_MESSAGES_MAX, ROUNDS_AHEAD_MAX,
};
use basalt_types::limits::VALIDATORS_MAX;
use basalt_types::{
    BoundedVec, CommitCertificate, Evidence, Hash, Height, Proposal, Round, SignedProposal,
    SignedVote, ValidatorIndex, Vote, VoteKind,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// `step_p` of Algorithm 1, plus `Commit` for the commit wait after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Waiting for the round's proposal.
    Propose,
    /// Prevoted; waiting for 2f+1 prevotes.
    Prevote,
    /// Precommitted; waiting for 2f+1 precommits.
    Precommit,
    /// Decided; waiting out the commit wait before the next height.
    Commit,
}

impl Step {
    /// Lower-case name, for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Step::Propose => "propose",
            Step::Prevote => "prevote",
            Step::Precommit => "precommit",
            Step::Commit => "commit",
        }
    }
}

/// A round as one core saw it ([`Core::round_view`]); `Display` is one compact log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundView {
    /// Proposer and block of the proposal received, if any.
    pub proposal: Option<(ValidatorIndex, Hash)>,
    /// Each voter with its votes (the first, then conflicting ones); `None` = nil.
    pub prevotes: Vec<(ValidatorIndex, Vec<Option<Hash>>)>,
    /// The same for precommits.
    pub precommits: Vec<(ValidatorIndex, Vec<Option<Hash>>)>,
}

impl std::fmt::Display for RoundView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn votes(
            f: &mut std::fmt::Formatter<'_>,
            votes: &[(ValidatorIndex, Vec<Option<Hash>>)],
        ) -> std::fmt::Result {
            f.write_str("[")?;
            for (i, (validator, values)) in votes.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                write!(f, "{sep}v{validator}:")?;
                for (j, value) in values.iter().enumerate() {
                    let sep = if j == 0 { "" } else { "," };
                    match value {
                        Some(id) => write!(f, "{sep}{id:?}")?,
                        None => write!(f, "{sep}nil")?,
                    }
                }
            }
            f.write_str("]")
        }
        match &self.proposal {
            Some((proposer, id)) => write!(f, "proposal v{proposer}:{id:?}")?,
            None => f.write_str("no proposal")?,
        }
        f.write_str(" prevotes ")?;
        votes(f, &self.prevotes)?;
        f.write_str(" precommits ")?;
        votes(f, &self.precommits)
    }
}

/// The message log of one round of the current height.
#[derive(Debug, Clone, Default)]
struct RoundState {
    proposal: Option<SignedProposal>,
    prevotes: VoteSet,
    precommits: VoteSet,
    /// Line 34 fired.
    prevote_timeout_scheduled: bool,
    /// Line 47 fired.
    precommit_timeout_scheduled: bool,
    /// Line 36 fired.
    locked_or_valid_set: bool,
}

impl RoundState {
    /// Validators that sent anything in this round (for the f+1 round skip, line 55).
    fn participants(&self) -> BTreeSet<ValidatorIndex> {
        let mut who: BTreeSet<ValidatorIndex> = self.prevotes.voters().collect();
        who.extend(self.precommits.voters());
        if let Some(proposal) = &self.proposal {
            who.insert(proposal.proposal.proposer);
        }
        who
    }
}

/// The Tendermint state machine of one validator (or of a non-voting observer).
#[derive(Debug, Clone)]
pub struct Core {
    config: Config,
    validators: ValidatorSet,
    me: Option<ValidatorIndex>,
    started: bool,
    height: Height,
    round: Round,
    step: Step,
    locked: Option<(Round, Hash)>,
    valid: Option<(Round, Hash)>,
    decided: bool,
    rounds: BTreeMap<Round, RoundState>,
    /// Verdicts on block validity at this height; `None` = asked, not answered yet.
    validity: BTreeMap<Hash, Option<bool>>,
    /// The round in which we asked the host for a block and have not proposed yet.
    awaiting_value: Option<Round>,
    future: VecDeque<Input>,
}

/// Upper bound on rules applied for one input: each rule fires at most once per round and
/// step, so this is never reached by a correct core; it is a guard against a livelock bug.
const RULES_PER_INPUT_MAX: usize = 64;

impl Core {
    /// A core for validator `me` (`None` for an observer that follows but never votes).
    /// Nothing happens until [`Input::StartHeight`].
    pub fn new(config: Config, validators: ValidatorSet, me: Option<ValidatorIndex>) -> Core {
        Core {
            config,
            validators,
            me,
            started: false,
            height: 0,
            round: 0,
            step: Step::Propose,
            locked: None,
            valid: None,
            decided: false,
            rounds: BTreeMap::new(),
            validity: BTreeMap::new(),
            awaiting_value: None,
            future: VecDeque::new(),
        }
    }

    /// Current height.
    pub fn height(&self) -> Height {
        self.height
    }
    /// Current round.
    pub fn round(&self) -> Round {
        self.round
    }
    /// Current step.
    pub fn current_step(&self) -> Step {
        self.step
    }
    /// `(lockedRound_p, lockedValue_p)`.
    pub fn locked(&self) -> Option<(Round, Hash)> {
        self.locked
    }
    /// `(validRound_p, validValue_p)`.
    pub fn valid(&self) -> Option<(Round, Hash)> {
        self.valid
    }
    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }
    /// Votes of this height for `value` in (`round`, `kind`): what a host relays so that
    /// peers which missed some see the same quorums (gossip of others' votes).
    pub fn votes_for(&self, round: Round, kind: VoteKind, value: Option<Hash>) -> Vec<SignedVote> {
        self.rounds
            .get(&round)
            .map_or_else(Vec::new, |state| match kind {
                VoteKind::Prevote => state.prevotes.votes_for(value),
                VoteKind::Precommit => state.precommits.votes_for(value),
            })
    }

    /// A block of this height with 2f+1 precommits in some round whose proposal this core
    /// has not received: the rest of the network decided it, and the host should fetch it
    /// by hash (one fetch per block, never one per vote).
    pub fn decided_without_proposal(&self) -> Option<(Round, Hash)> {
        if self.decided {
            return None;
        }
        self.rounds.iter().find_map(|(round, state)| {
            let proposed = state.proposal.map(|p| p.proposal.block_id);
            state
                .precommits
                .values_with(|power| self.validators.is_quorum(power))
                .into_iter()
                .find(|id| Some(*id) != proposed)
                .map(|id| (*round, id))
        })
    }

    /// Whether `timeout` would change this core's state now ([`Core::step`] drops it as
    /// stale otherwise): for a host that logs the timeouts that matter.
    pub fn timeout_takes_effect(&self, timeout: &Timeout) -> bool {
        let current = timeout.height == self.height && timeout.round == self.round;
        match timeout.kind {
            TimeoutKind::Propose => current && self.step == Step::Propose,
            TimeoutKind::Prevote => current && self.step == Step::Prevote,
            TimeoutKind::Precommit => current && !self.decided,
            TimeoutKind::Commit => {
                timeout.height == self.height && self.decided && self.step == Step::Commit
            }
        }
    }

    /// What this core holds for `round` of the current height: the proposed block and
    /// every vote received, for diagnostics.
    pub fn round_view(&self, round: Round) -> RoundView {
        let state = self.rounds.get(&round);
        let votes = |set: Option<&VoteSet>| {
            set.map_or_else(Vec::new, |set| {
                set.voters()
                    .map(|v| (v, set.values_of(v)))
                    .collect::<Vec<_>>()
            })
        };
        RoundView {
            proposal: state
                .and_then(|s| s.proposal)
                .map(|p| (p.proposal.proposer, p.proposal.block_id)),
            prevotes: votes(state.map(|s| &s.prevotes)),
            precommits: votes(state.map(|s| &s.precommits)),
        }
    }

    /// Messages waiting for a later height.
    pub fn future_buffered(&self) -> usize {
        self.future.len()
    }

    /// Apply one input and return what the host must do, in order.
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::StartHeight(height) => {
                if self.started && height <= self.height {
                    out.push(Output::Dropped(DropReason::Stale));
                } else {
                    self.start_height(height, &mut out);
                }
            }
            _ if !self.started => out.push(Output::Dropped(DropReason::NotStarted)),
            Input::Proposal(proposal) => self.on_proposal(proposal, &mut out),
            Input::Vote(vote) => self.on_vote(vote, &mut out),
            Input::BlockValidity {
                height,
                block_id,
                valid,
            } => self.on_validity(height, block_id, valid, &mut out),
            Input::ProposeValue {
                height,
                round,
                block_id,
            } => self.on_propose_value(height, round, block_id, &mut out),
            Input::Timeout(timeout) => self.on_timeout(timeout, &mut out),
            Input::SyncedCommit(certificate) => self.on_synced_commit(certificate, &mut out),
        }
        self.evaluate(&mut out);
        out
    }

    // ----- recording inputs -------------------------------------------------------------

    /// Where a message for `(height, round)` goes. `Ok(true)`: this height, record it;
    /// `Ok(false)`: buffered for a later height.
    fn admit(
        &mut self,
        height: Height,
        round: Round,
        input: &Input,
        out: &mut Vec<Output>,
    ) -> Result<bool, DropReason> {
        if height < self.height || (height == self.height && self.decided) {
            return Err(DropReason::PastHeight);
        }
        if height > self.height {
            if height - self.height > FUTURE_HEIGHTS_MAX || round > ROUNDS_AHEAD_MAX {
                return Err(DropReason::TooFarFuture);
            }
            if self.future.len() >= FUTURE_MESSAGES_MAX {
                self.future.pop_front();
                out.push(Output::Dropped(DropReason::FutureBufferEvicted));
            }
            self.future.push_back(input.clone());
            return Ok(false);
        }
        if round > self.round.saturating_add(ROUNDS_AHEAD_MAX) {
            return Err(DropReason::TooFarRound);
        }
        Ok(true)
    }

    fn on_proposal(&mut self, signed: SignedProposal, out: &mut Vec<Output>) {
        let proposal = signed.proposal;
        match self.admit(
            proposal.height,
            proposal.round,
            &Input::Proposal(signed),
            out,
        ) {
            Err(reason) => return out.push(Output::Dropped(reason)),
            Ok(false) => return,
            Ok(true) => {}
        }
        if proposal.proposer != self.validators.proposer(proposal.height, proposal.round) {
            return out.push(Output::Dropped(DropReason::WrongProposer));
        }
        let round_state = self.rounds.entry(proposal.round).or_default();
        if let Some(first) = round_state.proposal {
            if first == signed {
                return out.push(Output::Dropped(DropReason::Duplicate));
            }
            out.push(Output::Evidence(Evidence::DuplicateProposal {
                first,
                second: signed,
            }));
            return out.push(Output::Dropped(DropReason::Equivocation));
        }
        round_state.proposal = Some(signed);
        if let std::collections::btree_map::Entry::Vacant(entry) =
            self.validity.entry(proposal.block_id)
        {
            entry.insert(None);
            out.push(Output::ValidateBlock {
                height: proposal.height,
                round: proposal.round,
                block_id: proposal.block_id,
            });
        }
    }

    fn on_vote(&mut self, signed: SignedVote, out: &mut Vec<Output>) {
        let vote = signed.vote;
        let power = self.validators.power(vote.validator);
        if power == 0 {
            return out.push(Output::Dropped(DropReason::UnknownValidator));
        }
        match self.admit(vote.height, vote.round, &Input::Vote(signed), out) {
            Err(reason) => return out.push(Output::Dropped(reason)),
            Ok(false) => return,
            Ok(true) => {}
        }
        let proposed = |id: &Hash| {
            self.rounds
                .values()
                .any(|r| r.proposal.is_some_and(|p| p.proposal.block_id == *id))
        };
        let relevant = vote.block_id.as_ref().is_none_or(proposed);
        let round_state = self.rounds.entry(vote.round).or_default();
        let set = match vote.kind {
            VoteKind::Prevote => &mut round_state.prevotes,
            VoteKind::Precommit => &mut round_state.precommits,
        };
        if !relevant {
            if let Some(first) = set.first_vote(vote.validator).filter(|f| f.vote != vote) {
                // A second vote for a block nobody proposed: evidence, but not kept.
                out.push(Output::Evidence(Evidence::DuplicateVote {
                    first,
                    second: signed,
                }));
                return out.push(Output::Dropped(DropReason::Equivocation));
            }
        }
        match set.add(signed, power) {
            AddVote::Added => {}
            AddVote::Duplicate | AddVote::Ignored => {
                out.push(Output::Dropped(DropReason::Duplicate))
            }
            AddVote::Conflict(first) => {
                out.push(Output::Evidence(Evidence::DuplicateVote {
                    first,
                    second: signed,
                }));
                out.push(Output::Dropped(DropReason::Equivocation));
            }
        }
    }

    fn on_validity(&mut self, height: Height, block_id: Hash, valid: bool, out: &mut Vec<Output>) {
        match self.validity.get_mut(&block_id) {
            Some(verdict) if height == self.height => *verdict = Some(valid),
            _ => out.push(Output::Dropped(DropReason::Stale)),
        }
    }

    fn on_propose_value(
        &mut self,
        height: Height,
        round: Round,
        block_id: Hash,
        out: &mut Vec<Output>,
    ) {
        let (Some(me), true) = (self.me, self.awaiting_value == Some(round)) else {
            return out.push(Output::Dropped(DropReason::Stale));
        };
        if height != self.height || round != self.round || self.step != Step::Propose {
            return out.push(Output::Dropped(DropReason::Stale));
        }
        self.awaiting_value = None;
        // The host built this block itself on its own state: it is valid by construction.
        self.validity.insert(block_id, Some(true));
        // Line 19, with validRound_p = -1 (line 18's getValue branch).
        out.push(Output::Propose(Proposal {
            height,
            round,
            pol_round: None,
            block_id,
            proposer: me,
        }));
    }

    fn on_timeout(&mut self, timeout: Timeout, out: &mut Vec<Output>) {
        if !self.timeout_takes_effect(&timeout) {
            return out.push(Output::Dropped(DropReason::Stale));
        }
        match timeout.kind {
            // Lines 57-60: OnTimeoutPropose.
            TimeoutKind::Propose => {
                self.cast(VoteKind::Prevote, None, out);
                self.set_step(Step::Prevote, out);
            }
            // Lines 61-64: OnTimeoutPrevote.
            TimeoutKind::Prevote => {
                self.cast(VoteKind::Precommit, None, out);
                self.set_step(Step::Precommit, out);
            }
            // Lines 65-67: OnTimeoutPrecommit.
            TimeoutKind::Precommit => match self.round.checked_add(1) {
                Some(next) => self.start_round(next, out),
                None => out.push(Output::Dropped(DropReason::Stale)),
            },
            // End of the commit wait.
            TimeoutKind::Commit => self.next_height(out),
        }
    }

    fn on_synced_commit(&mut self, certificate: CommitCertificate, out: &mut Vec<Output>) {
        if certificate.height != self.height || self.decided {
            return out.push(Output::Dropped(DropReason::Stale));
        }
        self.decided = true;
        out.push(Output::Decide(certificate));
        self.set_step(Step::Commit, out);
        self.next_height(out);
    }

    // ----- the rules ------------------------------------------------------------------

    fn evaluate(&mut self, out: &mut Vec<Output>) {
        for _ in 0..RULES_PER_INPUT_MAX {
            if !self.started || self.decided || !self.apply_first_rule(out) {
                return;
            }
        }
        debug_assert!(false, "consensus rules did not reach a fixed point");
    }

    fn is_valid(&self, block_id: &Hash) -> Option<bool> {
        self.validity.get(block_id).copied().flatten()
    }

    fn apply_first_rule(&mut self, out: &mut Vec<Output>) -> bool {
        if let Some((round, block_id)) = self.decision() {
            self.decide(round, block_id, out);
            return true;
        }
        if let Some(round) = self.round_to_skip_to() {
            // Lines 55-56: f+1 messages of a higher round.
            self.start_round(round, out);
            return true;
        }
        self.apply_round_rule(out)
    }

    /// Line 49: a proposal of some round r, valid, with 2f+1 precommits for it.
    fn decision(&self) -> Option<(Round, Hash)> {
        self.rounds.iter().find_map(|(round, state)| {
            let block_id = state.proposal?.proposal.block_id;
            let enough = self
                .validators
                .is_quorum(state.precommits.power_for(Some(block_id)));
            (enough && self.is_valid(&block_id) == Some(true)).then_some((*round, block_id))
        })
    }

    /// Line 55: the highest round above ours in which f+1 of the power sent something.
    fn round_to_skip_to(&self) -> Option<Round> {
        let above = self.round.checked_add(1)?;
        self.rounds.range(above..).rev().find_map(|(round, state)| {
            let power: u64 = state
                .participants()
                .into_iter()
                .map(|v| self.validators.power(v))
                .sum();
            self.validators.is_one_third(power).then_some(*round)
        })
    }

    fn apply_round_rule(&mut self, out: &mut Vec<Output>) -> bool {
        let round = self.round;
        let Some(state) = self.rounds.get(&round) else {
            return false;
        };
        let proposal = state.proposal.map(|p| p.proposal);
        let prevotes_any = self.validators.is_quorum(state.prevotes.power_any());
        let prevotes_nil = self.validators.is_quorum(state.prevotes.power_for(None));
        let precommits_any = self.validators.is_quorum(state.precommits.power_any());
        let (prevote_timeout_done, precommit_timeout_done, line36_done) = (
            state.prevote_timeout_scheduled,
            state.precommit_timeout_scheduled,
            state.locked_or_valid_set,
        );
        if self.step == Step::Propose {
            if let Some(proposal) = proposal {
                if self.prevote_on_proposal(&proposal, out) {
                    return true;
                }
            }
        }
        if self.step == Step::Prevote && prevotes_any && !prevote_timeout_done {
            // Lines 34-35.
            self.round_state(round).prevote_timeout_scheduled = true;
            self.schedule(TimeoutKind::Prevote, out);
            return true;
        }
        if self.step >= Step::Prevote && !line36_done {
            if let Some(proposal) = proposal {
                if self.lock_on_polka(&proposal, out) {
                    return true;
                }
            }
        }
        if self.step == Step::Prevote && prevotes_nil {
            // Lines 44-46.
            self.cast(VoteKind::Precommit, None, out);
            self.set_step(Step::Precommit, out);
            return true;
        }
        if precommits_any && !precommit_timeout_done {
            // Lines 47-48.
            self.round_state(round).precommit_timeout_scheduled = true;
            out.push(Output::PrecommitQuorum {
                height: self.height,
                round,
            });
            self.schedule(TimeoutKind::Precommit, out);
            return true;
        }
        false
    }

    /// Lines 22-33: prevote on the round's proposal, fresh (vr = -1) or re-proposed (vr ≥ 0).
    fn prevote_on_proposal(&mut self, proposal: &Proposal, out: &mut Vec<Output>) -> bool {
        let Some(valid) = self.is_valid(&proposal.block_id) else {
            return false; // valid(v) not known yet: wait for the host's verdict.
        };
        let id = proposal.block_id;
        let unlocked_or_same = |locked: Option<(Round, Hash)>, from_round: Option<Round>| {
            match locked {
                None => true,
                Some((_, value)) if value == id => true,
                // Line 29: lockedRound_p ≤ vr.
                Some((locked_round, _)) => from_round.is_some_and(|vr| locked_round <= vr),
            }
        };
        let acceptable = match proposal.pol_round {
            // Line 22-23: valid(v) ∧ (lockedRound_p = −1 ∨ lockedValue_p = v).
            None => valid && unlocked_or_same(self.locked, None),
            // Line 28: needs 2f+1 prevotes for v in round vr < round_p.
            Some(vr) => {
                let polka = vr < proposal.round
                    && self
                        .rounds
                        .get(&vr)
                        .is_some_and(|s| self.validators.is_quorum(s.prevotes.power_for(Some(id))));
                if !polka {
                    return false;
                }
                // Line 29: valid(v) ∧ (lockedRound_p ≤ vr ∨ lockedValue_p = v).
                valid && unlocked_or_same(self.locked, Some(vr))
            }
        };
        let acceptable = acceptable || (valid && self.config.test_disable_locking);
        // Lines 24/26 and 30/32, then 27/33.
        self.cast(VoteKind::Prevote, acceptable.then_some(id), out);
        self.set_step(Step::Prevote, out);
        true
    }

    /// Lines 36-43: a valid proposal with 2f+1 prevotes for it in this round.
    fn lock_on_polka(&mut self, proposal: &Proposal, out: &mut Vec<Output>) -> bool {
        let id = proposal.block_id;
        let round = self.round;
        let polka = self
            .rounds
            .get(&round)
            .is_some_and(|s| self.validators.is_quorum(s.prevotes.power_for(Some(id))));
        if !polka || self.is_valid(&id) != Some(true) {
            return false;
        }
        self.round_state(round).locked_or_valid_set = true;
        if self.step == Step::Prevote {
            self.locked = Some((round, id)); // Lines 38-39.
            self.cast(VoteKind::Precommit, Some(id), out); // Line 40.
            self.set_step(Step::Precommit, out); // Line 41.
        }
        self.valid = Some((round, id)); // Lines 42-43.
        true
    }

    /// Lines 49-54: decide, then the commit wait, then the next height.
    fn decide(&mut self, round: Round, block_id: Hash, out: &mut Vec<Output>) {
        let signatures = self
            .rounds
            .get(&round)
            .map(|s| s.precommits.signatures_for(block_id))
            .unwrap_or_default();
        let signatures = BoundedVec::<_, VALIDATORS_MAX>::new(signatures).unwrap_or_default();
        self.decided = true;
        out.push(Output::Decide(CommitCertificate {
            height: self.height,
            round,
            block_id,
            signatures,
        }));
        self.set_step(Step::Commit, out);
        if self.config.commit_wait_ms == 0 {
            self.next_height(out);
        } else {
            out.push(Output::ScheduleTimeout {
                timeout: Timeout {
                    kind: TimeoutKind::Commit,
                    height: self.height,
                    round,
                },
                duration_ms: self.config.commit_wait_ms,
            });
        }
    }

    // ----- transitions ----------------------------------------------------------------

    fn next_height(&mut self, out: &mut Vec<Output>) {
        match self.height.checked_add(1) {
            Some(next) => self.start_height(next, out),
            None => out.push(Output::Dropped(DropReason::Stale)),
        }
    }

    /// Line 53: reset the per-height state, then line 54 (StartRound(0)), then replay
    /// messages that arrived early for this height.
    fn start_height(&mut self, height: Height, out: &mut Vec<Output>) {
        self.started = true;
        self.height = height;
        self.round = 0;
        self.locked = None;
        self.valid = None;
        self.decided = false;
        self.rounds.clear();
        self.validity.clear();
        self.awaiting_value = None;
        self.start_round(0, out);
        let buffered = std::mem::take(&mut self.future);
        for input in buffered {
            match input {
                Input::Proposal(proposal) => self.on_proposal(proposal, out),
                Input::Vote(vote) => self.on_vote(vote, out),
                _ => {}
            }
        }
    }

    /// Lines 11-21: StartRound.
    fn start_round(&mut self, round: Round, out: &mut Vec<Output>) {
        self.round = round; // Line 12.
        self.round_state(round);
        out.push(Output::NewRound {
            height: self.height,
            round,
        });
        self.set_step(Step::Propose, out); // Line 13.
        self.awaiting_value = None;
        let proposer = self.validators.proposer(self.height, round);
        if let Some(me) = self.me.filter(|me| *me == proposer) {
            // Lines 14-19.
            match self.valid {
                Some((valid_round, block_id)) => out.push(Output::Propose(Proposal {
                    height: self.height,
                    round,
                    pol_round: Some(valid_round),
                    block_id,
                    proposer: me,
                })),
                None => {
                    self.awaiting_value = Some(round);
                    out.push(Output::GetValue {
                        height: self.height,
                        round,
                    });
                }
            }
        }
        // Line 21. The proposer schedules it too: if its own block never comes back from
        // the host, the round still moves on.
        self.schedule(TimeoutKind::Propose, out);
    }

    fn round_state(&mut self, round: Round) -> &mut RoundState {
        self.rounds.entry(round).or_default()
    }

    fn set_step(&mut self, step: Step, out: &mut Vec<Output>) {
        self.step = step;
        out.push(Output::StepChanged {
            height: self.height,
            round: self.round,
            step,
        });
    }

    fn cast(&mut self, kind: VoteKind, block_id: Option<Hash>, out: &mut Vec<Output>) {
        if let Some(validator) = self.me {
            out.push(Output::Vote(Vote {
                kind,
                height: self.height,
                round: self.round,
                block_id,
                validator,
            }));
        }
    }

    fn schedule(&mut self, kind: TimeoutKind, out: &mut Vec<Output>) {
        let t = self.config.timeouts;
        let (base, delta) = match kind {
            TimeoutKind::Propose => (t.propose_ms, t.propose_delta_ms),
            TimeoutKind::Prevote => (t.prevote_ms, t.prevote_delta_ms),
            TimeoutKind::Precommit => (t.precommit_ms, t.precommit_delta_ms),
            TimeoutKind::Commit => (self.config.commit_wait_ms, 0),
        };
        out.push(Output::ScheduleTimeout {
            timeout: Timeout {
                kind,
                height: self.height,
                round: self.round,
            },
            duration_ms: base.saturating_add(delta.saturating_mul(u64::from(self.round))),
        });
    }
}
