//! The consensus driver: owns the consensus core and runs it on a dedicated thread.
//!
//! Each turn fires due timers first, then takes the chain worker's import notices, then at
//! most [`DRIVER_INPUTS_PER_TURN`] network inputs, so no flood can delay a timeout or a
//! commit (seed 001). Every consensus input is appended to the write-ahead log before its
//! effects leave the process, and the signing state is fsynced before a signature does, so
//! a restart rebuilds the same locks and never signs a conflicting message.

use crate::chain::{Commit, Executed};
use crate::config::{NodeConfig, ProtectionsSection};
use crate::fetch::{FetchEnd, FetchKey, FetchTracker, FETCH_IN_FLIGHT_MAX, FETCH_TIMEOUT};
use crate::messages::{ConsensusGossip, ConsensusMessage};
use crate::metrics::Metrics;
use crate::pending::{self, BufferReason, PendingBuffer, PENDING_MAX};
use crate::state::{Shared, SyncState};
use basalt_consensus::{Core, DropReason, Input, Output, Step, Timeout, TimeoutKind};
use basalt_p2p::{NetworkCommand, PeerId, RequestToken, SyncRequest, Topic};
use basalt_storage::SigningState;
use basalt_types::block::txs_root;
use basalt_types::codec::{decode, encode};
use basalt_types::limits::BLOCK_BYTES_MAX;
use basalt_types::{
    Block, BlockHeader, BoundedVec, CommitCertificate, Hash, Height, Proposal, Round,
    SignedProposal, SignedVote, Vote, VoteKind,
};
use borsh::{BorshDeserialize, BorshSerialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Network inputs handled per driver turn before timers and imports are looked at again.
pub const DRIVER_INPUTS_PER_TURN: usize = 64;
/// Capacity of the driver's input queue (verified consensus messages and sync results).
pub const DRIVER_QUEUE_MAX: usize = 4096;
/// Blocks requested per sync request.
pub const SYNC_BLOCKS_PER_REQUEST: u32 = 32;
/// Consensus inputs kept in memory for the WAL at most; see [`Driver::flush_wal`].
pub const WAL_BUFFER_MAX: usize = 1024;
/// After a failed fetch, the same fetch waits this long before it is tried again.
pub const FETCH_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How far ahead of our clock a block's time may be.
pub const BLOCK_TIME_DRIFT_MAX_MS: u64 = 5_000;

/// What the driver receives from the network side.
#[derive(Debug)]
pub enum DriverInput {
    /// A consensus message whose signatures the verification pool checked, and the peer
    /// it came from.
    Consensus(ConsensusMessage, PeerId),
    /// The answer to a block fetch: the blocks, or `None` when it failed.
    SyncResponse {
        /// The request it answers.
        token: RequestToken,
        /// Decided blocks with their certificates; `None` when the request failed.
        blocks: Option<Vec<(Block, CommitCertificate)>>,
    },
}

/// A consensus input as logged in the write-ahead log.
#[derive(Debug, Clone, BorshSerialize, BorshDeserialize)]
enum WalEntry {
    Block(Block),
    Proposal(SignedProposal),
    Vote(SignedVote),
    Validity {
        height: Height,
        block_id: Hash,
        valid: bool,
    },
    ProposeValue {
        height: Height,
        round: Round,
        block_id: Hash,
    },
    Timeout {
        kind: u8,
        height: Height,
        round: Round,
    },
}

/// The precommits a commit certificate is made of, as the votes they were.
fn certificate_votes(certificate: &CommitCertificate) -> Vec<SignedVote> {
    certificate
        .signatures
        .iter()
        .map(|s| SignedVote {
            vote: certificate.vote_of(s.validator),
            signature: s.signature,
        })
        .collect()
}

fn timeout_kind_code(kind: TimeoutKind) -> u8 {
    match kind {
        TimeoutKind::Propose => 0,
        TimeoutKind::Prevote => 1,
        TimeoutKind::Precommit => 2,
        TimeoutKind::Commit => 3,
    }
}

fn timeout_kind_of(code: u8) -> Option<TimeoutKind> {
    match code {
        0 => Some(TimeoutKind::Propose),
        1 => Some(TimeoutKind::Prevote),
        2 => Some(TimeoutKind::Precommit),
        3 => Some(TimeoutKind::Commit),
        _ => None,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Channels the driver talks through.
pub struct DriverChannels {
    /// Verified consensus messages and sync results.
    pub inputs: mpsc::Receiver<DriverInput>,
    /// Import notices from the chain worker.
    pub executed: mpsc::UnboundedReceiver<Executed>,
    /// Decided blocks to the chain worker.
    pub chain: crossbeam_channel::Sender<Commit>,
    /// Commands to the network.
    pub network: mpsc::Sender<NetworkCommand>,
}

struct SyncTracker {
    /// When the height being decided last changed.
    height_since: Instant,
    height: Height,
}

/// A peer one height ahead is normal for a few milliseconds (it decided first); behind
/// for this long, the node fetches the block instead of waiting for votes it missed.
pub const SYNC_STALL: Duration = Duration::from_millis(1000);

/// Waiting this long for the proposal of a round (another validator's), a validator
/// re-sends the previous height's commit precommits once, in case the proposer is still
/// deciding that height.
///
/// A validator that lost the previous height's votes (dropped while it was briefly
/// behind, evicted, a reconnecting link) holds that height's proposal and waits for votes
/// nobody sends again: its peers have moved on and wait, silent, for *its* proposal. With
/// nothing ahead to see, it would only sync after [`SYNC_STALL`], and the round would time
/// out first (gossip-flood: 1.3 s round-1 escalations). The precommits are already in
/// every other node's seen cache, so for them the re-send costs one hash each.
pub const PROPOSER_NUDGE_AFTER: Duration = Duration::from_millis(100);

/// The driver.
pub struct Driver {
    shared: Arc<Shared>,
    core: Core,
    rebroadcast_interval: Duration,
    timers: BinaryHeap<Reverse<(Instant, u64, Timeout)>>,
    timer_sequence: u64,
    blocks: HashMap<Hash, Arc<Block>>,
    executed: Executed,
    pending_get_value: Option<(Height, Round)>,
    pending_validation: Vec<(Height, Hash)>,
    wal: Vec<(Height, Vec<u8>)>,
    signing: Option<SigningState>,
    /// What was signed at the current height, by (round, step).
    signed: HashMap<(Round, u8), Hash>,
    own_messages: Vec<ConsensusMessage>,
    /// Counter that makes every re-send a distinct gossip message.
    resends: u64,
    replaying: bool,
    channels: DriverChannels,
    step_started: Instant,
    step: Step,
    prevote_entered: Option<Instant>,
    last_commit_at: Option<Instant>,
    sync: SyncTracker,
    /// Consensus messages that cannot be processed yet.
    pending: PendingBuffer,
    /// Set when the pending buffer should be replayed (height/round advance, import, end of
    /// sync).
    replay_due: bool,
    /// The (height, round) consensus was at after the last input.
    last_slot: (Height, Round),
    fetches: FetchTracker<RequestToken>,
    /// Tokens of sent fetches, not yet known.
    fetch_tokens: Vec<(FetchKey, tokio::sync::oneshot::Receiver<RequestToken>)>,
    /// Failed fetches wait before they are tried again.
    fetch_retry_after: HashMap<FetchKey, Instant>,
    /// Whom each fetch in flight asked.
    fetch_peers: HashMap<FetchKey, PeerId>,
    protections: ProtectionsSection,
    /// A timer this late counts as a stall.
    stall_threshold: Duration,
    /// The certificate of the last height this node decided.
    last_certificate: Option<CommitCertificate>,
    /// When to re-send `last_certificate` if the proposal of (height, round) has not come
    /// ([`PROPOSER_NUDGE_AFTER`]).
    nudge: Option<(Height, Round, Instant)>,
}

impl Driver {
    /// A driver for the height after `executed`.
    pub fn new(
        shared: Arc<Shared>,
        config: &NodeConfig,
        executed: Executed,
        channels: DriverChannels,
    ) -> anyhow::Result<Driver> {
        let core = Core::new(
            config.consensus_core(),
            shared.validators.clone(),
            shared.validator_index,
        );
        let signing = shared.store.signing_state()?;
        let signed = shared
            .store
            .signed_at(executed.height + 1)?
            .into_iter()
            .collect();
        Ok(Driver {
            core,
            rebroadcast_interval: Duration::from_millis(
                config.consensus.rebroadcast_interval_ms.max(100),
            ),
            timers: BinaryHeap::new(),
            timer_sequence: 0,
            blocks: HashMap::new(),
            executed,
            pending_get_value: None,
            pending_validation: Vec::new(),
            wal: Vec::new(),
            signing,
            signed,
            own_messages: Vec::new(),
            resends: 0,
            replaying: false,
            channels,
            step_started: Instant::now(),
            step: Step::Propose,
            prevote_entered: None,
            last_commit_at: None,
            sync: SyncTracker {
                height_since: Instant::now(),
                height: 0,
            },
            pending: PendingBuffer::new(if config.protections.pending_cap {
                PENDING_MAX
            } else {
                usize::MAX
            }),
            replay_due: false,
            last_slot: (0, 0),
            fetches: FetchTracker::new(FETCH_IN_FLIGHT_MAX, FETCH_TIMEOUT),
            fetch_tokens: Vec::new(),
            fetch_retry_after: HashMap::new(),
            fetch_peers: HashMap::new(),
            protections: config.protections.clone(),
            stall_threshold: Duration::from_millis(config.consensus.timeout_propose_ms.max(1)),
            last_certificate: None,
            nudge: None,
            shared,
        })
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Start at the height after the executed one, replaying the WAL of that height.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let height = self.executed.height + 1;
        let entries = self.shared.store.wal(height)?;
        // Replaying from StartHeight on: a GetValue must wait for the logged ProposeValue.
        self.replaying = true;
        self.process(Input::StartHeight(height))?;
        for bytes in entries {
            let entry: WalEntry = decode(&bytes, BLOCK_BYTES_MAX * 2)
                .map_err(|e| anyhow::anyhow!("corrupt WAL entry: {e}"))?;
            let input = match entry {
                WalEntry::Block(block) => {
                    self.blocks.insert(block.id(), Arc::new(block));
                    continue;
                }
                WalEntry::Proposal(p) => Input::Proposal(p),
                WalEntry::Vote(v) => Input::Vote(v),
                WalEntry::Validity {
                    height,
                    block_id,
                    valid,
                } => Input::BlockValidity {
                    height,
                    block_id,
                    valid,
                },
                WalEntry::ProposeValue {
                    height,
                    round,
                    block_id,
                } => {
                    self.pending_get_value = None;
                    Input::ProposeValue {
                        height,
                        round,
                        block_id,
                    }
                }
                WalEntry::Timeout {
                    kind,
                    height,
                    round,
                } => match timeout_kind_of(kind) {
                    Some(kind) => Input::Timeout(Timeout {
                        kind,
                        height,
                        round,
                    }),
                    None => continue,
                },
            };
            self.process(input)?;
        }
        self.replaying = false;
        self.wal.clear(); // Replayed entries are already in the log.
        self.try_get_value()?;
        self.try_validate()?;
        Ok(())
    }

    /// Run until the channels close.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut rebroadcast_at = Instant::now() + self.rebroadcast_interval;
        loop {
            // 1. Timers first.
            let now = Instant::now();
            while let Some(Reverse((deadline, _, timeout))) = self.timers.peek().copied() {
                if deadline > now {
                    break;
                }
                self.timers.pop();
                let lag = now.saturating_duration_since(deadline);
                self.metrics().timer_lag.observe(lag.as_secs_f64());
                if lag > self.stall_threshold {
                    self.metrics().driver_stalls.inc();
                }
                if timeout.kind != TimeoutKind::Commit && self.core.timeout_takes_effect(&timeout) {
                    // Rare in a healthy network and the first thing to read after a round
                    // escalation: who had sent what when this node gave up on the step.
                    tracing::info!(
                        height = timeout.height,
                        round = timeout.round,
                        kind = ?timeout.kind,
                        lag_ms = lag.as_millis(),
                        view = %self.core.round_view(timeout.round),
                        "consensus timeout"
                    );
                }
                self.log(&WalEntry::Timeout {
                    kind: timeout_kind_code(timeout.kind),
                    height: timeout.height,
                    round: timeout.round,
                });
                self.process(Input::Timeout(timeout))?;
            }
            if self.nudge.is_some_and(|(_, _, at)| at <= now) {
                self.nudge_proposer();
            }
            // 2. Imports.
            while let Ok(executed) = self.channels.executed.try_recv() {
                self.on_executed(executed)?;
            }
            // 3. A bounded number of network inputs.
            let bound = if self.protections.bounded_drain {
                DRIVER_INPUTS_PER_TURN
            } else {
                usize::MAX
            };
            let mut taken = 0;
            while taken < bound {
                match self.channels.inputs.try_recv() {
                    Ok(input) => self.on_input(input)?,
                    Err(_) => break,
                }
                taken += 1;
            }
            if taken > 0 {
                self.metrics().driver_turn_inputs.observe(taken as f64);
            }
            self.replay_pending()?;
            self.metrics().depth("driver", self.channels.inputs.len());
            if Instant::now() >= rebroadcast_at {
                self.rebroadcast();
                rebroadcast_at = Instant::now() + self.rebroadcast_interval;
            }
            self.flush_wal()?;
            self.request_blocks();
            self.update_sync_state();
            // 4. Wait for the next thing to do.
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((deadline, _, _))| *deadline)
                .unwrap_or(rebroadcast_at)
                .min(rebroadcast_at)
                .min(self.nudge.map_or(rebroadcast_at, |(_, _, at)| at))
                .min(Instant::now() + SYNC_STALL);
            if !self.channels.inputs.is_empty() {
                continue;
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(next_timer.into()) => {}
                executed = self.channels.executed.recv() => match executed {
                    Some(executed) => self.on_executed(executed)?,
                    None => return Ok(()),
                },
                input = self.channels.inputs.recv() => match input {
                    Some(input) => self.on_input(input)?,
                    None => return Ok(()),
                },
            }
        }
    }

    fn on_input(&mut self, input: DriverInput) -> anyhow::Result<()> {
        match input {
            DriverInput::Consensus(message, from) => {
                let (height, _) = pending::slot(&message);
                let current = self.core.height();
                if height < current {
                    // Decided already: the core would drop it, but only after the WAL had
                    // logged it (and a proposal's block had been kept).
                    self.count_dropped(DropReason::PastHeight);
                    return Ok(());
                }
                let syncing =
                    self.protections.sync_gating && self.shared.sync_state() == SyncState::Syncing;
                if height > current {
                    self.buffer(message, BufferReason::FutureHeight);
                    return Ok(());
                }
                if height == current && syncing {
                    self.buffer(message, BufferReason::Syncing);
                    return Ok(());
                }
                if !self.protections.fetch_cap {
                    self.fetch_for_every_unknown_vote(&message, from);
                }
                self.consume(message)
            }
            DriverInput::SyncResponse { token, blocks } => {
                self.resolve_fetch_tokens();
                if let Some(key) = self.fetches.finish(token) {
                    let end = if blocks.is_some() {
                        FetchEnd::Answered
                    } else {
                        self.fetch_retry_after
                            .insert(key, Instant::now() + FETCH_RETRY_BACKOFF);
                        FetchEnd::Failed
                    };
                    self.fetch_ended(key, end);
                }
                match blocks {
                    Some(blocks) => self.on_sync_blocks(blocks),
                    None => Ok(()),
                }
            }
        }
    }

    /// Put `message` into the pending buffer (evicting the oldest when full).
    fn buffer(&mut self, message: ConsensusMessage, reason: BufferReason) {
        let kind = pending::kind(&message);
        self.metrics()
            .pending_buffered
            .get_or_create(&Metrics::labels(&[
                ("kind", kind),
                ("reason", reason.name()),
            ]))
            .inc();
        if let Some(evicted) = self.pending.push(message) {
            self.metrics()
                .pending_evicted
                .get_or_create(&Metrics::label("kind", pending::kind(&evicted)))
                .inc();
        }
        Metrics::set_with_max(
            &self.metrics().pending_size,
            &self.metrics().pending_size_max,
            self.pending.len(),
        );
    }

    /// Replay the pending buffer if consensus moved since the last replay.
    fn replay_pending(&mut self) -> anyhow::Result<()> {
        while std::mem::take(&mut self.replay_due) && !self.pending.is_empty() {
            let height = self.core.height();
            let syncing =
                self.protections.sync_gating && self.shared.sync_state() == SyncState::Syncing;
            let (ready, outcomes) = self
                .pending
                .replay(|m| pending::replay_outcome(m, height, syncing));
            for (kind, outcome) in outcomes {
                self.metrics()
                    .pending_replayed
                    .get_or_create(&Metrics::labels(&[
                        ("kind", kind),
                        ("outcome", outcome.name()),
                    ]))
                    .inc();
            }
            for message in ready {
                self.consume(message)?;
            }
        }
        self.replay_due = false;
        Metrics::set_with_max(
            &self.metrics().pending_size,
            &self.metrics().pending_size_max,
            self.pending.len(),
        );
        Ok(())
    }

    /// Hand a consensus message of the current height to the core.
    fn consume(&mut self, message: ConsensusMessage) -> anyhow::Result<()> {
        match message {
            ConsensusMessage::Vote(vote) => {
                self.log(&WalEntry::Vote(vote));
                self.process(Input::Vote(vote))
            }
            ConsensusMessage::Proposal { proposal, block } => {
                let block_id = block.id();
                if block_id != proposal.proposal.block_id {
                    return Ok(());
                }
                let txs = block.txs.len();
                if !self.blocks.contains_key(&block_id) {
                    self.log(&WalEntry::Block((*block).clone()));
                    self.blocks.insert(block_id, Arc::from(block));
                }
                tracing::debug!(
                    height = proposal.proposal.height,
                    round = proposal.proposal.round,
                    proposer = proposal.proposal.proposer,
                    txs,
                    "proposal received"
                );
                self.log(&WalEntry::Proposal(proposal));
                self.process(Input::Proposal(proposal))
            }
        }
    }

    fn log(&mut self, entry: &WalEntry) {
        if !self.replaying {
            self.wal.push((self.core.height(), encode(entry)));
        }
    }

    /// Write the buffered WAL entries once [`WAL_BUFFER_MAX`] are waiting. Until then they
    /// wait for the next signature, whose fsynced record carries them
    /// ([`Store::record_signing`](basalt_storage::Store::record_signing)): a non-durable
    /// append is lost in a crash anyway unless a durable commit follows it, and only
    /// signing commits the consensus database durably, so a redb transaction per driver
    /// turn (~10 per height) bought nothing a restart could see.
    fn flush_wal(&mut self) -> anyhow::Result<()> {
        if self.wal.len() >= WAL_BUFFER_MAX {
            let entries = std::mem::take(&mut self.wal);
            self.shared.store.wal_append(&entries)?;
        }
        Ok(())
    }

    /// Feed one input to the core and carry out everything that follows.
    fn process(&mut self, input: Input) -> anyhow::Result<()> {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            for output in self.core.step(input) {
                self.on_output(output, &mut queue)?;
            }
        }
        let slot = (self.core.height(), self.core.round());
        if slot != self.last_slot {
            if slot.0 != self.last_slot.0 {
                self.on_height_changed(slot.0);
            }
            self.last_slot = slot;
            self.replay_due = true;
        }
        self.shared
            .consensus_height
            .store(self.core.height(), Ordering::Relaxed);
        Ok(())
    }

    /// Fetches for earlier heights are no longer needed.
    fn on_height_changed(&mut self, height: Height) {
        self.fetch_retry_after.clear();
        let cancelled = self
            .fetches
            .cancel_unless(|key| matches!(key, FetchKey::Range(from) if from >= height));
        for key in cancelled {
            self.fetch_ended(key, FetchEnd::Cancelled);
        }
    }

    fn on_output(&mut self, output: Output, queue: &mut VecDeque<Input>) -> anyhow::Result<()> {
        match output {
            Output::Vote(vote) => {
                if let Some(signed) = self.sign_vote(vote)? {
                    self.publish(ConsensusMessage::Vote(signed));
                    queue.push_back(Input::Vote(signed));
                }
            }
            Output::Propose(proposal) => {
                let Some(block) = self.blocks.get(&proposal.block_id).cloned() else {
                    return Ok(());
                };
                if let Some(signed) = self.sign_proposal(proposal)? {
                    self.publish(ConsensusMessage::Proposal {
                        proposal: signed,
                        block: Box::new((*block).clone()),
                    });
                    // A re-proposal is accepted only by validators that saw its polka:
                    // send the prevotes along.
                    if let Some(valid_round) = proposal.pol_round {
                        self.relay_polka(valid_round, proposal.block_id);
                    }
                    queue.push_back(Input::Proposal(signed));
                }
            }
            Output::GetValue { height, round } => {
                self.pending_get_value = Some((height, round));
                if !self.replaying {
                    if let Some(input) = self.build_value()? {
                        queue.push_back(input);
                    }
                }
            }
            Output::ValidateBlock {
                height, block_id, ..
            } => {
                self.pending_validation.push((height, block_id));
                if !self.replaying {
                    queue.extend(self.validations());
                }
            }
            Output::ScheduleTimeout {
                timeout,
                duration_ms,
            } => {
                self.timer_sequence += 1;
                let deadline = Instant::now() + Duration::from_millis(duration_ms);
                self.timers
                    .push(Reverse((deadline, self.timer_sequence, timeout)));
            }
            Output::Decide(certificate) => self.on_decide(certificate),
            Output::Evidence(evidence) => {
                self.metrics().evidence.inc();
                tracing::warn!(offender = evidence.offender(), "equivocation evidence");
            }
            Output::NewRound { height, round } => {
                let proposer = self.shared.validators.proposer(height, round);
                self.nudge = (self.shared.validator_index != Some(proposer))
                    .then(|| (height, round, Instant::now() + PROPOSER_NUDGE_AFTER));
                self.shared.consensus_round.store(round, Ordering::Relaxed);
                self.metrics().round.set(i64::from(round));
            }
            Output::StepChanged { step, .. } => {
                let now = Instant::now();
                self.metrics()
                    .step_duration
                    .get_or_create(&Metrics::label("step", self.step.name()))
                    .observe(now.duration_since(self.step_started).as_secs_f64());
                self.step = step;
                self.step_started = now;
                if step == Step::Prevote {
                    self.prevote_entered = Some(now);
                }
            }
            Output::PrecommitQuorum { .. } => {
                if let Some(entered) = self.prevote_entered.take() {
                    self.metrics()
                        .precommit_latency
                        .observe(entered.elapsed().as_secs_f64());
                }
            }
            Output::Dropped(reason) => {
                if reason != DropReason::Duplicate {
                    self.count_dropped(reason);
                }
            }
        }
        Ok(())
    }

    /// `basalt_consensus_dropped_inputs_total{reason}`.
    fn count_dropped(&self, reason: DropReason) {
        self.metrics()
            .consensus_dropped
            .get_or_create(&Metrics::label("reason", &format!("{reason:?}")))
            .inc();
    }

    // ----- signing with the double-sign guard ---------------------------------------

    /// Allow signing (height, round, step, value) only if it is after everything signed
    /// before, or exactly the same message again. The new state is fsynced (with the WAL
    /// before it) before this returns true.
    fn guard(&mut self, next: SigningState) -> anyhow::Result<bool> {
        if self.signing.is_some_and(|last| last.height < next.height) {
            self.signed.clear();
        }
        let same_slot = self.signed.get(&(next.round, next.step)).copied();
        match crate::signer::decide(self.signing, same_slot, next) {
            crate::signer::Decision::Sign => {
                let started = Instant::now();
                let wal = std::mem::take(&mut self.wal);
                self.shared.store.record_signing(&wal, &next)?;
                self.metrics()
                    .sign_record_duration
                    .observe(started.elapsed().as_secs_f64());
                self.signing = Some(next);
                self.signed.insert((next.round, next.step), next.value);
                Ok(true)
            }
            crate::signer::Decision::SameAgain => Ok(true),
            crate::signer::Decision::Refuse => {
                self.metrics().sign_refusals.inc();
                tracing::warn!(?next, last = ?self.signing, "refused to sign");
                Ok(false)
            }
        }
    }

    fn sign_vote(&mut self, vote: Vote) -> anyhow::Result<Option<SignedVote>> {
        let step = match vote.kind {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        };
        let state = SigningState {
            height: vote.height,
            round: vote.round,
            step,
            value: vote.block_id.unwrap_or(Hash::ZERO),
        };
        if !self.guard(state)? {
            return Ok(None);
        }
        Ok(Some(vote.sign(&self.shared.keypair)))
    }

    fn sign_proposal(&mut self, proposal: Proposal) -> anyhow::Result<Option<SignedProposal>> {
        let state = SigningState {
            height: proposal.height,
            round: proposal.round,
            step: 0,
            value: proposal.block_id,
        };
        if !self.guard(state)? {
            return Ok(None);
        }
        Ok(Some(proposal.sign(&self.shared.keypair)))
    }

    fn publish(&mut self, message: ConsensusMessage) {
        self.own_messages.push(message.clone());
        self.send(message, 0);
    }

    /// Publish `message` with re-send number `resend` (0 = first send).
    fn send(&mut self, message: ConsensusMessage, resend: u64) {
        let data = ConsensusGossip { resend, message }.to_bytes();
        if self
            .channels
            .network
            .try_send(NetworkCommand::Publish {
                topic: Topic::Consensus,
                data,
            })
            .is_err()
        {
            self.metrics().dropped("network_commands");
        }
    }

    /// Publish the prevotes that make a polka for `block_id` in `round` (others' included).
    fn relay_polka(&mut self, round: Round, block_id: Hash) {
        for vote in self
            .core
            .votes_for(round, VoteKind::Prevote, Some(block_id))
        {
            self.resends += 1;
            self.send(ConsensusMessage::Vote(vote), self.resends);
        }
    }

    /// Re-send this node's messages of the current height, and the polka behind its valid
    /// value: gossip is lost across restarts and disconnections, and a validator that
    /// missed a polka cannot accept the re-proposal that ends a locked round.
    fn rebroadcast(&mut self) {
        if let Some((valid_round, block_id)) = self.core.valid() {
            self.relay_polka(valid_round, block_id);
        }
        for message in self.own_messages.clone() {
            self.resends += 1;
            self.send(message, self.resends);
        }
    }

    /// The proposal of the current round is [`PROPOSER_NUDGE_AFTER`] late: re-send the
    /// previous height's commit precommits once, in case its proposer is still deciding it.
    fn nudge_proposer(&mut self) {
        let Some((height, round, _)) = self.nudge.take() else {
            return;
        };
        if self.core.height() != height
            || self.core.round() != round
            || self.core.current_step() != Step::Propose
        {
            return;
        }
        let Some(certificate) = self
            .last_certificate
            .clone()
            .filter(|c| c.height.checked_add(1) == Some(height))
        else {
            return;
        };
        self.metrics().proposer_nudges.inc();
        for vote in certificate_votes(&certificate) {
            self.resends += 1;
            self.send(ConsensusMessage::Vote(vote), self.resends);
        }
    }

    // ----- building and validating blocks ------------------------------------------

    /// Answer a pending GetValue once the parent is executed.
    fn try_get_value(&mut self) -> anyhow::Result<()> {
        if let Some(input) = self.build_value()? {
            self.process(input)?;
        }
        Ok(())
    }

    fn build_value(&mut self) -> anyhow::Result<Option<Input>> {
        let Some((height, round)) = self.pending_get_value else {
            return Ok(None);
        };
        if height != self.core.height() || round != self.core.round() {
            self.pending_get_value = None;
            return Ok(None);
        }
        if self.executed.height + 1 != height {
            return Ok(None); // The parent is still being executed.
        }
        self.pending_get_value = None;
        let app = self.shared.app.load();
        let txs = self
            .shared
            .mempool()
            .reap(|sender| app.account(sender).nonce);
        let last_commit = self.executed.certificate.clone();
        let header = BlockHeader {
            height,
            round,
            proposer: self.shared.validator_index.unwrap_or_default(),
            parent_hash: self.executed.block_id,
            state_root: self.executed.state_root,
            txs_root: txs_root(&txs),
            time_ms: now_ms().max(self.executed.time_ms + 1),
            last_commit_hash: last_commit
                .as_ref()
                .map_or(Hash::ZERO, CommitCertificate::hash),
        };
        let block = Block {
            header,
            txs: BoundedVec::new(txs).unwrap_or_default(),
            last_commit,
        };
        let block_id = block.id();
        tracing::debug!(height, round, txs = block.txs.len(), "proposing");
        self.log(&WalEntry::Block(block.clone()));
        self.blocks.insert(block_id, Arc::new(block));
        self.log(&WalEntry::ProposeValue {
            height,
            round,
            block_id,
        });
        Ok(Some(Input::ProposeValue {
            height,
            round,
            block_id,
        }))
    }

    fn try_validate(&mut self) -> anyhow::Result<()> {
        for input in self.validations() {
            self.process(input)?;
        }
        Ok(())
    }

    /// Verdicts for pending validations whose parent is executed.
    fn validations(&mut self) -> Vec<Input> {
        let height = self.core.height();
        let ready = self.executed.height + 1 == height;
        let mut inputs = Vec::new();
        let pending = std::mem::take(&mut self.pending_validation);
        for (block_height, block_id) in pending {
            if block_height != height {
                continue;
            }
            if !ready {
                self.pending_validation.push((block_height, block_id));
                continue;
            }
            let valid = self
                .blocks
                .get(&block_id)
                .is_some_and(|block| self.is_valid(block));
            self.log(&WalEntry::Validity {
                height,
                block_id,
                valid,
            });
            inputs.push(Input::BlockValidity {
                height,
                block_id,
                valid,
            });
        }
        inputs
    }

    /// Block validity: parent, proposer, time, state root, body, last commit, and every
    /// transaction's chain id. Signatures were checked by the verification pool; nonces
    /// and balances are the application's (a failing transaction gets a failing receipt).
    fn is_valid(&self, block: &Block) -> bool {
        let header = &block.header;
        let parent = &self.executed;
        let commit_ok = match (&block.last_commit, &parent.certificate) {
            (None, None) => parent.height == 0,
            (Some(commit), Some(_)) => {
                commit.height == parent.height
                    && commit.block_id == parent.block_id
                    && commit
                        .verify(self.shared.validators.validators(), false)
                        .is_ok()
            }
            _ => false,
        };
        let chain_id = self.shared.chain_id.as_str();
        header.height == parent.height + 1
            && header.parent_hash == parent.block_id
            && header.state_root == parent.state_root
            && header.time_ms > parent.time_ms
            && header.time_ms <= now_ms() + BLOCK_TIME_DRIFT_MAX_MS
            && header.proposer == self.shared.validators.proposer(header.height, header.round)
            && block.body_matches_header()
            && commit_ok
            && block
                .txs
                .iter()
                .all(|tx| tx.body.chain_id.as_str() == chain_id)
    }

    // ----- commits, imports, sync ----------------------------------------------------

    fn on_decide(&mut self, certificate: CommitCertificate) {
        let Some(block) = self.blocks.get(&certificate.block_id).cloned() else {
            tracing::error!(
                height = certificate.height,
                "decided a block this node does not hold"
            );
            return;
        };
        let now = Instant::now();
        if let Some(entered) = self.prevote_entered.take() {
            // Deciding implies 2f+1 precommits: the precommit latency ends here if the
            // quorum was not already observed.
            self.metrics()
                .precommit_latency
                .observe(now.duration_since(entered).as_secs_f64());
        }
        if let Some(last) = self.last_commit_at.replace(now) {
            let interval = now.duration_since(last);
            self.metrics()
                .block_interval
                .observe(interval.as_secs_f64());
            self.shared
                .admission
                .observe_height(interval, certificate.round, block.txs.len());
        }
        if certificate.round > 0 {
            self.metrics().round_escalations.inc();
        }
        tracing::debug!(
            height = certificate.height,
            round = certificate.round,
            "decided"
        );
        let height = certificate.height;
        self.last_certificate = Some(certificate.clone());
        self.blocks.retain(|_, b| b.header.height > height);
        self.own_messages.clear();
        if self
            .channels
            .chain
            .send(Commit { block, certificate })
            .is_err()
        {
            tracing::error!("chain worker gone");
        }
    }

    fn on_executed(&mut self, executed: Executed) -> anyhow::Result<()> {
        if executed.height <= self.executed.height {
            return Ok(());
        }
        tracing::debug!(height = executed.height, "parent executed");
        self.executed = executed;
        self.replay_due = true;
        self.try_get_value()?;
        self.try_validate()
    }

    /// Fetch what consensus cannot get from gossip: decided blocks by range when a peer is
    /// two heights ahead (or one height ahead for [`SYNC_STALL`]), and by hash a block that
    /// 2f+1 precommits decided but whose proposal never arrived. Every fetch goes through
    /// the tracker: de-duplicated, capped, timed out.
    fn request_blocks(&mut self) {
        let now = Instant::now();
        for key in self.fetches.expire(now) {
            self.fetch_tokens.retain(|(k, _)| *k != key);
            self.fetch_retry_after
                .insert(key, now + FETCH_RETRY_BACKOFF);
            self.fetch_ended(key, FetchEnd::TimedOut);
        }
        let Some((peer, best)) = self.shared.peer_ahead() else {
            return;
        };
        let height = self.core.height();
        if let Some((_, block_id)) = self.core.decided_without_proposal() {
            if !self.blocks.contains_key(&block_id) {
                self.fetch(
                    FetchKey::ByHash(block_id),
                    peer,
                    SyncRequest::BlockByHash(block_id),
                );
            }
        }
        if self.sync.height != height {
            self.sync.height = height;
            self.sync.height_since = now;
        }
        let behind =
            best >= height + 2 || (best > height && self.sync.height_since.elapsed() >= SYNC_STALL);
        if behind {
            let request = SyncRequest::BlocksByRange {
                from_height: height,
                count: SYNC_BLOCKS_PER_REQUEST,
            };
            self.fetch(FetchKey::Range(height), peer, request);
        }
    }

    /// Start a fetch if the tracker allows it; refusals are counted, never queued.
    fn fetch(&mut self, key: FetchKey, peer: PeerId, request: SyncRequest) {
        if self
            .fetch_retry_after
            .get(&key)
            .is_some_and(|after| Instant::now() < *after)
        {
            return;
        }
        if let Err(refusal) = self.fetches.start(key, Instant::now()) {
            // A duplicate of a fetch in flight is the normal case (asked again each turn);
            // only cap refusals say something about load.
            if refusal == crate::fetch::Refusal::Cap {
                self.metrics()
                    .fetch_refused
                    .get_or_create(&Metrics::labels(&[
                        ("kind", key.kind()),
                        ("reason", refusal.name()),
                    ]))
                    .inc();
            }
            return;
        }
        let (reply, token) = tokio::sync::oneshot::channel();
        let command = NetworkCommand::Request {
            peer,
            request,
            reply,
        };
        if self.channels.network.try_send(command).is_err() {
            self.fetches.abandon(key);
            self.metrics().dropped("network_commands");
            return;
        }
        tracing::debug!(%peer, ?key, "fetch");
        self.fetch_tokens.push((key, token));
        self.fetch_peers.insert(key, peer);
        self.metrics()
            .fetch_started
            .get_or_create(&Metrics::label("kind", key.kind()))
            .inc();
        Metrics::set_with_max(
            &self.metrics().fetch_in_flight,
            &self.metrics().fetch_in_flight_max,
            self.fetches.len(),
        );
    }

    /// Learn the tokens of sent fetches (the p2p task hands them back once it sent them).
    fn resolve_fetch_tokens(&mut self) {
        let mut unresolved = Vec::new();
        for (key, mut receiver) in std::mem::take(&mut self.fetch_tokens) {
            match receiver.try_recv() {
                Ok(token) => self.fetches.set_token(key, token),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    unresolved.push((key, receiver));
                }
                // The p2p task is gone; the fetch times out.
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {}
            }
        }
        self.fetch_tokens = unresolved;
    }

    fn fetch_ended(&mut self, key: FetchKey, end: FetchEnd) {
        if let Some(peer) = self.fetch_peers.remove(&key) {
            if matches!(end, FetchEnd::Failed | FetchEnd::TimedOut) {
                self.shared.tips().peer_failed(peer, Instant::now());
            }
        }
        self.metrics()
            .fetch_ended
            .get_or_create(&Metrics::labels(&[
                ("kind", key.kind()),
                ("outcome", end.name()),
            ]))
            .inc();
        Metrics::set_with_max(
            &self.metrics().fetch_in_flight,
            &self.metrics().fetch_in_flight_max,
            self.fetches.len(),
        );
    }

    /// Protections off (`fetch_cap = false`): seed 001's behaviour, one untracked fetch per
    /// vote for a block this node does not hold. Only for before/after measurements.
    fn fetch_for_every_unknown_vote(&mut self, message: &ConsensusMessage, from: PeerId) {
        let ConsensusMessage::Vote(vote) = message else {
            return;
        };
        let Some(block_id) = vote.vote.block_id else {
            return;
        };
        if self.blocks.contains_key(&block_id) {
            return;
        }
        let (reply, _) = tokio::sync::oneshot::channel();
        let command = NetworkCommand::Request {
            peer: from,
            request: SyncRequest::BlockByHash(block_id),
            reply,
        };
        if self.channels.network.try_send(command).is_err() {
            self.metrics().dropped("network_commands");
            return;
        }
        self.metrics()
            .fetch_started
            .get_or_create(&Metrics::label("kind", "hash_untracked"))
            .inc();
    }

    fn on_sync_blocks(&mut self, blocks: Vec<(Block, CommitCertificate)>) -> anyhow::Result<()> {
        tracing::debug!(
            blocks = blocks.len(),
            height = self.core.height(),
            "sync response"
        );
        for (block, certificate) in blocks {
            let height = block.header.height;
            if height != self.core.height() {
                continue;
            }
            let genuine = certificate.height == height
                && certificate.block_id == block.id()
                && block.body_matches_header()
                && certificate
                    .verify(self.shared.validators.validators(), true)
                    .is_ok();
            if !genuine {
                tracing::warn!(height, "sync returned a block without a valid certificate");
                break;
            }
            self.blocks.insert(block.id(), Arc::new(block));
            self.metrics().synced_blocks.inc();
            self.process(Input::SyncedCommit(certificate))?;
        }
        self.request_blocks();
        Ok(())
    }

    fn update_sync_state(&mut self) {
        let state = if self.shared.peers.load(Ordering::Relaxed) == 0 {
            SyncState::Idle
        } else if self
            .shared
            .peer_ahead()
            .is_some_and(|(_, best)| best > self.core.height() + 1)
        {
            SyncState::Syncing
        } else {
            SyncState::Synced
        };
        if state != self.shared.sync_state() {
            self.shared.set_sync_state(state);
            self.replay_due = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::Keypair;

    fn vote(keys: &[Keypair], kind: VoteKind, validator: u16, block_id: Hash) -> DriverInput {
        let vote = Vote {
            kind,
            height: 1,
            round: 0,
            block_id: Some(block_id),
            validator,
        }
        .sign(&keys[usize::from(validator)]);
        DriverInput::Consensus(ConsensusMessage::Vote(vote), PeerId::random())
    }

    /// Also: a message for a decided height stays out of the WAL.
    #[test]
    fn a_late_proposal_makes_the_node_resend_the_last_commit_once() {
        let dir = std::env::temp_dir().join(format!("basalt-nudge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let shared = crate::state::test_shared(&dir, &keys, 0);
        assert_ne!(shared.validators.proposer(1, 0), 0);
        assert_ne!(shared.validators.proposer(2, 0), 0);
        let config = NodeConfig::default();
        assert!(config.consensus.timeout_propose_ms >= 1000);
        let genesis = Executed {
            height: 0,
            block_id: Hash::ZERO,
            time_ms: 1,
            state_root: shared.app.load().state_root(),
            certificate: None,
        };
        let (inputs, driver_inputs) = mpsc::channel(64);
        let (executed, executed_inputs) = mpsc::unbounded_channel();
        let (chain, commits) = crossbeam_channel::bounded(4);
        let (network, mut published) = mpsc::channel(1024);
        let mut driver = Driver::new(
            shared.clone(),
            &config,
            genesis.clone(),
            DriverChannels {
                inputs: driver_inputs,
                executed: executed_inputs,
                chain,
                network,
            },
        )
        .unwrap();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    driver.start()?;
                    driver.run().await
                })
        });

        // Height 1: a proposal and the other validators' votes for it.
        let proposer = shared.validators.proposer(1, 0);
        let block = Block {
            header: BlockHeader {
                height: 1,
                round: 0,
                proposer,
                parent_hash: genesis.block_id,
                state_root: genesis.state_root,
                txs_root: txs_root(&[]),
                time_ms: now_ms(),
                last_commit_hash: Hash::ZERO,
            },
            txs: BoundedVec::new(Vec::new()).unwrap(),
            last_commit: None,
        };
        let block_id = block.id();
        let proposal = Proposal {
            height: 1,
            round: 0,
            pol_round: None,
            block_id,
            proposer,
        }
        .sign(&keys[usize::from(proposer)]);
        let message = ConsensusMessage::Proposal {
            proposal,
            block: Box::new(block),
        };
        inputs
            .blocking_send(DriverInput::Consensus(message, PeerId::random()))
            .unwrap();
        for kind in [VoteKind::Prevote, VoteKind::Precommit] {
            for validator in 1..4 {
                inputs
                    .blocking_send(vote(&keys, kind, validator, block_id))
                    .unwrap();
            }
        }
        // This test is the chain worker: it reports the decided block executed.
        let commit = commits
            .recv_timeout(Duration::from_secs(10))
            .expect("height 1 decided");
        executed
            .send(Executed {
                height: 1,
                block_id,
                time_ms: commit.block.header.time_ms,
                state_root: genesis.state_root,
                certificate: Some(commit.certificate.clone()),
            })
            .unwrap();

        // Height 2's proposer stays silent. Until shortly before the propose timeout, the
        // node re-sends height 1's commit precommits, once.
        let until = Instant::now() + Duration::from_millis(config.consensus.timeout_propose_ms)
            - Duration::from_millis(200);
        let mut resent = Vec::new();
        while Instant::now() < until {
            match published.try_recv() {
                Ok(NetworkCommand::Publish { data, .. }) => {
                    let gossip = ConsensusGossip::from_bytes(&data).unwrap();
                    if let ConsensusMessage::Vote(vote) = gossip.message {
                        if gossip.resend > 0 && vote.vote.height == 1 {
                            resent.push(vote);
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(
            resent,
            certificate_votes(&commit.certificate),
            "height 1's precommits re-sent exactly once"
        );
        assert!(resent.len() >= 3);
        assert!(resent
            .iter()
            .all(|v| v.verify(shared.validators.validators())));
        assert_eq!(shared.metrics.proposer_nudges.get(), 1);

        // A vote for the decided height 1 is dropped before the WAL: the core has no use
        // for it (under gossip-flood ~700 such messages a second were logged). The node's
        // own nil prevote at the propose timeout writes height 2's WAL.
        let late = Vote {
            kind: VoteKind::Prevote,
            height: 1,
            round: 1,
            block_id: None,
            validator: 1,
        }
        .sign(&keys[1]);
        inputs
            .blocking_send(DriverInput::Consensus(
                ConsensusMessage::Vote(late),
                PeerId::random(),
            ))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut prevoted = false;
        while !prevoted && Instant::now() < deadline {
            match published.try_recv() {
                Ok(NetworkCommand::Publish { data, .. }) => {
                    let gossip = ConsensusGossip::from_bytes(&data).unwrap();
                    prevoted = matches!(gossip.message, ConsensusMessage::Vote(v)
                        if v.vote.height == 2 && v.vote.kind == VoteKind::Prevote);
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert!(prevoted, "nil prevote at height 2's propose timeout");
        let logged: Vec<WalEntry> = shared
            .store
            .wal(2)
            .unwrap()
            .iter()
            .map(|bytes| decode(bytes, BLOCK_BYTES_MAX * 2).unwrap())
            .collect();
        assert!(!logged.is_empty(), "height 2's WAL is written");
        assert!(
            !logged
                .iter()
                .any(|entry| matches!(entry, WalEntry::Vote(v) if v.vote.height == 1)),
            "a decided height's vote is not logged"
        );

        drop(inputs);
        drop(executed);
        thread.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
