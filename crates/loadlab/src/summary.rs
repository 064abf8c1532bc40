//! What a run measured: the summary (`summary.json`, and the last line with `--json`) and
//! the per-second series the HTML plots draw.
//!
//! Every field is measured, never assumed: one that could not be measured is `null`, with
//! the reason in `notes`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// p50/p99 idle versus load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdleLoad {
    /// Idle median.
    pub idle_p50: Option<f64>,
    /// Idle 99th percentile.
    pub idle_p99: Option<f64>,
    /// Loaded median.
    pub load_p50: Option<f64>,
    /// Loaded 99th percentile.
    pub load_p99: Option<f64>,
}

/// Three percentiles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th.
    pub p95: Option<f64>,
    /// 99th.
    pub p99: Option<f64>,
}

impl Percentiles {
    /// The percentiles of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Percentiles {
        Percentiles {
            p50: crate::stats::percentile(values, 0.5),
            p95: crate::stats::percentile(values, 0.95),
            p99: crate::stats::percentile(values, 0.99),
        }
    }
}

/// The first stage of two-stage operations (a task's create), seed 002's "on-chain submit".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirstStage {
    /// Operations whose first stage committed.
    pub seen: u64,
    /// Scheduled → first stage committed, ms.
    pub latency_ms: Percentiles,
}

/// Node-side queues during the measured window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeQueues {
    /// Largest mempool size and named queue depths seen (sampled once a second), per
    /// series, the maximum over validators.
    pub gauge_max: BTreeMap<String, f64>,
    /// Drop, shed and refusal counters that grew in the window, summed over validators.
    pub drops: BTreeMap<String, f64>,
}

/// One step of a ramp.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RampStep {
    /// Offered rate, ops/s.
    pub offered_rate: u64,
    /// Committed ops/s (mean over the held window).
    pub tps_mean: Option<f64>,
    /// Completion.
    pub completion_rate: Option<f64>,
    /// Submit → commit p50, ms.
    pub latency_p50_ms: Option<f64>,
    /// Submit → commit p99, ms.
    pub latency_p99_ms: Option<f64>,
    /// Block time p50 under this step, ms.
    pub block_time_p50_ms: Option<f64>,
    /// Precommit p50 under this step, ms.
    pub precommit_p50_ms: Option<f64>,
    /// System errors.
    pub sys_errors: u64,
    /// Gates this step broke (empty: it passed).
    pub gate_failures: Vec<String>,
}

/// A ramp's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ramp {
    /// Every step run, in order.
    pub steps: Vec<RampStep>,
    /// The highest offered rate sustained (every gate held) before the first broken step.
    pub saturation_rate: Option<u64>,
    /// Seconds each step was held (after its settle time).
    pub step_duration_s: f64,
}

/// The same offered load without the scenario's disturbance (gossip-flood: transfers, no
/// flood), measured in a window of its own right before the disturbed one: the control of
/// the experiment. (Not to be confused with `--baseline`, a previous run's summary.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Control {
    /// Measured duration, s.
    pub duration_s: f64,
    /// Mean committed operations per second.
    pub tps_mean: Option<f64>,
    /// Scheduled → seen committed, p50 and p99, ms.
    pub submit_to_commit_p50_ms: Option<f64>,
    /// See `submit_to_commit_p50_ms`.
    pub submit_to_commit_p99_ms: Option<f64>,
    /// Admission answer → seen committed, p50, ms.
    pub accept_to_commit_p50_ms: Option<f64>,
    /// The nodes' mempool wait, p50 and p99, ms.
    pub mempool_wait_p50_ms: Option<f64>,
    /// See `mempool_wait_p50_ms`.
    pub mempool_wait_p99_ms: Option<f64>,
    /// Block interval p50, ms.
    pub block_time_p50_ms: Option<f64>,
    /// Block interval p99, ms.
    pub block_time_p99_ms: Option<f64>,
    /// Precommit latency of every validator, p50 and p99, ms.
    pub precommit_p50_ms: Option<f64>,
    /// See `precommit_p50_ms`.
    pub precommit_p99_ms: Option<f64>,
    /// The loaded (flooded) validator's own precommit latency p99, ms.
    pub flooded_precommit_p99_ms: Option<f64>,
    /// Validator CPU time per committed operation, µs.
    pub cpu_us_per_tx_per_validator: Option<f64>,
    /// Chain halts during the baseline (gaps over the halt factor × the idle block time).
    pub chain_halts: u64,
    /// Largest height spread between validators in the baseline (same measure as the
    /// disturbed window's `height_spread_max`): what this machine does without the
    /// disturbance.
    pub height_spread_max: u64,
}

/// The run's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Scenario.
    pub scenario: String,
    /// Validators.
    pub validators: usize,
    /// gateway | all | single.
    pub target: String,
    /// How load was offered.
    pub load_model: String,
    /// Measured load duration, s.
    pub duration_s: f64,
    /// Offered operations per second: the open loop's rate, or what the closed loop
    /// actually issued per second of the window.
    pub offered_rate: u64,
    /// Operations scheduled in the measured window (follow-ups included).
    pub submitted: u64,
    /// Of those, committed.
    pub committed: u64,
    /// committed / submitted.
    pub completion_rate: Option<f64>,
    /// Accepted but without a verdict by the end of the drain.
    pub timeouts: u64,
    /// Requests without a usable answer (transport errors, untyped or 5xx answers other
    /// than typed shedding), over the whole load phase.
    pub sys_errors: u64,
    /// Operations shed (429/503 with a typed body, or a typed transient refusal) after
    /// every retry.
    pub shed: u64,
    /// Requests answered with typed shedding (each retry counts).
    pub shed_requests: u64,
    /// Typed rejections of operations, by code.
    pub rejections: BTreeMap<String, u64>,
    /// Mean committed operations per second of the window.
    pub tps_mean: Option<f64>,
    /// Transactions the validators' own counter committed in the window (the most any
    /// validator reports): a cross-check of `tps_mean` (a batch transaction counts once).
    pub node_committed_txs: Option<u64>,
    /// Coefficient of variation of per-second committed operations.
    pub tps_cv: Option<f64>,
    /// Block interval from block times, ms.
    pub block_time_ms: IdleLoad,
    /// Precommit latency from every validator's histogram, ms.
    pub precommit_ms: IdleLoad,
    /// Time in each consensus step (propose, prevote, precommit, commit — the last one
    /// includes the commit wait), every validator's histogram, ms: where block time goes.
    pub steps_ms: BTreeMap<String, IdleLoad>,
    /// Durable writes, every validator's histogram, ms: `sign_record` (the signing state
    /// and consensus WAL made durable before a vote or proposal leaves, inside the steps
    /// above) and `persist` (a batch of decided blocks made durable, off the consensus
    /// path).
    pub durable_writes_ms: BTreeMap<String, IdleLoad>,
    /// Scheduled send → seen committed, ms.
    pub submit_to_commit_ms: Percentiles,
    /// A node's admission answer → seen committed, ms: the chain's part of
    /// `submit_to_commit_ms` (without the generator's own lag and the HTTP round trip).
    pub accept_to_commit_ms: Percentiles,
    /// The nodes' own view of the same: admission into a validator's mempool → executed in
    /// a committed block, from every validator's histogram (a transaction counts at each
    /// validator, from its arrival there), p50 / p95 / p99 in ms.
    pub mempool_wait_ms: Percentiles,
    /// HTTP latency of submissions, ms.
    pub http_ms: Percentiles,
    /// Heights decided in a round above 0 during the window (max over validators).
    pub round_escalations: Option<u64>,
    /// Largest difference between validators' heights during the load: at any instant,
    /// from every validator's own commit times (`GET /v1/commits`, one clock on a devnet)
    /// when all of them answer for the whole window; otherwise as sampled (below).
    pub height_spread_max: u64,
    /// Where `height_spread_max` comes from: `commit_times` or `sampler`.
    pub height_spread_source: String,
    /// Largest difference between validators' heights in the sampler's readings (a
    /// validator that answers late is read at an older height).
    pub height_spread_sampled_max: u64,
    /// The slowest answer to a height sample during the load, ms: heights read this late
    /// can differ by that long's worth of blocks without any validator lagging.
    pub height_sample_slowest_ms: Option<f64>,
    /// Most validators that did not answer one height sample.
    pub validators_unreachable_max: u64,
    /// Gaps between blocks longer than the halt factor × the idle block time.
    pub chain_halts: u64,
    /// Longest gap between consecutive blocks from the measured start to the drain, ms.
    pub block_gap_max_ms: Option<f64>,
    /// Every answering validator has the same block id and state root at a common height.
    pub state_roots_agree: Option<bool>,
    /// Validator CPU time per committed operation, averaged over validators, µs.
    pub cpu_us_per_tx_per_validator: Option<f64>,
    /// Queue depths, mempool size, drops and shedding inside the nodes.
    pub node_queues: NodeQueues,
    /// The validator that took all the load (target single, http-flood).
    pub flooded_validator: Option<String>,
    /// That validator's own precommit latency, ms.
    pub flooded_precommit_ms: Option<IdleLoad>,
    /// Two-stage operations' first stage (tasks: the create).
    pub first_stage: Option<FirstStage>,
    /// Scenario-specific facts, as report rows.
    pub facts: Vec<(String, String)>,
    /// The ramp, when the run was one.
    pub ramp: Option<Ramp>,
    /// The same load without the scenario's disturbance, measured just before it
    /// (`--control`): what the disturbance itself costs, apart from what the load costs.
    pub control: Option<Control>,
    /// Gates that broke (filled in by the caller that checks them).
    pub gate_failures: Vec<String>,
    /// Why a field is null, and other caveats.
    pub notes: Vec<String>,
}

/// One second of a run, for the plots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the idle phase began.
    pub t: u64,
    /// Operations issued in this second.
    pub offered: u64,
    /// Operations seen committed in this second.
    pub committed: u64,
    /// Latency p50 of those, ms.
    pub latency_p50_ms: Option<f64>,
    /// Latency p99 of those, ms.
    pub latency_p99_ms: Option<f64>,
    /// Mean block interval of blocks seen in this second, ms.
    pub block_time_ms: Option<f64>,
    /// Longest block interval of blocks seen in this second, ms.
    pub block_time_max_ms: Option<f64>,
    /// Each validator's last height sampled in this second.
    pub heights: Vec<Option<u64>>,
}

/// The run's time series, and where its phases begin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Per second.
    pub seconds: Vec<Second>,
    /// Second the load began.
    pub load_start_s: f64,
    /// Second the measured window began.
    pub measure_start_s: f64,
    /// Second the load ended.
    pub load_end_s: f64,
}
