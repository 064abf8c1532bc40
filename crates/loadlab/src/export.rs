//! Pre-signed transactions for load generators outside `basalt bench` (the repository's
//! `locustfile.py`, for Locust's distributed mode): transfers signed here, one JSON line
//! each, so Python never has to reproduce the canonical encoding or the signature.
//!
//! Line `i` is transfer `i` of the `transfer` scenario: sender `i mod 1000` at its next
//! nonce plus `i / 1000`. Every account's transactions appear in nonce order, so a worker
//! that takes the lines of some accounts (`account % workers == index`) and sends them in
//! file order never leaves a nonce gap behind another worker.

use crate::scenario;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Most transactions one export writes.
pub const EXPORT_MAX: u64 = 10_000_000;

/// Sign `count` transfers for the network at `endpoints` (nonces and chain id read from it)
/// and write them to `path`, as [`export_transfers`] does.
pub async fn export_transfers_from(endpoints: &[String], count: u64, path: &Path) -> Result<u64> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let first = endpoints
        .first()
        .context("--export-txs needs --endpoints")?;
    let status: serde_json::Value = http
        .get(format!("{first}/v1/status"))
        .send()
        .await
        .with_context(|| format!("reading {first}/v1/status"))?
        .json()
        .await?;
    let chain_id = status
        .get("chain_id")
        .and_then(serde_json::Value::as_str)
        .context("/v1/status has no chain_id")?
        .to_owned();
    let tracker = std::sync::Arc::new(crate::tracker::Tracker::new());
    let ctx = scenario::Ctx::new(
        http,
        endpoints.to_vec(),
        endpoints.to_vec(),
        chain_id,
        tracker,
        0,
        1,
    );
    export_transfers(&ctx, count, path).await
}

/// Sign `count` transfers for the chain behind `ctx` and write them to `path` as JSON lines
/// `{"op", "account", "hash", "tx"}` (`tx`: hex of the canonical bytes, what
/// `POST /v1/txs` takes). Returns how many were written.
pub async fn export_transfers(ctx: &scenario::Ctx, count: u64, path: &Path) -> Result<u64> {
    let count = count.min(EXPORT_MAX);
    let transfers = scenario::transfer::Transfer::new(ctx).await;
    let txs = tokio::task::block_in_place(|| transfers.presign(0..count));
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for tx in &txs {
        let line = serde_json::json!({
            "op": tx.op,
            "account": tx.op % scenario::ACCOUNTS as u64,
            "hash": tx.hash,
            "tx": tx.hex,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(txs.len() as u64)
}
