//! [`NonceManager`]: one signer's nonces, assigned locally so transactions can be pipelined,
//! and repaired from the chain when a gap or a foreign transaction gets in the way.
//!
//! Model. The chain executes a sender's transactions strictly in nonce order; the mempool
//! holds a future nonce until the nonces below it arrive. So a signer may send nonces n,
//! n+1, n+2 without waiting, and one missing nonce stalls everything above it. The manager
//! keeps every signed transaction that is not yet known to be committed ("pending") by
//! nonce. A repair reads the account's next nonce from the chain, forgets what is below it,
//! fills every gap below the highest pending nonce with a filler transaction, and re-sends
//! everything pending in nonce order (a node that lost a transaction, or never got it, gets
//! it again; one that has it refuses the copy as a duplicate, which is harmless).
//!
//! A filler is a zero-amount transfer to oneself: it fails with `zero_amount`, changes no
//! balance, and consumes its nonce (the chain consumes the nonce of every transaction that
//! passes the nonce check, whatever its payload does).

use crate::api::ChainClient;
use crate::error::ClientError;
use basalt_types::{BatchItem, Keypair, Payload, PublicKey, SignedTx};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Repairs asked for within this interval of the previous one are merged into it: several
/// batches of one signer noticing the same stall at once cause one repair.
pub const REPAIR_INTERVAL_MIN: Duration = Duration::from_millis(500);
/// Transactions per re-send request (the node accepts up to 10,000; smaller requests keep
/// each under the body limit with full batches).
pub const RESEND_CHUNK_MAX: usize = 64;
/// Most fillers one repair signs: a gap larger than this is filled over several repairs.
pub const FILLERS_PER_REPAIR_MAX: usize = 1024;

/// What a pending nonce holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// A transaction someone waits for.
    Live,
    /// A filler sent by a repair.
    Filler,
    /// A transaction nobody waits for any more (its receipt wait timed out). A repair
    /// replaces it by a filler when something pending is above it.
    Abandoned,
}

#[derive(Debug, Clone)]
struct Pending {
    tx: SignedTx,
    kind: PendingKind,
}

#[derive(Debug, Default)]
struct State {
    synced: bool,
    /// The account's next nonce as last seen on chain (never lowered).
    chain_nonce: u64,
    /// The nonce the next signed transaction gets.
    next: u64,
    pending: BTreeMap<u64, Pending>,
}

impl State {
    fn observe(&mut self, chain_nonce: u64) {
        self.synced = true;
        if chain_nonce > self.chain_nonce {
            self.chain_nonce = chain_nonce;
            self.pending = self.pending.split_off(&chain_nonce);
        }
        self.next = self.next.max(self.chain_nonce);
    }

    /// Lower `next` to just above the highest pending nonce: nonces above it hold nothing.
    fn reclaim_top(&mut self) {
        let top = self
            .pending
            .last_key_value()
            .map_or(self.chain_nonce, |(nonce, _)| nonce.saturating_add(1))
            .max(self.chain_nonce);
        self.next = self.next.min(top);
    }
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairReport {
    /// The account's next nonce on chain.
    pub chain_nonce: u64,
    /// The nonce the next transaction gets.
    pub next_nonce: u64,
    /// Fillers signed (gaps filled, abandoned transactions replaced).
    pub fillers: usize,
    /// Pending transactions re-sent (fillers included).
    pub resent: usize,
    /// Of those, how many a node admitted (the rest it already had, or refused).
    pub admitted: usize,
    /// True when this is the report of a repair that ran less than
    /// [`REPAIR_INTERVAL_MIN`] ago (nothing was done now).
    pub merged: bool,
}

/// Why a nonce could not be assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    /// [`NonceManager::sync`] has not succeeded yet: the chain's nonce is unknown.
    #[error("the nonce manager has not read the account's nonce from the chain yet")]
    NotSynced,
}

/// One signer's key and nonces. Thread-safe; share it behind an `Arc`.
///
/// Guarantees: nonces are assigned consecutively from the chain's next nonce, without
/// waiting for receipts; a nonce refused by every node is reused; after a repair no gap is
/// left below the highest pending nonce, so a lost or refused transaction cannot stall the
/// ones above it. Every repair is bounded (client timeouts, [`FILLERS_PER_REPAIR_MAX`]).
///
/// Not guaranteed: that a re-sent transaction commits (a foreign transaction may have
/// taken its nonce; the caller learns that from [`ChainClient::nonce_and_status`] and
/// re-signs the content, see the batch submitter); ordering between different signers.
#[derive(Debug)]
pub struct NonceManager {
    keypair: Keypair,
    address: PublicKey,
    chain_id: String,
    state: Mutex<State>,
    last_repair: tokio::sync::Mutex<Option<(Instant, RepairReport)>>,
}

impl NonceManager {
    /// A manager for `keypair` signing for `chain_id`. Call [`NonceManager::sync`] before
    /// signing.
    pub fn new(keypair: Keypair, chain_id: &str) -> NonceManager {
        NonceManager {
            address: keypair.public(),
            keypair,
            chain_id: chain_id.to_owned(),
            state: Mutex::new(State::default()),
            last_repair: tokio::sync::Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every method leaves the state consistent before it can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The signer's address.
    pub fn address(&self) -> PublicKey {
        self.address
    }

    /// The chain id transactions are signed for.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// True once the chain's nonce has been read.
    pub fn is_synced(&self) -> bool {
        self.lock().synced
    }

    /// The account's next nonce as last seen on chain.
    pub fn chain_nonce(&self) -> u64 {
        self.lock().chain_nonce
    }

    /// The nonce the next signed transaction will get.
    pub fn next_nonce(&self) -> u64 {
        self.lock().next
    }

    /// Signed transactions not yet known to be committed.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Read the account's next nonce from the chain and adopt it when it is ahead of what
    /// is known (transactions below it are committed or superseded and stop being pending).
    pub async fn sync<C: ChainClient>(&self, client: &C) -> Result<u64, ClientError> {
        let account = client.account(self.address).await?;
        self.observe_chain_nonce(account.nonce);
        Ok(account.nonce)
    }

    /// Adopt `chain_nonce` (the account's next nonce as some node reports it) if it is ahead.
    pub fn observe_chain_nonce(&self, chain_nonce: u64) {
        self.lock().observe(chain_nonce);
    }

    /// Sign `payload` with the next nonce and keep it pending.
    pub fn sign(&self, payload: Payload) -> Result<SignedTx, NonceError> {
        let mut state = self.lock();
        if !state.synced {
            return Err(NonceError::NotSynced);
        }
        let nonce = state.next;
        let tx = SignedTx::sign(&self.keypair, &self.chain_id, nonce, payload);
        state.next = nonce.saturating_add(1);
        state.pending.insert(
            nonce,
            Pending {
                tx: tx.clone(),
                kind: PendingKind::Live,
            },
        );
        Ok(tx)
    }

    /// Sign `payload` with `nonce` without tracking it (dry runs through `/v1/simulate`).
    pub fn sign_untracked(&self, nonce: u64, payload: Payload) -> SignedTx {
        SignedTx::sign(&self.keypair, &self.chain_id, nonce, payload)
    }

    /// Take the next nonce and send nothing with it: this leaves a gap that stalls every
    /// later transaction until a repair fills it. For tests and tools that need a gap.
    pub fn skip_nonce(&self) -> Result<u64, NonceError> {
        let mut state = self.lock();
        if !state.synced {
            return Err(NonceError::NotSynced);
        }
        let nonce = state.next;
        state.next = nonce.saturating_add(1);
        Ok(nonce)
    }

    /// The transaction with `nonce` is committed: so is every nonce below it.
    pub fn committed(&self, nonce: u64) {
        self.lock().observe(nonce.saturating_add(1));
    }

    /// The transaction with `nonce` was refused by the node and will never commit: its
    /// nonce is free again. Returns true when pending transactions sit above it (a gap that
    /// a repair must fill, or they stall).
    pub fn release(&self, nonce: u64) -> bool {
        let mut state = self.lock();
        state.pending.remove(&nonce);
        state.reclaim_top();
        state.pending.range(nonce..).next().is_some()
    }

    /// Another transaction took `nonce` (the chain is past it and ours is not in it): stop
    /// tracking ours.
    pub fn forget(&self, nonce: u64) {
        self.lock().pending.remove(&nonce);
    }

    /// Nobody waits for the transaction with `nonce` any more; it may still commit.
    pub fn abandon(&self, nonce: u64) {
        if let Some(pending) = self.lock().pending.get_mut(&nonce) {
            if pending.kind == PendingKind::Live {
                pending.kind = PendingKind::Abandoned;
            }
        }
    }

    /// What is pending at `nonce`, if anything.
    pub fn pending_kind(&self, nonce: u64) -> Option<PendingKind> {
        self.lock().pending.get(&nonce).map(|pending| pending.kind)
    }

    fn filler(&self, nonce: u64) -> SignedTx {
        self.sign_untracked(
            nonce,
            Payload::Single(BatchItem::Transfer {
                to: self.address,
                asset: 0,
                amount: 0,
            }),
        )
    }

    /// Resynchronise from the chain and unblock this signer: read the account's nonce,
    /// forget what is below it, fill every gap below the highest pending nonce with a
    /// filler (and replace abandoned transactions there by fillers), then re-send every
    /// pending transaction in nonce order. Repairs are serialized; one asked for within
    /// [`REPAIR_INTERVAL_MIN`] of the last returns that one's report.
    pub async fn repair<C: ChainClient>(&self, client: &C) -> Result<RepairReport, ClientError> {
        let mut last = self.last_repair.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < REPAIR_INTERVAL_MIN {
                return Ok(RepairReport {
                    merged: true,
                    ..report.clone()
                });
            }
        }
        let account = client.account(self.address).await?;
        let (mut report, resend) = self.plan_repair(account.nonce);
        for chunk in resend.chunks(RESEND_CHUNK_MAX) {
            let results = client.submit(chunk).await?;
            report.admitted += results.iter().filter(|result| result.is_ok()).count();
        }
        if report.fillers > 0 {
            tracing::info!(
                signer = %self.address,
                chain_nonce = report.chain_nonce,
                fillers = report.fillers,
                resent = report.resent,
                "nonce gap repaired"
            );
        }
        *last = Some((Instant::now(), report.clone()));
        Ok(report)
    }

    /// The state changes of a repair, given the chain's nonce; returns what to re-send.
    fn plan_repair(&self, chain_nonce: u64) -> (RepairReport, Vec<SignedTx>) {
        let mut state = self.lock();
        state.observe(chain_nonce);
        state.reclaim_top();
        let mut fillers = 0usize;
        if let Some(top) = state.pending.last_key_value().map(|(nonce, _)| *nonce) {
            let mut nonce = state.chain_nonce;
            while nonce < top && fillers < FILLERS_PER_REPAIR_MAX {
                let replace = match state.pending.get(&nonce) {
                    None => true,
                    Some(pending) => pending.kind == PendingKind::Abandoned,
                };
                if replace {
                    let filler = Pending {
                        tx: self.filler(nonce),
                        kind: PendingKind::Filler,
                    };
                    state.pending.insert(nonce, filler);
                    fillers += 1;
                }
                nonce += 1;
            }
        }
        let resend: Vec<SignedTx> = state
            .pending
            .values()
            .filter(|pending| pending.kind != PendingKind::Abandoned)
            .map(|pending| pending.tx.clone())
            .collect();
        let report = RepairReport {
            chain_nonce: state.chain_nonce,
            next_nonce: state.next,
            fillers,
            resent: resend.len(),
            admitted: 0,
            merged: false,
        };
        (report, resend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(tag: u64) -> Payload {
        Payload::Single(BatchItem::CancelOrder {
            market: 0,
            order_id: tag,
        })
    }

    fn manager() -> NonceManager {
        let manager = NonceManager::new(Keypair::from_label("nonce-test"), "c");
        manager.observe_chain_nonce(10);
        manager
    }

    #[test]
    fn assigns_consecutively_and_needs_a_sync() {
        let unsynced = NonceManager::new(Keypair::from_label("x"), "c");
        assert_eq!(unsynced.sign(payload(0)), Err(NonceError::NotSynced));
        let manager = manager();
        let nonces: Vec<u64> = (0..3)
            .map(|i| manager.sign(payload(i)).unwrap().body.nonce)
            .collect();
        assert_eq!(nonces, vec![10, 11, 12]);
        assert_eq!(manager.pending(), 3);
        manager.committed(11);
        assert_eq!(manager.pending(), 1, "10 and 11 are committed");
        assert_eq!(manager.chain_nonce(), 12);
    }

    #[test]
    fn released_top_nonce_is_reused_and_a_middle_one_is_a_gap() {
        let manager = manager();
        let a = manager.sign(payload(0)).unwrap();
        let b = manager.sign(payload(1)).unwrap();
        assert!(!manager.release(b.body.nonce), "nothing above the top");
        assert_eq!(manager.next_nonce(), 11);
        let b = manager.sign(payload(1)).unwrap();
        assert_eq!(b.body.nonce, 11);
        assert!(manager.release(a.body.nonce), "11 sits above 10: a gap");
        assert_eq!(manager.next_nonce(), 12);
    }

    #[test]
    fn repair_fills_gaps_below_the_top_and_replaces_abandoned() {
        let manager = manager();
        let a = manager.sign(payload(0)).unwrap(); // 10
        let gap = manager.skip_nonce().unwrap(); // 11
        let c = manager.sign(payload(2)).unwrap(); // 12
        let _ = manager.skip_nonce().unwrap(); // 13: above the top, reclaimed
        manager.abandon(a.body.nonce);
        let (report, resend) = manager.plan_repair(10);
        assert_eq!(report.fillers, 2, "10 (abandoned) and 11 (gap)");
        assert_eq!(report.next_nonce, 13);
        let nonces: Vec<u64> = resend.iter().map(|tx| tx.body.nonce).collect();
        assert_eq!(nonces, vec![10, gap, c.body.nonce]);
        assert_eq!(manager.pending_kind(10), Some(PendingKind::Filler));
        assert_ne!(resend[0], a, "the abandoned transaction is replaced");
        // The chain moved past 11 (someone else's transactions): only 12 stays.
        let (report, resend) = manager.plan_repair(12);
        assert_eq!(report.fillers, 0);
        assert_eq!(resend, vec![c]);
    }
}
