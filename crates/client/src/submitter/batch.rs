//! One batch's life: sign, send (with backoff), await the receipt (with stall checks), and
//! decide every operation — or strip, re-sign and go round again, a bounded number of times.

use super::metrics::RetryReason;
use super::op::{OpError, OpOutcome, OpSlot};
use super::{Core, Lane};
use crate::api::{ChainClient, CommittedReceipt};
use crate::error::ClientError;
use basalt_rpc::json::{ItemResultJson, ReceiptJson, ReceiptStatusJson};
use basalt_rpc::Rejection;
use basalt_types::{BatchItem, BoundedVec, Payload, SignedTx};
use std::sync::Arc;
use std::time::Instant;

/// What to do after one round.
enum Step {
    /// Every operation is decided.
    Done,
    /// These operations go round again (re-signed with a fresh nonce).
    Again(Vec<OpSlot>),
}

/// How sending one signed transaction ended.
enum Sent {
    /// A node took it (or already had it).
    Admitted,
    /// Transient failures until the attempts ran out, and at least one attempt may have
    /// reached a node: only the receipt wait can tell.
    Ambiguous,
    /// Transient failures until the attempts ran out; no node took it.
    GaveUp(String),
    /// The node says the nonce is used.
    StaleNonce,
    /// The node refused the transaction itself.
    Refused(Rejection),
}

/// How waiting for the receipt ended.
enum Waited {
    Committed(CommittedReceipt),
    /// Another transaction took the nonce; ours will never commit.
    NonceTaken,
    TimedOut,
}

/// Drive `ops` until each is decided.
pub(super) async fn run<C: ChainClient>(core: Arc<Core<C>>, lane: Arc<Lane>, ops: Vec<OpSlot>) {
    let mut ops = ops;
    loop {
        ops = expire(ops);
        if ops.is_empty() {
            return;
        }
        match round(&core, &lane, ops).await {
            Step::Done => return,
            Step::Again(rest) => ops = rest,
        }
    }
}

/// Operations past their deadline time out; the rest go on.
fn expire(ops: Vec<OpSlot>) -> Vec<OpSlot> {
    let (expired, live): (Vec<OpSlot>, Vec<OpSlot>) = ops.into_iter().partition(OpSlot::is_expired);
    for op in expired {
        op.resolve(OpOutcome::TimedOut);
    }
    live
}

/// Count a whole-batch failure against every operation; those out of attempts are rejected.
fn again(core: &Core<impl ChainClient>, ops: Vec<OpSlot>, last_error: &str) -> Step {
    let mut rest = Vec::with_capacity(ops.len());
    for mut op in ops {
        op.attempts += 1;
        if op.attempts >= core.config.op_attempts_max {
            let attempts = op.attempts;
            op.reject(OpError::RetriesExhausted {
                attempts,
                last_error: last_error.to_owned(),
            });
        } else {
            rest.push(op);
        }
    }
    if rest.is_empty() {
        Step::Done
    } else {
        Step::Again(rest)
    }
}

/// One round: sign, send, wait, settle.
async fn round<C: ChainClient>(core: &Arc<Core<C>>, lane: &Arc<Lane>, ops: Vec<OpSlot>) -> Step {
    let items: Vec<BatchItem> = ops.iter().map(|op| op.item.clone()).collect();
    #[cfg(test)]
    super::test_hooks::before_sign(&items);
    let Ok(items) = BoundedVec::new(items) else {
        // The accumulator never builds a batch above the chain's limit.
        for op in ops {
            op.reject(OpError::Internal(
                "batch above the chain's item limit".into(),
            ));
        }
        return Step::Done;
    };
    let payload = Payload::Batch {
        mode: core.config.batch_mode,
        items,
    };
    let tx = match lane.nonces.sign(payload) {
        Ok(tx) => tx,
        Err(error) => {
            if let Err(sync_error) = lane.nonces.sync(&core.client).await {
                tokio::time::sleep(core.config.backoff_min).await;
                return again(core, ops, &format!("{error}: {sync_error}"));
            }
            return Step::Again(ops);
        }
    };
    let deadline = ops
        .iter()
        .map(|op| op.deadline)
        .min()
        .unwrap_or_else(Instant::now);
    let nonce = tx.body.nonce;
    match send(core, &tx, deadline).await {
        Sent::Admitted | Sent::Ambiguous => {}
        Sent::StaleNonce => {
            // Our own earlier attempt may be what took the nonce: look before re-signing.
            match core
                .client
                .nonce_and_status(lane.nonces.address(), tx.hash())
                .await
            {
                Ok((_, status)) if CommittedReceipt::from_status(&status).is_some() => {}
                Ok((chain_nonce, _)) if chain_nonce > nonce => {
                    lane.nonces.observe_chain_nonce(chain_nonce);
                    lane.nonces.forget(nonce);
                    core.metrics.retried(RetryReason::StaleNonce);
                    return again(core, ops, "stale nonce");
                }
                // The node that said "stale" is ahead of this one, or the check failed:
                // the receipt wait decides.
                _ => {}
            }
        }
        Sent::Refused(rejection) => {
            if lane.nonces.release(nonce) {
                repair(core, lane).await;
            }
            return strip(core, lane, ops, &rejection.to_string()).await;
        }
        Sent::GaveUp(last_error) => {
            if lane.nonces.release(nonce) {
                repair(core, lane).await;
            }
            return again(core, ops, &last_error);
        }
    }
    match wait(core, lane, &tx, deadline).await {
        Waited::Committed(receipt) => settle(core, lane, ops, &tx, receipt).await,
        Waited::NonceTaken => {
            lane.nonces.forget(nonce);
            core.metrics.retried(RetryReason::StaleNonce);
            again(core, ops, "another transaction took the batch's nonce")
        }
        Waited::TimedOut => {
            lane.nonces.abandon(nonce);
            for op in ops {
                op.resolve(OpOutcome::TimedOut);
            }
            Step::Done
        }
    }
}

/// What a node's rejection code means for a retry.
enum Refusal {
    /// The node has it already (or a transaction with its nonce).
    Duplicate,
    StaleNonce,
    /// Load or a full pool: try again later. `ambiguous` when the node may still admit it.
    Transient {
        ambiguous: bool,
    },
    /// About the transaction itself: sending it again changes nothing.
    Permanent,
}

fn classify(code: &str) -> Refusal {
    match code {
        "duplicate" => Refusal::Duplicate,
        "stale_nonce" => Refusal::StaleNonce,
        // "congested": refused before verification, while the node's blocks are slow.
        "mempool_full" | "sender_full" | "congested" => Refusal::Transient { ambiguous: false },
        // "overloaded" in a submit result can mean the verification pool did not answer in
        // time, and it may still admit the transaction.
        "overloaded" | "timeout" | "internal" => Refusal::Transient { ambiguous: true },
        _ => Refusal::Permanent,
    }
}

/// Send `tx`, retrying transient failures with exponential backoff until the attempts or
/// the deadline run out.
async fn send<C: ChainClient>(core: &Core<C>, tx: &SignedTx, deadline: Instant) -> Sent {
    let config = &core.config;
    let mut delay = config.backoff_min;
    let mut ambiguous = false;
    let mut last_error = String::from("no attempt made");
    for attempt in 1..=config.submit_attempts_max {
        match core.client.submit(std::slice::from_ref(tx)).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => return Sent::Admitted,
                Some(Err(rejection)) => match classify(&rejection.code) {
                    Refusal::Duplicate => return Sent::Admitted,
                    Refusal::StaleNonce => return Sent::StaleNonce,
                    Refusal::Permanent => return Sent::Refused(rejection),
                    Refusal::Transient { ambiguous: maybe } => {
                        ambiguous |= maybe;
                        last_error = rejection.to_string();
                    }
                },
                None => last_error = "the node returned no result".to_owned(),
            },
            Err(error) if error.is_transient() => {
                ambiguous |= error.is_ambiguous();
                last_error = error.to_string();
            }
            Err(error) => return Sent::Refused(rejection_of(&error)),
        }
        if attempt == config.submit_attempts_max || Instant::now() + delay >= deadline {
            break;
        }
        core.metrics.retried(RetryReason::Transient);
        tracing::debug!(attempt, error = %last_error, "batch submission failed; backing off");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(config.backoff_max);
    }
    if ambiguous {
        Sent::Ambiguous
    } else {
        Sent::GaveUp(last_error)
    }
}

/// A non-transient client error as a refusal (e.g. 413 `too_large`, 400 `bad_encoding`).
fn rejection_of(error: &ClientError) -> Rejection {
    let code = match error {
        ClientError::Http { code, .. } | ClientError::Overloaded { code, .. } => code.clone(),
        ClientError::Decode { .. } => "decode".to_owned(),
        _ => "invalid".to_owned(),
    };
    Rejection::new(code, error.to_string())
}

/// Wait for the receipt in slices of the stall-check interval; after each empty slice ask
/// one node for the signer's nonce and the transaction's status, and repair a stall.
async fn wait<C: ChainClient>(
    core: &Core<C>,
    lane: &Lane,
    tx: &SignedTx,
    deadline: Instant,
) -> Waited {
    let hash = tx.hash();
    let nonce = tx.body.nonce;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Waited::TimedOut;
        }
        let slice_end = (now + core.config.stall_check_interval).min(deadline);
        match core.client.wait_receipt(hash, slice_end).await {
            Ok(receipt) => return Waited::Committed(receipt),
            // A wait that failed early (e.g. the waiter table is full) must not turn this
            // loop into a busy poll: the stall check below runs once per slice.
            Err(error) if !matches!(error, ClientError::Timeout { .. }) => {
                tokio::time::sleep_until(tokio::time::Instant::from_std(slice_end)).await;
            }
            Err(_) => {}
        }
        let Ok((chain_nonce, status)) = core
            .client
            .nonce_and_status(lane.nonces.address(), hash)
            .await
        else {
            continue;
        };
        if let Some(receipt) = CommittedReceipt::from_status(&status) {
            return Waited::Committed(receipt);
        }
        lane.nonces.observe_chain_nonce(chain_nonce);
        if chain_nonce > nonce {
            // Read on one node, nonce first: the node had stored every transaction up to
            // that nonce, and ours is not among them.
            return Waited::NonceTaken;
        }
        // Pending behind a gap, or lost by the node(s): fill gaps, re-send in order.
        tracing::debug!(%hash, nonce, chain_nonce, status = ?status.status, "batch stalled");
        repair(core, lane).await;
    }
}

async fn repair<C: ChainClient>(core: &Core<C>, lane: &Lane) {
    match lane.nonces.repair(&core.client).await {
        Ok(report) if !report.merged => core.metrics.repaired(report.fillers),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "nonce repair failed; will try again"),
    }
}

/// Decide every operation from a committed receipt.
async fn settle<C: ChainClient>(
    core: &Core<C>,
    lane: &Lane,
    ops: Vec<OpSlot>,
    tx: &SignedTx,
    committed: CommittedReceipt,
) -> Step {
    let nonce = tx.body.nonce;
    let receipt = &committed.receipt;
    if receipt.status == ReceiptStatusJson::Failed {
        let (code, message) = receipt
            .error
            .as_ref()
            .map(|error| (error.code.clone(), error.message.clone()))
            .unwrap_or_else(|| ("failed".to_owned(), "no reason given".to_owned()));
        match code.as_str() {
            // The nonce check failed: this transaction consumed nothing.
            "stale_nonce" => {
                lane.nonces.forget(nonce);
                core.metrics.retried(RetryReason::StaleNonce);
                return again(core, ops, &format!("{code}: {message}"));
            }
            "future_nonce" => {
                if lane.nonces.release(nonce) {
                    repair(core, lane).await;
                }
                core.metrics.retried(RetryReason::StaleNonce);
                return again(core, ops, &format!("{code}: {message}"));
            }
            _ => {
                lane.nonces.committed(nonce);
                return strip(core, lane, ops, &format!("{code}: {message}")).await;
            }
        }
    }
    lane.nonces.committed(nonce);
    if receipt.items.len() != ops.len() {
        let message = format!(
            "the receipt has {} item results for {} operations",
            receipt.items.len(),
            ops.len()
        );
        for op in ops {
            op.reject(OpError::Internal(message.clone()));
        }
        return Step::Done;
    }
    let mut rest = Vec::new();
    for (op, item) in ops.into_iter().zip(receipt.items.iter()) {
        match item {
            ItemResultJson::Applied { .. } => op.resolve(OpOutcome::Committed {
                receipt_item: item.clone(),
                height: committed.height,
                tx_hash: committed.hash,
            }),
            ItemResultJson::Failed { error } => op.reject(OpError::Failed {
                code: error.code.clone(),
                message: error.message.clone(),
            }),
            ItemResultJson::RolledBack => rest.push(op),
        }
    }
    if rest.is_empty() {
        Step::Done
    } else {
        again(core, rest, "rolled back with its batch")
    }
}

/// Dry-run rounds for one stripping: a round whose verdicts are inconclusive because the
/// node executed a block between its nonce read and the dry run is repeated for those
/// operations.
const DRY_RUN_ROUNDS_MAX: usize = 3;

/// What one dry run says about an operation.
enum Verdict {
    Healthy,
    Poison(OpError),
    Inconclusive,
}

fn verdict_of(result: Result<ReceiptJson, ClientError>) -> Verdict {
    match result {
        Ok(receipt) if receipt.status == ReceiptStatusJson::Success => Verdict::Healthy,
        Ok(receipt) => {
            let error = receipt.error.or_else(|| {
                receipt.items.into_iter().find_map(|item| match item {
                    ItemResultJson::Failed { error } => Some(error),
                    _ => None,
                })
            });
            match error {
                // The state moved between the nonce read and the dry run.
                Some(error) if error.code == "stale_nonce" || error.code == "future_nonce" => {
                    Verdict::Inconclusive
                }
                Some(error) => Verdict::Poison(OpError::Failed {
                    code: error.code,
                    message: error.message,
                }),
                None => Verdict::Healthy,
            }
        }
        Err(ClientError::Http {
            status,
            code,
            message,
            ..
        }) if (400..500).contains(&status) => Verdict::Poison(OpError::Refused { code, message }),
        Err(error) => {
            tracing::debug!(%error, "inconclusive dry run");
            Verdict::Inconclusive
        }
    }
}

/// The whole batch was refused: dry-run each operation alone against the latest state;
/// reject those that fail, and send the rest again (those whose dry runs stayed
/// inconclusive included: the attempt bound ends a loop).
async fn strip<C: ChainClient>(core: &Core<C>, lane: &Lane, ops: Vec<OpSlot>, cause: &str) -> Step {
    let concurrency = core.config.dry_run_concurrency.max(1);
    let mut healthy = Vec::new();
    let mut undecided = ops;
    for _ in 0..DRY_RUN_ROUNDS_MAX {
        if undecided.is_empty() {
            break;
        }
        core.metrics.dry_run(undecided.len() as u64);
        let items: Vec<BatchItem> = undecided.iter().map(|op| op.item.clone()).collect();
        let build = |nonce: u64| -> Vec<SignedTx> {
            items
                .into_iter()
                .map(|item| lane.nonces.sign_untracked(nonce, Payload::Single(item)))
                .collect()
        };
        let results = match core
            .client
            .dry_run(lane.nonces.address(), build, concurrency)
            .await
        {
            Ok(results) if results.len() == undecided.len() => results,
            Ok(_) => break,
            Err(error) => {
                tracing::debug!(%error, "dry runs impossible");
                break;
            }
        };
        let mut inconclusive = Vec::new();
        for (op, result) in undecided.into_iter().zip(results) {
            match verdict_of(result) {
                Verdict::Healthy => healthy.push(op),
                Verdict::Poison(reason) => op.reject(reason),
                Verdict::Inconclusive => inconclusive.push(op),
            }
        }
        undecided = inconclusive;
    }
    healthy.extend(undecided);
    if healthy.is_empty() {
        return Step::Done;
    }
    healthy.sort_by_key(|op| op.id);
    core.metrics.retried(RetryReason::Stripped);
    again(core, healthy, &format!("batch refused: {cause}"))
}
