//! The fate of every operation a run issues: when it was scheduled, how its request was
//! answered, and when (if ever) it was seen committed.
//!
//! An operation is what a scenario counts: a transfer, an order, a cancel, a task (create
//! and respond), one flood request's transaction. Load models give operations ids
//! `0, 1, 2, …`; follow-up operations a scenario starts by itself (a cancel after its order
//! committed) get ids from [`FOLLOW_UP_BASE`] upward. Latency is always measured from the
//! operation's *scheduled* time, so a slow system cannot hide behind coordinated omission.

use basalt_types::Hash;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::oneshot;

/// First id of follow-up operations (far above any load model's ids).
pub const FOLLOW_UP_BASE: u64 = 1 << 40;
/// Latencies kept for the live p99 (the most recent ones).
pub const RECENT_LATENCIES_MAX: usize = 4096;

/// Where an operation is.
#[derive(Debug, Clone, PartialEq)]
pub enum OpState {
    /// Handed to the network, no answer yet.
    Sent,
    /// Admitted (HTTP 200 with `accepted`, or queued in the SDK's submitter).
    Accepted,
    /// Seen in a committed block (or its receipt arrived) at this instant.
    Committed(Instant),
    /// A typed rejection, by code (`insufficient_balance`, `unknown_order`, …).
    Rejected(String),
    /// Shed by admission control (HTTP 429/503 with a typed body) until the retries ran out.
    Shed,
    /// No usable answer: transport error, untyped 5xx, malformed body.
    SysError,
    /// Accepted, but no verdict before the deadline (the outcome is unknown).
    TimedOut,
}

impl OpState {
    /// True once nothing more will happen to the operation.
    pub fn is_final(&self) -> bool {
        !matches!(self, OpState::Sent | OpState::Accepted)
    }
}

/// One operation.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// When the load model scheduled it.
    pub scheduled: Instant,
    /// When its first stage committed, for two-stage operations (a task's create).
    pub first_stage: Option<Instant>,
    /// When a node answered that it admitted it.
    pub accepted: Option<Instant>,
    /// Where it is.
    pub state: OpState,
}

#[derive(Default)]
struct Inner {
    ops: HashMap<u64, OpRecord>,
    /// Transaction hash → operation, for operations whose commit the block follower sees.
    by_hash: HashMap<Hash, u64>,
    /// Closed-loop users waiting for an operation to end.
    waiters: HashMap<u64, oneshot::Sender<()>>,
    recent: VecDeque<f64>,
}

/// Shared record of a run's operations. Cheap operations under one short lock.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
    issued: AtomicU64,
    committed: AtomicU64,
    next_follow_up: AtomicU64,
    /// Requests answered 429/503 with a typed body (each retry counts).
    shed_requests: AtomicU64,
    /// Requests that got no usable answer, outside any operation (reads).
    read_sys_errors: AtomicU64,
    /// Read requests made (http-flood).
    reads: AtomicU64,
    /// HTTP latencies of answered requests, ms.
    http_ms: Mutex<Vec<f64>>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker {
            next_follow_up: AtomicU64::new(FOLLOW_UP_BASE),
            ..Tracker::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the records are still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Watch for `hash` in committed blocks on behalf of operation `op`.
    pub fn watch_hash(&self, hash: Hash, op: u64) {
        self.lock().by_hash.insert(hash, op);
    }

    /// Watch many hashes at once.
    pub fn watch_hashes(&self, pairs: impl IntoIterator<Item = (Hash, u64)>) {
        self.lock().by_hash.extend(pairs);
    }

    /// Operation `op` was scheduled at `scheduled` and is being sent now.
    pub fn issue(&self, op: u64, scheduled: Instant) {
        self.issued.fetch_add(1, Ordering::Relaxed);
        self.lock().ops.entry(op).or_insert(OpRecord {
            scheduled,
            first_stage: None,
            accepted: None,
            state: OpState::Sent,
        });
    }

    /// A new follow-up operation scheduled now; returns its id.
    pub fn follow_up(&self) -> u64 {
        let op = self.next_follow_up.fetch_add(1, Ordering::Relaxed);
        self.issue(op, Instant::now());
        op
    }

    /// Operation `op` was admitted.
    pub fn accepted(&self, op: u64) {
        let mut inner = self.lock();
        if let Some(record) = inner.ops.get_mut(&op) {
            if record.state == OpState::Sent {
                record.state = OpState::Accepted;
                record.accepted = Some(Instant::now());
            }
        }
    }

    /// The first stage of a two-stage operation committed.
    pub fn first_stage(&self, op: u64, at: Instant) {
        if let Some(record) = self.lock().ops.get_mut(&op) {
            record.first_stage.get_or_insert(at);
        }
    }

    /// Operation `op` ended in `state` (ignored if it already ended).
    pub fn finish(&self, op: u64, state: OpState) {
        let mut inner = self.lock();
        let Some(record) = inner.ops.get_mut(&op) else {
            return;
        };
        if record.state.is_final() {
            return;
        }
        if let OpState::Committed(at) = state {
            let latency = at.saturating_duration_since(record.scheduled).as_secs_f64() * 1e3;
            self.committed.fetch_add(1, Ordering::Relaxed);
            if inner.recent.len() >= RECENT_LATENCIES_MAX {
                inner.recent.pop_front();
            }
            inner.recent.push_back(latency);
        }
        if let Some(record) = inner.ops.get_mut(&op) {
            record.state = state;
        }
        if let Some(waiter) = inner.waiters.remove(&op) {
            let _ = waiter.send(());
        }
    }

    /// The follower saw these transaction hashes committed at `at`.
    pub fn committed_hashes<'a>(&self, hashes: impl IntoIterator<Item = &'a Hash>, at: Instant) {
        let ops: Vec<u64> = {
            let inner = self.lock();
            hashes
                .into_iter()
                .filter_map(|h| inner.by_hash.get(h).copied())
                .collect()
        };
        for op in ops {
            self.finish(op, OpState::Committed(at));
        }
    }

    /// Resolves when `op` ends (at once if it already has).
    pub fn done(&self, op: u64) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let mut inner = self.lock();
        let ended = inner.ops.get(&op).is_none_or(|r| r.state.is_final());
        if ended {
            let _ = sender.send(());
        } else {
            inner.waiters.insert(op, sender);
        }
        receiver
    }

    /// Mark every operation still waiting for a verdict as timed out.
    pub fn time_out_pending(&self) {
        let mut inner = self.lock();
        let Inner { ops, waiters, .. } = &mut *inner;
        for (op, record) in ops.iter_mut() {
            if record.state == OpState::Accepted || record.state == OpState::Sent {
                record.state = OpState::TimedOut;
                if let Some(waiter) = waiters.remove(op) {
                    let _ = waiter.send(());
                }
            }
        }
    }

    /// Operations not yet ended.
    pub fn pending(&self) -> usize {
        self.lock()
            .ops
            .values()
            .filter(|r| !r.state.is_final())
            .count()
    }

    /// A request was shed (429/503 with a typed body).
    pub fn shed_request(&self) {
        self.shed_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A read request was made; `ok` false when it got no usable answer.
    pub fn read(&self, ok: bool) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.read_sys_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An answered request took `ms`.
    pub fn http(&self, ms: f64) {
        if let Ok(mut v) = self.http_ms.lock() {
            v.push(ms);
        }
    }

    /// Operations issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Operations committed so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Shed requests so far.
    pub fn shed_requests(&self) -> u64 {
        self.shed_requests.load(Ordering::Relaxed)
    }

    /// Reads and failed reads so far.
    pub fn reads(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.read_sys_errors.load(Ordering::Relaxed),
        )
    }

    /// The 99th percentile of the most recent commit latencies, ms.
    pub fn recent_p99(&self) -> Option<f64> {
        let mut recent: Vec<f64> = self.lock().recent.iter().copied().collect();
        crate::stats::percentile(&mut recent, 0.99)
    }

    /// A copy of every record.
    pub fn records(&self) -> Vec<(u64, OpRecord)> {
        self.lock()
            .ops
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect()
    }

    /// HTTP latencies recorded between two counts (`http_ms_len` before and after a window).
    pub fn http_ms(&self) -> Vec<f64> {
        self.http_ms.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_end_once_and_wake_their_waiters() {
        let tracker = Tracker::new();
        let start = Instant::now();
        tracker.issue(0, start);
        tracker.issue(1, start);
        tracker.watch_hash(Hash([7; 32]), 0);
        let mut waiter = tracker.done(0);
        assert!(waiter.try_recv().is_err());
        tracker.accepted(0);
        tracker.committed_hashes([&Hash([7; 32])], Instant::now());
        assert!(waiter.try_recv().is_ok());
        // Ended operations do not change again.
        tracker.finish(0, OpState::SysError);
        assert!(matches!(
            tracker.records().iter().find(|(id, _)| *id == 0),
            Some((
                _,
                OpRecord {
                    state: OpState::Committed(_),
                    ..
                }
            ))
        ));
        assert_eq!(tracker.committed(), 1);
        tracker.time_out_pending();
        assert_eq!(tracker.pending(), 0);
        let follow = tracker.follow_up();
        assert!(follow >= FOLLOW_UP_BASE);
    }
}
