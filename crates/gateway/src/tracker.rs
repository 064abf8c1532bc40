//! The tracker: transactions admitted through the gateway, each with its receipt once known.
//!
//! Bounded by count and by stored receipt bytes; the oldest admission is forgotten first
//! (FIFO). Forgetting is harmless: a status request for a forgotten hash is proxied to the
//! nodes, which keep every receipt.

use axum::body::Bytes;
use basalt_types::Hash;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the tracker knows of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracked {
    /// Admitted by a node; no receipt seen yet.
    Pending,
    /// Committed: the `GET /v1/txs/{hash}` answer, as JSON.
    Committed(Bytes),
}

struct Entry {
    state: Tracked,
    admitted_at: Instant,
}

struct Inner {
    entries: HashMap<Hash, Entry>,
    /// Admission order; each tracked hash appears exactly once.
    order: VecDeque<Hash>,
    receipt_bytes: usize,
}

/// Bounded map hash → receipt of the transactions submitted through the gateway.
pub struct Tracker {
    inner: Mutex<Inner>,
    count_max: usize,
    receipt_bytes_max: usize,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("len", &self.len())
            .field("count_max", &self.count_max)
            .finish()
    }
}

/// How many entries a call forgot to stay within bounds.
pub type Evicted = u64;

impl Tracker {
    /// An empty tracker holding at most `count_max` transactions and `receipt_bytes_max`
    /// bytes of receipts.
    pub fn new(count_max: usize, receipt_bytes_max: usize) -> Tracker {
        Tracker {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                receipt_bytes: 0,
            }),
            count_max: count_max.max(1),
            receipt_bytes_max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update below leaves the map, the order and the byte count consistent before
        // anything that could panic; a poisoned lock holds consistent data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Track `hash` as admitted (no change when already tracked). Returns whether it was new
    /// and how many old entries were forgotten to make room.
    pub fn admit(&self, hash: Hash) -> (bool, Evicted) {
        let mut inner = self.lock();
        if inner.entries.contains_key(&hash) {
            return (false, 0);
        }
        inner.entries.insert(
            hash,
            Entry {
                state: Tracked::Pending,
                admitted_at: Instant::now(),
            },
        );
        inner.order.push_back(hash);
        (true, self.evict(&mut inner))
    }

    /// Record the committed status of a tracked `hash`. Returns whether it was tracked (an
    /// untracked hash is not added) and how many entries were forgotten.
    pub fn commit(&self, hash: Hash, status_json: Bytes) -> (bool, Evicted) {
        let mut inner = self.lock();
        let added = status_json.len();
        let Some(entry) = inner.entries.get_mut(&hash) else {
            return (false, 0);
        };
        let previous = match &entry.state {
            Tracked::Committed(bytes) => bytes.len(),
            Tracked::Pending => 0,
        };
        entry.state = Tracked::Committed(status_json);
        inner.receipt_bytes = inner.receipt_bytes.saturating_sub(previous) + added;
        (true, self.evict(&mut inner))
    }

    /// What is known of `hash`, if it is tracked.
    pub fn get(&self, hash: &Hash) -> Option<Tracked> {
        self.lock()
            .entries
            .get(hash)
            .map(|entry| entry.state.clone())
    }

    /// The stored committed status of `hash`, if known.
    pub fn receipt(&self, hash: &Hash) -> Option<Bytes> {
        match self.get(hash) {
            Some(Tracked::Committed(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// True when `hash` is tracked and still pending, admitted less than `ttl` ago.
    pub fn is_pending(&self, hash: &Hash, ttl: Duration) -> bool {
        self.lock().entries.get(hash).is_some_and(|entry| {
            entry.state == Tracked::Pending && entry.admitted_at.elapsed() < ttl
        })
    }

    /// Up to `max` pending hashes admitted less than `ttl` ago, newest first (the ones a
    /// client is most likely still waiting for).
    pub fn pending(&self, max: usize, ttl: Duration) -> Vec<Hash> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .rev()
            .filter(|hash| {
                inner.entries.get(*hash).is_some_and(|entry| {
                    entry.state == Tracked::Pending && entry.admitted_at.elapsed() < ttl
                })
            })
            .take(max)
            .copied()
            .collect()
    }

    /// Tracked transactions now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of stored receipts now.
    pub fn receipt_bytes(&self) -> usize {
        self.lock().receipt_bytes
    }

    /// Forget the oldest entries until both bounds hold.
    fn evict(&self, inner: &mut Inner) -> Evicted {
        let mut evicted = 0;
        while inner.entries.len() > self.count_max || inner.receipt_bytes > self.receipt_bytes_max {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                if let Tracked::Committed(bytes) = entry.state {
                    inner.receipt_bytes = inner.receipt_bytes.saturating_sub(bytes.len());
                }
                evicted += 1;
            }
        }
        debug_assert_eq!(inner.entries.len(), inner.order.len());
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::sha256;

    const TTL: Duration = Duration::from_secs(60);

    fn hash(i: u32) -> Hash {
        sha256(&i.to_le_bytes())
    }

    #[test]
    fn the_oldest_admission_is_forgotten_first() {
        let tracker = Tracker::new(3, 1 << 20);
        for i in 0..3 {
            assert_eq!(tracker.admit(hash(i)), (true, 0));
        }
        assert_eq!(
            tracker.admit(hash(0)),
            (false, 0),
            "re-admission changes nothing"
        );
        assert_eq!(tracker.admit(hash(3)), (true, 1));
        assert_eq!(tracker.admit(hash(4)), (true, 1));
        assert_eq!(tracker.len(), 3);
        assert_eq!(tracker.get(&hash(0)), None);
        assert_eq!(tracker.get(&hash(1)), None);
        assert_eq!(tracker.get(&hash(2)), Some(Tracked::Pending));
        // A receipt for a forgotten hash is not stored.
        assert_eq!(
            tracker.commit(hash(0), Bytes::from_static(b"{}")),
            (false, 0)
        );
        assert_eq!(tracker.len(), 3);
        assert_eq!(tracker.pending(10, TTL), vec![hash(4), hash(3), hash(2)]);
    }

    #[test]
    fn receipts_are_bounded_by_bytes_too() {
        let tracker = Tracker::new(100, 10);
        for i in 0..4 {
            tracker.admit(hash(i));
        }
        assert_eq!(
            tracker.commit(hash(0), Bytes::from(vec![b'x'; 6])),
            (true, 0)
        );
        assert_eq!(tracker.receipt(&hash(0)).map(|b| b.len()), Some(6));
        // 6 + 6 > 10: the oldest entry (hash 0, 6 bytes) goes.
        assert_eq!(
            tracker.commit(hash(2), Bytes::from(vec![b'y'; 6])),
            (true, 1)
        );
        assert_eq!(tracker.receipt(&hash(0)), None);
        assert_eq!(tracker.receipt_bytes(), 6);
        assert_eq!(tracker.get(&hash(1)), Some(Tracked::Pending));
        assert!(tracker.is_pending(&hash(1), TTL));
        assert!(!tracker.is_pending(&hash(2), TTL));
        assert!(!tracker.is_pending(&hash(1), Duration::ZERO));
        // A receipt larger than the whole budget evicts everything up to itself.
        assert_eq!(
            tracker.commit(hash(3), Bytes::from(vec![b'z'; 11])),
            (true, 3)
        );
        assert!(tracker.is_empty());
        assert_eq!(tracker.receipt_bytes(), 0);
    }

    #[test]
    fn many_admissions_stay_within_the_bound() {
        let tracker = Tracker::new(1000, 1 << 20);
        let mut evicted = 0;
        for i in 0..10_000 {
            evicted += tracker.admit(hash(i)).1;
            if i % 3 == 0 {
                tracker.commit(hash(i), Bytes::from_static(b"{\"status\":\"committed\"}"));
            }
        }
        assert_eq!(tracker.len(), 1000);
        assert_eq!(evicted, 9000);
        assert!(tracker.receipt_bytes() <= 1 << 20);
        assert!(tracker.pending(usize::MAX, TTL).len() < 1000);
    }
}
