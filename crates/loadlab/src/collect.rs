//! Node-side collection: a follower that reads every committed block from one validator,
//! a sampler of every validator's height, `/metrics` scrapes, and state-root agreement.

use crate::stats::{parse, Scrape};
use crate::tracker::Tracker;
use basalt_rpc::json::BlockJson;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the sampler reads every validator's height.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// The sampler also reads every validator's queue gauges once per this many samples.
pub const GAUGE_EVERY_SAMPLES: u64 = 4;
/// Gauges the sampler keeps (metric names): mempool size and named queue depths.
pub const SAMPLED_GAUGES: [&str; 2] = ["basalt_mempool_size", "basalt_queue_depth"];
/// How often the follower asks for a new height when it is caught up.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(10);
/// Most block requests the follower has in flight when it is behind the chain.
pub const FOLLOW_AHEAD_MAX: u64 = 16;

/// A committed block as the follower saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Height.
    pub height: u64,
    /// Proposer's time, ms since the epoch.
    pub time_ms: u64,
    /// When the follower read it.
    pub observed: Instant,
    /// Transactions in it.
    pub txs: usize,
}

/// One reading of every validator's height (`None`: no answer).
#[derive(Debug, Clone)]
pub struct HeightSample {
    /// When.
    pub at: Instant,
    /// Per validator, in endpoint order.
    pub heights: Vec<Option<u64>>,
    /// How long the slowest validator took to answer, ms: a height read this late may be
    /// that many milliseconds' worth of blocks apart from the others' for no fault of
    /// the chain.
    pub slowest_answer_ms: f64,
}

/// What the background collectors gathered.
#[derive(Default)]
pub struct Collected {
    /// Blocks in height order.
    pub blocks: Mutex<Vec<Seen>>,
    /// Height samples in time order.
    pub samples: Mutex<Vec<HeightSample>>,
    /// Queue gauges of every validator ([`SAMPLED_GAUGES`]), in time order.
    pub gauges: Mutex<Vec<(Instant, Vec<Scrape>)>>,
}

/// The latest height `endpoint` reports.
pub async fn height(client: &reqwest::Client, endpoint: &str) -> Option<u64> {
    let response = client
        .get(format!("{endpoint}/v1/status"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        // Shed (a flooded node rate-limits this machine's address, the lab's included):
        // the operations route is not rate-limited and says the same.
        return height_from_metrics(client, endpoint).await;
    }
    let status: serde_json::Value = response.json().await.ok()?;
    status.get("height")?.as_u64()
}

/// The node's committed height from its `/metrics` (`basalt_consensus_height`).
async fn height_from_metrics(client: &reqwest::Client, endpoint: &str) -> Option<u64> {
    let text = client
        .get(format!("{endpoint}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("basalt_consensus_height "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

impl Collected {
    /// The blocks seen so far, in height order.
    pub fn blocks(&self) -> Vec<Seen> {
        self.blocks.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// Block `height` from `endpoint`.
pub async fn block(client: &reqwest::Client, endpoint: &str, height: u64) -> Option<BlockJson> {
    client
        .get(format!("{endpoint}/v1/blocks/{height}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// `/metrics` of every endpoint (an empty scrape for one that does not answer).
pub async fn scrape_all(client: &reqwest::Client, endpoints: &[String]) -> Vec<Scrape> {
    let scrapes = endpoints.iter().map(|endpoint| async move {
        match client.get(format!("{endpoint}/metrics")).send().await {
            Ok(r) => parse(&r.text().await.unwrap_or_default()),
            Err(_) => Scrape::new(),
        }
    });
    futures::future::join_all(scrapes).await
}

/// Follow committed blocks on `endpoint` until `stop`: record each, and tell the tracker
/// which transactions committed.
pub async fn follow(
    client: reqwest::Client,
    endpoint: String,
    collected: Arc<Collected>,
    tracker: Arc<Tracker>,
    stop: Arc<AtomicBool>,
) {
    let mut next = height(&client, &endpoint).await.unwrap_or(0) + 1;
    // Ask for the next blocks directly (no status polling). At the chain's head one
    // request at a time (plus one per interval while the next block does not exist yet);
    // behind it — the node's RPC answers slower than blocks come, e.g. on a box a flood
    // keeps busy — up to FOLLOW_AHEAD_MAX requests at once, or the follower would fall
    // further behind every block and time its own lag as commit latency.
    let mut ahead = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let fetched = futures::future::join_all(
            (next..next + ahead).map(|height| block(&client, &endpoint, height)),
        )
        .await;
        let observed = Instant::now();
        let mut got = 0u64;
        for b in fetched.into_iter().map_while(|b| b) {
            tracker.committed_hashes(b.txs.iter().map(|t| &t.hash), observed);
            let record = Seen {
                height: b.header.height,
                time_ms: b.header.time_ms,
                observed,
                txs: b.txs.len(),
            };
            if let Ok(mut blocks) = collected.blocks.lock() {
                blocks.push(record);
            }
            got += 1;
        }
        next += got;
        if got == ahead {
            ahead = (ahead * 2).min(FOLLOW_AHEAD_MAX);
        } else {
            ahead = 1;
            if got == 0 {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
            }
        }
    }
}

/// Read every validator's height each [`SAMPLE_INTERVAL`] until `stop`.
pub async fn sample(
    client: reqwest::Client,
    endpoints: Vec<String>,
    collected: Arc<Collected>,
    stop: Arc<AtomicBool>,
) {
    let mut count = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        let heights = futures::future::join_all(endpoints.iter().map(|e| height(&client, e))).await;
        let slowest_answer_ms = at.elapsed().as_secs_f64() * 1e3;
        if let Ok(mut samples) = collected.samples.lock() {
            samples.push(HeightSample {
                at,
                heights,
                slowest_answer_ms,
            });
        }
        if count.is_multiple_of(GAUGE_EVERY_SAMPLES) {
            let gauges: Vec<Scrape> = scrape_all(&client, &endpoints)
                .await
                .into_iter()
                .map(|scrape| {
                    scrape
                        .into_iter()
                        .filter(|(series, _)| {
                            let name = series.split('{').next().unwrap_or_default();
                            SAMPLED_GAUGES.contains(&name)
                        })
                        .collect()
                })
                .collect();
            if let Ok(mut all) = collected.gauges.lock() {
                all.push((at, gauges));
            }
        }
        count += 1;
        tokio::time::sleep(SAMPLE_INTERVAL).await;
    }
}

/// Largest spread between validators' heights in samples taken in `[from, to]`, counting
/// a validator that stopped answering at the last height it reported; and the most
/// validators that did not answer one sample.
pub fn height_spread(samples: &[HeightSample], from: Instant, to: Instant) -> (u64, u64) {
    let mut last: Vec<Option<u64>> = Vec::new();
    let (mut spread, mut unreachable) = (0u64, 0u64);
    for sample in samples {
        if last.len() < sample.heights.len() {
            last.resize(sample.heights.len(), None);
        }
        for (slot, h) in last.iter_mut().zip(&sample.heights) {
            if h.is_some() {
                *slot = *h;
            }
        }
        if sample.at < from || sample.at > to {
            continue;
        }
        let known: Vec<u64> = last.iter().flatten().copied().collect();
        if let (Some(max), Some(min)) = (known.iter().max(), known.iter().min()) {
            spread = spread.max(max - min);
        }
        unreachable = unreachable.max(sample.heights.iter().filter(|h| h.is_none()).count() as u64);
    }
    (spread, unreachable)
}

/// Pages of `/v1/commits` read from one validator at most (a node remembers 16,384
/// heights; a page holds up to 1,000).
const COMMIT_PAGES_MAX: usize = 64;
/// How long reading one validator's commit times may take, retries of shed answers
/// included.
const COMMIT_TIMES_PATIENCE: Duration = Duration::from_secs(10);

/// Every commit time `endpoint` remembers from height `from` on, or `None` when it does
/// not answer (stopped, or shedding for longer than [`COMMIT_TIMES_PATIENCE`]).
pub async fn commit_times(
    client: &reqwest::Client,
    endpoint: &str,
    from: u64,
) -> Option<Vec<basalt_rpc::CommitTime>> {
    #[derive(serde::Deserialize)]
    struct Page {
        commits: Vec<basalt_rpc::CommitTime>,
    }
    let deadline = Instant::now() + COMMIT_TIMES_PATIENCE;
    let mut all: Vec<basalt_rpc::CommitTime> = Vec::new();
    let mut next = from;
    for _ in 0..COMMIT_PAGES_MAX {
        let page = loop {
            let answer = client
                .get(format!("{endpoint}/v1/commits?from={next}"))
                .send()
                .await
                .ok()?;
            if answer.status().is_success() {
                break answer.json::<Page>().await.ok()?;
            }
            // Shed (429/503): the run is over, the limiter refills; anything else is final.
            let shed = matches!(answer.status().as_u16(), 429 | 503);
            if !shed || Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let Some(last) = page.commits.last().map(|t| t.height) else {
            break;
        };
        let full = page.commits.len() >= basalt_rpc::COMMIT_TIMES_PAGE_MAX;
        all.extend(page.commits);
        if !full {
            break;
        }
        next = last.checked_add(1)?;
    }
    Some(all)
}

/// Largest spread between validators' heights at any instant in `[from_us, to_us]`
/// (microseconds since the epoch, the validators' shared clock), from each one's commit
/// times. `None` when some validator's times are missing or do not reach back to
/// `from_us` (its bounded window, or a restart, lost them): the caller falls back to the
/// sampler then.
pub fn exact_spread(
    times: &[Option<Vec<basalt_rpc::CommitTime>>],
    from_us: u64,
    to_us: u64,
) -> Option<u64> {
    let mut heights = Vec::with_capacity(times.len());
    let mut events: Vec<(u64, usize, u64)> = Vec::new();
    for (validator, times) in times.iter().enumerate() {
        let times = times.as_ref()?;
        // The height at `from_us`: the last one made durable by then.
        let before = times.partition_point(|t| t.at_unix_us <= from_us);
        heights.push(times.get(before.checked_sub(1)?)?.height);
        events.extend(
            times[before..]
                .iter()
                .take_while(|t| t.at_unix_us <= to_us)
                .map(|t| (t.at_unix_us, validator, t.height)),
        );
    }
    events.sort_unstable();
    let spread = |h: &[u64]| match (h.iter().max(), h.iter().min()) {
        (Some(max), Some(min)) => max.saturating_sub(*min),
        _ => 0,
    };
    let mut widest = spread(&heights);
    let mut i = 0;
    while i < events.len() {
        // Commits at the same microsecond count as simultaneous.
        let at = events[i].0;
        while i < events.len() && events[i].0 == at {
            let (_, validator, height) = events[i];
            heights[validator] = height;
            i += 1;
        }
        widest = widest.max(spread(&heights));
    }
    Some(widest)
}

/// Microseconds since the epoch at `at` (an instant of this process, converted with the
/// current offset between the two clocks).
pub fn unix_us(at: Instant) -> u64 {
    let now = std::time::SystemTime::now();
    let back = Instant::now().saturating_duration_since(at);
    now.checked_sub(back)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The slowest answer to a height sample taken in `[from, to]`, ms.
pub fn slowest_answer(samples: &[HeightSample], from: Instant, to: Instant) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .map(|s| s.slowest_answer_ms)
        .reduce(f64::max)
}

/// Largest value of each sampled gauge series in `[from, to]`, over every validator.
pub fn gauge_max(
    gauges: &[(Instant, Vec<Scrape>)],
    from: Instant,
    to: Instant,
) -> BTreeMap<String, f64> {
    let mut max = BTreeMap::new();
    for (_, scrapes) in gauges.iter().filter(|(at, _)| *at >= from && *at <= to) {
        for (series, value) in scrapes.iter().flatten() {
            let slot = max.entry(series.clone()).or_insert(*value);
            *slot = value.max(*slot);
        }
    }
    max
}

/// Counters of drops, shedding and refusals (series whose name ends in `_total` and
/// mentions `dropped`, `_shed_` or `rejection`) that grew between two scrapes of the same
/// validators, summed over validators.
pub fn drops(after: &[Scrape], before: &[Scrape]) -> BTreeMap<String, f64> {
    let mut grown = BTreeMap::new();
    for (end, start) in after.iter().zip(before) {
        for (series, value) in end {
            let name = series.split('{').next().unwrap_or_default();
            let counted = name.ends_with("_total")
                && ["dropped", "_shed_", "rejection"]
                    .iter()
                    .any(|w| name.contains(w));
            let delta = value - start.get(series).copied().unwrap_or(0.0);
            if counted && delta > 0.0 {
                *grown.entry(series.clone()).or_insert(0.0) += delta;
            }
        }
    }
    grown
}

/// Intervals between consecutive blocks (by block time) observed in `[from, to]`, ms.
pub fn block_intervals(blocks: &[Seen], from: Instant, to: Instant) -> Vec<f64> {
    blocks
        .windows(2)
        .filter_map(|pair| match pair {
            [a, b] if b.observed >= from && b.observed <= to && b.height == a.height + 1 => {
                Some(b.time_ms.saturating_sub(a.time_ms) as f64)
            }
            _ => None,
        })
        .collect()
}

/// Whether every validator that answers has the same block id and state root at the
/// highest height they all have. `None` when fewer than two answer.
pub async fn state_roots_agree(client: &reqwest::Client, endpoints: &[String]) -> Option<bool> {
    let heights = futures::future::join_all(endpoints.iter().map(|e| height(client, e))).await;
    let live: Vec<(&String, u64)> = endpoints
        .iter()
        .zip(heights)
        .filter_map(|(e, h)| Some((e, h?)))
        .collect();
    let common = live.iter().map(|(_, h)| *h).min()?;
    if live.len() < 2 || common < 1 {
        return None;
    }
    let mut ids = Vec::new();
    for (endpoint, _) in &live {
        ids.push(
            block(client, endpoint, common)
                .await
                .map(|b| (b.id, b.header.state_root)),
        );
    }
    let first = ids.first().cloned().flatten();
    Some(first.is_some() && ids.iter().all(|id| *id == first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(list: &[(u64, u64)]) -> Option<Vec<basalt_rpc::CommitTime>> {
        Some(
            list.iter()
                .map(|&(height, at_unix_us)| basalt_rpc::CommitTime { height, at_unix_us })
                .collect(),
        )
    }

    #[test]
    fn exact_spread_follows_every_validator_on_one_clock() {
        // Validator 1 commits heights 11..=14 late: at t=400 it is at 10 while 0 is at 14.
        let fast = times(&[
            (10, 50),
            (11, 100),
            (12, 200),
            (13, 300),
            (14, 400),
            (15, 900),
        ]);
        let slow = times(&[
            (10, 60),
            (11, 450),
            (12, 460),
            (13, 470),
            (14, 480),
            (15, 910),
        ]);
        assert_eq!(
            exact_spread(&[fast.clone(), slow.clone()], 90, 1000),
            Some(4)
        );
        // Before the slow stretch, they are one apart at most.
        assert_eq!(
            exact_spread(&[fast.clone(), slow.clone()], 90, 150),
            Some(1)
        );
        // A validator that did not answer, or whose times start after the window does:
        // no exact answer.
        assert_eq!(exact_spread(&[fast.clone(), None], 90, 1000), None);
        assert_eq!(exact_spread(&[fast, slow], 10, 1000), None);
    }

    #[test]
    fn a_stopped_validator_keeps_its_last_height_in_the_spread() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let samples = vec![
            HeightSample {
                at: at(0),
                heights: vec![Some(10), Some(10), Some(9)],
                slowest_answer_ms: 0.0,
            },
            HeightSample {
                at: at(250),
                heights: vec![Some(20), None, Some(20)],
                slowest_answer_ms: 0.0,
            },
            HeightSample {
                at: at(500),
                heights: vec![Some(31), None, Some(30)],
                slowest_answer_ms: 0.0,
            },
        ];
        assert_eq!(height_spread(&samples, at(0), at(500)), (21, 1));
        assert_eq!(height_spread(&samples, at(0), at(0)), (1, 0));
    }

    #[test]
    fn drops_and_gauge_maxima() {
        let before = vec![crate::stats::parse(
            "basalt_queue_dropped_total{queue=\"verify\"} 3\nbasalt_mempool_size 5\n",
        )];
        let after = vec![crate::stats::parse(
            "basalt_queue_dropped_total{queue=\"verify\"} 10\n\
             basalt_rpc_shed_total{reason=\"overloaded\"} 0\nbasalt_mempool_size 9\n\
             basalt_p2p_txs_published_total 4\n",
        )];
        let grown = drops(&after, &before);
        assert_eq!(grown.len(), 1);
        assert_eq!(
            grown.get("basalt_queue_dropped_total{queue=\"verify\"}"),
            Some(&7.0)
        );
        let t = Instant::now();
        let gauges = vec![(t, before), (t, after)];
        let max = gauge_max(&gauges, t, t);
        assert_eq!(max.get("basalt_mempool_size"), Some(&9.0));
    }
}
