//! The signature-verification pool: checks transaction and consensus signatures in batches
//! (about twice the single-signature rate) on its own threads, off the consensus path.
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

/// Jobs waiting for the pool (each job is a batch of transactions or one consensus
/// message). Full → the caller sheds: RPC answers "overloaded", gossip is ignored.
pub const VERIFY_QUEUE_MAX: usize = 4096;
/// Signatures verified in one batch at most (bounds the latency a vote can wait behind
/// transactions).
pub const SIGNATURES_PER_BATCH_MAX: usize = 2048;

/// Where transactions came from.
pub enum TxOrigin {
    /// An RPC submission: one result per transaction goes back.
    Rpc(oneshot::Sender<Vec<Result<Hash, Rejection>>>),
    /// A gossiped batch: the verdict goes to the network.
    Gossip(GossipId, PeerId),
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

/// Run one pool thread until the job channel closes.
pub fn run(shared: Arc<Shared>, jobs: crossbeam_channel::Receiver<VerifyJob>, out: PoolOutlets) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let mut signatures = 0usize;
        while signatures < SIGNATURES_PER_BATCH_MAX {
            match jobs.try_recv() {
                Ok(job) => {
                    signatures += match &job {
                        VerifyJob::Txs { txs, .. } => txs.len(),
                        VerifyJob::Consensus { .. } => 1,
                    };
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        shared.metrics.depth("verify", jobs.len());
        verify_jobs(&shared, batch, &out);
    }
}

/// What each job needs checked, as ranges into one flat list of checks.
struct Prepared {
    job: VerifyJob,
    /// Per transaction: an early rejection, or the index of its check.
    tx_checks: Vec<Result<usize, Rejection>>,
    /// Checks of a consensus message.
    consensus_checks: std::ops::Range<usize>,
}

fn verify_jobs(shared: &Shared, batch: Vec<VerifyJob>, out: &PoolOutlets) {
    let mut checks: Vec<Check> = Vec::new();
    let mut prepared = Vec::with_capacity(batch.len());
    {
        let pool = shared.mempool();
        for job in batch {
            let mut tx_checks = Vec::new();
            let start = checks.len();
            match &job {
                VerifyJob::Txs { txs, .. } => {
                    for tx in txs {
                        tx_checks.push(precheck_tx(shared, &pool, tx).map(|_| {
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
                    consensus_checks(shared, &pool, message, &mut checks);
                }
            }
            prepared.push(Prepared {
                job,
                tx_checks,
                consensus_checks: start..checks.len(),
            });
        }
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
    shared
        .metrics
        .signatures_verified
        .get_or_create(&Metrics::label("kind", "all"))
        .inc_by(results.len() as u64);
    for item in prepared {
        match item.job {
            VerifyJob::Txs { txs, origin } => {
                admit(shared, txs, item.tx_checks, &results, origin, out);
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

/// Stateless checks before the signature: chain id and size; a transaction already pending
/// is a duplicate and is not verified again.
fn precheck_tx(
    shared: &Shared,
    pool: &crate::mempool::Mempool,
    tx: &SignedTx,
) -> Result<(), Rejection> {
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
    if pool.contains(&tx.hash()) {
        return Err(rejection("duplicate", "transaction already pending"));
    }
    Ok(())
}

/// The signatures a consensus message carries: the vote's or proposal's own, the block's
/// transactions not already verified (pending in our mempool), and the last commit.
fn consensus_checks(
    shared: &Shared,
    pool: &crate::mempool::Mempool,
    message: &ConsensusMessage,
    checks: &mut Vec<Check>,
) {
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
            for tx in block.txs.iter() {
                if !pool.contains(&tx.hash()) {
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
}

fn admit(
    shared: &Shared,
    txs: Vec<SignedTx>,
    checks: Vec<Result<usize, Rejection>>,
    results: &[bool],
    origin: TxOrigin,
    out: &PoolOutlets,
) {
    let app = shared.app.load();
    let from_rpc = matches!(origin, TxOrigin::Rpc(_));
    let mut outcomes = Vec::with_capacity(txs.len());
    let mut any_bad_signature = false;
    let mut admitted = Vec::new();
    {
        let mut pool = shared.mempool();
        for (tx, check) in txs.into_iter().zip(checks) {
            let hash = tx.hash();
            let outcome = match check {
                Err(rejection) => Err(rejection),
                Ok(index) if !results.get(index).copied().unwrap_or(false) => {
                    any_bad_signature = true;
                    Err(rejection("bad_signature", "signature does not verify"))
                }
                Ok(_) => {
                    let bytes = encode(&tx).len();
                    let nonce = app.account(&tx.body.sender).nonce;
                    let copy = from_rpc.then(|| tx.clone());
                    match pool.insert(tx, hash, bytes, nonce) {
                        Ok(()) => {
                            admitted.extend(copy);
                            Ok(hash)
                        }
                        Err(refusal) => Err(rejection(refusal.code(), format!("{refusal:?}"))),
                    }
                }
            };
            if let Err(rejection) = &outcome {
                shared
                    .metrics
                    .mempool_rejections
                    .get_or_create(&Metrics::label("reason", &rejection.code))
                    .inc();
            }
            outcomes.push(outcome);
        }
        shared.mempool_gauges(&pool);
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
        TxOrigin::Gossip(id, from) => {
            let verdict = if any_bad_signature {
                shared
                    .metrics
                    .gossip_invalid
                    .get_or_create(&Metrics::label("topic", "txs"))
                    .inc();
                Verdict::Reject
            } else {
                Verdict::Accept
            };
            let _ = out
                .network
                .try_send(NetworkCommand::Validate { id, from, verdict });
        }
    }
}
