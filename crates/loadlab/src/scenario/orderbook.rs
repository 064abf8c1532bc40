//! `orderbook`: limit orders over every market genesis has.
//!
//! Three operations in four are *taker* orders, pre-signed, from 900 accounts: buys priced
//! `MID-2 ..= MID+3` and sells `MID-3 ..= MID+2`, so they cross each other and trade (the
//! book never stays crossed: the app matches at once). The fourth is a *maker* order from
//! one of 8 maker accounts, resting outside the takers' range (`MID ± 5..10`), placed through
//! the SDK's batch submitter; once it commits, its id (from the receipt) is cancelled by the
//! same account as a follow-up operation. Cancels cannot be pre-signed: their order ids
//! exist only after the place committed.

use super::sdk::{self, Chain};
use super::{account, mix, sign_parallel, submit_prepared, Ctx, Prepared, Workload};
use anyhow::{bail, Result};
use basalt_client::{BatchSubmitter, ItemResultJson, OpOutcome};
use basalt_types::{BatchItem, Keypair, MarketId, Payload, Side};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// First taker account.
const TAKER_FIRST: usize = 100;
/// Taker accounts.
const TAKERS: usize = 900;
/// First maker account (above the task generators).
const MAKER_FIRST: usize = 64;
/// Maker accounts, one submitter each (a cancel must be signed by the order's owner).
const MAKERS: usize = 8;
/// One operation in this many is a maker's.
const MAKER_EVERY: u64 = 4;
/// The price everything is around, ticks.
const MID: u64 = 1_000;
/// Markets probed at start.
const MARKETS_PROBED_MAX: u32 = 64;

/// Takers pre-signed, makers through submitters.
pub struct Orderbook {
    ctx: Ctx,
    markets: Vec<MarketId>,
    takers: Vec<Keypair>,
    taker_nonce: Vec<u64>,
    makers: Vec<BatchSubmitter<Chain>>,
    prepared: Mutex<HashMap<u64, Prepared>>,
    cancels_committed: AtomicU64,
    makers_filled: AtomicU64,
    /// Per market at the end: resting bids, resting asks, best bid, best ask.
    books: Mutex<Vec<BookEnd>>,
}

/// A market's book at the end of the run.
#[derive(Debug, Clone, Copy)]
struct BookEnd {
    market: MarketId,
    bids: usize,
    asks: usize,
    best_bid: Option<u64>,
    best_ask: Option<u64>,
}

async fn read_book(ctx: &Ctx, market: MarketId) -> Option<BookEnd> {
    let endpoint = ctx.validators.first()?;
    let url = format!("{endpoint}/v1/markets/{market}/book");
    let book: basalt_rpc::json::BookJson =
        ctx.http.get(url).send().await.ok()?.json().await.ok()?;
    Some(BookEnd {
        market,
        bids: book.bids.len(),
        asks: book.asks.len(),
        best_bid: book.bids.first().map(|o| o.price_ticks),
        best_ask: book.asks.first().map(|o| o.price_ticks),
    })
}

/// Whether operation `op` is a maker's; else its taker number.
fn role(op: u64) -> Result<u64, u64> {
    let (block, slot) = (op / MAKER_EVERY, op % MAKER_EVERY);
    if slot == MAKER_EVERY - 1 {
        Ok(block)
    } else {
        Err(block * (MAKER_EVERY - 1) + slot)
    }
}

/// The taker order number `k` places: market index, side, price, quantity.
fn taker_order(k: u64) -> (usize, Side, u64, u64) {
    let h = mix(k);
    let side = if h & 1 == 0 { Side::Buy } else { Side::Sell };
    let offset = (h >> 8) % 6;
    let price = match side {
        Side::Buy => MID - 2 + offset,
        Side::Sell => MID + 2 - offset,
    };
    ((h >> 16) as usize, side, price, 1 + (h >> 24) % 10)
}

/// The maker order number `j` places.
fn maker_order(j: u64) -> (usize, Side, u64, u64) {
    let h = mix(j ^ 0x6d61_6b65);
    let side = if h & 1 == 0 { Side::Buy } else { Side::Sell };
    let offset = 5 + (h >> 8) % 5;
    let price = match side {
        Side::Buy => MID - offset,
        Side::Sell => MID + offset,
    };
    ((h >> 16) as usize, side, price, 1 + (h >> 24) % 10)
}

async fn probe_markets(ctx: &Ctx) -> Vec<MarketId> {
    let Some(endpoint) = ctx.validators.first() else {
        return Vec::new();
    };
    let mut markets = Vec::new();
    for market in 0..MARKETS_PROBED_MAX {
        let url = format!("{endpoint}/v1/markets/{market}/book");
        match ctx.http.get(url).send().await {
            Ok(r) if r.status().is_success() => markets.push(market),
            _ => break,
        }
    }
    markets
}

impl Orderbook {
    /// Find the markets, read the takers' nonces, start the makers' submitters.
    pub async fn new(ctx: &Ctx) -> Result<Orderbook> {
        let markets = probe_markets(ctx).await;
        if markets.is_empty() {
            bail!("the chain has no market (GET /v1/markets/0/book failed)");
        }
        let takers: Vec<Keypair> = (TAKER_FIRST..TAKER_FIRST + TAKERS).map(account).collect();
        let taker_nonce = ctx.nonces(&takers).await;
        let chain = sdk::chain(ctx).await?;
        let mut makers = Vec::new();
        for m in 0..MAKERS {
            makers.push(sdk::submitter(ctx, chain.clone(), vec![account(MAKER_FIRST + m)]).await?);
        }
        Ok(Orderbook {
            ctx: ctx.clone(),
            markets,
            takers,
            taker_nonce,
            makers,
            prepared: Mutex::new(HashMap::new()),
            cancels_committed: AtomicU64::new(0),
            makers_filled: AtomicU64::new(0),
            books: Mutex::new(Vec::new()),
        })
    }

    fn market(&self, pick: usize) -> MarketId {
        self.markets
            .get(pick % self.markets.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    fn sign_taker(&self, op: u64, k: u64) -> Option<Prepared> {
        let index = (k % TAKERS as u64) as usize;
        let key = self.takers.get(index)?;
        let nonce = self.taker_nonce.get(index)? + k / TAKERS as u64;
        let (pick, side, price_ticks, quantity) = taker_order(k);
        let item = BatchItem::PlaceOrder {
            market: self.market(pick),
            side,
            price_ticks,
            quantity,
        };
        Some(Prepared::sign(
            op,
            key,
            &self.ctx.chain_id,
            nonce,
            Payload::Single(item),
        ))
    }

    fn take_takers(&self, ops: &[(u64, u64)]) -> Vec<Prepared> {
        let mut missing = Vec::new();
        let mut txs: Vec<Prepared> = {
            let mut prepared = self
                .prepared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ops.iter()
                .filter_map(|(op, k)| match prepared.remove(op) {
                    Some(tx) => Some(tx),
                    None => {
                        missing.push((*op, *k));
                        None
                    }
                })
                .collect()
        };
        for (op, k) in missing {
            if let Some(tx) = self.sign_taker(op, k) {
                self.ctx.tracker.watch_hash(tx.hash, op);
                txs.push(tx);
            }
        }
        txs
    }

    /// Place maker order `j` as operation `op`; cancel it once it rests.
    fn maker(self: &Arc<Self>, op: u64, j: u64) {
        let m = (j % MAKERS as u64) as usize;
        let Some(submitter) = self.makers.get(m).cloned() else {
            return;
        };
        let (pick, side, price_ticks, quantity) = maker_order(j);
        let market = self.market(pick);
        let placed = submitter.submit(BatchItem::PlaceOrder {
            market,
            side,
            price_ticks,
            quantity,
        });
        self.ctx.tracker.accepted(op);
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = placed.await;
            let tracker = &this.ctx.tracker;
            tracker.finish(op, sdk::state_of(&outcome, Instant::now()));
            let OpOutcome::Committed {
                receipt_item: ItemResultJson::Applied { order_id },
                ..
            } = outcome
            else {
                return;
            };
            let Some(order_id) = order_id else {
                this.makers_filled.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let cancel = tracker.follow_up();
            let cancelled = submitter.submit(BatchItem::CancelOrder { market, order_id });
            tracker.accepted(cancel);
            let outcome = cancelled.await;
            if outcome.is_committed() {
                this.cancels_committed.fetch_add(1, Ordering::Relaxed);
            }
            tracker.finish(cancel, sdk::state_of(&outcome, Instant::now()));
        });
    }
}

impl Workload for Orderbook {
    fn chunk_max(&self) -> usize {
        super::TXS_PER_REQUEST_MAX
    }

    fn prepare(&self, ops: Range<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let txs = tokio::task::block_in_place(|| {
                sign_parallel(ops, |op| {
                    role(op).err().and_then(|k| self.sign_taker(op, k))
                })
            });
            self.ctx
                .tracker
                .watch_hashes(txs.iter().map(|t| (t.hash, t.op)));
            let mut prepared = self
                .prepared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            prepared.extend(txs.into_iter().map(|t| (t.op, t)));
            Ok(())
        })
    }

    fn send(self: Arc<Self>, ops: Range<u64>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut takers = Vec::new();
            for op in ops {
                match role(op) {
                    Ok(j) => self.maker(op, j),
                    Err(k) => takers.push((op, k)),
                }
            }
            let txs = self.take_takers(&takers);
            let route = self.ctx.route();
            submit_prepared(&self.ctx, &route, txs).await;
        })
    }

    fn facts(&self) -> Vec<(String, String)> {
        let mut facts = vec![
            (
                "markets".to_owned(),
                format!("{} ({:?})", self.markets.len(), self.markets),
            ),
            (
                "accounts: takers (pre-signed) / makers (batch submitter)".to_owned(),
                format!("{TAKERS} / {MAKERS}"),
            ),
            (
                "maker orders cancelled after resting".to_owned(),
                self.cancels_committed.load(Ordering::Relaxed).to_string(),
            ),
            (
                "maker orders filled before a cancel".to_owned(),
                self.makers_filled.load(Ordering::Relaxed).to_string(),
            ),
        ];
        let books = self.books.lock().map(|b| b.clone()).unwrap_or_default();
        for b in books {
            let crossed = matches!((b.best_bid, b.best_ask), (Some(bid), Some(ask)) if bid >= ask);
            facts.push((
                format!(
                    "market {} at the end: resting bids / asks, best bid / ask",
                    b.market
                ),
                format!(
                    "{} / {}, {} / {}{}",
                    b.bids,
                    b.asks,
                    b.best_bid.map_or("none".into(), |p| p.to_string()),
                    b.best_ask.map_or("none".into(), |p| p.to_string()),
                    if crossed { " (CROSSED)" } else { "" }
                ),
            ));
        }
        if let Some(first) = self.makers.first() {
            facts.extend(sdk::facts("maker submitter 0", first));
        }
        facts
    }

    fn finish(&self, deadline: Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for maker in &self.makers {
                sdk::shut_down(maker, deadline);
            }
            let mut books = Vec::new();
            for market in &self.markets {
                books.extend(read_book(&self.ctx, *market).await);
            }
            if let Ok(mut slot) = self.books.lock() {
                *slot = books;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_split_operations_three_takers_to_one_maker() {
        let roles: Vec<_> = (0..8).map(role).collect();
        assert_eq!(
            roles,
            vec![Err(0), Err(1), Err(2), Ok(0), Err(3), Err(4), Err(5), Ok(1)]
        );
    }

    #[test]
    fn takers_cross_and_makers_rest_outside_their_range() {
        let (mut crossing_buys, mut crossing_sells) = (0, 0);
        for k in 0..1000 {
            let (_, side, price, quantity) = taker_order(k);
            assert!((MID - 3..=MID + 3).contains(&price) && quantity >= 1);
            match side {
                Side::Buy if price >= MID => crossing_buys += 1,
                Side::Sell if price <= MID => crossing_sells += 1,
                _ => {}
            }
            let (_, side, price, _) = maker_order(k);
            match side {
                Side::Buy => assert!(price <= MID - 5),
                Side::Sell => assert!(price >= MID + 5),
            }
        }
        assert!(crossing_buys > 100 && crossing_sells > 100);
    }
}
