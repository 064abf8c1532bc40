//! Block fetching bookkeeping: every by-range or by-hash request is de-duplicated, at most
//! [`FETCH_IN_FLIGHT_MAX`] are in flight, a request over the cap is refused at once (and
//! counted by the caller), and every request releases its slot on every path — answer,
//! failure, timeout or cancellation (seed 001: each attestation for an unknown block fired
//! a fetch, and the fetches themselves became the load).
//!
//! The tracker is plain data with time passed in, so its rules are tested without waiting.
//! The token type is generic: the node uses the p2p layer's request token.

use basalt_types::{Hash, Height};
use std::time::{Duration, Instant};

/// Block-fetch requests in flight at most.
pub const FETCH_IN_FLIGHT_MAX: usize = 8;
/// A fetch without answer after this long is given up and its slot released.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What is being fetched (the de-duplication key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchKey {
    /// Decided blocks from this height on.
    Range(Height),
    /// The block with this id.
    ByHash(Hash),
}

impl FetchKey {
    /// Metric label.
    pub fn kind(self) -> &'static str {
        match self {
            FetchKey::Range(_) => "range",
            FetchKey::ByHash(_) => "hash",
        }
    }
}

/// Why a fetch was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The same fetch is already in flight.
    Duplicate,
    /// [`FETCH_IN_FLIGHT_MAX`] fetches are in flight.
    Cap,
}

impl Refusal {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Duplicate => "duplicate",
            Refusal::Cap => "inflight_cap",
        }
    }
}

/// How a fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEnd {
    /// Answered.
    Answered,
    /// Failed (the peer refused, disconnected, had nothing).
    Failed,
    /// No answer within [`FETCH_TIMEOUT`].
    TimedOut,
    /// No longer needed (consensus moved past it).
    Cancelled,
}

impl FetchEnd {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            FetchEnd::Answered => "answered",
            FetchEnd::Failed => "failed",
            FetchEnd::TimedOut => "timed_out",
            FetchEnd::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug)]
struct InFlight<T> {
    key: FetchKey,
    token: Option<T>,
    deadline: Instant,
}

/// Fetches in flight, at most `cap` of them.
#[derive(Debug)]
pub struct FetchTracker<T> {
    in_flight: Vec<InFlight<T>>,
    cap: usize,
    timeout: Duration,
}

impl<T: Copy + Eq> FetchTracker<T> {
    /// A tracker allowing `cap` fetches in flight, each for at most `timeout`.
    pub fn new(cap: usize, timeout: Duration) -> FetchTracker<T> {
        FetchTracker {
            in_flight: Vec::new(),
            cap,
            timeout,
        }
    }

    /// Fetches in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// True when `key` is in flight.
    pub fn contains(&self, key: FetchKey) -> bool {
        self.in_flight.iter().any(|f| f.key == key)
    }

    /// Take a slot for `key`, or say why not. The caller sends the request only on `Ok`,
    /// and calls [`FetchTracker::abandon`] if sending fails.
    pub fn start(&mut self, key: FetchKey, now: Instant) -> Result<(), Refusal> {
        if self.contains(key) {
            return Err(Refusal::Duplicate);
        }
        if self.in_flight.len() >= self.cap {
            return Err(Refusal::Cap);
        }
        self.in_flight.push(InFlight {
            key,
            token: None,
            deadline: now + self.timeout,
        });
        Ok(())
    }

    /// Record the transport's token for `key`'s request (answers carry it).
    pub fn set_token(&mut self, key: FetchKey, token: T) {
        if let Some(f) = self.in_flight.iter_mut().find(|f| f.key == key) {
            f.token = Some(token);
        }
    }

    /// Keys whose token is not known yet.
    pub fn without_token(&self) -> Vec<FetchKey> {
        self.in_flight
            .iter()
            .filter(|f| f.token.is_none())
            .map(|f| f.key)
            .collect()
    }

    /// The request with `token` ended (answered or failed): release its slot.
    pub fn finish(&mut self, token: T) -> Option<FetchKey> {
        let index = self.in_flight.iter().position(|f| f.token == Some(token))?;
        Some(self.in_flight.swap_remove(index).key)
    }

    /// Release `key`'s slot (its request could not be sent, or it is no longer needed).
    pub fn abandon(&mut self, key: FetchKey) -> bool {
        let before = self.in_flight.len();
        self.in_flight.retain(|f| f.key != key);
        self.in_flight.len() != before
    }

    /// Release every fetch whose deadline passed; returns their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<FetchKey> {
        let mut expired = Vec::new();
        self.in_flight.retain(|f| {
            if f.deadline <= now {
                expired.push(f.key);
                false
            } else {
                true
            }
        });
        expired
    }

    /// Release every fetch `keep` says is no longer needed; returns their keys.
    pub fn cancel_unless(&mut self, mut keep: impl FnMut(FetchKey) -> bool) -> Vec<FetchKey> {
        let mut cancelled = Vec::new();
        self.in_flight.retain(|f| {
            if keep(f.key) {
                true
            } else {
                cancelled.push(f.key);
                false
            }
        });
        cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> FetchTracker<u32> {
        FetchTracker::new(FETCH_IN_FLIGHT_MAX, FETCH_TIMEOUT)
    }

    #[test]
    fn duplicates_and_requests_over_the_cap_are_refused_at_once() {
        let now = Instant::now();
        let mut t = tracker();
        for h in 0..FETCH_IN_FLIGHT_MAX as u64 {
            assert_eq!(t.start(FetchKey::Range(h), now), Ok(()));
        }
        assert_eq!(t.start(FetchKey::Range(0), now), Err(Refusal::Duplicate));
        assert_eq!(
            t.start(FetchKey::ByHash(Hash([1; 32])), now),
            Err(Refusal::Cap)
        );
        assert_eq!(t.len(), FETCH_IN_FLIGHT_MAX);
    }

    #[test]
    fn every_path_releases_the_slot() {
        let now = Instant::now();
        let mut t = tracker();
        // Answer (by token).
        t.start(FetchKey::Range(1), now).unwrap();
        t.set_token(FetchKey::Range(1), 11);
        assert_eq!(t.finish(11), Some(FetchKey::Range(1)));
        assert_eq!(t.finish(11), None, "released once");
        // Send failure.
        t.start(FetchKey::Range(2), now).unwrap();
        assert!(t.abandon(FetchKey::Range(2)));
        // Timeout.
        t.start(FetchKey::Range(3), now).unwrap();
        assert!(t.expire(now + FETCH_TIMEOUT / 2).is_empty());
        assert_eq!(t.expire(now + FETCH_TIMEOUT), vec![FetchKey::Range(3)]);
        // Cancel.
        t.start(FetchKey::Range(4), now).unwrap();
        t.start(FetchKey::Range(9), now).unwrap();
        let cancelled = t.cancel_unless(|k| matches!(k, FetchKey::Range(h) if h >= 5));
        assert_eq!(cancelled, vec![FetchKey::Range(4)]);
        assert_eq!(t.len(), 1);
        // A late answer to a timed-out request releases nothing else.
        t.set_token(FetchKey::Range(9), 99);
        assert_eq!(t.finish(3), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn cap_frees_up_after_timeouts() {
        let now = Instant::now();
        let mut t = tracker();
        for h in 0..FETCH_IN_FLIGHT_MAX as u64 {
            t.start(FetchKey::Range(h), now).unwrap();
        }
        assert_eq!(t.start(FetchKey::Range(100), now), Err(Refusal::Cap));
        let later = now + FETCH_TIMEOUT;
        assert_eq!(t.expire(later).len(), FETCH_IN_FLIGHT_MAX);
        assert!(t.is_empty());
        assert_eq!(t.start(FetchKey::Range(100), later), Ok(()));
        assert_eq!(t.without_token(), vec![FetchKey::Range(100)]);
    }
}
