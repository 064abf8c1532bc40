//! Basalt's load lab: runs a load against a network and reports what the seed reports
//! measured — idle versus loaded block time and precommit latency, completion, latency
//! percentiles measured from each operation's *scheduled* time (a slow system cannot hide
//! behind coordinated omission), system errors apart from typed shedding, round
//! escalations, height spread, chain halts, state-root agreement and CPU per committed
//! operation.
//!
//! Parts: [`scenario`] (what is sent: transfer, orderbook, tasks, http-flood; gossip-flood
//! is named but not built yet), [`load`] (open loop, closed loop, ramps), [`tracker`]
//! (every operation's fate), [`collect`] (blocks, heights, `/metrics`), [`summary`],
//! [`gates`] (gates and baselines), [`report`] (Markdown and HTML with plots),
//! [`progress`] (live line), [`devnet`] (a throw-away network for the run).
//!
//! Guarantees: every summary field is measured or `null` with a reason in `notes`; a
//! request without a usable answer is a system error, a typed 429/503 is shedding, never
//! the other way round. Not guaranteed: that the generator itself is not the bottleneck on
//! a small machine (the report shows the offered and the committed rate side by side).

pub mod collect;
pub mod devnet;
pub mod export;
// The gossip-flood flooder (written with the node's flood protections): keep this line.
pub mod flood;
pub mod gates;
pub mod load;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod summary;
pub mod tracker;

pub use gates::{check_gates, Gates};
pub use load::LoadModel;
pub use progress::Progress;
pub use scenario::ScenarioKind;
pub use summary::{IdleLoad, Percentiles, Series, Summary};

use anyhow::{bail, Context, Result};
use collect::{block_intervals, height_spread, scrape_all, Collected};
use stats::{bucket_delta_of, bucket_quantile, mean_cv, percentile, total, Scrape};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use summary::{Control, FirstStage, NodeQueues, Ramp, RampStep, Second};
use tracker::{OpState, Tracker, FOLLOW_UP_BASE};

/// After the load stops, how long pending operations may still commit.
pub const DRAIN: Duration = Duration::from_secs(15);
/// Drain after each ramp step.
pub const RAMP_STEP_DRAIN: Duration = Duration::from_secs(5);
/// How long the network may take to commit its first blocks.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Shortest gap between blocks that counts as a halt, whatever the idle block time.
pub const HALT_GAP_MIN_MS: f64 = 100.0;
/// Histogram of precommit latency in the nodes' metrics.
pub const PRECOMMIT_METRIC: &str = "basalt_consensus_precommit_latency_seconds";
/// Histogram of the time spent in each consensus step (label `step`).
pub const STEP_METRIC: &str = "basalt_consensus_step_duration_seconds";
/// Histogram of the time to make the signing state (and the consensus WAL) durable.
pub const SIGN_RECORD_METRIC: &str = "basalt_consensus_sign_record_duration_seconds";
/// Histogram of the time to make a batch of decided blocks durable.
pub const PERSIST_METRIC: &str = "basalt_chain_persist_duration_seconds";
/// Histogram of transactions' wait in a validator's mempool.
pub const MEMPOOL_WAIT_METRIC: &str = "basalt_mempool_wait_seconds";
/// Counter of transactions committed.
pub const COMMITTED_METRIC: &str = "basalt_consensus_committed_txs_total";
/// Counter of heights decided above round 0.
pub const ESCALATIONS_METRIC: &str = "basalt_consensus_round_escalations_total";

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Through `basalt gateway`, which balances over every validator.
    Gateway,
    /// Spread over every validator directly, round-robin.
    All,
    /// Everything at the first validator (seed 000's shape).
    Single,
}

impl Target {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Gateway => "gateway",
            Target::All => "all",
            Target::Single => "single",
        }
    }
}

/// A bench run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Endpoints of a running network; empty → start a devnet.
    pub endpoints: Vec<String>,
    /// A running gateway (with `endpoints` and target gateway).
    pub gateway_url: Option<String>,
    /// Validators of the devnet started for the run.
    pub validators: usize,
    /// The `basalt` executable (to start the devnet and the gateway).
    pub exe: PathBuf,
    /// Where the devnet lives during the run.
    pub devnet_dir: PathBuf,
    /// Commit wait of the devnet, ms.
    pub commit_wait_ms: u64,
    /// Where the load goes.
    pub target: Target,
    /// What is sent.
    pub scenario: ScenarioKind,
    /// How load is offered.
    pub model: LoadModel,
    /// Offered rates of a saturation search (open loop), instead of `model`.
    pub ramp: Option<Vec<u64>>,
    /// Measured load duration (after warm-up); per step for a ramp.
    pub duration: Duration,
    /// Load before measuring; a ramp step's settle time.
    pub warmup: Duration,
    /// Idle phase before the load.
    pub idle: Duration,
    /// A control window of this length (after a warm-up) before the load: the same load
    /// with the scenario's disturbance held back (zero: none).
    pub control: Duration,
    /// Concurrent users of flood scenarios.
    pub flood_concurrency: usize,
    /// Consensus gossip messages per second of the gossip-flood scenario's flooder.
    pub gossip_rate: u64,
    /// OS niceness of the flooder's threads (0..=19).
    pub flooder_niceness: u8,
    /// OS niceness of the load generator's threads (0..=19; 0 = the lab's own runtime).
    pub generator_niceness: u8,
    /// Stop validator 1 this long after the load began (tests of the gates).
    pub stop_validator_at: Option<Duration>,
    /// Thresholds (the ramp stops at the first step that breaks one; the halt factor
    /// defines a halt).
    pub gates: Gates,
    /// How long pending operations may commit after the load.
    pub drain: Duration,
}

/// A run's results.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The summary.
    pub summary: Summary,
    /// Per-second series for the plots.
    pub series: Series,
}

/// What the phases share.
struct Env {
    http: reqwest::Client,
    validators: Vec<String>,
    pids: Vec<u32>,
    tracker: Arc<Tracker>,
    collected: Arc<Collected>,
    workload: Arc<dyn scenario::Workload>,
    config: BenchConfig,
    flooded: Option<usize>,
}

/// The idle phase's measurements.
struct Idle {
    start: Instant,
    /// Every validator's metrics at the start and the end of the idle phase.
    scrapes: (Vec<Scrape>, Vec<Scrape>),
    block_ms: Vec<f64>,
}

/// Node-side state at an instant.
#[derive(Default, Clone)]
struct Snapshot {
    cpu_us: Vec<Option<u64>>,
    scrapes: Vec<Scrape>,
    http_len: usize,
    reads: (u64, u64),
    shed_requests: u64,
}

/// One load window: when it ran, and snapshots at its measured start and its end.
struct Window {
    model: LoadModel,
    load_start: Instant,
    measure_from: Instant,
    load_end: Instant,
    drained: Instant,
    at_load_start: Snapshot,
    at_measure: Snapshot,
    at_end: Snapshot,
}

async fn snapshot(env: &Env) -> Snapshot {
    Snapshot {
        cpu_us: env.pids.iter().map(|p| devnet::cpu_time_us(*p)).collect(),
        scrapes: scrape_all(&env.http, &env.validators).await,
        http_len: env.tracker.http_ms().len(),
        reads: env.tracker.reads(),
        shed_requests: env.tracker.shed_requests(),
    }
}

async fn wait_for_chain(http: &reqwest::Client, endpoints: &[String]) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let heights =
            futures::future::join_all(endpoints.iter().map(|e| collect::height(http, e))).await;
        if heights.iter().all(|h| h.is_some_and(|h| h >= 3)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the network did not commit 3 blocks within {} s (heights {heights:?})",
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn chain_id(http: &reqwest::Client, endpoint: &str) -> Result<String> {
    let status: serde_json::Value = http
        .get(format!("{endpoint}/v1/status"))
        .send()
        .await?
        .json()
        .await?;
    status
        .get("chain_id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .context("/v1/status has no chain_id")
}

/// Run a bench: optional devnet (and gateway), idle phase, load (one window, or a ramp of
/// windows), drain, collection.
pub async fn run(config: &BenchConfig, progress: &Progress) -> Result<Outcome> {
    let devnet = if config.endpoints.is_empty() {
        progress.phase("starting a devnet");
        Some(Arc::new(Mutex::new(devnet::Devnet::start(
            &config.exe,
            config.validators,
            &config.devnet_dir,
            config.commit_wait_ms,
        )?)))
    } else {
        None
    };
    let lock = |d: &Arc<Mutex<devnet::Devnet>>| {
        d.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .endpoints
            .clone()
    };
    let validators: Vec<String> = match &devnet {
        Some(d) => lock(d),
        None => config.endpoints.clone(),
    };
    let pids = devnet.as_ref().map_or_else(Vec::new, |d| {
        d.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pids()
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()?;
    let first = validators.first().context("no endpoints")?.clone();
    progress.phase("waiting for the chain");
    wait_for_chain(&http, &validators).await?;
    let target = if config.scenario.is_flood() {
        Target::Single
    } else {
        config.target
    };
    let routes = match target {
        Target::All => validators.clone(),
        Target::Single => vec![first.clone()],
        Target::Gateway => {
            let url = match (&config.gateway_url, &devnet) {
                (Some(url), _) => url.clone(),
                (None, Some(d)) => d
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .start_gateway(&config.exe)?,
                (None, None) => bail!("--target gateway with --endpoints needs --gateway URL"),
            };
            devnet::wait_http(&http, &url, Duration::from_secs(30)).await?;
            vec![url]
        }
    };
    // With all load (or a gossip flood) on validator 0, follow the chain from another one:
    // the follower times commits, and asks for every block; a flooded validator's RPC
    // answers late, which would time the flooded node's RPC instead of the chain.
    let follow_from = if target == Target::Single || config.scenario == ScenarioKind::GossipFlood {
        validators.last().cloned().unwrap_or(first.clone())
    } else {
        first.clone()
    };
    let chain_id = chain_id(&http, &first).await?;
    let tracker = Arc::new(Tracker::new());
    let run_tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let ctx = scenario::Ctx::new(
        http.clone(),
        routes,
        validators.clone(),
        chain_id,
        tracker.clone(),
        run_tag,
        config.flood_concurrency,
    )
    .with_gossip_flood(scenario::GossipFloodSettings {
        devnet_dir: devnet.is_some().then(|| config.devnet_dir.clone()),
        rate: config.gossip_rate,
        niceness: config.flooder_niceness,
        duration: config.warmup + config.duration,
    });
    progress.phase("preparing the scenario");
    let workload = scenario::build(config.scenario, &ctx).await?;
    let collected = Arc::new(Collected::default());
    let stop = Arc::new(AtomicBool::new(false));
    // The follower times commits and the sampler reads heights: each on a thread and
    // runtime of its own, with its own connections, so that what else the lab runs (the
    // generator, gossip-flood's flooder at ~0.9 of a core) cannot delay them and have
    // its own lag measured as the chain's.
    let measure_http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let follower = {
        let (http, collected, tracker, stop) = (
            measure_http.clone(),
            collected.clone(),
            tracker.clone(),
            stop.clone(),
        );
        isolated("lab-follower", move || {
            collect::follow(http, follow_from, collected, tracker, stop)
        })
    };
    let sampler = {
        let (http, validators, collected, stop) = (
            measure_http,
            validators.clone(),
            collected.clone(),
            stop.clone(),
        );
        isolated("lab-sampler", move || {
            collect::sample(http, validators, collected, stop)
        })
    };
    let mut config = config.clone();
    config.target = target;
    let env = Env {
        http,
        validators,
        pids,
        tracker: tracker.clone(),
        collected: collected.clone(),
        workload,
        flooded: (target == Target::Single || config.scenario == ScenarioKind::GossipFlood)
            .then_some(0),
        config,
    };
    let rates = progress.spawn_rates(tracker.clone());
    let result = phases(&env, devnet.clone(), progress).await;
    if let Some(rates) = rates {
        rates.abort();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = follower.await;
    let _ = sampler.await;
    progress.finish();
    result
}

/// Run the future `make` returns on a new thread with a current-thread runtime of its own;
/// the handle resolves when it ends.
fn isolated<F, Fut>(name: &'static str, make: F) -> tokio::task::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(make()),
                Err(e) => tracing::warn!("{name}: no runtime: {e}"),
            }
            let _ = done.send(());
        });
    if let Err(e) = &spawned {
        tracing::warn!("{name}: no thread: {e}");
    }
    tokio::spawn(async move {
        let _ = finished.await;
    })
}

async fn phases(
    env: &Env,
    devnet: Option<Arc<Mutex<devnet::Devnet>>>,
    progress: &Progress,
) -> Result<Outcome> {
    let config = &env.config;
    progress.phase("idle phase");
    let idle_start = Instant::now();
    let idle_scrapes = scrape_all(&env.http, &env.validators).await;
    tokio::time::sleep(config.idle).await;
    let idle_end = Instant::now();
    let idle_end_scrapes = scrape_all(&env.http, &env.validators).await;
    let blocks = env.collected.blocks();
    let idle = Idle {
        start: idle_start,
        block_ms: block_intervals(&blocks, idle_start, idle_end),
        scrapes: (idle_scrapes, idle_end_scrapes),
    };
    if let (Some(at), Some(devnet)) = (config.stop_validator_at, devnet) {
        let start = Instant::now() + at;
        tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let stopped = devnet
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .stop(1);
            tracing::warn!(stopped, "bench: stopped validator 1 (--stop-validator-at)");
        });
    }
    let (control, first_op) = control(env, &idle, progress).await?;
    let length = config.warmup + config.duration;
    let (summary, last_window) = match &config.ramp {
        None => {
            progress.phase("load phase");
            let window =
                window(env, config.model, first_op, length, config.drain, progress).await?;
            progress.phase("collecting");
            env.workload
                .finish(Instant::now() + Duration::from_secs(5))
                .await;
            env.tracker.time_out_pending();
            (summarize(env, &window, &idle).await, window)
        }
        Some(rates) => ramp(env, rates, &idle, progress).await?,
    };
    let mut summary = summary;
    if let Some(control) = control {
        with_control(env, &mut summary, control, &last_window);
    }
    explain_nulls(&mut summary);
    summary.state_roots_agree = collect::state_roots_agree(&env.http, &env.validators).await;
    if summary.state_roots_agree.is_none() {
        summary
            .notes
            .push("state_roots_agree: fewer than two validators answered".into());
    }
    let series = series(env, &idle, &last_window, Instant::now());
    Ok(Outcome { summary, series })
}

/// The control window (`--control`): the load with the scenario's disturbance held back,
/// right before the disturbed window. Returns its summary and the first operation of the
/// next window.
async fn control(env: &Env, idle: &Idle, progress: &Progress) -> Result<(Option<Control>, u64)> {
    let config = &env.config;
    if config.control.is_zero() || config.ramp.is_some() || !env.workload.hold_back(true) {
        return Ok((None, 0));
    }
    progress.phase("control phase (disturbance held back)");
    let length = config.warmup + config.control;
    let w = window(env, config.model, 0, length, RAMP_STEP_DRAIN, progress).await?;
    env.workload.hold_back(false);
    let s = summarize(env, &w, idle).await;
    let control = Control {
        duration_s: s.duration_s,
        tps_mean: s.tps_mean,
        submit_to_commit_p50_ms: s.submit_to_commit_ms.p50,
        submit_to_commit_p99_ms: s.submit_to_commit_ms.p99,
        accept_to_commit_p50_ms: s.accept_to_commit_ms.p50,
        mempool_wait_p50_ms: s.mempool_wait_ms.p50,
        mempool_wait_p99_ms: s.mempool_wait_ms.p99,
        block_time_p50_ms: s.block_time_ms.load_p50,
        block_time_p99_ms: s.block_time_ms.load_p99,
        precommit_p50_ms: s.precommit_ms.load_p50,
        precommit_p99_ms: s.precommit_ms.load_p99,
        flooded_precommit_p99_ms: s.flooded_precommit_ms.and_then(|p| p.load_p99),
        cpu_us_per_tx_per_validator: s.cpu_us_per_tx_per_validator,
        chain_halts: s.chain_halts,
        height_spread_max: s.height_spread_max,
    };
    Ok((Some(control), config.model.expected_ops(length)))
}

/// Attach the control to the disturbed window's summary. A halt is then a gap longer than
/// the halt factor × the control's block time (the chain's block time under this same
/// load), not the idle one's: an idle chain at commit wait 0 makes empty blocks in a
/// fraction of the time a loaded block takes.
fn with_control(env: &Env, summary: &mut Summary, control: Control, w: &Window) {
    if let Some(controlled) = control.block_time_p50_ms {
        let blocks = env.collected.blocks();
        let reference = summary
            .block_time_ms
            .idle_p50
            .map_or(controlled, |idle| idle.max(controlled));
        summary.chain_halts = halts(&blocks, Some(reference), env.config.gates.halt_factor, w);
        summary.notes.push(format!(
            "chain_halts: gaps over {} × {reference:.1} ms, the control window's block time \
             p50 (idle: {:.1} ms)",
            env.config.gates.halt_factor,
            summary.block_time_ms.idle_p50.unwrap_or(0.0),
        ));
    } else {
        summary
            .notes
            .push("control: no block time in the control window; halts use the idle one".into());
    }
    summary.control = Some(control);
}

async fn ramp(
    env: &Env,
    rates: &[u64],
    idle: &Idle,
    progress: &Progress,
) -> Result<(Summary, Window)> {
    let config = &env.config;
    let mut steps = Vec::new();
    let mut passed: Vec<(u64, bool)> = Vec::new();
    let mut best: Option<(Summary, Window)> = None;
    let mut next_op = 0;
    for rate in rates {
        progress.phase(&format!("ramp step {rate} ops/s"));
        let model = LoadModel::Open { rate: *rate as f64 };
        let length = config.warmup + config.duration;
        let w = window(env, model, next_op, length, RAMP_STEP_DRAIN, progress).await?;
        next_op += model.expected_ops(length);
        let mut summary = summarize(env, &w, idle).await;
        summary.gate_failures = check_gates(&summary, &config.gates);
        let ok = summary.gate_failures.is_empty();
        steps.push(RampStep {
            offered_rate: *rate,
            tps_mean: summary.tps_mean,
            completion_rate: summary.completion_rate,
            latency_p50_ms: summary.submit_to_commit_ms.p50,
            latency_p99_ms: summary.submit_to_commit_ms.p99,
            block_time_p50_ms: summary.block_time_ms.load_p50,
            precommit_p50_ms: summary.precommit_ms.load_p50,
            sys_errors: summary.sys_errors,
            gate_failures: summary.gate_failures.clone(),
        });
        passed.push((*rate, ok));
        if ok || best.is_none() {
            best = Some((summary, w));
        }
        if !ok {
            break;
        }
    }
    env.workload
        .finish(Instant::now() + Duration::from_secs(5))
        .await;
    env.tracker.time_out_pending();
    let (mut summary, w) = best.context("the ramp has no step")?;
    summary.gate_failures.clear();
    let saturation_rate = load::saturation(&passed);
    if saturation_rate.is_none() {
        summary
            .notes
            .push("ramp: the first step already broke a gate; no saturation point".into());
    } else if passed.iter().all(|(_, ok)| *ok) {
        summary.notes.push(
            "ramp: every step held; saturation is above the last step (extend the ramp)".into(),
        );
    }
    summary.ramp = Some(Ramp {
        steps,
        saturation_rate,
        step_duration_s: config.duration.as_secs_f64(),
    });
    Ok((summary, w))
}

/// Offer `model` for `length`; snapshots at the start of the measured window and at the
/// end; then let pending operations commit for up to `drain`.
async fn window(
    env: &Env,
    model: LoadModel,
    first_op: u64,
    length: Duration,
    drain: Duration,
    progress: &Progress,
) -> Result<Window> {
    let expected = model.expected_ops(length);
    progress.phase(&format!("pre-signing up to {expected} operations"));
    env.workload.prepare(first_op..first_op + expected).await?;
    progress.phase(&format!("load: {}", model.describe()));
    let at_load_start = snapshot(env).await;
    let load_start = Instant::now() + Duration::from_millis(50);
    let measure_from = load_start + env.config.warmup;
    let load_end = load_start + length;
    let (measure_tx, measure_rx) = tokio::sync::oneshot::channel();
    let (end_tx, end_rx) = tokio::sync::oneshot::channel();
    let snapshots = async {
        tokio::time::sleep_until(measure_from.into()).await;
        let _ = measure_tx.send(snapshot(env).await);
        tokio::time::sleep_until(load_end.into()).await;
        let _ = end_tx.send(snapshot(env).await);
    };
    let drive = drive_load(env, model, load_start, length, first_op);
    let ((), _) = tokio::join!(snapshots, drive);
    let at_measure = measure_rx.await.unwrap_or_default();
    let at_end = end_rx.await.unwrap_or_default();
    progress.phase("draining");
    let deadline = Instant::now() + drain;
    while env.tracker.pending() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Window {
        model,
        load_start,
        measure_from,
        load_end,
        drained: Instant::now(),
        at_load_start,
        at_measure,
        at_end,
    })
}

/// The runtime of a niced generator (`generator_niceness` > 0): built once, never dropped,
/// so that requests still in flight when the schedule ends keep running through the drain.
static GENERATOR: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();

/// Offer `model`: on this runtime, or with `generator_niceness` > 0 on a runtime of its own
/// whose threads run at that OS niceness. The generator stands for clients on other
/// machines; niced, it takes only the CPU the validators leave (and may offer less: the
/// achieved rate is what the summary reports). The node processes and the measuring
/// threads are started elsewhere and keep their priority (Linux threads and processes
/// inherit their creator's niceness, which is why this is a separate runtime and not a
/// niced main one).
async fn drive_load(
    env: &Env,
    model: LoadModel,
    start: Instant,
    length: Duration,
    first_op: u64,
) -> u64 {
    let (workload, tracker) = (env.workload.clone(), env.tracker.clone());
    let drive = load::drive(model, workload, tracker, start, length, first_op);
    let niceness = env.config.generator_niceness;
    if niceness == 0 {
        return drive.await;
    }
    let runtime = GENERATOR.get_or_init(|| {
        niced_runtime("generator", 2, niceness)
            .map_err(|error| tracing::warn!(%error, "generator runtime: driving on the lab's"))
            .ok()
    });
    match runtime {
        Some(runtime) => runtime.spawn(drive).await.unwrap_or(0),
        None => drive.await,
    }
}

/// A multi-threaded runtime whose threads (named `name`) run at OS niceness `niceness`.
pub(crate) fn niced_runtime(
    name: &'static str,
    workers: usize,
    niceness: u8,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .on_thread_start(move || basalt_rpc::lower_priority(niceness))
        .enable_all()
        .build()
}

/// Buckets of histogram `metric` (its series with labels `label`; empty: unlabelled)
/// observed between two scrapes of the same validators.
fn delta(after: &[Scrape], before: &[Scrape], metric: &str, label: &str) -> Vec<(f64, f64)> {
    let after: Vec<&Scrape> = after.iter().collect();
    let before: Vec<&Scrape> = before.iter().collect();
    bucket_delta_of(&after, &before, metric, label)
}

/// Time in each consensus step, idle and under load, from every validator's histogram.
fn steps(idle: &Idle, w: &Window) -> BTreeMap<String, IdleLoad> {
    ["propose", "prevote", "precommit", "commit"]
        .into_iter()
        .map(|step| {
            let label = format!("step=\"{step}\"");
            (step.to_owned(), idle_and_load(idle, w, STEP_METRIC, &label))
        })
        .collect()
}

/// Durable-write latencies, idle and under load, from every validator's histograms.
fn durable_writes(idle: &Idle, w: &Window) -> BTreeMap<String, IdleLoad> {
    [
        ("sign_record", SIGN_RECORD_METRIC),
        ("persist", PERSIST_METRIC),
    ]
    .into_iter()
    .map(|(name, metric)| (name.to_owned(), idle_and_load(idle, w, metric, "")))
    .collect()
}

/// Histogram `metric` (series with `label`) over the idle phase and the measured window.
fn idle_and_load(idle: &Idle, w: &Window, metric: &str, label: &str) -> IdleLoad {
    let idle = delta(&idle.scrapes.1, &idle.scrapes.0, metric, label);
    let load = delta(&w.at_end.scrapes, &w.at_measure.scrapes, metric, label);
    idle_load(&idle, &load)
}

fn ms(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| s * 1000.0)
}

fn idle_load(idle: &[(f64, f64)], load: &[(f64, f64)]) -> IdleLoad {
    IdleLoad {
        idle_p50: ms(bucket_quantile(idle, 0.5)),
        idle_p99: ms(bucket_quantile(idle, 0.99)),
        load_p50: ms(bucket_quantile(load, 0.5)),
        load_p99: ms(bucket_quantile(load, 0.99)),
    }
}

/// What the tracker's records say about the window.
#[derive(Default)]
struct OpCounts {
    submitted: u64,
    committed: u64,
    timeouts: u64,
    shed: u64,
    sys_errors: u64,
    rejections: BTreeMap<String, u64>,
    latencies: Vec<f64>,
    /// Admission answer → commit.
    chain_latencies: Vec<f64>,
    first_stage: Vec<f64>,
    /// Committed operations per second of the window, by commit time.
    per_second: HashMap<u64, f64>,
}

fn count_ops(tracker: &Tracker, w: &Window) -> OpCounts {
    let mut c = OpCounts::default();
    for (id, record) in tracker.records() {
        if let OpState::Committed(at) = record.state {
            if at >= w.measure_from && at < w.load_end {
                let second = at.duration_since(w.measure_from).as_secs();
                *c.per_second.entry(second).or_insert(0.0) += 1.0;
            }
        }
        let in_load = record.scheduled >= w.load_start && record.scheduled < w.load_end;
        if in_load && record.state == OpState::SysError {
            c.sys_errors += 1;
        }
        if record.scheduled < w.measure_from || record.scheduled >= w.load_end {
            continue;
        }
        c.submitted += 1;
        if let Some(first) = record.first_stage {
            c.first_stage.push(
                first
                    .saturating_duration_since(record.scheduled)
                    .as_secs_f64()
                    * 1e3,
            );
        }
        match record.state {
            OpState::Committed(at) => {
                c.committed += 1;
                c.latencies
                    .push(at.saturating_duration_since(record.scheduled).as_secs_f64() * 1e3);
                if let Some(accepted) = record.accepted {
                    c.chain_latencies
                        .push(at.saturating_duration_since(accepted).as_secs_f64() * 1e3);
                }
            }
            OpState::TimedOut | OpState::Accepted | OpState::Sent => c.timeouts += 1,
            OpState::Shed => c.shed += 1,
            OpState::Rejected(code) => *c.rejections.entry(code).or_insert(0) += 1,
            OpState::SysError => {}
        }
        let _ = id >= FOLLOW_UP_BASE;
    }
    c
}

async fn summarize(env: &Env, w: &Window, idle: &Idle) -> Summary {
    let config = &env.config;
    let mut notes = Vec::new();
    let mut c = count_ops(&env.tracker, w);
    let window_s = w.load_end.saturating_duration_since(w.measure_from);
    let seconds = window_s.as_secs();
    let tps: Vec<f64> = (0..seconds)
        .map(|s| c.per_second.get(&s).copied().unwrap_or(0.0))
        .collect();
    let (tps_mean, tps_cv) = mean_cv(&tps);
    let blocks = env.collected.blocks();
    let mut idle_blocks = idle.block_ms.clone();
    let mut load_blocks = block_intervals(&blocks, w.measure_from, w.load_end);
    let idle_p50 = percentile(&mut idle_blocks, 0.5);
    let chain_halts = halts(&blocks, idle_p50, config.gates.halt_factor, w);
    if idle_p50.is_none() {
        notes.push("chain_halts: no idle block time to compare gaps with".into());
    }
    let precommit =
        |after: &[Scrape], before: &[Scrape]| delta(after, before, PRECOMMIT_METRIC, "");
    let load_precommit = precommit(&w.at_end.scrapes, &w.at_measure.scrapes);
    let escalations = largest_growth(w, ESCALATIONS_METRIC);
    let node_committed_txs = largest_growth(w, COMMITTED_METRIC);
    let cpu = cpu_per_op(env, w, tps.iter().sum::<f64>(), &mut notes);
    let samples = env
        .collected
        .samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let (sampled_spread, unreachable) = height_spread(&samples, w.load_start, w.drained);
    let commit_times = futures::future::join_all(
        env.validators
            .iter()
            .map(|endpoint| collect::commit_times(&env.http, endpoint, 0)),
    )
    .await;
    let exact = collect::exact_spread(
        &commit_times,
        collect::unix_us(w.load_start),
        collect::unix_us(w.drained),
    );
    if exact.is_none() {
        notes.push(
            "height_spread_max: as sampled (not every validator's commit times cover the \
             window)"
                .into(),
        );
    }
    let gauges = env
        .collected
        .gauges
        .lock()
        .map(|g| g.clone())
        .unwrap_or_default();
    let http_all = env.tracker.http_ms();
    let mut http: Vec<f64> = http_all
        .get(w.at_measure.http_len..w.at_end.http_len.max(w.at_measure.http_len))
        .map(<[f64]>::to_vec)
        .unwrap_or_default();
    if http.is_empty() {
        notes.push(match config.scenario {
            ScenarioKind::Tasks => "http_ms: tasks go through the SDK's batch submitter, whose \
                                    HTTP calls are internal (see its facts)"
                .into(),
            _ => "http_ms: no submission was answered in the window".into(),
        });
    }
    let read_errors = w.at_end.reads.1.saturating_sub(w.at_load_start.reads.1);
    let offered_rate = match w.model {
        LoadModel::Open { rate } => rate.round() as u64,
        LoadModel::Closed { .. } if window_s.as_secs_f64() > 0.0 => {
            (c.submitted as f64 / window_s.as_secs_f64()).round() as u64
        }
        LoadModel::Closed { .. } => 0,
    };
    if matches!(w.model, LoadModel::Closed { .. }) {
        notes.push("offered_rate: operations the closed loop issued per second".into());
    }
    if config.scenario == ScenarioKind::Tasks {
        notes.push(
            "tasks: one operation is a task (create + respond); CPU is per task; \
             submit_to_commit is scheduled → response committed"
                .into(),
        );
    }
    if config.scenario == ScenarioKind::Orderbook {
        notes.push(
            "orderbook: cancels are follow-up operations, counted in submitted/committed".into(),
        );
    }
    let flooded_precommit = env.flooded.map(|i| {
        let pick = |s: &[Scrape]| -> Vec<Scrape> { s.get(i).cloned().into_iter().collect() };
        let idle = precommit(&pick(&idle.scrapes.1), &pick(&idle.scrapes.0));
        let load = precommit(&pick(&w.at_end.scrapes), &pick(&w.at_measure.scrapes));
        idle_load(&idle, &load)
    });
    Summary {
        scenario: config.scenario.name().into(),
        validators: env.validators.len(),
        target: config.target.name().into(),
        load_model: w.model.describe(),
        duration_s: window_s.as_secs_f64(),
        offered_rate,
        submitted: c.submitted,
        committed: c.committed,
        completion_rate: (c.submitted > 0).then(|| c.committed as f64 / c.submitted as f64),
        timeouts: c.timeouts,
        sys_errors: c.sys_errors + read_errors,
        shed: c.shed,
        shed_requests: w
            .at_end
            .shed_requests
            .saturating_sub(w.at_load_start.shed_requests),
        rejections: c.rejections,
        tps_mean,
        tps_cv,
        node_committed_txs,
        block_time_ms: IdleLoad {
            idle_p50,
            idle_p99: percentile(&mut idle_blocks, 0.99),
            load_p50: percentile(&mut load_blocks, 0.5),
            load_p99: percentile(&mut load_blocks, 0.99),
        },
        precommit_ms: idle_load(
            &precommit(&idle.scrapes.1, &idle.scrapes.0),
            &load_precommit,
        ),
        steps_ms: steps(idle, w),
        durable_writes_ms: durable_writes(idle, w),
        submit_to_commit_ms: Percentiles::of(&mut c.latencies),
        accept_to_commit_ms: Percentiles::of(&mut c.chain_latencies),
        mempool_wait_ms: {
            let buckets = delta(
                &w.at_end.scrapes,
                &w.at_measure.scrapes,
                MEMPOOL_WAIT_METRIC,
                "",
            );
            Percentiles {
                p50: ms(bucket_quantile(&buckets, 0.5)),
                p95: ms(bucket_quantile(&buckets, 0.95)),
                p99: ms(bucket_quantile(&buckets, 0.99)),
            }
        },
        http_ms: Percentiles::of(&mut http),
        round_escalations: escalations,
        height_spread_max: exact.unwrap_or(sampled_spread),
        height_spread_source: if exact.is_some() {
            "commit_times"
        } else {
            "sampler"
        }
        .into(),
        height_spread_sampled_max: sampled_spread,
        height_sample_slowest_ms: collect::slowest_answer(&samples, w.load_start, w.drained),
        validators_unreachable_max: unreachable,
        chain_halts,
        state_roots_agree: None,
        cpu_us_per_tx_per_validator: cpu,
        node_queues: NodeQueues {
            gauge_max: collect::gauge_max(&gauges, w.measure_from, w.load_end),
            drops: collect::drops(&w.at_end.scrapes, &w.at_measure.scrapes),
        },
        flooded_validator: env.flooded.and_then(|i| env.validators.get(i).cloned()),
        flooded_precommit_ms: flooded_precommit,
        first_stage: (config.scenario == ScenarioKind::Tasks).then(|| FirstStage {
            seen: c.first_stage.len() as u64,
            latency_ms: Percentiles::of(&mut c.first_stage),
        }),
        facts: env.workload.facts(),
        ramp: None,
        control: None,
        block_gap_max_ms: block_intervals(&blocks, w.measure_from, w.drained)
            .into_iter()
            .reduce(f64::max),
        gate_failures: Vec::new(),
        notes,
    }
}

/// A reason in `notes` for each headline field left `null` that has none yet.
/// The largest growth of counter `metric` over the measured phase among the nodes
/// scraped at both ends.
fn largest_growth(w: &Window, metric: &str) -> Option<u64> {
    w.at_end
        .scrapes
        .iter()
        .zip(&w.at_measure.scrapes)
        .filter(|(end, _)| !end.is_empty())
        .map(|(end, start)| (total(end, metric) - total(start, metric)).max(0.0) as u64)
        .max()
}

fn explain_nulls(summary: &mut Summary) {
    let s = &*summary;
    let b = &s.block_time_ms;
    let p = &s.precommit_ms;
    let checks: [(&str, bool, &str); 7] = [
        (
            "completion_rate",
            s.completion_rate.is_none(),
            "nothing was submitted in the measured window",
        ),
        (
            "tps_mean",
            s.tps_mean.is_none(),
            "the measured window is shorter than one second",
        ),
        (
            "block_time_ms",
            [b.idle_p50, b.load_p50].iter().any(Option::is_none),
            "the follower saw no two consecutive blocks in a phase",
        ),
        (
            "precommit_ms",
            [p.idle_p50, p.load_p50].iter().any(Option::is_none),
            "the nodes' precommit histograms had no observation in a phase",
        ),
        (
            "submit_to_commit_ms",
            s.submit_to_commit_ms.p50.is_none(),
            "no operation of the window committed",
        ),
        (
            "round_escalations",
            s.round_escalations.is_none(),
            "no validator answered /metrics at both ends of the window",
        ),
        (
            "node_committed_txs",
            s.node_committed_txs.is_none(),
            "no validator answered /metrics at both ends of the window",
        ),
    ];
    let missing: Vec<String> = checks
        .iter()
        .filter(|(field, null, _)| *null && !s.notes.iter().any(|n| n.starts_with(field)))
        .map(|(field, _, why)| format!("{field}: {why}"))
        .collect();
    summary.notes.extend(missing);
}

/// Gaps between consecutive blocks seen from the window's start to its drain that exceed
/// the halt threshold, plus a trailing gap with no block at all.
fn halts(blocks: &[collect::Seen], idle_p50: Option<f64>, factor: f64, w: &Window) -> u64 {
    let Some(idle_p50) = idle_p50 else {
        return 0;
    };
    let threshold = (idle_p50 * factor).max(HALT_GAP_MIN_MS);
    let gaps = block_intervals(blocks, w.measure_from, w.drained)
        .iter()
        .filter(|gap| **gap > threshold)
        .count() as u64;
    let last_seen = blocks.last().map(|b| b.observed);
    let trailing = match last_seen {
        Some(at) => w.drained.saturating_duration_since(at).as_secs_f64() * 1e3 > threshold,
        None => true,
    };
    gaps + u64::from(trailing)
}

fn cpu_per_op(env: &Env, w: &Window, committed: f64, notes: &mut Vec<String>) -> Option<f64> {
    if env.pids.is_empty() {
        notes.push(
            "cpu_us_per_tx_per_validator: the validators are not processes of this run \
             (--endpoints)"
                .into(),
        );
        return None;
    }
    if committed <= 0.0 {
        notes.push("cpu_us_per_tx_per_validator: nothing committed in the window".into());
        return None;
    }
    let used: Vec<u64> = w
        .at_measure
        .cpu_us
        .iter()
        .zip(&w.at_end.cpu_us)
        .filter_map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
        .collect();
    if used.is_empty() {
        notes.push("cpu_us_per_tx_per_validator: /proc had no CPU times".into());
        return None;
    }
    Some(used.iter().sum::<u64>() as f64 / used.len() as f64 / committed)
}

/// Per-second series from the idle start to `end`; phase marks from `w`.
fn series(env: &Env, idle: &Idle, w: &Window, end: Instant) -> Series {
    let origin = idle.start;
    let second_of = |at: Instant| at.saturating_duration_since(origin).as_secs();
    let end = second_of(end) + 1;
    let mut seconds: Vec<Second> = (0..end)
        .map(|t| Second {
            t,
            ..Second::default()
        })
        .collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds.len()];
    for (_, record) in env.tracker.records() {
        if let Some(s) = seconds.get_mut(second_of(record.scheduled) as usize) {
            if record.scheduled >= origin {
                s.offered += 1;
            }
        }
        if let OpState::Committed(at) = record.state {
            let i = second_of(at) as usize;
            if let (Some(s), Some(l)) = (seconds.get_mut(i), latencies.get_mut(i)) {
                s.committed += 1;
                l.push(at.saturating_duration_since(record.scheduled).as_secs_f64() * 1e3);
            }
        }
    }
    for (s, l) in seconds.iter_mut().zip(latencies.iter_mut()) {
        s.latency_p50_ms = percentile(l, 0.5);
        s.latency_p99_ms = percentile(l, 0.99);
    }
    let blocks = env.collected.blocks();
    let mut intervals: Vec<Vec<f64>> = vec![Vec::new(); seconds.len()];
    for pair in blocks.windows(2) {
        if let [a, b] = pair {
            if b.height == a.height + 1 && b.observed >= origin {
                if let Some(v) = intervals.get_mut(second_of(b.observed) as usize) {
                    v.push(b.time_ms.saturating_sub(a.time_ms) as f64);
                }
            }
        }
    }
    for (s, v) in seconds.iter_mut().zip(&intervals) {
        if !v.is_empty() {
            s.block_time_ms = Some(v.iter().sum::<f64>() / v.len() as f64);
            s.block_time_max_ms = v.iter().copied().reduce(f64::max);
        }
    }
    let samples = env
        .collected
        .samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    for sample in samples.iter().filter(|s| s.at >= origin) {
        if let Some(s) = seconds.get_mut(second_of(sample.at) as usize) {
            s.heights.clone_from(&sample.heights);
        }
    }
    let at = |i: Instant| i.saturating_duration_since(origin).as_secs_f64();
    Series {
        seconds,
        load_start_s: at(w.load_start),
        measure_start_s: at(w.measure_from),
        load_end_s: at(w.load_end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_null_headline_field_gets_one_reason() {
        let mut summary = Summary {
            notes: vec!["tps_mean: already explained".into()],
            ..Summary::default()
        };
        explain_nulls(&mut summary);
        for field in [
            "completion_rate",
            "block_time_ms",
            "precommit_ms",
            "round_escalations",
        ] {
            assert!(
                summary.notes.iter().any(|n| n.starts_with(field)),
                "{field}"
            );
        }
        let tps = summary.notes.iter().filter(|n| n.starts_with("tps_mean"));
        assert_eq!(tps.count(), 1);
    }
}
