//! `tasks`: seed 002's shape done right. Each operation is one task: `CreateTask` from a task
//! generator, then `RespondTask` sent only once the create committed
//! ([`BatchSubmitter::submit_after`]), both through one SDK batch submitter with
//! [`SIGNERS`] signers. The operation's first stage is the create's commit ("on-chain
//! submit" in the seed's table); it ends when the response commits ("end-to-end").
//!
//! Nothing is pre-signed: the submitter signs one batch transaction per up to 256 items, so
//! signing costs one signature per batch, not per operation.

use super::sdk::{self, Chain};
use super::{account, Ctx, Workload, TASK_GENERATORS};
use anyhow::{ensure, Result};
use basalt_client::{BatchSubmitter, OpOutcome};
use basalt_types::{sha256, BatchItem};
use futures::future::BoxFuture;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Task generator accounts signing for the submitter (seed 002's production had 10 replicas
/// with one signer each).
pub const SIGNERS: usize = 8;

/// Create → respond through the batch submitter.
pub struct Tasks {
    ctx: Ctx,
    submitter: BatchSubmitter<Chain>,
    ordering_violations: AtomicU64,
}

impl Tasks {
    /// Start the submitter.
    pub async fn new(ctx: &Ctx) -> Result<Tasks> {
        ensure!(
            SIGNERS <= TASK_GENERATORS,
            "more signers than task generators"
        );
        let chain = sdk::chain(ctx).await?;
        let signers = (0..SIGNERS).map(account).collect();
        Ok(Tasks {
            ctx: ctx.clone(),
            submitter: sdk::submitter(ctx, chain, signers).await?,
            ordering_violations: AtomicU64::new(0),
        })
    }

    fn task(self: &Arc<Self>, op: u64) {
        let tag = format!("basalt-bench-task/{}/{op}", self.ctx.run_tag);
        let task_id = sha256(tag.as_bytes());
        let created = self.submitter.submit(BatchItem::CreateTask {
            task_id,
            payload_hash: sha256(format!("{tag}/payload").as_bytes()),
        });
        let answered = self.submitter.submit_after(
            BatchItem::RespondTask {
                task_id,
                result_hash: sha256(format!("{tag}/result").as_bytes()),
            },
            &created,
        );
        self.ctx.tracker.accepted(op);
        let this = self.clone();
        tokio::spawn(async move {
            let tracker = &this.ctx.tracker;
            let create = created.await;
            if !create.is_committed() {
                tracker.finish(op, sdk::state_of(&create, Instant::now()));
                return;
            }
            tracker.first_stage(op, Instant::now());
            let answer = answered.await;
            if let (OpOutcome::Committed { height: a, .. }, Some(c)) = (&answer, create.height()) {
                if *a <= c {
                    this.ordering_violations.fetch_add(1, Ordering::Relaxed);
                }
            }
            tracker.finish(op, sdk::state_of(&answer, Instant::now()));
        });
    }
}

impl Workload for Tasks {
    fn chunk_max(&self) -> usize {
        basalt_types::limits::BATCH_ITEMS_MAX
    }

    fn prepare(&self, _ops: Range<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn send(self: Arc<Self>, ops: Range<u64>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            for op in ops {
                self.task(op);
            }
        })
    }

    fn facts(&self) -> Vec<(String, String)> {
        let mut facts = vec![
            ("signers".to_owned(), SIGNERS.to_string()),
            (
                "responses committed at or below their create's height (must be 0)".to_owned(),
                self.ordering_violations.load(Ordering::Relaxed).to_string(),
            ),
        ];
        facts.extend(sdk::facts("submitter", &self.submitter));
        facts
    }

    fn finish(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            sdk::shut_down(&self.submitter, deadline);
        })
    }
}
