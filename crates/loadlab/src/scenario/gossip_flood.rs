//! `gossip-flood`: seed 001's shape. A libp2p peer of the lab's own joins the devnet next
//! to validator 0 and floods it with consensus gossip ([`crate::flood`]: votes and proposals
//! for far-future heights and rounds, votes for blocks nobody proposed signed with the
//! validators' real keys, re-sends, optional junk) while transfers are offered to the
//! network as in `transfer`. The report shows validator 0's precommit latency, the chain's
//! block time, and what the flooder sent; the node's own metrics (pending buffer, fetches in
//! flight, timer lag, gossip dropped by reason) are scraped like every other metric.

use super::transfer::Transfer;
use super::{Ctx, Workload};
use crate::flood::{FloodConfig, FloodReport};
use crate::stats::{bucket_delta, bucket_quantile, parse, total, Scrape};
use anyhow::{bail, Context, Result};
use basalt_node::config::{HomeLayout, KeyFile, NodeConfig};
use futures::future::BoxFuture;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

/// Flooder identities connected to validator 0 at once (a Sybil flood): each peer may hand
/// the node 2,000 consensus messages per second, so one identity alone would be cut down by
/// the per-peer limit before the budget all unlisted peers share.
pub const FLOOD_CONNECTIONS: usize = 10;
/// How often the flooded validator's metrics are read during the flood.
const MONITOR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Resident memory is compared between the first and the last this many samples.
const RSS_WINDOW_SAMPLES: usize = 10;

/// Transfers plus a gossip flood at validator 0.
pub struct GossipFlood {
    transfers: Arc<Transfer>,
    config: FloodConfig,
    http: reqwest::Client,
    flooder: Mutex<Option<JoinHandle<Result<FloodReport>>>>,
    /// OS niceness of the flooder's threads.
    niceness: u8,
    monitor: Mutex<Option<JoinHandle<Vec<Scrape>>>>,
    report: Mutex<Option<Result<FloodReport, String>>>,
    scrapes: Mutex<Vec<Scrape>>,
    /// The flood is held back (a `--control` window runs the transfers alone).
    held: AtomicBool,
}

/// Read validator 0's metrics every [`MONITOR_INTERVAL`] until `stop`.
async fn monitor(http: reqwest::Client, rpc: String, stop: Arc<AtomicBool>) -> Vec<Scrape> {
    let mut scrapes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(response) = http.get(format!("{rpc}/metrics")).send().await {
            if let Ok(text) = response.text().await {
                scrapes.push(parse(&text));
            }
        }
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }
    scrapes
}

/// What the flooded validator's metrics say over the flood (first to last scrape).
pub fn flooded_facts(scrapes: &[Scrape]) -> Vec<(String, String)> {
    let (Some(first), Some(last)) = (scrapes.first(), scrapes.last()) else {
        return vec![("flooded validator metrics".into(), "not scraped".into())];
    };
    let mut facts = Vec::new();
    let lag = bucket_delta(&[last], &[first], "basalt_consensus_timer_lag_seconds");
    let ms = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |s| format!("{:.2} ms", s * 1e3));
    facts.push((
        "timer lag p50 (flooded)".into(),
        ms(bucket_quantile(&lag, 0.5)),
    ));
    facts.push((
        "timer lag p99 (flooded)".into(),
        ms(bucket_quantile(&lag, 0.99)),
    ));
    let turns = bucket_delta(&[last], &[first], "basalt_consensus_driver_turn_inputs");
    let largest = turns
        .windows(2)
        .filter(|pair| pair[1].1 > pair[0].1)
        .map(|pair| pair[1].0)
        .fold(
            turns.first().filter(|b| b.1 > 0.0).map_or(0.0, |b| b.0),
            f64::max,
        );
    facts.push((
        "driver inputs per turn p99 / largest bucket reached (flooded; bound 64)".into(),
        format!(
            "{} / ≤ {largest}",
            bucket_quantile(&turns, 0.99).map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"))
        ),
    ));
    let delta = |name: &str| total(last, name) - total(first, name);
    facts.push((
        "driver stalls (flooded)".into(),
        format!("{}", delta("basalt_consensus_driver_stalls_total")),
    ));
    facts.push((
        "late proposals: last commit re-sent (flooded)".into(),
        format!("{}", delta("basalt_consensus_proposer_nudges_total")),
    ));
    let max_of = |name: &str| {
        scrapes
            .iter()
            .map(|s| total(s, name))
            .fold(0.0_f64, f64::max)
    };
    facts.push((
        "pending buffer max (flooded)".into(),
        format!(
            "{}",
            total(last, "basalt_pending_size_max").max(max_of("basalt_pending_size"))
        ),
    ));
    facts.push((
        "fetches in flight max (flooded)".into(),
        format!(
            "{}",
            total(last, "basalt_fetch_in_flight_max").max(max_of("basalt_fetch_in_flight"))
        ),
    ));
    for reason in [
        "far_future_height",
        "far_future_round",
        "stale_height",
        "seen",
        "equivocation",
        "idle",
    ] {
        let name = "basalt_gossip_dropped_total";
        let count: f64 = [(last, 1.0), (first, -1.0)]
            .iter()
            .map(|(scrape, sign)| {
                sign * scrape
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with(&format!("{name}{{"))
                            && k.contains(&format!("reason=\"{reason}\""))
                    })
                    .map(|(_, v)| v)
                    .sum::<f64>()
            })
            .sum();
        facts.push((
            format!("gossip dropped before verification: {reason}"),
            format!("{count}"),
        ));
    }
    for (label, name) in [
        (
            "consensus gossip received (flooded, p2p)",
            "basalt_p2p_consensus_received_total",
        ),
        (
            "consensus gossip dropped: peer over its rate (flooded, p2p)",
            "basalt_p2p_consensus_rate_limited_total",
        ),
        (
            "consensus gossip dropped: event queue full (flooded, p2p)",
            "basalt_p2p_consensus_dropped_total",
        ),
    ] {
        facts.push((label.into(), format!("{}", delta(name))));
    }
    facts.push((
        "pending buffer evictions (flooded)".into(),
        format!("{}", delta("basalt_pending_evicted_total")),
    ));
    facts.push((
        "fetch cap refusals (flooded)".into(),
        format!("{}", delta("basalt_fetch_refused_total")),
    ));
    facts.push((
        "signatures verified (flooded)".into(),
        format!("{}", delta("basalt_signatures_verified_total")),
    ));
    // Consensus gossip the flooded validator received in each monitor interval.
    let received: Vec<f64> = scrapes
        .windows(2)
        .map(|pair| {
            total(&pair[1], "basalt_p2p_consensus_received_total")
                - total(&pair[0], "basalt_p2p_consensus_received_total")
        })
        .collect();
    // The flood's shape over time, every 5 s: the flooded validator's resident memory and
    // the consensus gossip it received per second (is the flood at full rate yet?).
    let every = (5_000 / MONITOR_INTERVAL.as_millis().max(1)).max(1) as usize;
    let series: Vec<String> = received
        .chunks_exact(every)
        .zip(scrapes.iter().skip(every).step_by(every))
        .map(|(chunk, end)| {
            let seconds = every as f64 * MONITOR_INTERVAL.as_secs_f64();
            format!(
                "{:.0} MiB {:.1}k/s",
                total(end, "basalt_process_resident_memory_bytes") / 1048576.0,
                chunk.iter().sum::<f64>() / seconds / 1000.0
            )
        })
        .collect();
    facts.push((
        "every 5 s: resident memory, consensus gossip received (flooded)".into(),
        series.join(" · "),
    ));
    // Memory is judged from the moment the flood runs at full rate (the flooder takes a
    // few seconds to connect and pre-sign): the first scrape whose received rate reaches
    // half the flood's median rate.
    let mut sorted = received.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let full_rate_from = received
        .iter()
        .position(|r| *r >= median / 2.0 && *r > 0.0)
        .map_or(0, |i| i + 1);
    facts.push((
        "flood at full rate after (s)".into(),
        format!(
            "{:.0}",
            full_rate_from as f64 * MONITOR_INTERVAL.as_secs_f64()
        ),
    ));
    let rss: Vec<f64> = scrapes
        .iter()
        .skip(full_rate_from)
        .map(|s| total(s, "basalt_process_resident_memory_bytes"))
        .filter(|v| *v > 0.0)
        .collect();
    if rss.len() >= 2 * RSS_WINDOW_SAMPLES {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let head = mean(&rss[..RSS_WINDOW_SAMPLES]);
        let tail = mean(&rss[rss.len() - RSS_WINDOW_SAMPLES..]);
        facts.push((
            "resident memory first/last 10 s at full rate (flooded)".into(),
            format!(
                "{:.1} MiB -> {:.1} MiB ({:+.1} %)",
                head / 1048576.0,
                tail / 1048576.0,
                (tail / head - 1.0) * 100.0
            ),
        ));
        // Where it grew: a plateau (caches filling) or a line (a leak).
        let quarters: Vec<String> = (1..=4)
            .map(|q| {
                let i = (rss.len() * q / 4).saturating_sub(1);
                format!("{:.0}", rss.get(i).copied().unwrap_or(0.0) / 1048576.0)
            })
            .collect();
        facts.push((
            "resident memory at 25/50/75/100 % of the flood, MiB (flooded)".into(),
            quarters.join(" / "),
        ));
    } else {
        facts.push((
            "resident memory growth (flooded)".into(),
            format!(
                "n/a: {} samples, needs {}",
                rss.len(),
                2 * RSS_WINDOW_SAMPLES
            ),
        ));
    }
    facts
}

impl GossipFlood {
    /// Read validator 0's p2p address and every validator's key from the devnet's homes.
    pub async fn new(ctx: &Ctx) -> Result<GossipFlood> {
        let settings = &ctx.gossip_flood;
        let Some(dir) = settings.devnet_dir.clone() else {
            bail!(
                "gossip-flood needs a devnet started by the lab (--devnet): it reads the \
                 validators' homes for validator 0's p2p address and the keys it signs with"
            );
        };
        let rpc = ctx.validators.first().context("no validators")?.clone();
        let status: serde_json::Value = ctx
            .http
            .get(format!("{rpc}/v1/status"))
            .send()
            .await?
            .json()
            .await?;
        let peer_id = status["node_id"]
            .as_str()
            .context("status without node_id")?
            .to_owned();
        let validators: Vec<String> = status["validators"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|v| v["public_key"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let node0 = HomeLayout::new(&dir.join("node0"));
        let listen = NodeConfig::load(&node0.config())?.p2p.listen_addr;
        let target = format!("{listen}/p2p/{peer_id}")
            .parse()
            .with_context(|| format!("p2p address {listen}/p2p/{peer_id}"))?;
        // The flooder holds one validator's key — the last one's: the byzantine validator
        // BFT allows (f = 1 of 4). Holding every key would be a compromised network, not a
        // flood: it could censor every honest validator's votes.
        let mut validator_keys = Vec::new();
        for i in validators.len().saturating_sub(1)..validators.len() {
            let home = HomeLayout::new(&dir.join(format!("node{i}")));
            let Ok(key) = KeyFile::read(&home.validator_key()).and_then(|k| k.keypair()) else {
                continue;
            };
            let public = key.public().to_hex();
            if let Some(index) = validators.iter().position(|v| *v == public) {
                validator_keys.push((u16::try_from(index)?, key));
            }
        }
        Ok(GossipFlood {
            http: ctx.http.clone(),
            monitor: Mutex::new(None),
            scrapes: Mutex::new(Vec::new()),
            transfers: Arc::new(Transfer::new(ctx).await),
            config: FloodConfig {
                target,
                target_rpc: rpc,
                rate: settings.rate,
                duration: settings.duration,
                validators: u16::try_from(validators.len())?,
                validator_keys,
                junk_per_mille: 0,
                stop: Arc::new(AtomicBool::new(false)),
                connections: FLOOD_CONNECTIONS,
            },
            flooder: Mutex::new(None),
            report: Mutex::new(None),
            niceness: settings.niceness,
            held: AtomicBool::new(false),
        })
    }

    /// Start the flooder with the load (once).
    fn start_flooder(&self) {
        let mut flooder = self
            .flooder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if flooder.is_none() && !self.config.stop.load(Ordering::Relaxed) {
            *flooder = Some(spawn_flooder(self.config.clone(), self.niceness));
            *self
                .monitor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::spawn(monitor(
                self.http.clone(),
                self.config.target_rpc.clone(),
                self.config.stop.clone(),
            )));
        }
    }
}

/// Run the flooder on its own thread and runtime at OS niceness `niceness`. The flooder
/// stands for an attacker's own machines, but on a shared box it competes with the
/// validators: the lab process as a whole (flooder at 20,000 messages/s, 1,000 transfers/s,
/// block follower) takes ~0.4 of this machine's 2 cores at niceness 0. A higher niceness
/// leaves the validators more of it and may flood less; the achieved rate is reported
/// either way.
/// At niceness 0 it shares the generator's runtime (as before the option existed: on a
/// thread of its own it burned more CPU and delivered less).
fn spawn_flooder(config: FloodConfig, niceness: u8) -> JoinHandle<Result<FloodReport>> {
    if niceness == 0 {
        return tokio::spawn(crate::flood::run(config));
    }
    let (done, report) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("flooder".into())
        .spawn(move || {
            basalt_rpc::lower_priority(niceness);
            let result = match crate::niced_runtime("flooder-rt", 1, niceness) {
                Ok(runtime) => runtime.block_on(crate::flood::run(config)),
                Err(e) => Err(anyhow::anyhow!("flooder runtime: {e}")),
            };
            let _ = done.send(result);
        });
    tokio::spawn(async move {
        spawned.map_err(|e| anyhow::anyhow!("flooder thread: {e}"))?;
        report
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("flooder thread ended without a report")))
    })
}

impl Workload for GossipFlood {
    fn chunk_max(&self) -> usize {
        self.transfers.chunk_max()
    }

    fn prepare(&self, ops: Range<u64>) -> BoxFuture<'_, Result<()>> {
        self.transfers.prepare(ops)
    }

    fn send(self: Arc<Self>, ops: Range<u64>) -> BoxFuture<'static, ()> {
        if !self.held.load(Ordering::Relaxed) {
            self.start_flooder();
        }
        Arc::clone(&self.transfers).send(ops)
    }

    fn facts(&self) -> Vec<(String, String)> {
        let report = self
            .report
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut facts = vec![
            ("flooded validator".into(), "0".into()),
            (
                "flood offered".into(),
                format!("{} msgs/s", self.config.rate),
            ),
            ("flooder OS niceness".into(), self.niceness.to_string()),
            (
                "byzantine validator signing unknown-block votes".into(),
                self.config
                    .validator_keys
                    .iter()
                    .map(|(i, _)| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ];
        match report.as_ref() {
            Some(Ok(r)) => facts.extend([
                ("flood sent (framed and queued)".into(), r.sent.to_string()),
                (
                    "flood rate achieved (written to the flooded validator)".into(),
                    format!("{:.0} msgs/s", r.rate_achieved),
                ),
                (
                    "flood backpressured (flooder's frame queues full; not generated)".into(),
                    r.backpressured.to_string(),
                ),
                (
                    "far-future-height votes".into(),
                    r.far_future_height.to_string(),
                ),
                (
                    "far-future-round votes/proposals".into(),
                    r.far_future_round.to_string(),
                ),
                (
                    "unknown-block votes (signed)".into(),
                    r.unknown_block.to_string(),
                ),
                ("re-sends".into(), r.resends.to_string()),
                ("junk".into(), r.junk.to_string()),
                (
                    "flooder identities (connected at once / used)".into(),
                    format!("{FLOOD_CONNECTIONS} / {}", r.identities),
                ),
                (
                    "flood written to the flooded validator's gossipsub streams".into(),
                    r.written.to_string(),
                ),
                (
                    "flood lost with a closed connection".into(),
                    r.write_failed.to_string(),
                ),
            ]),
            Some(Err(e)) => facts.push(("flooder failed".into(), e.clone())),
            None => facts.push(("flooder".into(), "did not run".into())),
        }
        let scrapes = self
            .scrapes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        facts.extend(flooded_facts(&scrapes));
        facts
    }

    fn hold_back(&self, held: bool) -> bool {
        self.held.store(held, Ordering::Relaxed);
        true
    }

    fn finish(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.config.stop.store(true, Ordering::Relaxed);
            let handle = self
                .flooder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let outcome = match handle {
                Some(handle) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(wait, handle).await {
                        Ok(Ok(result)) => Some(result.map_err(|e| format!("{e:#}"))),
                        Ok(Err(e)) => Some(Err(format!("flooder task: {e}"))),
                        Err(_) => Some(Err("flooder did not stop in time".into())),
                    }
                }
                None => None,
            };
            *self
                .report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = outcome;
            let monitor = self
                .monitor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(monitor) = monitor {
                let wait = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok(scrapes)) = tokio::time::timeout(wait, monitor).await {
                    *self
                        .scrapes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = scrapes;
                }
            }
            self.transfers.finish(deadline).await;
        })
    }
}
