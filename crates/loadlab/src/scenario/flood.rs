//! `http-flood`: seed 000's shape. Every request goes to one validator's RPC (the run's
//! target is forced to `single`), from as many concurrent users as `--flood-concurrency`
//! with no pacing: the highest rate the generator can offer. Each operation is one
//! `POST /v1/txs` of a pre-signed transfer followed by two reads (`GET /v1/status` and the
//! sender's `GET /v1/accounts/..`). Shed answers (429/503 with a typed body) are counted
//! apart from system errors.

use super::transfer::Transfer;
use super::{submit_prepared, Ctx, Workload};
use anyhow::Result;
use futures::future::BoxFuture;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Submissions and reads at one validator.
pub struct HttpFlood {
    ctx: Ctx,
    transfers: Transfer,
    read_ms: Mutex<Vec<f64>>,
}

impl HttpFlood {
    /// Read the accounts' nonces.
    pub async fn new(ctx: &Ctx) -> HttpFlood {
        HttpFlood {
            ctx: ctx.clone(),
            transfers: Transfer::new(ctx).await,
            read_ms: Mutex::new(Vec::new()),
        }
    }

    async fn read(&self, route: &str, path: String) {
        let started = Instant::now();
        let answer = self.ctx.http.get(format!("{route}{path}")).send().await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let tracker = &self.ctx.tracker;
        match answer {
            Ok(r) if r.status().is_success() => {
                let ok = r.bytes().await.is_ok();
                tracker.read(ok);
                if let Ok(mut v) = self.read_ms.lock() {
                    v.push(ms);
                }
            }
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                let typed = r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .is_some_and(|b| b.pointer("/error/code").is_some());
                if typed {
                    tracker.shed_request();
                    tracker.read(true);
                } else {
                    tracker.read(false);
                }
            }
            _ => tracker.read(false),
        }
    }
}

impl Workload for HttpFlood {
    fn chunk_max(&self) -> usize {
        1
    }

    fn prepare(&self, ops: Range<u64>) -> BoxFuture<'_, Result<()>> {
        self.transfers.prepare(ops)
    }

    fn send(self: Arc<Self>, ops: Range<u64>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let txs = self.transfers.take(ops.clone());
            let route = self.ctx.route();
            submit_prepared(&self.ctx, &route, txs).await;
            for op in ops {
                let sender = super::account((op % super::ACCOUNTS as u64) as usize);
                self.read(&route, "/v1/status".into()).await;
                self.read(&route, format!("/v1/accounts/{}", sender.public().to_hex()))
                    .await;
            }
        })
    }

    fn facts(&self) -> Vec<(String, String)> {
        let (reads, failed) = self.ctx.tracker.reads();
        let mut ms = self.read_ms.lock().map(|v| v.clone()).unwrap_or_default();
        let f = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
        vec![
            (
                "flooded endpoint".to_owned(),
                self.ctx.routes.first().cloned().unwrap_or_default(),
            ),
            (
                "concurrent flood users".to_owned(),
                self.ctx.flood_concurrency.to_string(),
            ),
            (
                "reads (answered / without usable answer)".to_owned(),
                format!("{reads} / {failed}"),
            ),
            (
                "read HTTP p50 / p99 (ms)".to_owned(),
                format!(
                    "{} / {}",
                    f(crate::stats::percentile(&mut ms, 0.5)),
                    f(crate::stats::percentile(&mut ms, 0.99))
                ),
            ),
        ]
    }
}
