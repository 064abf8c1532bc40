//! Basalt's load lab: runs a load against a network and reports what the seed reports
//! measured — idle versus loaded block time and precommit latency, completion, latency
//! percentiles measured from each transaction's *scheduled* time (open loop: a slow system
//! cannot hide behind coordinated omission), system errors, round escalations, height
//! spread, chain halts, state-root agreement and CPU per committed transaction.
//!
//! This first slice has one scenario (`transfer`), the open-loop model, a devnet started
//! for the run or given endpoints, `summary.json` and `report.md`, and gates. Not yet: the
//! other scenarios, closed-loop users, ramps, HTML plots, baselines.

pub mod devnet;
pub mod stats;

use anyhow::{bail, Context, Result};
use basalt_rpc::json::BlockJson;
use basalt_types::{BatchItem, Hash, Keypair, Payload, SignedTx};
use serde::Serialize;
use stats::{bucket_delta, bucket_quantile, mean_cv, parse, percentile, total, Scrape};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Devnet test accounts the generator signs for.
pub const ACCOUNTS: usize = 1000;
/// How often the open-loop scheduler sends what is due.
pub const SEND_TICK: Duration = Duration::from_millis(5);
/// Most transactions per HTTP request.
pub const TXS_PER_REQUEST_MAX: usize = 2000;
/// After the load stops, how long pending transactions may still commit.
pub const DRAIN: Duration = Duration::from_secs(15);

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Spread over every validator.
    All,
    /// Everything at the first validator (seed 000's shape).
    Single,
}

/// A bench run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Endpoints of a running network; empty → start a devnet.
    pub endpoints: Vec<String>,
    /// Validators of the devnet started for the run.
    pub validators: usize,
    /// The `basalt` executable (to start the devnet).
    pub exe: PathBuf,
    /// Where the devnet lives during the run.
    pub devnet_dir: PathBuf,
    /// Commit wait of the devnet, ms.
    pub commit_wait_ms: u64,
    /// Where the load goes.
    pub target: Target,
    /// Offered transactions per second.
    pub rate: u64,
    /// Load duration (after warm-up).
    pub duration: Duration,
    /// Load before measuring.
    pub warmup: Duration,
    /// Idle phase before the load.
    pub idle: Duration,
    /// Chain id.
    pub chain_id: String,
}

/// p50/p99 idle versus load.
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th.
    pub p95: Option<f64>,
    /// 99th.
    pub p99: Option<f64>,
}

/// The run's summary (`summary.json`, and the last line with `--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Scenario.
    pub scenario: String,
    /// Validators.
    pub validators: usize,
    /// all | single.
    pub target: String,
    /// Measured load duration, s.
    pub duration_s: f64,
    /// Offered rate, tx/s.
    pub offered_rate: u64,
    /// Transactions sent in the measured window.
    pub submitted: u64,
    /// Of those, committed.
    pub committed: u64,
    /// committed / submitted.
    pub completion_rate: Option<f64>,
    /// Accepted but not committed by the end of the drain.
    pub timeouts: u64,
    /// Transport errors and 5xx answers other than typed shedding.
    pub sys_errors: u64,
    /// Typed rejections (shed, mempool full, ...), by code.
    pub rejections: HashMap<String, u64>,
    /// Mean committed tx/s per second of the window.
    pub tps_mean: Option<f64>,
    /// Coefficient of variation of per-second committed tx.
    pub tps_cv: Option<f64>,
    /// Block interval from block times, ms.
    pub block_time_ms: IdleLoad,
    /// Precommit latency from node histograms, ms.
    pub precommit_ms: IdleLoad,
    /// Scheduled send → observed in a committed block, ms.
    pub submit_to_commit_ms: Percentiles,
    /// HTTP request latency of submissions, ms.
    pub http_ms: Percentiles,
    /// Heights decided in a round above 0 during the load (max over validators).
    pub round_escalations: Option<u64>,
    /// Largest difference between validators' heights seen.
    pub height_spread_max: u64,
    /// Gaps between blocks longer than 10× the idle block time.
    pub chain_halts: u64,
    /// Every validator has the same block id and state root at a common height.
    pub state_roots_agree: Option<bool>,
    /// Validator CPU time per committed transaction, averaged over validators, µs.
    pub cpu_us_per_tx_per_validator: Option<f64>,
    /// Why a field is null.
    pub notes: Vec<String>,
}

/// Gates: thresholds that make the run fail.
#[derive(Debug, Clone)]
pub struct Gates {
    /// Minimum completion.
    pub completion_min: f64,
    /// Maximum load/idle block time ratio (p50).
    pub block_time_ratio_max: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            completion_min: 0.99,
            block_time_ratio_max: 1.10,
        }
    }
}

/// Gate failures of `summary`, empty when it passes.
pub fn check_gates(summary: &Summary, gates: &Gates) -> Vec<String> {
    let mut failures = Vec::new();
    if summary.sys_errors > 0 {
        failures.push(format!("sys_errors = {}", summary.sys_errors));
    }
    if summary.state_roots_agree == Some(false) {
        failures.push("state roots disagree".into());
    }
    if summary.chain_halts > 0 {
        failures.push(format!("chain_halts = {}", summary.chain_halts));
    }
    match summary.completion_rate {
        Some(c) if c < gates.completion_min => {
            failures.push(format!("completion {c:.4} below {}", gates.completion_min))
        }
        None => failures.push("completion not measured".into()),
        _ => {}
    }
    if let (Some(idle), Some(load)) = (
        summary.block_time_ms.idle_p50,
        summary.block_time_ms.load_p50,
    ) {
        if idle > 0.0 && load / idle > gates.block_time_ratio_max {
            failures.push(format!(
                "block time under load {load:.1} ms is {:.2}× idle {idle:.1} ms (max {})",
                load / idle,
                gates.block_time_ratio_max
            ));
        }
    }
    failures
}

/// One pre-signed transaction, ready to send.
struct Prepared {
    hex: String,
    hash: Hash,
}

fn presign(chain_id: &str, count: usize, nonces: &[u64]) -> Vec<Prepared> {
    let keys: Vec<Keypair> = (0..ACCOUNTS)
        .map(|i| Keypair::from_label(&format!("basalt-devnet-account-{i}")))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let keys = &keys;
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .filter_map(|i| {
                            let sender = i % ACCOUNTS;
                            let key = keys.get(sender)?;
                            let recipient = keys.get((sender + 1) % ACCOUNTS)?.public();
                            let nonce =
                                nonces.get(sender).copied().unwrap_or(0) + (i / ACCOUNTS) as u64;
                            let tx = SignedTx::sign(
                                key,
                                chain_id,
                                nonce,
                                Payload::Single(BatchItem::Transfer {
                                    to: recipient,
                                    asset: 0,
                                    amount: 1,
                                }),
                            );
                            let bytes = tx.to_bytes();
                            Some(Prepared {
                                hash: basalt_types::sha256(&bytes),
                                hex: hex::encode(bytes),
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// What happened to each sent transaction.
#[derive(Default)]
struct Outcomes {
    /// Index → HTTP latency ms, for accepted ones.
    accepted: HashMap<usize, f64>,
    rejections: HashMap<String, u64>,
    sys_errors: u64,
    http_ms: Vec<f64>,
}

/// A committed block as the follower saw it.
struct Seen {
    height: u64,
    time_ms: u64,
    observed: Instant,
    txs: Vec<Hash>,
}

async fn scrape_all(client: &reqwest::Client, endpoints: &[String]) -> Vec<Scrape> {
    let mut out = Vec::new();
    for endpoint in endpoints {
        let text = match client.get(format!("{endpoint}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        out.push(parse(&text));
    }
    out
}

async fn height(client: &reqwest::Client, endpoint: &str) -> Option<u64> {
    let status: serde_json::Value = client
        .get(format!("{endpoint}/v1/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status.get("height")?.as_u64()
}

async fn block(client: &reqwest::Client, endpoint: &str, height: u64) -> Option<BlockJson> {
    client
        .get(format!("{endpoint}/v1/blocks/{height}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Follow committed blocks on `endpoint` until `stop`, recording each.
async fn follow(
    client: reqwest::Client,
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut next = height(&client, &endpoint).await.unwrap_or(0) + 1;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(top) = height(&client, &endpoint).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while next <= top {
            let Some(b) = block(&client, &endpoint, next).await else {
                break;
            };
            let record = Seen {
                height: b.header.height,
                time_ms: b.header.time_ms,
                observed: Instant::now(),
                txs: b.txs.iter().map(|t| t.hash).collect(),
            };
            if let Ok(mut seen) = seen.lock() {
                seen.push(record);
            }
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn block_intervals(seen: &[Seen], from: Instant, to: Instant) -> Vec<f64> {
    seen.windows(2)
        .filter_map(|pair| match pair {
            [a, b] if b.observed >= from && b.observed <= to && b.height == a.height + 1 => {
                Some(b.time_ms.saturating_sub(a.time_ms) as f64)
            }
            _ => None,
        })
        .collect()
}

/// Run a bench: optional devnet, idle phase, open-loop load, drain, collection.
pub async fn run(config: &BenchConfig, progress: impl Fn(&str)) -> Result<Summary> {
    let started_devnet = if config.endpoints.is_empty() {
        Some(devnet::Devnet::start(
            &config.exe,
            config.validators,
            &config.devnet_dir,
            config.commit_wait_ms,
        )?)
    } else {
        None
    };
    let endpoints: Vec<String> = match &started_devnet {
        Some(d) => d.endpoints.clone(),
        None => config.endpoints.clone(),
    };
    let pids = started_devnet
        .as_ref()
        .map(|d| d.pids())
        .unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()?;
    let first = endpoints.first().context("no endpoints")?.clone();
    // Wait for the chain to run.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut heights = Vec::new();
        for e in &endpoints {
            heights.push(height(&client, e).await.unwrap_or(0));
        }
        if heights.iter().all(|h| *h >= 3) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the network did not start committing within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Pre-sign before anything is timed, so the generator's signing cannot cap the rate.
    let total_txs = (config.rate as f64 * (config.warmup + config.duration).as_secs_f64()) as usize;
    progress(&format!("pre-signing {total_txs} transfers"));
    let mut nonces = vec![0u64; ACCOUNTS];
    for (i, nonce) in nonces.iter_mut().enumerate() {
        let address = Keypair::from_label(&format!("basalt-devnet-account-{i}")).public();
        if let Ok(r) = client
            .get(format!("{first}/v1/accounts/{}", address.to_hex()))
            .send()
            .await
        {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                *nonce = v
                    .get("nonce")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
            }
        }
    }
    let chain_id = config.chain_id.clone();
    let txs = Arc::new(
        tokio::task::spawn_blocking(move || presign(&chain_id, total_txs, &nonces)).await?,
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = tokio::spawn(follow(
        client.clone(),
        first.clone(),
        seen.clone(),
        stop.clone(),
    ));
    let spread = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (client, endpoints, spread, stop) = (
            client.clone(),
            endpoints.clone(),
            spread.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut hs = Vec::new();
                for e in &endpoints {
                    if let Some(h) = height(&client, e).await {
                        hs.push(h);
                    }
                }
                if let (Some(max), Some(min)) = (hs.iter().max(), hs.iter().min()) {
                    spread.fetch_max(max - min, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Idle phase.
    progress("idle phase");
    let idle_start = Instant::now();
    let idle_scrapes = scrape_all(&client, &endpoints).await;
    tokio::time::sleep(config.idle).await;
    let idle_end = Instant::now();
    let load_scrapes_start = scrape_all(&client, &endpoints).await;

    // Load phase: open loop.
    progress("load phase");
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let load_start = Instant::now();
    let measure_from = load_start + config.warmup;
    let mut cpu_at_measure: Option<Vec<Option<u64>>> = None;
    let mut scrapes_at_measure: Option<Vec<Scrape>> = None;
    let mut sent = 0usize;
    let mut tick = 0usize;
    let mut requests = Vec::new();
    while sent < txs.len() {
        tokio::time::sleep(SEND_TICK).await;
        let elapsed = load_start.elapsed().as_secs_f64();
        if cpu_at_measure.is_none() && Instant::now() >= measure_from {
            cpu_at_measure = Some(pids.iter().map(|p| devnet::cpu_time_us(*p)).collect());
            scrapes_at_measure = Some(scrape_all(&client, &endpoints).await);
        }
        let due = ((elapsed * config.rate as f64) as usize).min(txs.len());
        while sent < due {
            let end = (sent + TXS_PER_REQUEST_MAX).min(due);
            let endpoint = match config.target {
                Target::All => endpoints
                    .get(tick % endpoints.len())
                    .cloned()
                    .unwrap_or_default(),
                Target::Single => first.clone(),
            };
            tick += 1;
            let (client, txs, outcomes) = (client.clone(), txs.clone(), outcomes.clone());
            let range = sent..end;
            requests.push(tokio::spawn(async move {
                send(&client, &endpoint, &txs, range, &outcomes).await;
            }));
            sent = end;
        }
    }
    let load_end = Instant::now();
    let cpu_end: Vec<Option<u64>> = pids.iter().map(|p| devnet::cpu_time_us(*p)).collect();
    let scrapes_end = scrape_all(&client, &endpoints).await;
    for request in requests {
        let _ = request.await;
    }
    // Drain: wait for accepted transactions to commit.
    progress("draining");
    let accepted: Vec<usize> = outcomes
        .lock()
        .map(|o| o.accepted.keys().copied().collect())
        .unwrap_or_default();
    let drain_deadline = Instant::now() + DRAIN;
    loop {
        let committed: std::collections::HashSet<Hash> = seen
            .lock()
            .map(|s| s.iter().flat_map(|b| b.txs.iter().copied()).collect())
            .unwrap_or_default();
        let pending = accepted
            .iter()
            .filter(|i| txs.get(**i).is_some_and(|t| !committed.contains(&t.hash)))
            .count();
        if pending == 0 || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = follower.await;
    let _ = sampler.await;

    // State roots: every validator's block at a common height.
    let mut agree = None;
    let mut common = u64::MAX;
    for e in &endpoints {
        common = common.min(height(&client, e).await.unwrap_or(0));
    }
    if common > 1 && common != u64::MAX {
        let mut ids = Vec::new();
        for e in &endpoints {
            ids.push(
                block(&client, e, common)
                    .await
                    .map(|b| (b.id, b.header.state_root)),
            );
        }
        agree = Some(ids.iter().all(|id| id.is_some() && *id == ids[0]));
    }

    // Collection.
    let seen = seen
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let commit_time: HashMap<Hash, Instant> = seen
        .iter()
        .flat_map(|b| b.txs.iter().map(move |h| (*h, b.observed)))
        .collect();
    let outcomes = outcomes
        .lock()
        .map(|mut o| std::mem::take(&mut *o))
        .unwrap_or_default();
    let first_measured = (config.rate as f64 * config.warmup.as_secs_f64()) as usize;
    let measured = first_measured..txs.len();
    let mut latencies = Vec::new();
    let mut committed = 0u64;
    let mut timeouts = 0u64;
    for i in measured.clone() {
        let Some(tx) = txs.get(i) else { continue };
        match commit_time.get(&tx.hash) {
            Some(at) => {
                committed += 1;
                let scheduled = load_start + Duration::from_secs_f64(i as f64 / config.rate as f64);
                latencies.push(at.saturating_duration_since(scheduled).as_secs_f64() * 1000.0);
            }
            None if outcomes.accepted.contains_key(&i) => timeouts += 1,
            None => {}
        }
    }
    let submitted = measured.len() as u64;
    let mut per_second: HashMap<u64, f64> = HashMap::new();
    let ours: std::collections::HashSet<Hash> = txs.iter().map(|t| t.hash).collect();
    for b in &seen {
        if b.observed >= measure_from && b.observed <= load_end {
            let second = b.observed.duration_since(measure_from).as_secs();
            *per_second.entry(second).or_insert(0.0) +=
                b.txs.iter().filter(|h| ours.contains(h)).count() as f64;
        }
    }
    let seconds = load_end.saturating_duration_since(measure_from).as_secs();
    let tps: Vec<f64> = (0..seconds)
        .map(|s| per_second.get(&s).copied().unwrap_or(0.0))
        .collect();
    let (tps_mean, tps_cv) = mean_cv(&tps);
    let mut idle_blocks = block_intervals(&seen, idle_start, idle_end);
    let mut load_blocks = block_intervals(&seen, measure_from, load_end);
    let idle_p50 = percentile(&mut idle_blocks, 0.5);
    let halt_threshold = idle_p50.map(|p| p * 10.0);
    let chain_halts = halt_threshold.map_or(0, |t| {
        block_intervals(&seen, idle_start, Instant::now())
            .iter()
            .filter(|i| **i > t.max(100.0))
            .count() as u64
    });
    let idle_refs: Vec<&Scrape> = idle_scrapes.iter().collect();
    let load_start_refs: Vec<&Scrape> = load_scrapes_start.iter().collect();
    let measure_refs: Vec<&Scrape> = scrapes_at_measure
        .as_ref()
        .map(|s| s.iter().collect())
        .unwrap_or_else(|| load_start_refs.clone());
    let end_refs: Vec<&Scrape> = scrapes_end.iter().collect();
    let name = "basalt_consensus_precommit_latency_seconds";
    let idle_buckets = bucket_delta(&load_start_refs, &idle_refs, name);
    let load_buckets = bucket_delta(&end_refs, &measure_refs, name);
    let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
    let escalations = scrapes_end
        .iter()
        .zip(measure_refs.iter())
        .map(|(end, start)| {
            let key = "basalt_consensus_round_escalations_total";
            (total(end, key) - total(start, key)).max(0.0) as u64
        })
        .max();
    let mut notes = Vec::new();
    let cpu = match (&cpu_at_measure, pids.is_empty()) {
        (_, true) => {
            notes.push("cpu_us_per_tx_per_validator: validators are not processes of this run (--endpoints)".into());
            None
        }
        (Some(start), false) if committed > 0 => {
            let used: u64 = start
                .iter()
                .zip(&cpu_end)
                .filter_map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?)))
                .sum();
            Some(used as f64 / pids.len() as f64 / committed as f64)
        }
        _ => {
            notes.push("cpu_us_per_tx_per_validator: nothing committed in the window".into());
            None
        }
    };
    let mut http = outcomes.http_ms.clone();
    Ok(Summary {
        scenario: "transfer".into(),
        validators: endpoints.len(),
        target: match config.target {
            Target::All => "all".into(),
            Target::Single => "single".into(),
        },
        duration_s: load_end
            .saturating_duration_since(measure_from)
            .as_secs_f64(),
        offered_rate: config.rate,
        submitted,
        committed,
        completion_rate: (submitted > 0).then(|| committed as f64 / submitted as f64),
        timeouts,
        sys_errors: outcomes.sys_errors,
        rejections: outcomes.rejections.clone(),
        tps_mean,
        tps_cv,
        block_time_ms: IdleLoad {
            idle_p50,
            idle_p99: percentile(&mut idle_blocks, 0.99),
            load_p50: percentile(&mut load_blocks, 0.5),
            load_p99: percentile(&mut load_blocks, 0.99),
        },
        precommit_ms: IdleLoad {
            idle_p50: ms(bucket_quantile(&idle_buckets, 0.5)),
            idle_p99: ms(bucket_quantile(&idle_buckets, 0.99)),
            load_p50: ms(bucket_quantile(&load_buckets, 0.5)),
            load_p99: ms(bucket_quantile(&load_buckets, 0.99)),
        },
        submit_to_commit_ms: Percentiles {
            p50: percentile(&mut latencies, 0.5),
            p95: percentile(&mut latencies, 0.95),
            p99: percentile(&mut latencies, 0.99),
        },
        http_ms: Percentiles {
            p50: percentile(&mut http, 0.5),
            p95: percentile(&mut http, 0.95),
            p99: percentile(&mut http, 0.99),
        },
        round_escalations: escalations,
        height_spread_max: spread.load(std::sync::atomic::Ordering::Relaxed),
        chain_halts,
        state_roots_agree: agree,
        cpu_us_per_tx_per_validator: cpu,
        notes,
    })
}

async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    txs: &[Prepared],
    range: std::ops::Range<usize>,
    outcomes: &Mutex<Outcomes>,
) {
    let hexes: Vec<&str> = txs
        .get(range.clone())
        .unwrap_or_default()
        .iter()
        .map(|t| t.hex.as_str())
        .collect();
    let started = Instant::now();
    let response = client
        .post(format!("{endpoint}/v1/txs"))
        .json(&serde_json::json!({ "txs": hexes }))
        .send()
        .await;
    let http_ms = started.elapsed().as_secs_f64() * 1000.0;
    enum Answer {
        Body(Option<serde_json::Value>),
        Shed,
        Error,
    }
    let answer = match response {
        Ok(r) if r.status().is_success() => Answer::Body(r.json().await.ok()),
        Ok(r) if r.status().as_u16() == 503 || r.status().as_u16() == 429 => Answer::Shed,
        _ => Answer::Error,
    };
    let Ok(mut outcomes) = outcomes.lock() else {
        return;
    };
    let body = match answer {
        Answer::Body(body) => body,
        Answer::Shed => {
            *outcomes.rejections.entry("shed".into()).or_insert(0) += range.len() as u64;
            return;
        }
        Answer::Error => {
            outcomes.sys_errors += range.len() as u64;
            return;
        }
    };
    outcomes.http_ms.push(http_ms);
    let results = body
        .as_ref()
        .and_then(|b| b.get("results"))
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    if results.len() != range.len() {
        outcomes.sys_errors += range.len() as u64;
        return;
    }
    for (i, result) in range.zip(results) {
        if result.get("accepted").and_then(serde_json::Value::as_bool) == Some(true) {
            outcomes.accepted.insert(i, http_ms);
        } else {
            let code = result
                .pointer("/error/code")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            *outcomes.rejections.entry(code).or_insert(0) += 1;
        }
    }
}

/// The seed-000-style Markdown report.
pub fn report_markdown(summary: &Summary) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
    format!(
        "# Basalt bench: {scenario}, {validators} validators, target {target}\n\n\
| metric | idle | load |\n|---|---|---|\n\
| block time p50 (ms) | {bi50} | {bl50} |\n\
| block time p99 (ms) | {bi99} | {bl99} |\n\
| precommit p50 (ms) | {pi50} | {pl50} |\n\
| precommit p99 (ms) | {pi99} | {pl99} |\n\n\
| load-test report | value |\n|---|---|\n\
| offered rate (tx/s) | {rate} |\n| submitted | {submitted} |\n| committed | {committed} |\n\
| completion | {completion} |\n| timeouts | {timeouts} |\n| SysErr | {sys} |\n\
| TPS mean | {tps} |\n| TPS CV | {cv} |\n\
| submit→commit p50 / p95 / p99 (ms) | {s50} / {s95} / {s99} |\n\
| HTTP p50 / p95 / p99 (ms) | {h50} / {h95} / {h99} |\n\
| round escalations | {esc} |\n| height spread max | {spread} |\n| chain halts | {halts} |\n\
| state roots agree | {agree} |\n| CPU µs per tx per validator | {cpu} |\n\n{notes}\n",
        scenario = summary.scenario,
        validators = summary.validators,
        target = summary.target,
        bi50 = f(summary.block_time_ms.idle_p50),
        bl50 = f(summary.block_time_ms.load_p50),
        bi99 = f(summary.block_time_ms.idle_p99),
        bl99 = f(summary.block_time_ms.load_p99),
        pi50 = f(summary.precommit_ms.idle_p50),
        pl50 = f(summary.precommit_ms.load_p50),
        pi99 = f(summary.precommit_ms.idle_p99),
        pl99 = f(summary.precommit_ms.load_p99),
        rate = summary.offered_rate,
        submitted = summary.submitted,
        committed = summary.committed,
        completion = f(summary.completion_rate.map(|c| c * 100.0)) + " %",
        timeouts = summary.timeouts,
        sys = summary.sys_errors,
        tps = f(summary.tps_mean),
        cv = f(summary.tps_cv),
        s50 = f(summary.submit_to_commit_ms.p50),
        s95 = f(summary.submit_to_commit_ms.p95),
        s99 = f(summary.submit_to_commit_ms.p99),
        h50 = f(summary.http_ms.p50),
        h95 = f(summary.http_ms.p95),
        h99 = f(summary.http_ms.p99),
        esc = summary
            .round_escalations
            .map_or("n/a".into(), |e| e.to_string()),
        spread = summary.height_spread_max,
        halts = summary.chain_halts,
        agree = summary
            .state_roots_agree
            .map_or("n/a".into(), |a| a.to_string()),
        cpu = f(summary.cpu_us_per_tx_per_validator),
        notes = summary
            .notes
            .iter()
            .map(|n| format!("- {n}\n"))
            .collect::<String>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passing() -> Summary {
        Summary {
            submitted: 100,
            committed: 100,
            completion_rate: Some(1.0),
            block_time_ms: IdleLoad {
                idle_p50: Some(15.0),
                load_p50: Some(15.5),
                ..IdleLoad::default()
            },
            state_roots_agree: Some(true),
            ..Summary::default()
        }
    }

    #[test]
    fn gates_pass_a_clean_run_and_catch_each_failure() {
        let gates = Gates::default();
        assert!(check_gates(&passing(), &gates).is_empty());
        type Plant = Box<dyn Fn(&mut Summary)>;
        let cases: Vec<(&str, Plant)> = vec![
            ("sys_errors", Box::new(|s| s.sys_errors = 1)),
            (
                "state roots",
                Box::new(|s| s.state_roots_agree = Some(false)),
            ),
            ("chain_halts", Box::new(|s| s.chain_halts = 1)),
            ("completion", Box::new(|s| s.completion_rate = Some(0.98))),
            (
                "block time",
                Box::new(|s| s.block_time_ms.load_p50 = Some(17.0)),
            ),
        ];
        for (what, plant) in cases {
            let mut summary = passing();
            plant(&mut summary);
            let failures = check_gates(&summary, &gates);
            assert!(
                failures.iter().any(|f| f.contains(what)),
                "{what}: {failures:?}"
            );
        }
    }

    #[test]
    fn report_has_the_seed_tables() {
        let text = report_markdown(&passing());
        assert!(text.contains("| block time p50 (ms) | 15.00 | 15.50 |"));
        assert!(text.contains("| SysErr | 0 |"));
    }
}
