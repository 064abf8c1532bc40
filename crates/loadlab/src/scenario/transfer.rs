//! `transfer`: one unit of asset 0 from devnet account `i mod 1000` to the next account.
//! Operation `i` is a pure function of `i` (sender, nonce, recipient), so any range can be
//! pre-signed, and one sent before it was pre-signed is signed on the spot.

use super::{account, sign_parallel, submit_prepared, Ctx, Prepared, Workload, ACCOUNTS};
use anyhow::Result;
use basalt_types::{BatchItem, Keypair, Payload};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Pre-signed transfers, signed on demand past what was prepared.
pub struct Transfer {
    ctx: Ctx,
    keys: Vec<Keypair>,
    first_nonce: Vec<u64>,
    prepared: Mutex<HashMap<u64, Prepared>>,
}

impl Transfer {
    /// Read every account's nonce.
    pub async fn new(ctx: &Ctx) -> Transfer {
        let keys: Vec<Keypair> = (0..ACCOUNTS).map(account).collect();
        let first_nonce = ctx.nonces(&keys).await;
        Transfer {
            ctx: ctx.clone(),
            keys,
            first_nonce,
            prepared: Mutex::new(HashMap::new()),
        }
    }

    fn sign(&self, op: u64) -> Option<Prepared> {
        let sender = (op % ACCOUNTS as u64) as usize;
        let key = self.keys.get(sender)?;
        let to = self.keys.get((sender + 1) % ACCOUNTS)?.public();
        let nonce = self.first_nonce.get(sender)? + op / ACCOUNTS as u64;
        let item = BatchItem::Transfer {
            to,
            asset: 0,
            amount: 1,
        };
        Some(Prepared::sign(
            op,
            key,
            &self.ctx.chain_id,
            nonce,
            Payload::Single(item),
        ))
    }

    /// Sign `ops` on every core (nothing is watched or kept).
    pub fn presign(&self, ops: Range<u64>) -> Vec<Prepared> {
        sign_parallel(ops, |op| self.sign(op))
    }

    /// The prepared transactions of `ops`, signing any that were not.
    pub(super) fn take(&self, ops: Range<u64>) -> Vec<Prepared> {
        let mut missing = Vec::new();
        let mut txs: Vec<Prepared> = {
            let mut prepared = self
                .prepared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ops.filter_map(|op| match prepared.remove(&op) {
                Some(tx) => Some(tx),
                None => {
                    missing.push(op);
                    None
                }
            })
            .collect()
        };
        for op in missing {
            if let Some(tx) = self.sign(op) {
                self.ctx.tracker.watch_hash(tx.hash, op);
                txs.push(tx);
            }
        }
        txs.sort_by_key(|t| t.op);
        txs
    }
}

impl Workload for Transfer {
    fn chunk_max(&self) -> usize {
        super::TXS_PER_REQUEST_MAX
    }

    fn prepare(&self, ops: Range<u64>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let txs = tokio::task::block_in_place(|| self.presign(ops));
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
            let txs = self.take(ops);
            let route = self.ctx.route();
            submit_prepared(&self.ctx, &route, txs).await;
        })
    }
}
