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
use anyhow::{bail, Context, Result};
use basalt_node::config::{HomeLayout, KeyFile, NodeConfig};
use futures::future::BoxFuture;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinHandle;

/// Transfers plus a gossip flood at validator 0.
pub struct GossipFlood {
    transfers: Arc<Transfer>,
    config: FloodConfig,
    flooder: Mutex<Option<JoinHandle<Result<FloodReport>>>>,
    report: Mutex<Option<Result<FloodReport, String>>>,
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
        let mut validator_keys = Vec::new();
        for i in 0..validators.len() {
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
            },
            flooder: Mutex::new(None),
            report: Mutex::new(None),
        })
    }

    /// Start the flooder with the load (once).
    fn start_flooder(&self) {
        let mut flooder = self
            .flooder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if flooder.is_none() && !self.config.stop.load(Ordering::Relaxed) {
            *flooder = Some(tokio::spawn(crate::flood::run(self.config.clone())));
        }
    }
}

impl Workload for GossipFlood {
    fn chunk_max(&self) -> usize {
        self.transfers.chunk_max()
    }

    fn prepare(&self, ops: Range<u64>) -> BoxFuture<'_, Result<()>> {
        self.transfers.prepare(ops)
    }

    fn send(self: Arc<Self>, ops: Range<u64>) -> BoxFuture<'static, ()> {
        self.start_flooder();
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
            (
                "validator keys signing unknown-block votes".into(),
                self.config.validator_keys.len().to_string(),
            ),
        ];
        match report.as_ref() {
            Some(Ok(r)) => facts.extend([
                ("flood sent".into(), r.sent.to_string()),
                (
                    "flood rate achieved".into(),
                    format!("{:.0} msgs/s", r.rate_achieved),
                ),
                (
                    "flood backpressured (flooder's own queue)".into(),
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
                ("flooder identities".into(), r.identities.to_string()),
            ]),
            Some(Err(e)) => facts.push(("flooder failed".into(), e.clone())),
            None => facts.push(("flooder".into(), "did not run".into())),
        }
        facts
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
            self.transfers.finish(deadline).await;
        })
    }
}
