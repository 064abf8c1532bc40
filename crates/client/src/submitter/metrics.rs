//! The batch submitter's metrics (prometheus-client).

use super::op::OpOutcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a batch was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// It reached the size limit.
    Size,
    /// Its time window ended.
    Interval,
    /// The submitter is shutting down (or every handle is gone).
    Shutdown,
}

impl FlushReason {
    /// Every reason, for pre-creating series.
    pub const ALL: [FlushReason; 3] = [
        FlushReason::Size,
        FlushReason::Interval,
        FlushReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Size => "size",
            FlushReason::Interval => "interval",
            FlushReason::Shutdown => "shutdown",
        }
    }
}

/// Why a batch (or part of it) was sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// Connection refused, timeout, 5xx, 503/429, mempool full: the same transaction again
    /// after a backoff.
    Transient,
    /// Another transaction took the batch's nonce: the content re-signed with a new nonce.
    StaleNonce,
    /// The whole batch was refused; its items were dry-run and the healthy ones re-sent.
    Stripped,
}

impl RetryReason {
    /// Every reason.
    pub const ALL: [RetryReason; 3] = [
        RetryReason::Transient,
        RetryReason::StaleNonce,
        RetryReason::Stripped,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Transient => "transient",
            RetryReason::StaleNonce => "stale_nonce",
            RetryReason::Stripped => "stripped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoopLabels {
    task: &'static str,
}

/// The submitter's metrics. Cheap to clone (handles to shared series). Register them with
/// [`SubmitterMetrics::register`].
#[derive(Debug, Clone)]
pub struct SubmitterMetrics {
    queue_depth: Gauge,
    waiting_dependencies: Gauge,
    batches_in_flight: Gauge,
    batch_items: Histogram,
    flushes: Family<ReasonLabels, Counter>,
    outcomes: Family<KindLabels, Counter>,
    rejections: Family<ReasonLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    dry_runs: Counter,
    nonce_repairs: Counter,
    fillers: Counter,
    panics: Family<LoopLabels, Counter>,
}

impl Default for SubmitterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SubmitterMetrics {
    /// Metrics not registered anywhere.
    pub fn new() -> Self {
        let metrics = SubmitterMetrics {
            queue_depth: Gauge::default(),
            waiting_dependencies: Gauge::default(),
            batches_in_flight: Gauge::default(),
            // 1, 2, 4, ... 256 items (the batch limit).
            batch_items: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            flushes: Family::default(),
            outcomes: Family::default(),
            rejections: Family::default(),
            retries: Family::default(),
            dry_runs: Counter::default(),
            nonce_repairs: Counter::default(),
            fillers: Counter::default(),
            panics: Family::default(),
        };
        for reason in FlushReason::ALL {
            let _ = metrics.flushes.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for reason in RetryReason::ALL {
            let _ = metrics.retries.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for kind in ["committed", "rejected", "timed_out"] {
            let _ = metrics.outcomes.get_or_create(&KindLabels { kind });
        }
        for task in ["accumulator", "batch"] {
            let _ = metrics.panics.get_or_create(&LoopLabels { task });
        }
        metrics
    }

    /// Register under the registry's prefix as `submitter_queue_depth`,
    /// `submitter_waiting_dependencies`, `submitter_batches_in_flight`,
    /// `submitter_batch_items`, `submitter_flushes_total{reason}`,
    /// `submitter_outcomes_total{kind}`, `submitter_rejections_total{reason}`,
    /// `submitter_retries_total{reason}`,
    /// `submitter_dry_runs_total`, `submitter_nonce_repairs_total`,
    /// `submitter_fillers_total` and `submitter_panics_total{task}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "submitter_queue_depth",
            "Operations queued for batching",
            self.queue_depth.clone(),
        );
        registry.register(
            "submitter_waiting_dependencies",
            "Operations waiting for their dependency to commit",
            self.waiting_dependencies.clone(),
        );
        registry.register(
            "submitter_batches_in_flight",
            "Batch transactions sent and not yet decided",
            self.batches_in_flight.clone(),
        );
        registry.register(
            "submitter_batch_items",
            "Operations per flushed batch",
            self.batch_items.clone(),
        );
        registry.register(
            "submitter_flushes",
            "Batches flushed, by reason (size, interval, shutdown)",
            self.flushes.clone(),
        );
        registry.register(
            "submitter_outcomes",
            "Operations decided, by kind (committed, rejected, timed_out)",
            self.outcomes.clone(),
        );
        registry.register(
            "submitter_rejections",
            "Rejected operations, by reason (failed, refused, dependency_failed, ...)",
            self.rejections.clone(),
        );
        registry.register(
            "submitter_retries",
            "Batches sent again, by reason (transient, stale_nonce, stripped)",
            self.retries.clone(),
        );
        registry.register(
            "submitter_dry_runs",
            "Operations dry-run through /v1/simulate after a whole batch was refused",
            self.dry_runs.clone(),
        );
        registry.register(
            "submitter_nonce_repairs",
            "Nonce repairs that ran (resynchronised from the chain, re-sent pending)",
            self.nonce_repairs.clone(),
        );
        registry.register(
            "submitter_fillers",
            "Filler transactions signed to close nonce gaps",
            self.fillers.clone(),
        );
        registry.register(
            "submitter_panics",
            "Panics caught in submitter tasks, by task (accumulator, batch)",
            self.panics.clone(),
        );
    }

    /// Operations queued for batching now.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.get()
    }

    /// Flushes so far for `reason`.
    pub fn flushes(&self, reason: FlushReason) -> u64 {
        self.flushes
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Retries so far for `reason`.
    pub fn retries(&self, reason: RetryReason) -> u64 {
        self.retries
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Operations decided so far with this outcome kind (`committed`, `rejected`,
    /// `timed_out`).
    pub fn outcomes(&self, kind: &str) -> u64 {
        let kind = match kind {
            "committed" => "committed",
            "rejected" => "rejected",
            "timed_out" => "timed_out",
            _ => return 0,
        };
        self.outcomes.get_or_create(&KindLabels { kind }).get()
    }

    /// Nonce repairs that ran so far.
    pub fn nonce_repairs(&self) -> u64 {
        self.nonce_repairs.get()
    }

    /// Fillers signed so far.
    pub fn fillers(&self) -> u64 {
        self.fillers.get()
    }

    /// Dry runs so far.
    pub fn dry_runs(&self) -> u64 {
        self.dry_runs.get()
    }

    /// Panics caught so far in `task` (`accumulator` or `batch`).
    pub fn panics(&self, task: &'static str) -> u64 {
        self.panics.get_or_create(&LoopLabels { task }).get()
    }

    pub(crate) fn queued(&self, count: i64) {
        self.queue_depth.inc_by(count);
    }

    pub(crate) fn dequeued(&self, count: i64) {
        self.queue_depth.dec_by(count);
    }

    pub(crate) fn waiting(&self, count: i64) {
        self.waiting_dependencies.inc_by(count);
    }

    pub(crate) fn batch_started(&self) {
        self.batches_in_flight.inc();
    }

    pub(crate) fn batch_finished(&self) {
        self.batches_in_flight.dec();
    }

    pub(crate) fn flushed(&self, reason: FlushReason, items: usize) {
        self.flushes
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        self.batch_items.observe(items as f64);
    }

    pub(crate) fn outcome(&self, outcome: &OpOutcome) {
        self.outcomes
            .get_or_create(&KindLabels {
                kind: outcome.kind(),
            })
            .inc();
        if let OpOutcome::Rejected { reason } = outcome {
            self.rejections
                .get_or_create(&ReasonLabels {
                    reason: reason.kind(),
                })
                .inc();
        }
    }

    pub(crate) fn retried(&self, reason: RetryReason) {
        self.retries
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn dry_run(&self, count: u64) {
        self.dry_runs.inc_by(count);
    }

    pub(crate) fn repaired(&self, fillers: usize) {
        self.nonce_repairs.inc();
        self.fillers.inc_by(fillers as u64);
    }

    pub(crate) fn panicked(&self, task: &'static str) {
        self.panics.get_or_create(&LoopLabels { task }).inc();
    }
}
