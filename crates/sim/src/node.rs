//! One simulated validator: the host around the consensus core and the application.
//!
//! The host does what the node will do: signs through a guard that refuses to sign two
//! different messages for one (height, round, kind), keeps a write-ahead log of consensus
//! inputs for the current height so a restart reconstructs its locks, builds and validates
//! blocks, executes decided blocks, and catches up by sync when it falls behind.

use crate::network::Message;
use basalt_app::App;
use basalt_consensus::{Config, Core, Input, Output, Timeout, ValidatorSet};
use basalt_types::block::txs_root;
use basalt_types::limits::BLOCK_TXS_MAX;
use basalt_types::{
    sha256, Block, BlockHeader, BoundedVec, CommitCertificate, Hash, Height, Keypair, Proposal,
    Round, SignedProposal, SignedTx, SignedVote, ValidatorIndex, Vote, VoteKind,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// How a simulated validator behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows the protocol.
    Honest,
    /// Proposes two different blocks to two halves of the network, and sends conflicting
    /// votes (for every block it has seen at the height, and nil) to random peers.
    Equivocator,
    /// Sends nothing.
    Silent,
    /// One of two copies of the same key, each following the protocol on its own view.
    Twin,
}

impl Role {
    pub fn is_honest(self) -> bool {
        self == Role::Honest
    }
}

/// What a node asks the world to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Send to every other node.
    Broadcast(Message),
    /// Send to these nodes.
    To(Vec<usize>, Message),
    /// Fire this timeout after a delay.
    Timer(u64, Timeout),
    /// The node decided `block_id` at `height` and its state root after it is `root`.
    Decided {
        height: Height,
        block_id: Hash,
        root: Hash,
    },
    /// The node signed this vote (for the double-sign checker).
    Signed(Vote),
    /// The node's signing guard refused to sign a conflicting message.
    SignRefused,
}

/// Durable state: what survives a crash (the node's storage).
#[derive(Debug, Clone, Default)]
struct Durable {
    /// Decided blocks with their certificates; `chain[i]` is height i+1.
    chain: Vec<(Arc<Block>, CommitCertificate)>,
    /// Signing state: what was signed per (height, round, kind); kind 2 = proposal.
    signed: BTreeMap<(Height, Round, u8), Hash>,
    /// Consensus inputs of the current height, replayed after a restart.
    wal: Vec<Input>,
    /// Blocks received or built at the current height (persisted with the proposal).
    blocks: BTreeMap<Hash, Arc<Block>>,
}

/// Static facts shared by all nodes of a run.
pub struct Shared {
    pub validators: ValidatorSet,
    pub consensus: Config,
    pub node_count: usize,
    /// The application at genesis, cloned at every (re)start.
    pub genesis_app: App,
}

/// Re-send own messages at most this often; losses are repaired at this pace.
pub const REBROADCAST_MS: u64 = 150;
/// Ask a peer for missing blocks at most this often.
const SYNC_REQUEST_INTERVAL_MS: u64 = 100;
/// Most blocks in one sync response.
const SYNC_BATCH_MAX: usize = 16;
/// Most transactions a simulated proposer puts in a block.
const SIM_BLOCK_TXS_MAX: usize = 32;

pub struct Node {
    pub id: usize,
    pub index: ValidatorIndex,
    pub role: Role,
    pub up: bool,
    pub incarnation: u32,
    /// Test plant: this node's state root is perturbed (a non-deterministic app).
    pub planted_nondeterminism: bool,
    /// Test plant: a restart forgets the signing state and the write-ahead log.
    pub planted_amnesia: bool,
    key: Keypair,
    durable: Durable,
    core: Core,
    app: App,
    my_votes: Vec<SignedVote>,
    my_proposal: Option<(SignedProposal, Arc<Block>)>,
    last_sync_request_ms: Option<u64>,
    pub outbox: Vec<Outgoing>,
    pub app_errors: u64,
}

impl Node {
    pub fn new(
        id: usize,
        index: ValidatorIndex,
        role: Role,
        key: Keypair,
        shared: &Shared,
    ) -> Node {
        Node {
            id,
            index,
            role,
            up: true,
            incarnation: 0,
            planted_nondeterminism: false,
            planted_amnesia: false,
            key,
            durable: Durable::default(),
            core: Core::new(shared.consensus, shared.validators.clone(), Some(index)),
            app: shared.genesis_app.clone(),
            my_votes: Vec::new(),
            my_proposal: None,
            last_sync_request_ms: None,
            outbox: Vec::new(),
            app_errors: 0,
        }
    }

    /// One line for diagnostics: role, liveness, chain height, round, step.
    pub fn describe(&self) -> String {
        format!(
            "node {} (validator {}, {:?}, up {}): height {} round {} step {:?}, wal {}",
            self.id,
            self.index,
            self.role,
            self.up,
            self.height(),
            self.core.round(),
            self.core.current_step(),
            self.durable.wal.len()
        )
    }

    pub fn height(&self) -> Height {
        self.durable.chain.len() as Height
    }

    fn state_root(&self) -> Hash {
        let root = self.app.state_root();
        if self.planted_nondeterminism && self.height() > 0 {
            sha256(&[&root.0[..], b"planted"].concat())
        } else {
            root
        }
    }

    /// Start (or restart) from durable state: rebuild the app from the decided chain, then
    /// replay the write-ahead log into a fresh core.
    pub fn start(&mut self, shared: &Shared, pool: &[SignedTx], now: u64, rng: &mut ChaCha8Rng) {
        self.up = true;
        self.core = Core::new(
            shared.consensus,
            shared.validators.clone(),
            Some(self.index),
        );
        self.my_votes.clear();
        self.my_proposal = None;
        self.last_sync_request_ms = None;
        self.app = shared.genesis_app.clone();
        for (block, _) in &self.durable.chain {
            if self
                .app
                .execute_block(block.header.height, block.txs.as_slice())
                .is_err()
            {
                self.app_errors += 1;
            }
        }
        let wal = std::mem::take(&mut self.durable.wal);
        self.input(
            Input::StartHeight(self.height() + 1),
            shared,
            pool,
            now,
            rng,
        );
        for input in wal {
            self.input(input, shared, pool, now, rng);
        }
    }

    pub fn crash(&mut self) {
        if self.planted_amnesia {
            self.durable.signed.clear();
            self.durable.wal.clear();
        }
        self.up = false;
        self.incarnation += 1;
    }

    /// Feed one input to the core (logging it first) and carry out everything that follows.
    pub fn input(
        &mut self,
        input: Input,
        shared: &Shared,
        pool: &[SignedTx],
        now: u64,
        rng: &mut ChaCha8Rng,
    ) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let outputs = self.core.step(input.clone());
            // Log what changed the core (so a restart rebuilds it); an input that was only
            // dropped (a duplicate from a re-send, say) changed nothing.
            let only_dropped = matches!(outputs.as_slice(), [Output::Dropped(_)]);
            if !only_dropped && !matches!(input, Input::StartHeight(_)) {
                self.durable.wal.push(input);
            }
            for output in outputs {
                self.on_output(output, shared, pool, now, rng, &mut queue);
            }
        }
    }

    fn on_output(
        &mut self,
        output: Output,
        shared: &Shared,
        pool: &[SignedTx],
        now: u64,
        rng: &mut ChaCha8Rng,
        queue: &mut VecDeque<Input>,
    ) {
        match output {
            Output::Vote(vote) => {
                if let Some(signed) = self.sign_vote(vote) {
                    self.send(Message::Vote(signed));
                    self.my_votes.push(signed);
                    queue.push_back(Input::Vote(signed));
                    if self.role == Role::Equivocator {
                        self.equivocate_vote(vote, shared, rng);
                    }
                }
            }
            Output::Propose(proposal) => {
                let Some(block) = self.durable.blocks.get(&proposal.block_id).cloned() else {
                    return;
                };
                if let Some(signed) = self.sign_proposal(proposal) {
                    if self.role == Role::Equivocator {
                        self.equivocate_proposal(proposal, &block, shared, rng);
                    } else {
                        self.send(Message::Proposal(signed, block.clone()));
                    }
                    self.my_proposal = Some((signed, block));
                    queue.push_back(Input::Proposal(signed));
                }
            }
            Output::GetValue { height, round } => {
                let block = self.build_block(height, round, pool, now);
                let block_id = block.id();
                self.durable.blocks.insert(block_id, Arc::new(block));
                queue.push_back(Input::ProposeValue {
                    height,
                    round,
                    block_id,
                });
            }
            Output::ValidateBlock {
                height, block_id, ..
            } => {
                let valid = self
                    .durable
                    .blocks
                    .get(&block_id)
                    .is_some_and(|b| self.validate(b, shared));
                queue.push_back(Input::BlockValidity {
                    height,
                    block_id,
                    valid,
                });
            }
            Output::ScheduleTimeout {
                timeout,
                duration_ms,
            } => self.outbox.push(Outgoing::Timer(duration_ms, timeout)),
            Output::Decide(certificate) => self.commit(certificate),
            Output::Evidence(_)
            | Output::NewRound { .. }
            | Output::StepChanged { .. }
            | Output::PrecommitQuorum { .. }
            | Output::Dropped(_) => {}
        }
    }

    fn guard(&mut self, key: (Height, Round, u8), value: Hash) -> bool {
        if !self.role.is_honest() {
            return true; // Byzantine and twin signers have no guard.
        }
        match self.durable.signed.get(&key) {
            Some(existing) if *existing != value => {
                self.outbox.push(Outgoing::SignRefused);
                false
            }
            _ => {
                self.durable.signed.insert(key, value);
                true
            }
        }
    }

    fn sign_vote(&mut self, vote: Vote) -> Option<SignedVote> {
        let kind = match vote.kind {
            VoteKind::Prevote => 0,
            VoteKind::Precommit => 1,
        };
        let value = vote.block_id.unwrap_or(Hash::ZERO);
        if !self.guard((vote.height, vote.round, kind), value) {
            return None;
        }
        self.outbox.push(Outgoing::Signed(vote));
        Some(vote.sign(&self.key))
    }

    fn sign_proposal(&mut self, proposal: Proposal) -> Option<SignedProposal> {
        self.guard((proposal.height, proposal.round, 2), proposal.block_id)
            .then(|| proposal.sign(&self.key))
    }

    fn send(&mut self, message: Message) {
        if self.role != Role::Silent {
            self.outbox.push(Outgoing::Broadcast(message));
        }
    }

    fn random_half(&self, shared: &Shared, rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<usize>) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for peer in (0..shared.node_count).filter(|p| *p != self.id) {
            if rng.random_bool(0.5) {
                a.push(peer);
            } else {
                b.push(peer);
            }
        }
        (a, b)
    }

    /// Byzantine: besides its real vote, vote for every other block seen at this height and
    /// for nil, each to a random subset of peers.
    fn equivocate_vote(&mut self, vote: Vote, shared: &Shared, rng: &mut ChaCha8Rng) {
        let mut values: Vec<Option<Hash>> = self
            .durable
            .blocks
            .values()
            .filter(|b| b.header.height == vote.height)
            .map(|b| Some(b.id()))
            .collect();
        values.push(None);
        for value in values.into_iter().filter(|v| *v != vote.block_id) {
            let conflicting = Vote {
                block_id: value,
                ..vote
            }
            .sign(&self.key);
            let (targets, _) = self.random_half(shared, rng);
            self.outbox
                .push(Outgoing::To(targets, Message::Vote(conflicting)));
        }
    }

    /// Byzantine proposer: a second block (different time) to a random half of the peers.
    fn equivocate_proposal(
        &mut self,
        proposal: Proposal,
        block: &Arc<Block>,
        shared: &Shared,
        rng: &mut ChaCha8Rng,
    ) {
        let mut other = (**block).clone();
        other.header.time_ms += 1;
        let other = Arc::new(other);
        let other_proposal = Proposal {
            block_id: other.id(),
            ..proposal
        }
        .sign(&self.key);
        self.durable.blocks.insert(other.id(), other.clone());
        let (first_half, second_half) = self.random_half(shared, rng);
        let signed = proposal.sign(&self.key);
        self.outbox.push(Outgoing::To(
            first_half,
            Message::Proposal(signed, block.clone()),
        ));
        self.outbox.push(Outgoing::To(
            second_half,
            Message::Proposal(other_proposal, other),
        ));
    }

    fn parent(&self) -> Option<&(Arc<Block>, CommitCertificate)> {
        self.durable.chain.last()
    }

    fn build_block(&self, height: Height, round: Round, pool: &[SignedTx], now: u64) -> Block {
        let parent = self.parent();
        let parent_time = parent.map_or(0, |(b, _)| b.header.time_ms);
        let included: std::collections::BTreeSet<Hash> = self
            .durable
            .chain
            .iter()
            .rev()
            .take(64)
            .flat_map(|(b, _)| b.txs.iter().map(SignedTx::hash))
            .collect();
        let txs: Vec<SignedTx> = pool
            .iter()
            .filter(|tx| !included.contains(&tx.hash()))
            .take(SIM_BLOCK_TXS_MAX.min(BLOCK_TXS_MAX))
            .cloned()
            .collect();
        let last_commit = parent.map(|(_, c)| c.clone());
        let header = BlockHeader {
            height,
            round,
            proposer: self.index,
            parent_hash: parent.map_or(Hash::ZERO, |(b, _)| b.id()),
            state_root: self.state_root(),
            txs_root: txs_root(&txs),
            time_ms: now.max(parent_time + 1),
            last_commit_hash: last_commit
                .as_ref()
                .map_or(Hash::ZERO, CommitCertificate::hash),
        };
        Block {
            header,
            txs: BoundedVec::new(txs).unwrap_or_default(),
            last_commit,
        }
    }

    /// The node's block validity rule: right height, parent, proposer, time, state root,
    /// body, and every transaction admissible.
    fn validate(&self, block: &Block, shared: &Shared) -> bool {
        let header = &block.header;
        let parent = self.parent();
        header.height == self.height() + 1
            && header.parent_hash == parent.map_or(Hash::ZERO, |(b, _)| b.id())
            && header.time_ms > parent.map_or(0, |(b, _)| b.header.time_ms)
            && header.proposer == shared.validators.proposer(header.height, header.round)
            && header.state_root == self.state_root()
            && block.body_matches_header()
            && block.last_commit.as_ref().map(|c| c.block_id) == parent.map(|(b, _)| b.id())
            && block.txs.iter().all(|tx| self.app.check_tx(tx).is_ok())
    }

    fn commit(&mut self, certificate: CommitCertificate) {
        let Some(block) = self.durable.blocks.get(&certificate.block_id).cloned() else {
            self.app_errors += 1;
            return;
        };
        let height = block.header.height;
        if self
            .app
            .execute_block(height, block.txs.as_slice())
            .is_err()
        {
            self.app_errors += 1;
        }
        self.durable.chain.push((block.clone(), certificate));
        self.durable.wal.clear();
        self.my_votes.clear();
        self.my_proposal = None;
        self.durable.blocks.retain(|_, b| b.header.height > height);
        self.outbox.push(Outgoing::Decided {
            height,
            block_id: block.id(),
            root: self.state_root(),
        });
    }

    /// A message from another node.
    pub fn on_message(
        &mut self,
        from: usize,
        message: Message,
        shared: &Shared,
        pool: &[SignedTx],
        now: u64,
        rng: &mut ChaCha8Rng,
    ) {
        match message {
            Message::Proposal(proposal, block) => {
                self.maybe_sync(from, proposal.proposal.height, now);
                if proposal.proposal.block_id == block.id() {
                    self.durable.blocks.entry(block.id()).or_insert(block);
                    self.input(Input::Proposal(proposal), shared, pool, now, rng);
                }
            }
            Message::Vote(vote) => {
                self.maybe_sync(from, vote.vote.height, now);
                self.input(Input::Vote(vote), shared, pool, now, rng);
            }
            Message::SyncRequest { from_height } => {
                if self.role == Role::Silent {
                    return;
                }
                let start = usize::try_from(from_height.saturating_sub(1)).unwrap_or(usize::MAX);
                let blocks: Vec<_> = self
                    .durable
                    .chain
                    .iter()
                    .skip(start)
                    .take(SYNC_BATCH_MAX)
                    .cloned()
                    .collect();
                if !blocks.is_empty() {
                    self.outbox
                        .push(Outgoing::To(vec![from], Message::SyncResponse(blocks)));
                }
            }
            Message::SyncResponse(blocks) => {
                for (block, certificate) in blocks {
                    if block.header.height != self.height() + 1
                        || certificate.block_id != block.id()
                        || certificate.height != block.header.height
                        || certificate
                            .verify(shared.validators.validators(), false)
                            .is_err()
                        || !self.validate(&block, shared)
                    {
                        continue;
                    }
                    self.durable.blocks.insert(block.id(), block);
                    self.input(Input::SyncedCommit(certificate), shared, pool, now, rng);
                }
            }
        }
    }

    /// Ask `peer` for decided blocks when it talks about a height above ours.
    fn maybe_sync(&mut self, peer: usize, height: Height, now: u64) {
        let ahead = height > self.height() + 1;
        let due = self
            .last_sync_request_ms
            .is_none_or(|last| now >= last + SYNC_REQUEST_INTERVAL_MS);
        if ahead && due {
            self.last_sync_request_ms = Some(now);
            self.outbox.push(Outgoing::To(
                vec![peer],
                Message::SyncRequest {
                    from_height: self.height() + 1,
                },
            ));
        }
    }

    /// Re-send own proposal and votes of the current height (messages may have been lost).
    pub fn rebroadcast(&mut self) {
        if self.role == Role::Silent {
            return;
        }
        let round = self.core.round();
        if let Some((proposal, block)) = &self.my_proposal {
            if proposal.proposal.round == round {
                self.outbox.push(Outgoing::Broadcast(Message::Proposal(
                    *proposal,
                    block.clone(),
                )));
            }
        }
        for vote in &self.my_votes {
            self.outbox.push(Outgoing::Broadcast(Message::Vote(*vote)));
        }
        // Relay the polka behind our valid value: a re-proposal of it is only accepted by
        // peers that saw 2f+1 prevotes for it in its round, byzantine ones included.
        if let Some((valid_round, value)) = self.core.valid() {
            for vote in self
                .core
                .votes_for(valid_round, VoteKind::Prevote, Some(value))
            {
                if vote.vote.validator != self.index {
                    self.outbox.push(Outgoing::Broadcast(Message::Vote(vote)));
                }
            }
        }
        // Tell peers where we are even when we have nothing to say this round: a peer that
        // is behind learns it must sync.
        if self.my_votes.is_empty() {
            if let Some((_, certificate)) = self.durable.chain.last() {
                if let Some(signature) = certificate
                    .signatures
                    .iter()
                    .find(|s| s.validator == self.index)
                {
                    let vote = SignedVote {
                        vote: certificate.vote_of(self.index),
                        signature: signature.signature,
                    };
                    self.outbox.push(Outgoing::Broadcast(Message::Vote(vote)));
                }
            }
        }
    }
}
