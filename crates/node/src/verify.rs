//! The signature-verification pool: checks transaction and consensus signatures in batches
//! (about twice the single-signature rate) on its own threads, off the consensus path.
//!
//! Two lanes, each served by its own threads: consensus messages and transaction batches.
//! A vote never shares a batch with transactions nor waits for a transaction batch to
//! finish (it did when one thread served both: a vote arriving behind 256 transaction
//! signatures waited ~5 ms per hop, and precommit latency doubled under 1,200 tx/s).
//!
//! Each signature is checked once per validator: a transaction already in the mempool is
//! not checked again when it shows up inside a proposal.

use crate::driver::DriverInput;
use crate::messages::ConsensusMessage;
use crate::metrics::Metrics;
use crate::state::Shared;
use basalt_p2p::{GossipId, NetworkCommand, PeerId, Verdict};
use basalt_rpc::Rejection;
use basalt_types::consensus::{PROPOSAL_SIGN_DOMAIN, VOTE_SIGN_DOMAIN};
use basalt_types::crypto::{verify_batch, VerifyItem};
use basalt_types::limits::TX_BYTES_MAX;
use basalt_types::tx::TX_SIGN_DOMAIN;
use basalt_types::{encode, Hash, PublicKey, Signature, SignedTx};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the pool, per queue (consensus messages, and transaction batches).
/// Full → the caller sheds: RPC answers "overloaded", gossip is ignored.
pub const VERIFY_QUEUE_MAX: usize = 4096;
/// Transaction signatures the pool takes into one batch at most (a job is never split, so
/// one large job can exceed it): batches this size already run at the batch rate, and a
/// submission's wait for verification stays near 5 ms of one core.
pub const TX_SIGNATURES_PER_BATCH_MAX: usize = 256;
/// Consensus messages verified in one batch at most, so that a flood of them is answered
/// in steady slices rather than one long batch.
pub const CONSENSUS_JOBS_PER_BATCH_MAX: usize = 256;
/// A transaction batch smaller than this many signatures waits up to
/// [`TX_BATCH_FILL_WAIT`] for more: one signature alone costs about three times its share
/// of a batch of 64 (`cargo bench -p basalt-types --bench verify`), and an RPC flood of
/// single-transaction submissions would otherwise be verified one by one.
pub const TX_BATCH_FILL: usize = 64;
/// How long a small transaction batch waits to fill, from its first job's arrival. Off the
/// consensus path: votes have their own lane.
pub const TX_BATCH_FILL_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Which queue a pool thread serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Votes and proposals.
    Consensus,
    /// Transaction batches from RPC and gossip.
    Txs,
}

impl Lane {
    /// Thread name prefix (Linux keeps 15 bytes of a thread name).
    pub fn name(self) -> &'static str {
        match self {
            Lane::Consensus => "verify-cons",
            Lane::Txs => "verify-txs",
        }
    }
}

/// The pool's two queues: consensus messages are always taken first.
#[derive(Clone)]
pub struct VerifyQueue {
    consensus: crossbeam_channel::Sender<VerifyJob>,
    txs: crossbeam_channel::Sender<VerifyJob>,
}

/// The pool's side of [`VerifyQueue`].
#[derive(Clone)]
pub struct VerifyJobs {
    consensus: crossbeam_channel::Receiver<VerifyJob>,
    txs: crossbeam_channel::Receiver<VerifyJob>,
}

/// The queues of the verification pool, each bounded by [`VERIFY_QUEUE_MAX`].
pub fn queue() -> (VerifyQueue, VerifyJobs) {
    let (consensus, consensus_jobs) = crossbeam_channel::bounded(VERIFY_QUEUE_MAX);
    let (txs, tx_jobs) = crossbeam_channel::bounded(VERIFY_QUEUE_MAX);
    (
        VerifyQueue { consensus, txs },
        VerifyJobs {
            consensus: consensus_jobs,
            txs: tx_jobs,
        },
    )
}

impl VerifyQueue {
    /// Queue a job without waiting; refused (and dropped) when its queue is full or the
    /// pool has stopped.
    pub fn try_send(&self, job: VerifyJob) -> Result<(), QueueFull> {
        let queue = match job {
            VerifyJob::Consensus { .. } => &self.consensus,
            VerifyJob::Txs { .. } => &self.txs,
        };
        queue.try_send(job).map_err(|_| QueueFull)
    }
}

/// A verification queue refused a job: full, or the pool has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

impl VerifyJobs {
    /// Jobs waiting in both queues.
    pub fn len(&self) -> usize {
        self.consensus.len().saturating_add(self.txs.len())
    }

    /// Whether both queues are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next batch of `lane`: up to [`CONSENSUS_JOBS_PER_BATCH_MAX`] consensus messages,
    /// or transaction jobs up to [`TX_SIGNATURES_PER_BATCH_MAX`] signatures. Blocks while
    /// the lane's queue is empty; `None` once its senders are gone.
    fn next_batch(&self, lane: Lane) -> Option<Vec<VerifyJob>> {
        let (queue, cap) = match lane {
            Lane::Consensus => (&self.consensus, CONSENSUS_JOBS_PER_BATCH_MAX),
            Lane::Txs => (&self.txs, TX_SIGNATURES_PER_BATCH_MAX),
        };
        let first = queue.recv().ok()?;
        let arrived = std::time::Instant::now();
        let size = |job: &VerifyJob| match job {
            VerifyJob::Txs { txs, .. } => txs.len(),
            VerifyJob::Consensus { .. } => 1,
        };
        let mut taken = size(&first);
        let mut batch = vec![first];
        let drain = |taken: &mut usize, batch: &mut Vec<VerifyJob>| {
            while *taken < cap {
                let Ok(job) = queue.try_recv() else { break };
                *taken = taken.saturating_add(size(&job));
                batch.push(job);
            }
        };
        drain(&mut taken, &mut batch);
        if lane == Lane::Txs && taken < TX_BATCH_FILL {
            // A sleep, not a wait on the queue: that would wake this thread for every job.
            let fill_by = arrived + TX_BATCH_FILL_WAIT;
            std::thread::sleep(fill_by.saturating_duration_since(std::time::Instant::now()));
            drain(&mut taken, &mut batch);
        }
        Some(batch)
    }
}

/// Where transactions came from.
pub enum TxOrigin {
    /// An RPC submission: one result per transaction goes back.
    Rpc(oneshot::Sender<Vec<Result<Hash, Rejection>>>),
    /// A gossiped batch: the verdict goes to the network; `relay` is the batch's own flag
    /// (forward it when valid, or only use it here).
    Gossip {
        /// Its gossip id.
        id: GossipId,
        /// The peer it came from.
        from: PeerId,
        /// Whether a valid batch is forwarded.
        relay: bool,
    },
}

/// Work for the pool.
pub enum VerifyJob {
    /// Transactions to admit to the mempool.
    Txs {
        /// The transactions.
        txs: Vec<SignedTx>,
        /// Where they came from.
        origin: TxOrigin,
    },
    /// A consensus message for the driver.
    Consensus {
        /// The message.
        message: ConsensusMessage,
        /// The gossip it came in, for the verdict.
        gossip: (GossipId, PeerId),
    },
}

/// The pool's outlets.
#[derive(Clone)]
pub struct PoolOutlets {
    /// Verified consensus messages.
    pub driver: mpsc::Sender<DriverInput>,
    /// Gossip verdicts.
    pub network: mpsc::Sender<NetworkCommand>,
    /// Newly admitted RPC transactions, to be gossiped in batches.
    pub gossip: mpsc::Sender<SignedTx>,
}

fn rejection(code: &str, message: impl Into<String>) -> Rejection {
    Rejection {
        code: code.into(),
        message: message.into(),
    }
}

/// One signature to check, and whose it is.
struct Check {
    key: PublicKey,
    domain: &'static [u8],
    message: Vec<u8>,
    signature: Signature,
}

/// Run one pool thread on `lane` until its queue closes.
pub fn run(shared: Arc<Shared>, jobs: VerifyJobs, lane: Lane, out: PoolOutlets) {
    while let Some(batch) = jobs.next_batch(lane) {
        shared.metrics.depth("verify", jobs.len());
        verify_jobs(&shared, batch, &out);
    }
}

/// What each job needs checked, as ranges into one flat list of checks.
struct Prepared {
    job: VerifyJob,
    /// Hashes of the transactions it carries.
    hashes: Vec<Hash>,
    /// Per transaction: an early rejection, or the index of its check.
    tx_checks: Vec<Result<usize, Rejection>>,
    /// Checks of a consensus message.
    consensus_checks: std::ops::Range<usize>,
}

fn verify_jobs(shared: &Shared, batch: Vec<VerifyJob>, out: &PoolOutlets) {
    // Every transaction's hash is computed before the mempool lock is taken, and the lock
    // is held only for the membership lookups: the driver's reap and the chain worker's
    // removal wait on this lock, and the transaction lane runs at a lower OS priority (a
    // thread descheduled while holding it would hold up consensus). A batch of votes does
    // not take it at all.
    let hashes: Vec<Vec<Hash>> = batch.iter().map(carried_tx_hashes).collect();
    // `seen`: pending or lately admitted or committed, so its signature was checked.
    let pending: Vec<Vec<bool>> = if hashes.iter().any(|h| !h.is_empty()) {
        let pool = shared.mempool();
        hashes
            .iter()
            .map(|job| job.iter().map(|hash| pool.seen(hash)).collect())
            .collect()
    } else {
        vec![Vec::new(); hashes.len()]
    };
    let mut checks: Vec<Check> = Vec::new();
    // Signatures by kind: new transactions, transactions that reached us first inside a
    // proposal (checked on the consensus path), and votes, proposals and commits.
    let (mut tx_signatures, mut proposal_tx_signatures) = (0u64, 0u64);
    let mut prepared = Vec::with_capacity(batch.len());
    for ((job, hashes), pending) in batch.into_iter().zip(hashes).zip(pending) {
        let mut tx_checks = Vec::new();
        let start = checks.len();
        match &job {
            VerifyJob::Txs { txs, .. } => {
                for (tx, pending) in txs.iter().zip(&pending) {
                    tx_checks.push(precheck_tx(shared, *pending, tx).map(|_| {
                        tx_signatures += 1;
                        checks.push(Check {
                            key: tx.body.sender,
                            domain: TX_SIGN_DOMAIN,
                            message: encode(&tx.body),
                            signature: tx.signature,
                        });
                        checks.len() - 1
                    }));
                }
            }
            VerifyJob::Consensus { message, .. } => {
                proposal_tx_signatures += consensus_checks(shared, &pending, message, &mut checks);
            }
        }
        prepared.push(Prepared {
            job,
            hashes,
            tx_checks,
            consensus_checks: start..checks.len(),
        });
    }
    let items: Vec<VerifyItem<'_>> = checks
        .iter()
        .map(|c| VerifyItem {
            public_key: &c.key,
            domain: c.domain,
            message: &c.message,
            signature: &c.signature,
        })
        .collect();
    let results = verify_batch(&items);
    let total = results.len() as u64;
    let consensus = total.saturating_sub(tx_signatures + proposal_tx_signatures);
    for (kind, count) in [
        ("tx", tx_signatures),
        ("proposal_tx", proposal_tx_signatures),
        ("consensus", consensus),
    ] {
        if count > 0 {
            shared
                .metrics
                .signatures_verified
                .get_or_create(&Metrics::label("kind", kind))
                .inc_by(count);
        }
    }
    for item in prepared {
        match item.job {
            VerifyJob::Txs { txs, origin } => {
                admit(
                    shared,
                    txs,
                    &item.hashes,
                    item.tx_checks,
                    &results,
                    origin,
                    out,
                );
            }
            VerifyJob::Consensus { message, gossip } => {
                let ok = results
                    .get(item.consensus_checks.clone())
                    .is_some_and(|r| r.iter().all(|ok| *ok));
                let verdict = if !ok {
                    shared
                        .metrics
                        .gossip_invalid
                        .get_or_create(&Metrics::label("topic", "consensus"))
                        .inc();
                    Verdict::Reject
                } else {
                    // Conflicting values are processed (evidence) but not forwarded.
                    let (key, value) = crate::slots::key_of(&message);
                    let (height, _, _, validator) = key;
                    shared
                        .tips()
                        .record(validator, height, gossip.1, std::time::Instant::now());
                    let recorded = shared.slots().record(key, value);
                    if let ConsensusMessage::Proposal { proposal, block } = &message {
                        tracing::debug!(
                            height = proposal.proposal.height,
                            round = proposal.proposal.round,
                            proposer = proposal.proposal.proposer,
                            txs = block.txs.len(),
                            batch = results.len(),
                            "proposal verified"
                        );
                    }
                    if out
                        .driver
                        .try_send(DriverInput::Consensus(message, gossip.1))
                        .is_err()
                    {
                        shared.metrics.dropped("driver");
                        Verdict::Ignore
                    } else if recorded == crate::slots::Recorded::Conflict {
                        Verdict::Ignore
                    } else {
                        Verdict::Accept
                    }
                };
                let _ = out.network.try_send(NetworkCommand::Validate {
                    id: gossip.0,
                    from: gossip.1,
                    verdict,
                });
            }
        }
    }
}

/// The transactions a job carries (a proposal's block's included), by hash.
fn carried_tx_hashes(job: &VerifyJob) -> Vec<Hash> {
    match job {
        VerifyJob::Txs { txs, .. } => txs.iter().map(SignedTx::hash).collect(),
        VerifyJob::Consensus {
            message: ConsensusMessage::Proposal { block, .. },
            ..
        } => block.txs.iter().map(SignedTx::hash).collect(),
        VerifyJob::Consensus { .. } => Vec::new(),
    }
}

/// Checks before the signature: chain id and size; a transaction already pending, or
/// lately admitted or committed ([`crate::mempool::Mempool::seen`]), is a duplicate and is
/// not verified again.
fn precheck_tx(shared: &Shared, pending: bool, tx: &SignedTx) -> Result<(), Rejection> {
    if tx.body.chain_id.as_str() != shared.chain_id {
        return Err(rejection(
            "wrong_chain_id",
            format!(
                "transaction is for chain {:?}, this is {:?}",
                tx.body.chain_id.as_str(),
                shared.chain_id
            ),
        ));
    }
    if encode(tx).len() > TX_BYTES_MAX {
        return Err(rejection("too_large", "transaction exceeds the size limit"));
    }
    if pending {
        return Err(rejection(
            "duplicate",
            "transaction already pending or recently committed",
        ));
    }
    Ok(())
}

/// The signatures a consensus message carries: the vote's or proposal's own, the block's
/// transactions not already verified (`pending[i]`: the block's `i`-th is pending or lately
/// seen by our mempool),
/// and the last commit. Returns how many of them are the block's transactions.
fn consensus_checks(
    shared: &Shared,
    pending: &[bool],
    message: &ConsensusMessage,
    checks: &mut Vec<Check>,
) -> u64 {
    let mut block_txs = 0;
    let validators = shared.validators.validators();
    let key_of = |index: u16| validators.get(usize::from(index)).map(|v| v.public_key);
    match message {
        ConsensusMessage::Vote(vote) => {
            // An unknown validator index was filtered by the network task; an unknown key
            // here yields a check with a zero key, which fails.
            checks.push(Check {
                key: key_of(vote.vote.validator).unwrap_or_default(),
                domain: VOTE_SIGN_DOMAIN,
                message: encode(&vote.vote),
                signature: vote.signature,
            });
        }
        ConsensusMessage::Proposal { proposal, block } => {
            checks.push(Check {
                key: key_of(proposal.proposal.proposer).unwrap_or_default(),
                domain: PROPOSAL_SIGN_DOMAIN,
                message: encode(&proposal.proposal),
                signature: proposal.signature,
            });
            for (i, tx) in block.txs.iter().enumerate() {
                if !pending.get(i).copied().unwrap_or(false) {
                    block_txs += 1;
                    checks.push(Check {
                        key: tx.body.sender,
                        domain: TX_SIGN_DOMAIN,
                        message: encode(&tx.body),
                        signature: tx.signature,
                    });
                }
            }
            if let Some(commit) = &block.last_commit {
                for signature in commit.signatures.iter() {
                    checks.push(Check {
                        key: key_of(signature.validator).unwrap_or_default(),
                        domain: VOTE_SIGN_DOMAIN,
                        message: encode(&commit.vote_of(signature.validator)),
                        signature: signature.signature,
                    });
                }
            }
        }
    }
    block_txs
}

fn admit(
    shared: &Shared,
    txs: Vec<SignedTx>,
    hashes: &[Hash],
    checks: Vec<Result<usize, Rejection>>,
    results: &[bool],
    origin: TxOrigin,
    out: &PoolOutlets,
) {
    let app = shared.app.load();
    let from_rpc = matches!(origin, TxOrigin::Rpc(_));
    let mut any_bad_signature = false;
    // Everything but the insertion itself is computed before the mempool lock (see
    // `verify_jobs`): size, the sender's committed nonce, the copy to gossip.
    let candidates: Vec<_> = txs
        .into_iter()
        .zip(hashes)
        .zip(checks)
        .map(|((tx, hash), check)| match check {
            Err(rejection) => Err(rejection),
            Ok(index) if !results.get(index).copied().unwrap_or(false) => {
                any_bad_signature = true;
                Err(rejection("bad_signature", "signature does not verify"))
            }
            Ok(_) => {
                let bytes = encode(&tx).len();
                let nonce = app.account(&tx.body.sender).nonce;
                let copy = from_rpc.then(|| tx.clone());
                Ok((tx, *hash, bytes, nonce, copy))
            }
        })
        .collect();
    let mut outcomes = Vec::with_capacity(candidates.len());
    let mut admitted = Vec::new();
    {
        let mut pool = shared.mempool();
        for candidate in candidates {
            outcomes.push(candidate.and_then(|(tx, hash, bytes, nonce, copy)| {
                match pool.insert(tx, hash, bytes, nonce) {
                    Ok(()) => {
                        admitted.extend(copy);
                        Ok(hash)
                    }
                    Err(refusal) => Err(rejection(refusal.code(), format!("{refusal:?}"))),
                }
            }));
        }
        shared.mempool_gauges(&pool);
    }
    for outcome in &outcomes {
        if let Err(rejection) = outcome {
            shared
                .metrics
                .mempool_rejections
                .get_or_create(&Metrics::label("reason", &rejection.code))
                .inc();
        }
    }
    for tx in admitted {
        if out.gossip.try_send(tx).is_err() {
            shared.metrics.dropped("tx_gossip");
        }
    }
    match origin {
        TxOrigin::Rpc(reply) => {
            let _ = reply.send(outcomes);
        }
        TxOrigin::Gossip { id, from, relay } => {
            let verdict = if any_bad_signature {
                shared
                    .metrics
                    .gossip_invalid
                    .get_or_create(&Metrics::label("topic", "txs"))
                    .inc();
                Verdict::Reject
            } else if relay {
                Verdict::Accept
            } else {
                Verdict::AcceptLocal
            };
            let _ = out
                .network
                .try_send(NetworkCommand::Validate { id, from, verdict });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{BatchItem, Keypair, Payload, Vote, VoteKind};

    fn txs(count: usize) -> VerifyJob {
        let key = Keypair::from_seed([3; 32]);
        let tx = SignedTx::sign(
            &key,
            "c",
            0,
            Payload::Single(BatchItem::CancelOrder {
                market: 0,
                order_id: 1,
            }),
        );
        VerifyJob::Txs {
            txs: vec![tx; count],
            origin: TxOrigin::Gossip {
                id: GossipId::from_bytes(vec![1]),
                from: PeerId::random(),
                relay: true,
            },
        }
    }

    fn vote() -> VerifyJob {
        let message = ConsensusMessage::Vote(
            Vote {
                kind: VoteKind::Prevote,
                height: 1,
                round: 0,
                block_id: None,
                validator: 0,
            }
            .sign(&Keypair::from_seed([7; 32])),
        );
        VerifyJob::Consensus {
            message,
            gossip: (GossipId::from_bytes(vec![2]), PeerId::random()),
        }
    }

    fn shape(batch: &[VerifyJob]) -> Vec<String> {
        batch
            .iter()
            .map(|job| match job {
                VerifyJob::Txs { txs, .. } => format!("txs{}", txs.len()),
                VerifyJob::Consensus { .. } => "vote".to_owned(),
            })
            .collect()
    }

    #[test]
    fn lanes_do_not_mix_and_tx_batches_are_capped() {
        let (queue, jobs) = queue();
        for count in [200, 200, 200] {
            assert!(queue.try_send(txs(count)).is_ok());
        }
        assert!(queue.try_send(vote()).is_ok());
        assert!(queue.try_send(vote()).is_ok());
        // The votes, queued last, are a batch of their own on the consensus lane.
        let votes = jobs.next_batch(Lane::Consensus).unwrap_or_default();
        assert_eq!(shape(&votes), ["vote", "vote"]);
        // Transactions stop once 256 signatures are in.
        let first = jobs.next_batch(Lane::Txs).unwrap_or_default();
        assert_eq!(shape(&first), ["txs200", "txs200"]);
        let second = jobs.next_batch(Lane::Txs).unwrap_or_default();
        assert_eq!(shape(&second), ["txs200"]);
        assert!(jobs.is_empty());
    }

    /// A pool's surroundings: a node's shared state with validator 0 =
    /// `Keypair::from_seed([7; 32])` and its store in a directory of its own (removed on
    /// drop), and the pool's outlets with their receivers.
    struct Fixture {
        dir: TempDir,
        shared: Arc<Shared>,
        out: PoolOutlets,
        to_driver: mpsc::Receiver<DriverInput>,
        _from_pool: mpsc::Receiver<NetworkCommand>,
        _gossiped: mpsc::Receiver<SignedTx>,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("basalt-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let shared = crate::state::test_shared(&dir, &[Keypair::from_seed([7; 32])], 0);
            let (driver, to_driver) = mpsc::channel(8);
            let (network, _from_pool) = mpsc::channel(8);
            let (gossip, _gossiped) = mpsc::channel(8);
            Fixture {
                dir: TempDir(dir),
                shared,
                out: PoolOutlets {
                    driver,
                    network,
                    gossip,
                },
                to_driver,
                _from_pool,
                _gossiped,
            }
        }
    }

    /// A directory removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn votes_are_verified_while_the_mempool_is_locked_elsewhere() {
        // The transaction lane runs at a lower OS priority and takes the mempool lock; a
        // batch of votes must not wait for that lock (it did: every batch took it).
        let Fixture {
            dir: _dir,
            shared,
            out,
            mut to_driver,
            ..
        } = Fixture::new("verify");
        let held = shared.mempool();
        let worker = {
            let shared = shared.clone();
            std::thread::spawn(move || verify_jobs(&shared, vec![vote()], &out))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let delivered = loop {
            match to_driver.try_recv() {
                Ok(input) => break Some(input),
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => break None,
            }
        };
        drop(held);
        worker.join().unwrap();
        assert!(
            matches!(delivered, Some(DriverInput::Consensus(..))),
            "the vote waited for the mempool lock"
        );
    }

    #[test]
    fn a_transaction_committed_before_its_gossip_arrives_is_not_verified_again() {
        let fixture = Fixture::new("verify-seen");
        let (shared, out) = (&fixture.shared, &fixture.out);
        let tx = |nonce| {
            let item = BatchItem::CancelOrder {
                market: 0,
                order_id: 1,
            };
            SignedTx::sign(
                &Keypair::from_seed([3; 32]),
                "c",
                nonce,
                Payload::Single(item),
            )
        };
        let (late, fresh) = (tx(0), tx(1));
        // `late` reached us inside a block (verified on the consensus path), was committed.
        shared.mempool().remove_committed(&[late.hash()], |_| 1);
        let verified = || {
            shared
                .metrics
                .signatures_verified
                .get_or_create(&Metrics::label("kind", "tx"))
                .get()
        };
        let submit = |txs: Vec<SignedTx>| {
            let (reply, answer) = oneshot::channel();
            let job = VerifyJob::Txs {
                txs,
                origin: TxOrigin::Rpc(reply),
            };
            verify_jobs(shared, vec![job], out);
            answer.blocking_recv().unwrap()
        };
        let outcomes = submit(vec![late, fresh.clone()]);
        assert_eq!(
            outcomes[0].as_ref().map_err(|r| r.code.as_str()),
            Err("duplicate")
        );
        assert_eq!(outcomes[1].as_ref().ok(), Some(&fresh.hash()));
        assert_eq!(
            verified(),
            1,
            "only the fresh transaction's signature is checked"
        );
    }

    #[test]
    fn a_small_transaction_batch_waits_briefly_to_fill() {
        let (queue, jobs) = queue();
        for _ in 0..2 {
            assert!(queue.try_send(txs(1)).is_ok());
        }
        let started = std::time::Instant::now();
        let batch = jobs.next_batch(Lane::Txs).unwrap_or_default();
        assert_eq!(shape(&batch), ["txs1", "txs1"]);
        assert!(
            started.elapsed() >= TX_BATCH_FILL_WAIT,
            "two signatures wait for more before they are verified"
        );
        // Votes never wait.
        assert!(queue.try_send(vote()).is_ok());
        let votes = jobs.next_batch(Lane::Consensus).unwrap_or_default();
        assert_eq!(shape(&votes), ["vote"]);
    }

    #[test]
    fn consensus_batches_are_capped() {
        let (queue, jobs) = queue();
        for _ in 0..CONSENSUS_JOBS_PER_BATCH_MAX + 1 {
            assert!(queue.try_send(vote()).is_ok());
        }
        let batch = jobs.next_batch(Lane::Consensus).unwrap_or_default();
        assert_eq!(batch.len(), CONSENSUS_JOBS_PER_BATCH_MAX);
        assert_eq!(jobs.len(), 1);
    }

    #[test]
    fn a_full_queue_refuses_without_blocking_the_other() {
        let (queue, jobs) = queue();
        for _ in 0..VERIFY_QUEUE_MAX {
            assert!(queue.try_send(txs(0)).is_ok());
        }
        assert_eq!(queue.try_send(txs(0)), Err(QueueFull));
        assert!(queue.try_send(vote()).is_ok(), "consensus has its own room");
        assert_eq!(jobs.len(), VERIFY_QUEUE_MAX + 1);
        drop(queue);
        for lane in [Lane::Consensus, Lane::Txs] {
            let mut batches = 0;
            while jobs.next_batch(lane).is_some() {
                batches += 1;
            }
            assert!(batches > 0, "drains, then ends once the senders are gone");
        }
    }
}
