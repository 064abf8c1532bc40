//! The world: nodes, network, fault schedule, checkers.

use crate::network::{Event, EventQueue, Message};
use crate::node::{Node, Outgoing, Role, Shared, REBROADCAST_MS};
use basalt_app::App;
use basalt_consensus::{Timeouts, ValidatorSet};
use basalt_types::{
    AccountGenesis, BatchItem, Genesis, Hash, Height, Keypair, MarketGenesis, Payload, Side,
    SignedTx, ValidatorIndex, ValidatorInfo, VoteKind,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What to simulate. Probabilities are in per-mille (integers end to end).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Validators (n).
    pub validators: usize,
    /// Byzantine validators among them (f); their roles rotate with the seed.
    pub byzantine: usize,
    /// Message loss during the fault phase, per mille.
    pub loss_permille: u32,
    /// Message duplication during the fault phase, per mille.
    pub duplicate_permille: u32,
    /// Partitions during the fault phase.
    pub partitions: bool,
    /// Crashes and restarts of honest validators during the fault phase.
    pub crashes: bool,
    /// Length of the fault phase, simulated ms. Afterwards the network is synchronous.
    pub fault_ms: u64,
    /// Heights every honest validator must decide after the fault phase (K).
    pub liveness_heights: u64,
    /// Simulated time allowed for those K heights.
    pub liveness_window_ms: u64,
    /// Largest one-way message delay, ms (delays are uniform in 1..=max, so messages
    /// reorder).
    pub delay_ms_max: u64,
    /// Consensus configuration of every validator.
    pub consensus: basalt_consensus::Config,
    /// TEST ONLY: validator 0 reports a perturbed state root (a non-deterministic app).
    pub test_planted_nondeterminism: bool,
    /// TEST ONLY: honest validators forget their signing state and write-ahead log when
    /// they crash (storage that lies about durability).
    pub test_planted_amnesia: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            validators: 4,
            byzantine: 0,
            loss_permille: 0,
            duplicate_permille: 20,
            partitions: false,
            crashes: false,
            fault_ms: 4_000,
            liveness_heights: 3,
            liveness_window_ms: 60_000,
            delay_ms_max: 30,
            consensus: basalt_consensus::Config {
                timeouts: Timeouts {
                    propose_ms: 300,
                    propose_delta_ms: 100,
                    prevote_ms: 100,
                    prevote_delta_ms: 50,
                    precommit_ms: 100,
                    precommit_delta_ms: 50,
                },
                commit_wait_ms: 100,
                test_disable_locking: false,
            },
            test_planted_nondeterminism: false,
            test_planted_amnesia: false,
        }
    }
}

/// What one seed's run found.
#[derive(Debug, Clone, Serialize)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// Lowest height decided by every honest validator at the end.
    pub heights_committed: u64,
    /// Heights at which two honest validators decided different blocks.
    pub safety_violations: u64,
    /// 1 when some honest validator did not decide K heights after the faults healed.
    pub liveness_failures: u64,
    /// Heights at which honest validators that decided the same block disagree on the root.
    pub root_mismatches: u64,
    /// Conflicting votes signed by one honest validator for one (height, round, kind).
    pub double_signs: u64,
    /// Signatures the guard refused (expected after restarts; not a violation).
    pub sign_refusals: u64,
    /// Application errors (a decided block the host could not execute or find).
    pub app_errors: u64,
    /// Events processed.
    pub events: u64,
    /// Hash of the run's trace.
    pub trace_hash: String,
    /// Each node's final state, one line each (diagnostics for a failing seed).
    #[serde(skip)]
    pub nodes: Vec<String>,
}

impl SeedOutcome {
    /// True when any checker fired.
    pub fn failed(&self) -> bool {
        self.safety_violations + self.liveness_failures + self.root_mismatches + self.double_signs
            > 0
    }
}

/// Totals over many seeds; the JSON printed by `basalt sim --json`.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    /// Seeds run.
    pub seeds: u64,
    /// Validators per run.
    pub validators: usize,
    /// Byzantine validators per run.
    pub byzantine: usize,
    /// Sum over seeds of heights decided by every honest validator.
    pub heights_committed: u64,
    /// Sum of safety violations.
    pub safety_violations: u64,
    /// Seeds with a liveness failure.
    pub liveness_failures: u64,
    /// Sum of root mismatches.
    pub root_mismatches: u64,
    /// Sum of honest double signs.
    pub double_signs: u64,
    /// Hash over every seed's trace hash, in seed order.
    pub trace_hash: String,
    /// Seeds on which a checker fired.
    pub failing_seeds: Vec<u64>,
}

/// Run seeds `first..first+count`, spread over the machine's cores; the result does not
/// depend on how they were spread.
pub fn run_seeds(config: &SimConfig, first: u64, count: u64) -> SimSummary {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let mut outcomes: Vec<SeedOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (first..first + count)
                        .filter(|seed| (seed - first) % threads == t)
                        .map(|seed| run_seed(config, seed))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    outcomes.sort_by_key(|o| o.seed);
    let mut trace = Sha256::new();
    for outcome in &outcomes {
        trace.update(outcome.trace_hash.as_bytes());
    }
    SimSummary {
        seeds: outcomes.len() as u64,
        validators: config.validators,
        byzantine: config.byzantine,
        heights_committed: outcomes.iter().map(|o| o.heights_committed).sum(),
        safety_violations: outcomes.iter().map(|o| o.safety_violations).sum(),
        liveness_failures: outcomes.iter().map(|o| o.liveness_failures).sum(),
        root_mismatches: outcomes.iter().map(|o| o.root_mismatches).sum(),
        double_signs: outcomes.iter().map(|o| o.double_signs).sum(),
        trace_hash: hex(&trace.finalize()),
        failing_seeds: outcomes
            .iter()
            .filter(|o| o.failed())
            .map(|o| o.seed)
            .collect(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CHAIN_ID: &str = "basalt-sim";
const CLIENT_ACCOUNTS: usize = 8;
const CLIENT_LOAD_INTERVAL_MS: u64 = 100;
const POOL_MAX: usize = 512;
/// Guard against a runaway run (a livelock bug): counted as a liveness failure.
const EVENTS_MAX: u64 = 3_000_000;

fn genesis(validators: &[Keypair], clients: &[Keypair]) -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        validators: validators
            .iter()
            .map(|k| ValidatorInfo {
                public_key: k.public(),
                power: 1,
            })
            .collect(),
        assets: vec![0, 1],
        accounts: clients
            .iter()
            .map(|k| AccountGenesis {
                address: k.public(),
                balances: vec![(0, 1_000_000), (1, 1_000_000)],
            })
            .collect(),
        markets: vec![MarketGenesis {
            id: 0,
            base: 0,
            quote: 1,
        }],
        task_generators: clients.first().map(Keypair::public).into_iter().collect(),
    }
}

struct World<'c> {
    config: &'c SimConfig,
    shared: Shared,
    nodes: Vec<Node>,
    queue: EventQueue,
    rng: ChaCha8Rng,
    now: u64,
    partition: Option<Vec<bool>>,
    pool: Vec<SignedTx>,
    clients: Vec<(Keypair, u64)>,
    trace: Sha256,
    /// First honest decision per height: (block id, root).
    canonical: BTreeMap<Height, (Hash, Hash)>,
    /// Honest signed votes: (validator, height, round, kind) → value.
    signed: BTreeMap<(ValidatorIndex, Height, u32, u8), Option<Hash>>,
    outcome: SeedOutcome,
}

/// Run one seed.
pub fn run_seed(config: &SimConfig, seed: u64) -> SeedOutcome {
    let mut outcome = SeedOutcome {
        seed,
        heights_committed: 0,
        safety_violations: 0,
        liveness_failures: 0,
        root_mismatches: 0,
        double_signs: 0,
        sign_refusals: 0,
        app_errors: 0,
        events: 0,
        trace_hash: String::new(),
        nodes: Vec::new(),
    };
    let keys: Vec<Keypair> = (0..config.validators)
        .map(|i| Keypair::from_label(&format!("sim-validator-{i}")))
        .collect();
    let clients: Vec<Keypair> = (0..CLIENT_ACCOUNTS)
        .map(|i| Keypair::from_label(&format!("sim-client-{i}")))
        .collect();
    let genesis = genesis(&keys, &clients);
    let (Ok(validators), Ok(genesis_app)) = (
        ValidatorSet::new(genesis.validators.clone()),
        App::from_genesis(&genesis),
    ) else {
        outcome.liveness_failures = 1;
        return outcome;
    };
    let mut world = World {
        config,
        shared: Shared {
            validators,
            consensus: config.consensus,
            node_count: 0,
            genesis_app,
        },
        nodes: Vec::new(),
        queue: EventQueue::default(),
        rng: ChaCha8Rng::seed_from_u64(seed),
        now: 0,
        partition: None,
        pool: Vec::new(),
        clients: clients.into_iter().map(|k| (k, 0)).collect(),
        trace: Sha256::new(),
        canonical: BTreeMap::new(),
        signed: BTreeMap::new(),
        outcome,
    };
    world.build_nodes(&keys, seed);
    world.schedule_faults();
    world.run();
    world.finish()
}

impl World<'_> {
    fn build_nodes(&mut self, keys: &[Keypair], seed: u64) {
        let n = self.config.validators;
        let byzantine_from = n.saturating_sub(self.config.byzantine);
        for (i, key) in keys.iter().enumerate() {
            let role = if i < byzantine_from {
                Role::Honest
            } else {
                match (seed as usize + i) % 3 {
                    0 => Role::Equivocator,
                    1 => Role::Silent,
                    _ => Role::Twin,
                }
            };
            let index = i as ValidatorIndex;
            let id = self.nodes.len();
            self.nodes
                .push(Node::new(id, index, role, key.clone(), &self.shared));
            if role == Role::Twin {
                let twin = self.nodes.len();
                self.nodes
                    .push(Node::new(twin, index, role, key.clone(), &self.shared));
            }
        }
        if self.config.test_planted_nondeterminism {
            if let Some(node) = self.nodes.first_mut() {
                node.planted_nondeterminism = true;
            }
        }
        for node in &mut self.nodes {
            node.planted_amnesia = self.config.test_planted_amnesia;
        }
        self.shared.node_count = self.nodes.len();
        for id in 0..self.nodes.len() {
            self.start_node(id);
        }
        self.queue.push(0, Event::ClientLoad);
    }

    fn start_node(&mut self, id: usize) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        node.start(&self.shared, &self.pool, self.now, &mut self.rng);
        let offset = self.rng.random_range(0..REBROADCAST_MS);
        let incarnation = node.incarnation;
        self.queue.push(
            self.now + offset,
            Event::Rebroadcast {
                node: id,
                incarnation,
            },
        );
        self.flush(id);
    }

    fn schedule_faults(&mut self) {
        let fault_ms = self.config.fault_ms.max(1);
        if self.config.partitions {
            let mut start = self.rng.random_range(0..fault_ms / 4 + 1);
            for _ in 0..self.rng.random_range(1..=3) {
                let length = self.rng.random_range(300..=fault_ms / 3 + 300);
                let end = (start + length).min(fault_ms);
                if start >= end {
                    break;
                }
                let side: Vec<bool> = (0..self.nodes.len())
                    .map(|_| self.rng.random_bool(0.5))
                    .collect();
                self.queue.push(start, Event::PartitionStart { side });
                self.queue.push(end, Event::PartitionHeal);
                start = end + self.rng.random_range(100..=fault_ms / 4 + 100);
            }
        }
        if self.config.crashes {
            let honest: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes.get(*i).is_some_and(|n| n.role.is_honest()))
                .collect();
            for _ in 0..self.rng.random_range(1..=2) {
                if honest.is_empty() {
                    break;
                }
                let node = honest[self.rng.random_range(0..honest.len())];
                let at = self.rng.random_range(0..fault_ms * 2 / 3 + 1);
                let back = (at + self.rng.random_range(100..=fault_ms / 3 + 100)).min(fault_ms);
                self.queue.push(at, Event::Crash { node });
                self.queue.push(back, Event::Restart { node });
            }
        }
    }

    fn honest_heights(&self) -> impl Iterator<Item = Height> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.role.is_honest())
            .map(Node::height)
    }

    fn run(&mut self) {
        let deadline = self.config.fault_ms + self.config.liveness_window_ms;
        let mut target: Option<Height> = None;
        while let Some((time, event)) = self.queue.pop() {
            if time > deadline {
                break;
            }
            self.now = time;
            self.outcome.events += 1;
            if self.outcome.events > EVENTS_MAX {
                break;
            }
            if target.is_none() && time >= self.config.fault_ms {
                let top = self.honest_heights().max().unwrap_or(0);
                target = Some(top + self.config.liveness_heights);
            }
            self.handle(event);
            if let Some(target) = target {
                if self.honest_heights().all(|h| h >= target) {
                    self.trace.update(b"live");
                    return;
                }
            }
        }
        self.outcome.liveness_failures = 1;
    }

    fn handle(&mut self, event: Event) {
        let tag: (u8, usize) = match &event {
            Event::Deliver { to, .. } => (0, *to),
            Event::Timer { node, .. } => (1, *node),
            Event::Rebroadcast { node, .. } => (2, *node),
            Event::Crash { node } => (3, *node),
            Event::Restart { node } => (4, *node),
            Event::ClientLoad => (5, 0),
            Event::PartitionStart { .. } => (6, 0),
            Event::PartitionHeal => (7, 0),
        };
        self.trace.update(self.now.to_le_bytes());
        self.trace.update([tag.0]);
        self.trace.update((tag.1 as u64).to_le_bytes());
        match event {
            Event::Deliver { to, from, message } => {
                let Some(node) = self.nodes.get_mut(to).filter(|n| n.up) else {
                    return;
                };
                node.on_message(
                    from,
                    message,
                    &self.shared,
                    &self.pool,
                    self.now,
                    &mut self.rng,
                );
                self.flush(to);
            }
            Event::Timer {
                node: id,
                incarnation,
                timeout,
            } => {
                let Some(node) = self
                    .nodes
                    .get_mut(id)
                    .filter(|n| n.up && n.incarnation == incarnation)
                else {
                    return;
                };
                node.input(
                    basalt_consensus::Input::Timeout(timeout),
                    &self.shared,
                    &self.pool,
                    self.now,
                    &mut self.rng,
                );
                self.flush(id);
            }
            Event::Rebroadcast {
                node: id,
                incarnation,
            } => {
                let Some(node) = self
                    .nodes
                    .get_mut(id)
                    .filter(|n| n.up && n.incarnation == incarnation)
                else {
                    return;
                };
                node.rebroadcast();
                self.queue.push(
                    self.now + REBROADCAST_MS,
                    Event::Rebroadcast {
                        node: id,
                        incarnation,
                    },
                );
                self.flush(id);
            }
            Event::Crash { node } => {
                if let Some(node) = self.nodes.get_mut(node) {
                    node.crash();
                }
            }
            Event::Restart { node } => {
                if self.nodes.get(node).is_some_and(|n| !n.up) {
                    self.start_node(node);
                }
            }
            Event::ClientLoad => {
                self.client_load();
                self.queue
                    .push(self.now + CLIENT_LOAD_INTERVAL_MS, Event::ClientLoad);
            }
            Event::PartitionStart { side } => self.partition = Some(side),
            Event::PartitionHeal => self.partition = None,
        }
    }

    /// Clients submit a few transactions: transfers mostly, some orders and tasks.
    fn client_load(&mut self) {
        for _ in 0..2 {
            let from = self.rng.random_range(0..self.clients.len());
            let to = self.rng.random_range(0..self.clients.len());
            let Some(recipient) = self.clients.get(to).map(|(k, _)| k.public()) else {
                continue;
            };
            let item = match self.rng.random_range(0..10) {
                0..=6 => BatchItem::Transfer {
                    to: recipient,
                    asset: self.rng.random_range(0..2),
                    amount: self.rng.random_range(1..100),
                },
                7 | 8 => BatchItem::PlaceOrder {
                    market: 0,
                    side: if self.rng.random_bool(0.5) {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    price_ticks: self.rng.random_range(90..110),
                    quantity: self.rng.random_range(1..20),
                },
                _ => BatchItem::CreateTask {
                    task_id: basalt_types::sha256(&self.rng.random::<u64>().to_le_bytes()),
                    payload_hash: Hash::ZERO,
                },
            };
            let Some((key, nonce)) = self.clients.get_mut(from) else {
                continue;
            };
            let tx = SignedTx::sign(key, CHAIN_ID, *nonce, Payload::Single(item));
            *nonce += 1;
            self.pool.push(tx);
        }
        if self.pool.len() > POOL_MAX {
            let excess = self.pool.len() - POOL_MAX;
            self.pool.drain(..excess);
        }
    }

    /// Carry out what node `id` asked for: deliveries, timers, and the checkers' records.
    fn flush(&mut self, id: usize) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        let outbox = std::mem::take(&mut node.outbox);
        let (honest, index, incarnation) = (node.role.is_honest(), node.index, node.incarnation);
        self.outcome.app_errors += std::mem::take(&mut node.app_errors);
        for outgoing in outbox {
            match outgoing {
                Outgoing::Broadcast(message) => {
                    let peers: Vec<usize> = (0..self.nodes.len()).filter(|p| *p != id).collect();
                    self.transmit(id, &peers, &message);
                }
                Outgoing::To(peers, message) => self.transmit(id, &peers, &message),
                Outgoing::Timer(delay, timeout) => self.queue.push(
                    self.now + delay,
                    Event::Timer {
                        node: id,
                        incarnation,
                        timeout,
                    },
                ),
                Outgoing::Decided {
                    height,
                    block_id,
                    root,
                } if honest => self.check_decision(height, block_id, root),
                Outgoing::Signed(vote) if honest => {
                    let kind = match vote.kind {
                        VoteKind::Prevote => 0,
                        VoteKind::Precommit => 1,
                    };
                    let key = (index, vote.height, vote.round, kind);
                    match self.signed.get(&key) {
                        Some(value) if *value != vote.block_id => self.outcome.double_signs += 1,
                        Some(_) => {}
                        None => {
                            self.signed.insert(key, vote.block_id);
                        }
                    }
                }
                Outgoing::SignRefused => self.outcome.sign_refusals += 1,
                Outgoing::Decided { .. } | Outgoing::Signed(_) => {}
            }
        }
    }

    fn check_decision(&mut self, height: Height, block_id: Hash, root: Hash) {
        self.trace.update(height.to_le_bytes());
        self.trace.update(block_id.0);
        match self.canonical.get(&height) {
            None => {
                self.canonical.insert(height, (block_id, root));
            }
            Some((canonical_block, _)) if *canonical_block != block_id => {
                self.outcome.safety_violations += 1;
            }
            Some((_, canonical_root)) if *canonical_root != root => {
                self.outcome.root_mismatches += 1;
            }
            Some(_) => {}
        }
    }

    fn transmit(&mut self, from: usize, peers: &[usize], message: &Message) {
        let faulty = self.now < self.config.fault_ms;
        for &to in peers {
            let cut = self
                .partition
                .as_ref()
                .is_some_and(|side| side.get(from) != side.get(to));
            if faulty && (cut || self.rng.random_range(0..1000) < self.config.loss_permille) {
                continue;
            }
            let copies =
                if faulty && self.rng.random_range(0..1000) < self.config.duplicate_permille {
                    2
                } else {
                    1
                };
            for _ in 0..copies {
                let delay = self.rng.random_range(1..=self.config.delay_ms_max.max(1));
                self.queue.push(
                    self.now + delay,
                    Event::Deliver {
                        to,
                        from,
                        message: message.clone(),
                    },
                );
            }
        }
    }

    fn finish(mut self) -> SeedOutcome {
        self.outcome.heights_committed = self.honest_heights().min().unwrap_or(0);
        self.outcome.trace_hash = hex(&self.trace.finalize());
        self.outcome.nodes = self.nodes.iter().map(Node::describe).collect();
        self.outcome
    }
}
