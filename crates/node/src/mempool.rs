//! The mempool: verified transactions waiting for a block.
//!
//! Bounded by count, bytes and per-sender count; keeps per-sender nonce order; remembers
//! recently seen hashes so a duplicate is refused cheaply; every refusal is typed. The
//! proposer reaps in arrival order, taking a sender's transactions only in consecutive
//! nonce order from the sender's committed nonce.

use crate::config::MempoolSection;
use basalt_types::{Hash, PublicKey, SignedTx};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How many recent transaction hashes are remembered for duplicate detection at most
/// (about ten seconds of 15k tx/s), in two generations of half that each.
pub const RECENT_HASHES_MAX: usize = 200_000;
/// A generation of recent hashes is retired after this long (or once it holds half of
/// [`RECENT_HASHES_MAX`]), so a hash is remembered for 5–10 s. A count bound alone took
/// 200 s to fill at 1,000 tx/s: the node's memory climbed for minutes under any steady load
/// (seen as growth under gossip-flood); with a time bound it is flat after 10 s.
pub const RECENT_GENERATION: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MempoolRejection {
    /// Already pending or recently seen.
    Duplicate,
    /// The nonce is below the sender's committed nonce.
    StaleNonce,
    /// The pool is at its count or byte bound.
    Full,
    /// The sender has too many pending transactions.
    SenderFull,
}

impl MempoolRejection {
    /// Stable code for APIs and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            MempoolRejection::Duplicate => "duplicate",
            MempoolRejection::StaleNonce => "stale_nonce",
            MempoolRejection::Full => "mempool_full",
            MempoolRejection::SenderFull => "sender_full",
        }
    }
}

struct Entry {
    tx: SignedTx,
    bytes: usize,
    sequence: u64,
    admitted: std::time::Instant,
}

/// The pool.
pub struct Mempool {
    limits: MempoolSection,
    entries: HashMap<Hash, Entry>,
    by_sender: HashMap<PublicKey, BTreeMap<u64, Hash>>,
    arrival: BTreeMap<u64, Hash>,
    next_sequence: u64,
    bytes: usize,
    /// Recent hashes: the current generation and the previous one.
    recent: [HashSet<Hash>; 2],
    recent_since: std::time::Instant,
}

impl Mempool {
    /// An empty pool with these bounds.
    pub fn new(limits: MempoolSection) -> Mempool {
        Mempool {
            limits,
            entries: HashMap::new(),
            by_sender: HashMap::new(),
            arrival: BTreeMap::new(),
            next_sequence: 0,
            bytes: 0,
            recent: [HashSet::new(), HashSet::new()],
            recent_since: std::time::Instant::now(),
        }
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Pending bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// True when `hash` is pending (its signature was verified on admission).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash)
    }

    /// True if the transaction is pending or was seen lately (admitted, or committed in a
    /// block): its signature was checked then — by this node, or for a synced block by the
    /// 2f+1 that certified it — and a copy arriving now (a gossiped batch that comes after
    /// the block that included it) is a duplicate, refused before its signature is checked
    /// again. The hash covers the signature: a copy with another signature is not seen.
    pub fn seen(&self, hash: &Hash) -> bool {
        self.entries.contains_key(hash) || self.is_recent(hash)
    }

    /// Admit a transaction whose signature, chain id and size were checked.
    /// `committed_nonce` is the sender's next nonce in the latest committed state.
    pub fn insert(
        &mut self,
        tx: SignedTx,
        hash: Hash,
        bytes: usize,
        committed_nonce: u64,
    ) -> Result<(), MempoolRejection> {
        if self.entries.contains_key(&hash) || self.is_recent(&hash) {
            return Err(MempoolRejection::Duplicate);
        }
        if tx.body.nonce < committed_nonce {
            return Err(MempoolRejection::StaleNonce);
        }
        if self.entries.len() >= self.limits.size
            || self.bytes.saturating_add(bytes) > self.limits.max_bytes
        {
            return Err(MempoolRejection::Full);
        }
        let sender = self.by_sender.entry(tx.body.sender).or_default();
        if sender.len() >= self.limits.per_sender_max {
            return Err(MempoolRejection::SenderFull);
        }
        if sender.contains_key(&tx.body.nonce) {
            // Another transaction with this nonce is pending: first come, first served.
            return Err(MempoolRejection::Duplicate);
        }
        sender.insert(tx.body.nonce, hash);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.arrival.insert(sequence, hash);
        self.bytes += bytes;
        self.entries.insert(
            hash,
            Entry {
                tx,
                bytes,
                sequence,
                admitted: std::time::Instant::now(),
            },
        );
        self.remember(hash);
        Ok(())
    }

    fn remember(&mut self, hash: Hash) {
        self.remember_at(hash, std::time::Instant::now());
    }

    fn is_recent(&self, hash: &Hash) -> bool {
        self.recent
            .iter()
            .any(|generation| generation.contains(hash))
    }

    fn remember_at(&mut self, hash: Hash, now: std::time::Instant) {
        if self.recent[0].len() >= RECENT_HASHES_MAX / 2
            || now.saturating_duration_since(self.recent_since) >= RECENT_GENERATION
        {
            // The previous generation goes; its table is reused (cleared, capacity kept).
            self.recent.swap(0, 1);
            self.recent[0].clear();
            self.recent_since = now;
        }
        self.recent[0].insert(hash);
    }

    /// Transactions for a block: arrival order, consecutive nonces per sender starting at
    /// `nonce_of(sender)`, at most the block bounds, admitted at least
    /// `reap_min_age_ms` before now.
    pub fn reap(&self, nonce_of: impl Fn(&PublicKey) -> u64) -> Vec<SignedTx> {
        self.reap_at(nonce_of, std::time::Instant::now())
    }

    /// [`Mempool::reap`] as of `now`. A transaction admitted within the last
    /// `reap_min_age_ms` waits for the next block: the other validators most likely do not
    /// hold it yet (it leaves in the next gossip batch), and each of them would check its
    /// signature on the consensus path, inside the proposal, instead of off it.
    pub fn reap_at(
        &self,
        nonce_of: impl Fn(&PublicKey) -> u64,
        now: std::time::Instant,
    ) -> Vec<SignedTx> {
        let admitted_by = now.checked_sub(std::time::Duration::from_millis(
            self.limits.reap_min_age_ms,
        ));
        let mut next_nonce: HashMap<PublicKey, u64> = HashMap::new();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut skipped = true;
        // A later-arriving lower nonce can unblock an earlier higher one: sweep again
        // while the previous sweep took something and skipped something.
        let mut taken: HashSet<Hash> = HashSet::new();
        while skipped {
            skipped = false;
            let mut progressed = false;
            for hash in self.arrival.values() {
                if taken.contains(hash) {
                    continue;
                }
                let Some(entry) = self.entries.get(hash) else {
                    continue;
                };
                // No instant that far back (a huge setting): nothing is old enough.
                if admitted_by.is_none_or(|by| entry.admitted > by) {
                    continue;
                }
                if out.len() >= self.limits.block_txs_max
                    || bytes + entry.bytes > self.limits.block_bytes_max
                {
                    return out;
                }
                let sender = entry.tx.body.sender;
                let expected = next_nonce
                    .entry(sender)
                    .or_insert_with(|| nonce_of(&sender));
                if entry.tx.body.nonce == *expected {
                    *expected += 1;
                    bytes += entry.bytes;
                    taken.insert(*hash);
                    out.push(entry.tx.clone());
                    progressed = true;
                } else if entry.tx.body.nonce > *expected {
                    skipped = true;
                }
            }
            if !progressed {
                break;
            }
        }
        out
    }

    /// Remove committed transactions, and every pending transaction whose nonce is now
    /// below its sender's committed nonce. Returns how long each committed transaction
    /// this pool held had waited since its admission.
    pub fn remove_committed(
        &mut self,
        committed: &[Hash],
        nonce_of: impl Fn(&PublicKey) -> u64,
    ) -> Vec<std::time::Duration> {
        let mut senders = HashSet::new();
        let mut waits = Vec::with_capacity(committed.len());
        for hash in committed {
            if let Some(entry) = self.entries.get(hash) {
                senders.insert(entry.tx.body.sender);
                waits.push(entry.admitted.elapsed());
            }
            self.remove(hash);
            self.remember(*hash);
        }
        for sender in senders {
            let next = nonce_of(&sender);
            let stale: Vec<Hash> = self
                .by_sender
                .get(&sender)
                .map(|nonces| nonces.range(..next).map(|(_, h)| *h).collect())
                .unwrap_or_default();
            for hash in stale {
                self.remove(&hash);
            }
        }
        waits
    }

    fn remove(&mut self, hash: &Hash) {
        let Some(entry) = self.entries.remove(hash) else {
            return;
        };
        self.bytes -= entry.bytes;
        self.arrival.remove(&entry.sequence);
        if let Some(nonces) = self.by_sender.get_mut(&entry.tx.body.sender) {
            nonces.remove(&entry.tx.body.nonce);
            if nonces.is_empty() {
                self.by_sender.remove(&entry.tx.body.sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{BatchItem, Keypair, Payload};

    fn tx(key: &Keypair, nonce: u64) -> (SignedTx, Hash, usize) {
        let tx = SignedTx::sign(
            key,
            "c",
            nonce,
            Payload::Single(BatchItem::CancelOrder {
                market: 0,
                order_id: nonce,
            }),
        );
        let hash = tx.hash();
        let bytes = tx.to_bytes().len();
        (tx, hash, bytes)
    }

    fn pool(size: usize) -> Mempool {
        Mempool::new(MempoolSection {
            size,
            per_sender_max: 3,
            block_txs_max: 10,
            ..MempoolSection::default()
        })
    }

    #[test]
    fn rejections_are_typed() {
        let mut pool = pool(4);
        let a = Keypair::from_label("a");
        let (t0, h0, b0) = tx(&a, 5);
        assert_eq!(pool.insert(t0.clone(), h0, b0, 5), Ok(()));
        assert_eq!(pool.insert(t0, h0, b0, 5), Err(MempoolRejection::Duplicate));
        let (t1, h1, b1) = tx(&a, 4);
        assert_eq!(
            pool.insert(t1, h1, b1, 5),
            Err(MempoolRejection::StaleNonce)
        );
        for n in 6..8 {
            let (t, h, b) = tx(&a, n);
            pool.insert(t, h, b, 5).unwrap();
        }
        let (t, h, b) = tx(&a, 8);
        assert_eq!(pool.insert(t, h, b, 5), Err(MempoolRejection::SenderFull));
        let other = Keypair::from_label("b");
        let (t, h, b) = tx(&other, 0);
        pool.insert(t, h, b, 0).unwrap();
        let (t, h, b) = tx(&other, 1);
        assert_eq!(pool.insert(t, h, b, 0), Err(MempoolRejection::Full));
    }

    #[test]
    fn reap_waits_for_a_transaction_to_age() {
        let mut pool = Mempool::new(MempoolSection {
            reap_min_age_ms: 10,
            ..MempoolSection::default()
        });
        let a = Keypair::from_label("a");
        // Instants taken just before and just after each insertion bound its admission time
        // (no assertion depends on how fast this thread runs).
        let (t, h, b) = tx(&a, 0);
        let before = std::time::Instant::now();
        pool.insert(t, h, b, 0).unwrap();
        let admitted = std::time::Instant::now();
        // Nonce 1 arrives at least 20 ms later: still too young when nonce 0 is old enough.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (t, h, b) = tx(&a, 1);
        pool.insert(t, h, b, 0).unwrap();
        let later = std::time::Instant::now();
        let nonces = |at| -> Vec<u64> {
            pool.reap_at(|_| 0, at)
                .iter()
                .map(|t| t.body.nonce)
                .collect()
        };
        assert!(nonces(before).is_empty());
        assert!(nonces(before + std::time::Duration::from_millis(5)).is_empty());
        assert_eq!(
            nonces(admitted + std::time::Duration::from_millis(11)),
            [0],
            "nonce 0 has aged, nonce 1 not yet"
        );
        assert_eq!(nonces(later + std::time::Duration::from_millis(11)), [0, 1]);
    }

    #[test]
    fn reap_keeps_nonce_order_and_removal_drops_stale() {
        let mut pool = Mempool::new(MempoolSection {
            block_txs_max: 10,
            reap_min_age_ms: 0,
            ..MempoolSection::default()
        });
        let a = Keypair::from_label("a");
        // Arrive out of order: 2, 0, 1, and 4 (gap at 3).
        for n in [2, 0, 1, 4] {
            let (t, h, b) = tx(&a, n);
            pool.insert(t, h, b, 0).unwrap();
        }
        let reaped: Vec<u64> = pool.reap(|_| 0).iter().map(|t| t.body.nonce).collect();
        assert_eq!(reaped, vec![0, 1, 2]);
        let committed: Vec<Hash> = pool.reap(|_| 0).iter().map(SignedTx::hash).collect();
        let waits = pool.remove_committed(&committed[..2], |_| 3);
        assert_eq!(
            waits.len(),
            2,
            "one wait per committed transaction the pool held"
        );
        assert_eq!(pool.len(), 1, "nonce 2 stale after commit up to 3; 4 stays");
        let (t, h, b) = tx(&a, 0);
        assert_eq!(pool.insert(t, h, b, 0), Err(MempoolRejection::Duplicate));
    }

    #[test]
    fn recent_hashes_live_two_generations() {
        let mut pool = Mempool::new(MempoolSection::default());
        let t0 = pool.recent_since;
        let (h1, h2, h3) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
        pool.remember_at(h1, t0);
        pool.remember_at(h2, t0 + RECENT_GENERATION);
        assert!(
            pool.is_recent(&h1),
            "the previous generation is still consulted"
        );
        pool.remember_at(h3, t0 + RECENT_GENERATION * 2);
        assert!(
            !pool.is_recent(&h1),
            "two generations later it is forgotten"
        );
        assert!(pool.is_recent(&h2) && pool.is_recent(&h3));
        assert!(pool.recent.iter().map(HashSet::len).sum::<usize>() <= RECENT_HASHES_MAX);
    }
}
