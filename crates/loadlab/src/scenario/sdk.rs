//! Scenarios that go through the client SDK's batch submitter: how to start one over the
//! run's routes, and how its outcomes map to the tracker's states.

use super::Ctx;
use crate::tracker::OpState;
use anyhow::{Context, Result};
use basalt_client::{
    BalancedClient, BatchSubmitter, OpError, OpOutcome, SubmitterConfig, Subscription,
    WithSubscription,
};
use basalt_types::Keypair;
use std::time::{Duration, Instant};

/// The chain client the submitters use: balanced over the run's routes, receipts over a
/// WebSocket subscription.
pub type Chain = WithSubscription<BalancedClient>;

/// Deadline of one submitter operation in the bench (the run's drain is shorter than the
/// SDK's default minute).
pub const OP_TIMEOUT: Duration = Duration::from_secs(20);

/// A chain client over `ctx.routes`.
pub async fn chain(ctx: &Ctx) -> Result<Chain> {
    let balanced = BalancedClient::new(&ctx.routes)
        .await
        .context("connecting the SDK's balanced client")?;
    let subscription = Subscription::connect(&ctx.routes).context("opening a subscription")?;
    Ok(WithSubscription::new(balanced, subscription))
}

/// A batch submitter over `chain` with these signers.
pub async fn submitter(
    ctx: &Ctx,
    chain: Chain,
    signers: Vec<Keypair>,
) -> Result<BatchSubmitter<Chain>> {
    let config = SubmitterConfig {
        op_timeout: OP_TIMEOUT,
        chain_id: Some(ctx.chain_id.clone()),
        ..SubmitterConfig::default()
    };
    BatchSubmitter::start(chain, signers, config)
        .await
        .context("starting the batch submitter")
}

/// Shut `submitter` down (flush, wait for batches in flight until `deadline`), to
/// completion on this worker thread. (The shutdown future is `Send` since the client's fix;
/// callers that are async could await it directly.)
pub fn shut_down(submitter: &BatchSubmitter<Chain>, deadline: Instant) {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(submitter.shutdown(deadline)));
}

/// The tracker state of a submitter outcome observed at `at`.
pub fn state_of(outcome: &OpOutcome, at: Instant) -> OpState {
    match outcome {
        OpOutcome::Committed { .. } => OpState::Committed(at),
        OpOutcome::TimedOut => OpState::TimedOut,
        OpOutcome::Rejected { reason } => match reason {
            OpError::Failed { code, .. } | OpError::Refused { code, .. } => {
                OpState::Rejected(code.clone())
            }
            OpError::DependencyFailed { .. } => OpState::Rejected("dependency_failed".into()),
            OpError::QueueFull { .. } => OpState::Shed,
            OpError::ShutDown => OpState::Rejected("shut_down".into()),
            OpError::Internal(_) => OpState::SysError,
            OpError::RetriesExhausted { last_error, .. } => {
                let typed_overload = [
                    "overloaded",
                    "congested",
                    "mempool_full",
                    "sender_full",
                    "429",
                    "503",
                ]
                .iter()
                .any(|code| last_error.contains(code));
                if typed_overload {
                    OpState::Shed
                } else {
                    OpState::SysError
                }
            }
        },
    }
}

/// Submitter counters worth a line in the report.
pub fn facts(name: &str, submitter: &BatchSubmitter<Chain>) -> Vec<(String, String)> {
    use basalt_client::{FlushReason, RetryReason};
    let m = submitter.metrics();
    vec![
        (
            format!("{name}: batches flushed (size / interval / shutdown)"),
            format!(
                "{} / {} / {}",
                m.flushes(FlushReason::Size),
                m.flushes(FlushReason::Interval),
                m.flushes(FlushReason::Shutdown)
            ),
        ),
        (
            format!("{name}: retries (transient / stale nonce / stripped)"),
            format!(
                "{} / {} / {}",
                m.retries(RetryReason::Transient),
                m.retries(RetryReason::StaleNonce),
                m.retries(RetryReason::Stripped)
            ),
        ),
        (
            format!("{name}: nonce repairs"),
            m.nonce_repairs().to_string(),
        ),
    ]
}
