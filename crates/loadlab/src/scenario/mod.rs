//! Scenarios: what a run sends. Each is one module implementing [`Workload`], named by one
//! [`ScenarioKind`] variant; [`build`] is the only place that maps one to the other.
//!
//! A workload turns operation ids (given by the load model, see [`crate::load`]) into
//! requests. Where the scenario allows, transactions are signed in [`Workload::prepare`],
//! before the timed phase, so the generator's signing does not cap the rate; operations
//! that depend on the chain's answers (a cancel needs its order's id) are signed at run time.

mod flood;
mod gossip_flood;
mod orderbook;
pub mod sdk;
mod tasks;
pub mod transfer;

use crate::tracker::{OpState, Tracker};
use anyhow::{bail, Result};
use basalt_types::{Hash, Keypair, Payload, SignedTx};
use futures::future::BoxFuture;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Devnet test accounts (`basalt init` funds accounts `0..1000`; `0..32` create tasks).
pub const ACCOUNTS: usize = 1000;
/// Task generators among them.
pub const TASK_GENERATORS: usize = 32;
/// Most transactions in one `POST /v1/txs` (under the RPC's body limit).
pub const TXS_PER_REQUEST_MAX: usize = 2000;
/// Sends of one request after typed shedding (429/503, `mempool_full`, `overloaded`)
/// before its operations are counted as shed.
pub const SHED_ATTEMPTS_MAX: u32 = 12;
/// First pause after shedding; doubles per attempt.
pub const SHED_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between attempts: 12 attempts wait about 7.5 s in all, so a client the
/// node rate-limits keeps its place in its nonce sequence (a dropped transaction strands
/// every later one of its sender: seed 002's nonce gap).
pub const SHED_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The scenarios `basalt bench --scenario` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioKind {
    /// Transfers between the devnet accounts, pre-signed.
    Transfer,
    /// Limit orders that cross, and makers' orders cancelled once they rest.
    Orderbook,
    /// Tasks: create, then respond once the create committed, through the SDK's batch
    /// submitter with several signers (seed 002's shape).
    Tasks,
    /// Everything at one validator's RPC as fast as the generator can: reads and
    /// submissions (seed 000's shape).
    HttpFlood,
    /// A libp2p peer flooding one validator with consensus gossip (seed 001's shape).
    GossipFlood,
}

impl ScenarioKind {
    /// Every scenario.
    pub const ALL: [ScenarioKind; 5] = [
        ScenarioKind::Transfer,
        ScenarioKind::Orderbook,
        ScenarioKind::Tasks,
        ScenarioKind::HttpFlood,
        ScenarioKind::GossipFlood,
    ];

    /// The name on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Transfer => "transfer",
            ScenarioKind::Orderbook => "orderbook",
            ScenarioKind::Tasks => "tasks",
            ScenarioKind::HttpFlood => "http-flood",
            ScenarioKind::GossipFlood => "gossip-flood",
        }
    }

    /// True for the HTTP flood, which drives its own load (as many requests as the
    /// generator can make) instead of a rate or users. (`gossip-flood` floods over p2p and
    /// offers its transfers as configured.)
    pub fn is_flood(self) -> bool {
        matches!(self, ScenarioKind::HttpFlood)
    }
}

impl FromStr for ScenarioKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match ScenarioKind::ALL.iter().find(|k| k.name() == s) {
            Some(kind) => Ok(*kind),
            None => bail!(
                "unknown scenario {s:?}; known: {}",
                ScenarioKind::ALL.map(ScenarioKind::name).join(", ")
            ),
        }
    }
}

impl std::fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What every workload gets.
#[derive(Clone)]
pub struct Ctx {
    /// HTTP client (pooled connections).
    pub http: reqwest::Client,
    /// Where requests go: every validator (target all), one (single) or the gateway.
    pub routes: Vec<String>,
    /// Every validator's RPC base URL (for reads of the chain's state, not load).
    pub validators: Vec<String>,
    /// Chain id to sign for.
    pub chain_id: String,
    /// The run's operation records.
    pub tracker: Arc<Tracker>,
    /// Distinguishes this run's content (task ids) from earlier runs on the same chain.
    pub run_tag: u64,
    /// Concurrency of flood scenarios.
    pub flood_concurrency: usize,
    /// Settings of the gossip-flood scenario's flooder.
    pub gossip_flood: GossipFloodSettings,
    next_route: Arc<AtomicUsize>,
}

/// What the gossip-flood scenario's flooder needs beyond the common context.
#[derive(Debug, Clone, Default)]
pub struct GossipFloodSettings {
    /// The devnet's directory (validator homes: p2p addresses and keys), when the lab
    /// started the devnet.
    pub devnet_dir: Option<std::path::PathBuf>,
    /// Messages per second.
    pub rate: u64,
    /// Longest flood (warm-up plus the measured load); it also stops when the load ends.
    pub duration: Duration,
    /// OS niceness of the flooder's threads (0..=19; 0 = the generator's own).
    pub niceness: u8,
}

impl Ctx {
    /// A context.
    pub fn new(
        http: reqwest::Client,
        routes: Vec<String>,
        validators: Vec<String>,
        chain_id: String,
        tracker: Arc<Tracker>,
        run_tag: u64,
        flood_concurrency: usize,
    ) -> Ctx {
        Ctx {
            http,
            routes,
            validators,
            chain_id,
            tracker,
            run_tag,
            flood_concurrency,
            gossip_flood: GossipFloodSettings::default(),
            next_route: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same context with the gossip-flood settings.
    pub fn with_gossip_flood(mut self, settings: GossipFloodSettings) -> Ctx {
        self.gossip_flood = settings;
        self
    }

    /// The next route, round-robin.
    pub fn route(&self) -> String {
        let i = self.next_route.fetch_add(1, Ordering::Relaxed);
        self.routes
            .get(i % self.routes.len().max(1))
            .cloned()
            .unwrap_or_default()
    }

    /// The next nonce of each of `keys`, read from the first validator that answers.
    pub async fn nonces(&self, keys: &[Keypair]) -> Vec<u64> {
        let mut nonces = Vec::with_capacity(keys.len());
        for key in keys {
            let mut nonce = 0;
            for endpoint in &self.validators {
                let url = format!("{endpoint}/v1/accounts/{}", key.public().to_hex());
                let answer = match self.http.get(url).send().await {
                    Ok(r) => r.json::<serde_json::Value>().await.ok(),
                    Err(_) => None,
                };
                if let Some(n) = answer
                    .as_ref()
                    .and_then(|v| v.get("nonce"))
                    .and_then(serde_json::Value::as_u64)
                {
                    nonce = n;
                    break;
                }
            }
            nonces.push(nonce);
        }
        nonces
    }
}

/// A scenario's load.
pub trait Workload: Send + Sync {
    /// Most operations the open loop hands to one [`Workload::send`] call.
    fn chunk_max(&self) -> usize;

    /// Sign (or otherwise get ready) operations `ops` before they are timed.
    fn prepare(&self, ops: Range<u64>) -> BoxFuture<'_, Result<()>>;

    /// Send operations `ops` now (already issued in the tracker). Resolves once the network
    /// answered the requests (their commit is seen later, by the follower or a receipt).
    fn send(self: Arc<Self>, ops: Range<u64>) -> BoxFuture<'static, ()>;

    /// What the report should say about this scenario beyond the common fields:
    /// (label, value) rows.
    fn facts(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Hold back (`true`) or release the scenario's disturbance — gossip-flood's flood —
    /// so the same load can be measured without it (`--control`). `false`: the scenario
    /// has no disturbance apart from its load.
    fn hold_back(&self, _held: bool) -> bool {
        false
    }

    /// Stop background work (submitters) and let in-flight operations end by `deadline`.
    fn finish(&self, _deadline: std::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Build the workload of `kind`.
pub async fn build(kind: ScenarioKind, ctx: &Ctx) -> Result<Arc<dyn Workload>> {
    Ok(match kind {
        ScenarioKind::Transfer => Arc::new(transfer::Transfer::new(ctx).await),
        ScenarioKind::Orderbook => Arc::new(orderbook::Orderbook::new(ctx).await?),
        ScenarioKind::Tasks => Arc::new(tasks::Tasks::new(ctx).await?),
        ScenarioKind::HttpFlood => Arc::new(flood::HttpFlood::new(ctx).await),
        ScenarioKind::GossipFlood => Arc::new(gossip_flood::GossipFlood::new(ctx).await?),
    })
}

/// A signed transaction ready to send, and the operation it carries.
#[derive(Clone)]
pub struct Prepared {
    /// Operation id.
    pub op: u64,
    /// Hex of the canonical bytes.
    pub hex: String,
    /// Hash of the bytes.
    pub hash: Hash,
}

impl Prepared {
    /// Sign `payload` as `key`'s transaction `nonce`, for operation `op`.
    pub fn sign(op: u64, key: &Keypair, chain_id: &str, nonce: u64, payload: Payload) -> Self {
        let bytes = SignedTx::sign(key, chain_id, nonce, payload).to_bytes();
        Prepared {
            op,
            hash: basalt_types::sha256(&bytes),
            hex: hex::encode(bytes),
        }
    }
}

/// Sign `ops` with `make` on every core (the timed phase has not started).
pub fn sign_parallel<F>(ops: Range<u64>, make: F) -> Vec<Prepared>
where
    F: Fn(u64) -> Option<Prepared> + Sync,
{
    let count = ops.end.saturating_sub(ops.start) as usize;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1) as u64;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (ops.start..ops.end)
            .step_by(chunk as usize)
            .map(|start| {
                let make = &make;
                let end = (start + chunk).min(ops.end);
                scope.spawn(move || (start..end).filter_map(make).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// How one request was answered.
enum Answer {
    /// 2xx with a body.
    Body(Option<serde_json::Value>),
    /// 429/503 with a typed `{error: {code}}` body.
    Shed,
    /// Anything else.
    Error,
}

async fn post_once(ctx: &Ctx, route: &str, hexes: &[&str]) -> (Answer, f64) {
    let started = std::time::Instant::now();
    let response = ctx
        .http
        .post(format!("{route}/v1/txs"))
        .json(&serde_json::json!({ "txs": hexes }))
        .send()
        .await;
    let answer = match response {
        Ok(r) if r.status().is_success() => Answer::Body(r.json().await.ok()),
        Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
            let typed = r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|b| b.pointer("/error/code").map(|c| c.is_string()))
                .unwrap_or(false);
            if typed {
                Answer::Shed
            } else {
                Answer::Error
            }
        }
        _ => Answer::Error,
    };
    (answer, started.elapsed().as_secs_f64() * 1e3)
}

/// Whether a per-transaction rejection code means "try again later".
fn is_transient(code: &str) -> bool {
    matches!(
        code,
        "mempool_full" | "sender_full" | "overloaded" | "congested"
    )
}

/// `POST /v1/txs` the prepared transactions to `route` and record each operation's answer.
/// Shed requests and transient rejections are sent again after a backoff (the same bytes:
/// a nonce gap would stall every later transaction of the sender), up to
/// [`SHED_ATTEMPTS_MAX`] times; then they count as shed.
pub async fn submit_prepared(ctx: &Ctx, route: &str, mut txs: Vec<Prepared>) {
    let tracker = &ctx.tracker;
    let mut backoff = SHED_BACKOFF_MIN;
    for attempt in 1..=SHED_ATTEMPTS_MAX {
        if txs.is_empty() {
            return;
        }
        let hexes: Vec<&str> = txs.iter().map(|t| t.hex.as_str()).collect();
        let (answer, ms) = post_once(ctx, route, &hexes).await;
        let body = match answer {
            Answer::Body(body) => body,
            Answer::Shed => {
                tracker.shed_request();
                if attempt == SHED_ATTEMPTS_MAX {
                    txs.iter().for_each(|t| tracker.finish(t.op, OpState::Shed));
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(SHED_BACKOFF_MAX);
                continue;
            }
            Answer::Error => {
                txs.iter()
                    .for_each(|t| tracker.finish(t.op, OpState::SysError));
                return;
            }
        };
        tracker.http(ms);
        let results = body
            .as_ref()
            .and_then(|b| b.get("results"))
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        if results.len() != txs.len() {
            txs.iter()
                .for_each(|t| tracker.finish(t.op, OpState::SysError));
            return;
        }
        let mut again = Vec::new();
        for (tx, result) in txs.into_iter().zip(results) {
            if result.get("accepted").and_then(serde_json::Value::as_bool) == Some(true) {
                tracker.accepted(tx.op);
                continue;
            }
            let code = result
                .pointer("/error/code")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("untyped");
            match code {
                // An earlier send of these bytes got in.
                "duplicate" => tracker.accepted(tx.op),
                code if is_transient(code) && attempt < SHED_ATTEMPTS_MAX => again.push(tx),
                code if is_transient(code) => tracker.finish(tx.op, OpState::Shed),
                "untyped" => tracker.finish(tx.op, OpState::SysError),
                code => tracker.finish(tx.op, OpState::Rejected(code.to_owned())),
            }
        }
        if !again.is_empty() {
            tracker.shed_request();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(SHED_BACKOFF_MAX);
        }
        txs = again;
    }
}

/// The devnet account `index`'s key.
pub fn account(index: usize) -> Keypair {
    basalt_client::keys::devnet_account(index)
}

/// A cheap deterministic mix of a number (splitmix64), for choosing sides and prices.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for kind in ScenarioKind::ALL {
            assert_eq!(kind.name().parse::<ScenarioKind>().ok(), Some(kind));
        }
        assert!("nope".parse::<ScenarioKind>().is_err());
    }
}
