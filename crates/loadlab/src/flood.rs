//! The gossip flooder of the `gossip-flood` scenario (seed 001's shape): a libp2p peer that
//! joins the network next to one validator and publishes, at a fixed rate, consensus
//! messages that validator cannot use yet or ever:
//!
//! - votes for heights far ahead (the node should drop them before any signature check),
//! - votes for rounds far ahead of the current one (same),
//! - votes for blocks nobody proposed, at the current and the next height, signed with the
//!   validator keys it is given (the scenario gives one: a byzantine validator). They pass
//!   verification: the node must count them without fetching anything, buffer the next
//!   height's in its bounded buffer, and not forward a validator's conflicting votes,
//! - proposals for unknown blocks in far-future rounds,
//! - re-sends of earlier messages under a new gossip id (the node should not verify twice),
//! - and, if asked, junk bytes — which get the flooder banned; it then comes back under a new
//!   identity, as a Sybil attacker would.
//!
//! Every message is distinct on the wire (the gossip envelope's re-send number), so gossipsub's
//! own duplicate filter does none of the node's work. The flood is bounded in time and count
//! and stops by itself.

use anyhow::Result;
use basalt_node::messages::{ConsensusGossip, ConsensusMessage};
use basalt_p2p::{Multiaddr, Topic};
use basalt_types::crypto::sha256;
use basalt_types::{
    Block, BlockHeader, BoundedVec, Hash, Keypair, Proposal, Round, Signature, SignedVote, Vote,
    VoteKind,
};
use serde::Serialize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::Identity;

/// How often the flooder asks the target for its height and round.
const TIP_POLL: Duration = Duration::from_millis(50);
/// How often the flooder writes: each tick's messages go out in frames of many messages.
const TICK: Duration = Duration::from_millis(2);
/// Most messages in one gossipsub RPC frame (~200 bytes each: ~50 KB, far under the
/// frame limit of a node, which carries whole blocks).
const FRAME_MESSAGES_MAX: usize = 256;
/// How long the writers may take to finish their queued frames at the end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Far-future votes signed once and re-sent.
const FAR_POOL: usize = 1024;
/// How far ahead those are.
const FAR_AHEAD: u64 = 1_000_000;
/// Re-sendable messages remembered.
const RESEND_POOL: usize = 256;
/// Far-round messages of each kind signed per height, then re-sent under new envelopes.
const FAR_ROUND_POOL: usize = 8;

/// What to flood, where, how fast, for how long.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// The target's p2p address, ending in `/p2p/<peer id>`.
    pub target: Multiaddr,
    /// The target's RPC base URL (for its current height and round).
    pub target_rpc: String,
    /// Messages per second.
    pub rate: u64,
    /// How long to flood.
    pub duration: Duration,
    /// Validator keys (index in the set, key) for votes that pass verification; empty →
    /// only messages the node must drop without verifying.
    pub validator_keys: Vec<(u16, Keypair)>,
    /// Number of validators (indices of signed junk stay in range).
    pub validators: u16,
    /// Share of junk messages, per mille (each gets the flooder closer to a ban).
    pub junk_per_mille: u32,
    /// Set to end the flood early.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Flooder identities connected at once (the rate is spread over them).
    pub connections: usize,
}

/// What the flooder did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FloodReport {
    /// Messages framed and queued for writing to the target.
    pub sent: u64,
    /// Messages not sent (nor generated) because the identity's frame queue was full: the
    /// target (or the machine) did not take them as fast as offered.
    pub backpressured: u64,
    /// Messages written to the target per second over the flood, measured.
    pub rate_achieved: f64,
    /// Far-future-height votes.
    pub far_future_height: u64,
    /// Far-future-round votes and proposals.
    pub far_future_round: u64,
    /// Votes for unknown blocks (current and next height).
    pub unknown_block: u64,
    /// Re-sends of earlier messages.
    pub resends: u64,
    /// Junk messages.
    pub junk: u64,
    /// Identities used (1 + reconnections after a ban or disconnect).
    pub identities: u32,
    /// Messages written to the target's gossipsub stream.
    pub written: u64,
    /// Messages in frames whose write failed (the connection went away).
    pub write_failed: u64,
}

#[derive(Default)]
struct Tip {
    height: AtomicU64,
    round: AtomicU32,
}

/// Flood until `config.duration` has passed. Returns what was sent.
pub async fn run(config: FloodConfig) -> Result<FloodReport> {
    let tip = Arc::new(Tip::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = tokio::spawn(poll_tip(
        config.target_rpc.clone(),
        tip.clone(),
        stop.clone(),
    ));
    let result = flood(&config, &tip).await;
    stop.store(true, Ordering::Relaxed);
    let _ = poller.await;
    result
}

async fn poll_tip(rpc: String, tip: Arc<Tip>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/status", rpc.trim_end_matches('/'));
    while !stop.load(Ordering::Relaxed) {
        if let Ok(response) = client.get(&url).timeout(TIP_POLL * 5).send().await {
            if let Ok(status) = response.json::<serde_json::Value>().await {
                let height = status["height"].as_u64().unwrap_or(0);
                let round = status["round"].as_u64().unwrap_or(0);
                tip.height.store(height + 1, Ordering::Relaxed); // the height being decided
                tip.round
                    .store(u32::try_from(round).unwrap_or(u32::MAX), Ordering::Relaxed);
            }
        }
        tokio::time::sleep(TIP_POLL).await;
    }
}

/// The key of flooder identity number `seed`.
fn identity_key(seed: u64) -> [u8; 32] {
    sha256(&[b"basalt-flood".as_slice(), &seed.to_le_bytes()].concat()).0
}

async fn flood(config: &FloodConfig, tip: &Tip) -> Result<FloodReport> {
    let mut report = FloodReport::default();
    let mut identity_seed = u64::from(std::process::id()) << 32;
    // Several identities at once (a Sybil flood): the node limits each peer's share.
    let mut identities = Vec::with_capacity(config.connections.max(1));
    for _ in 0..config.connections.max(1) {
        identity_seed += 1;
        identities.push(
            Identity::connect(
                &config.target,
                identity_key(identity_seed),
                Topic::Consensus.name(),
            )
            .await?,
        );
        report.identities += 1;
    }
    let mut generator = Generator::new(config);
    let started = Instant::now();
    let end = started + config.duration;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0usize;
    let mut frame = Vec::with_capacity(FRAME_MESSAGES_MAX);
    while Instant::now() < end && !config.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for identity in identities.iter_mut() {
            if !identity.is_alive() {
                // Banned (junk) or dropped: come back as someone else.
                identity_seed += 1;
                let fresh = Identity::connect(
                    &config.target,
                    identity_key(identity_seed),
                    Topic::Consensus.name(),
                )
                .await?;
                let gone = std::mem::replace(identity, fresh);
                add_written(&mut report, gone.shutdown(Duration::ZERO).await);
                report.identities += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let due = (elapsed * config.rate as f64) as u64;
        let height = tip.height.load(Ordering::Relaxed).max(1);
        let round = tip.round.load(Ordering::Relaxed);
        // This tick's messages go out in frames, each to the next identity in turn.
        while report.sent + report.backpressured < due {
            let count = (due - report.sent - report.backpressured).min(FRAME_MESSAGES_MAX as u64);
            next = (next + 1) % identities.len().max(1);
            let Some(identity) = identities.get(next) else {
                break;
            };
            if !identity.has_room() {
                // Not generated at all: signing what cannot be sent only takes CPU from
                // the validators.
                report.backpressured += count;
                continue;
            }
            for _ in 0..count {
                let (kind, data) = generator.next(height, round);
                match kind {
                    Kind::FarHeight => report.far_future_height += 1,
                    Kind::FarRound => report.far_future_round += 1,
                    Kind::Unknown => report.unknown_block += 1,
                    Kind::Resend => report.resends += 1,
                    Kind::Junk => report.junk += 1,
                }
                frame.push(data);
            }
            let payloads = std::mem::replace(&mut frame, Vec::with_capacity(FRAME_MESSAGES_MAX));
            if identity.send(wire::rpc_frame(Topic::Consensus.name(), payloads), count) {
                report.sent += count;
            } else {
                report.backpressured += count;
            }
        }
    }
    let flooded = started.elapsed().as_secs_f64().max(1e-9);
    for identity in identities {
        add_written(&mut report, identity.shutdown(SHUTDOWN_GRACE).await);
    }
    report.rate_achieved = report.written as f64 / flooded;
    Ok(report)
}

fn add_written(report: &mut FloodReport, (written, failed): (u64, u64)) {
    report.written += written;
    report.write_failed += failed;
}

mod wire;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    FarHeight,
    FarRound,
    Unknown,
    Resend,
    Junk,
}

/// Deterministic message generator (counter-based; no randomness needed).
struct Generator {
    counter: u64,
    keys: Vec<(u16, Keypair)>,
    /// A key that is not a validator's: its signatures fail, but the messages it signs
    /// are of kinds the node must drop before checking.
    outsider: Keypair,
    validators: u16,
    junk_per_mille: u32,
    pool: Vec<ConsensusMessage>,
    /// Far-future votes signed once (by the byzantine key when there is one): far enough
    /// ahead (a million heights) to stay far for any run, so nodes drop them unverified —
    /// except the few they verify as probes, which pass and so do not get the flooder
    /// banned (it keeps flooding the whole run).
    far: Vec<ConsensusMessage>,
    /// Far-round messages of the height in `far_round_height`, per kind (block vote,
    /// proposal, nil vote): the node drops them on their round before any signature
    /// check, so signing each anew (~6,000 signatures/s of a 20,000/s flood) would only
    /// spend the flooder's CPU, which shares the machine with the validators. Each is
    /// still distinct on the wire (the envelope's re-send number).
    far_round: [Vec<ConsensusMessage>; 3],
    far_round_height: u64,
}

/// The kinds of far-round messages.
#[derive(Debug, Clone, Copy)]
enum FarRound {
    Vote = 0,
    Proposal = 1,
    NilVote = 2,
}

impl Generator {
    fn new(config: &FloodConfig) -> Generator {
        Generator {
            counter: 0,
            keys: config.validator_keys.clone(),
            outsider: Keypair::from_seed([0xf1; 32]),
            validators: config.validators.max(1),
            junk_per_mille: config.junk_per_mille.min(1000),
            pool: Vec::new(),
            far: Vec::new(),
            far_round: Default::default(),
            far_round_height: 0,
        }
    }

    fn fresh_hash(&self) -> Hash {
        sha256(&[b"flood-block".as_slice(), &self.counter.to_le_bytes()].concat())
    }

    /// A vote; `signed` = false leaves the signature zero (for kinds the node must drop
    /// before any signature check: signing them would only spend the flooder's CPU, which
    /// shares the machine with the validators).
    fn vote(&self, height: u64, round: Round, block_id: Option<Hash>, signed: bool) -> SignedVote {
        let slot = (self.counter % u64::from(self.validators)) as u16;
        let (validator, key) = match self
            .keys
            .get(self.counter as usize % self.keys.len().max(1))
        {
            Some((index, key)) if !self.keys.is_empty() => (*index, key),
            _ => (slot, &self.outsider),
        };
        let vote = Vote {
            kind: if self.counter.is_multiple_of(2) {
                VoteKind::Prevote
            } else {
                VoteKind::Precommit
            },
            height,
            round,
            block_id,
            validator,
        };
        if signed {
            vote.sign(key)
        } else {
            SignedVote {
                vote,
                signature: Signature([0; 64]),
            }
        }
    }

    fn next(&mut self, height: u64, round: Round) -> (Kind, Vec<u8>) {
        self.counter += 1;
        let c = self.counter;
        if u64::from(self.junk_per_mille) > c % 1000 {
            let junk = sha256(&c.to_le_bytes()).0.to_vec();
            return (Kind::Junk, junk);
        }
        let (kind, message) = match c % 10 {
            0..=3 => {
                if self.far.len() < FAR_POOL {
                    let far = height + FAR_AHEAD + self.far.len() as u64;
                    let signed = !self.keys.is_empty();
                    let vote = self.vote(far, 0, Some(self.fresh_hash()), signed);
                    self.far.push(ConsensusMessage::Vote(vote));
                }
                let pick = (c as usize / 10) % self.far.len().max(1);
                match self.far.get(pick) {
                    Some(message) => (Kind::FarHeight, message.clone()),
                    None => (
                        Kind::FarHeight,
                        ConsensusMessage::Vote(self.vote(height + FAR_AHEAD, 0, None, false)),
                    ),
                }
            }
            4 => (
                Kind::FarRound,
                self.far_round(FarRound::Vote, height, round),
            ),
            5 => (
                Kind::FarRound,
                self.far_round(FarRound::Proposal, height, round),
            ),
            6 | 7 if !self.keys.is_empty() => {
                let h = height + c % 2;
                let r = round.saturating_add((c % 3) as Round);
                let vote = self.vote(h, r, Some(self.fresh_hash()), true);
                (Kind::Unknown, ConsensusMessage::Vote(vote))
            }
            8 | 9 if !self.pool.is_empty() => {
                let pick = (c as usize / 10) % self.pool.len();
                (Kind::Resend, self.pool[pick].clone())
            }
            _ => (
                Kind::FarRound,
                self.far_round(FarRound::NilVote, height, round),
            ),
        };
        if kind == Kind::Unknown && self.pool.len() < RESEND_POOL {
            self.pool.push(message.clone());
        }
        let gossip = ConsensusGossip { resend: c, message };
        (kind, gossip.to_bytes())
    }

    /// A far-round message of `kind` for the next height: signed fresh until the height's
    /// pool of that kind is full, then one of the pool's.
    fn far_round(&mut self, kind: FarRound, height: u64, round: Round) -> ConsensusMessage {
        if self.far_round_height != height {
            self.far_round_height = height;
            self.far_round.iter_mut().for_each(Vec::clear);
        }
        let pool = &self.far_round[kind as usize];
        if pool.len() >= FAR_ROUND_POOL {
            return pool[(self.counter / 10) as usize % pool.len()].clone();
        }
        // Signed whenever there is a key: a node that verifies one (a rule of its that
        // admits it, now or in some version) must not be able to ban the flooder for a
        // forgery.
        let signed = !self.keys.is_empty();
        let far = round.saturating_add(32 + (self.counter % 64) as Round);
        let message = match kind {
            FarRound::Vote => {
                ConsensusMessage::Vote(self.vote(height + 1, far, Some(self.fresh_hash()), signed))
            }
            FarRound::Proposal => self.proposal(height + 1, far),
            FarRound::NilVote => ConsensusMessage::Vote(self.vote(height + 1, far, None, signed)),
        };
        self.far_round[kind as usize].push(message.clone());
        message
    }

    fn proposal(&self, height: u64, round: Round) -> ConsensusMessage {
        let block = Block {
            header: BlockHeader {
                height,
                round,
                proposer: self.keys.first().map_or(
                    (self.counter % u64::from(self.validators)) as u16,
                    |(i, _)| *i,
                ),
                parent_hash: self.fresh_hash(),
                state_root: Hash::ZERO,
                txs_root: basalt_types::block::txs_root(&[]),
                time_ms: 0,
                last_commit_hash: Hash::ZERO,
            },
            txs: BoundedVec::default(),
            last_commit: None,
        };
        let proposal = Proposal {
            height,
            round,
            pol_round: None,
            block_id: block.id(),
            proposer: block.header.proposer,
        };
        let proposal = match self.keys.first() {
            Some((_, key)) => proposal.sign(key),
            None => basalt_types::SignedProposal {
                proposal,
                signature: Signature([0; 64]),
            },
        };
        ConsensusMessage::Proposal {
            proposal,
            block: Box::new(block),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: usize, junk: u32) -> FloodConfig {
        FloodConfig {
            target: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            target_rpc: String::new(),
            rate: 1,
            duration: Duration::from_secs(1),
            validator_keys: (0..keys)
                .map(|i| (i as u16, Keypair::from_seed([i as u8 + 1; 32])))
                .collect(),
            validators: 4,
            junk_per_mille: junk,
            stop: Arc::default(),
            connections: 1,
        }
    }

    #[test]
    fn every_message_is_distinct_on_the_wire_and_the_mix_is_as_documented() {
        let mut generator = Generator::new(&config(4, 0));
        let mut seen = std::collections::HashSet::new();
        let mut kinds = std::collections::HashMap::new();
        for _ in 0..10_000 {
            let (kind, bytes) = generator.next(100, 0);
            assert!(seen.insert(bytes), "gossip ids would collide");
            *kinds.entry(kind).or_insert(0u32) += 1;
        }
        assert_eq!(kinds.get(&Kind::Junk), None);
        assert!(kinds[&Kind::FarHeight] >= 4_000);
        assert!(kinds[&Kind::FarRound] >= 2_000);
        assert!(kinds[&Kind::Unknown] >= 1_900);
        assert!(kinds[&Kind::Resend] >= 1_900);
    }

    #[test]
    fn far_round_messages_are_signed_a_few_times_per_height_and_stay_far() {
        let mut generator = Generator::new(&config(4, 0));
        let mut distinct = |height: u64| {
            let mut inner = std::collections::HashSet::new();
            for _ in 0..10_000 {
                let (kind, bytes) = generator.next(height, 2);
                if kind != Kind::FarRound {
                    continue;
                }
                let gossip = ConsensusGossip::from_bytes(&bytes).unwrap();
                let (h, r) = basalt_node::pending::slot(&gossip.message);
                assert_eq!(h, height + 1);
                assert!(r >= 2 + 32, "round {r} is not far ahead");
                // The envelope is the re-send number (8 bytes), then the message.
                inner.insert(bytes[8..].to_vec());
            }
            inner
        };
        // ~3,000 far-round messages per height, from at most one pool per kind.
        let signed_at_most = 1..=3 * FAR_ROUND_POOL;
        let first = distinct(100);
        assert!(signed_at_most.contains(&first.len()), "{}", first.len());
        let second = distinct(101);
        assert!(signed_at_most.contains(&second.len()), "{}", second.len());
        assert!(first.is_disjoint(&second), "a new height signs anew");
    }

    #[test]
    fn without_validator_keys_nothing_needs_verifying() {
        let mut generator = Generator::new(&config(0, 0));
        for _ in 0..1_000 {
            let (kind, _) = generator.next(100, 0);
            assert!(matches!(kind, Kind::FarHeight | Kind::FarRound), "{kind:?}");
        }
    }

    #[test]
    fn junk_share_is_honoured() {
        let mut generator = Generator::new(&config(4, 100));
        let junk = (0..10_000)
            .filter(|_| generator.next(100, 0).0 == Kind::Junk)
            .count();
        assert_eq!(junk, 1_000);
    }
}
