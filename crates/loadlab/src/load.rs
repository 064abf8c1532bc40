//! Load models: open loop (a fixed schedule, `--rate`), closed loop (Locust's users with a
//! spawn rate and constant pacing), and the ramp of open-loop steps that searches for
//! saturation.
//!
//! Open loop: operation `i` is due at `start + i / rate`; a tick sends everything due, in
//! chunks, without waiting for answers, and the operation's latency counts from its
//! scheduled time. Closed loop: user `u` starts at `u / spawn_rate`; each user issues one
//! operation, waits until it ends (or only for its HTTP answer, for floods), then waits out
//! the rest of its pacing: the next start is `max(previous start + pacing, end)`, as
//! Locust's `constant_pacing`.

use crate::scenario::Workload;
use crate::tracker::Tracker;
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How often the open-loop scheduler sends what is due.
pub const SEND_TICK: Duration = Duration::from_millis(5);
/// Longest a closed-loop user waits for its operation to end.
pub const USER_WAIT_MAX: Duration = Duration::from_secs(30);
/// Most operations pre-signed for a closed-loop run (past it they are signed on demand).
pub const CLOSED_LOOP_PRESIGN_MAX: u64 = 400_000;

/// What a closed-loop user waits for before its pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The operation's end: committed, rejected, shed, or timed out.
    Outcome,
    /// Only the HTTP answer (floods).
    Answer,
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// A fixed schedule of `rate` operations per second.
    Open {
        /// Operations per second.
        rate: f64,
    },
    /// `users` users, started `spawn_rate` per second, one operation per `pacing` at most.
    Closed {
        /// Users.
        users: usize,
        /// Users started per second.
        spawn_rate: f64,
        /// Shortest time between two starts of one user.
        pacing: Duration,
        /// What a user waits for.
        wait: Wait,
    },
}

impl LoadModel {
    /// How it reads in a report.
    pub fn describe(&self) -> String {
        match self {
            LoadModel::Open { rate } => format!("open loop, {rate} ops/s"),
            LoadModel::Closed {
                users,
                spawn_rate,
                pacing,
                wait,
            } => format!(
                "closed loop, {users} users, {}, pacing {:.3} s{}",
                if spawn_rate.is_finite() {
                    format!("spawn rate {spawn_rate}/s")
                } else {
                    "all started at once".to_owned()
                },
                pacing.as_secs_f64(),
                if *wait == Wait::Answer {
                    ", no wait for commit (flood)"
                } else {
                    ""
                }
            ),
        }
    }

    /// Operations worth pre-signing for `length` of load.
    pub fn expected_ops(&self, length: Duration) -> u64 {
        match *self {
            LoadModel::Open { rate } => due(length.as_secs_f64(), rate, u64::MAX),
            LoadModel::Closed {
                users,
                spawn_rate,
                pacing,
                ..
            } => closed_loop_ops_max(users, spawn_rate, pacing, length),
        }
    }
}

/// Operations due `elapsed_s` seconds into an open loop at `rate`, at most `total`.
pub fn due(elapsed_s: f64, rate: f64, total: u64) -> u64 {
    if elapsed_s <= 0.0 || rate <= 0.0 {
        return 0;
    }
    ((elapsed_s * rate).floor() as u64).min(total)
}

/// When open-loop operation `i` (counted from the start) is scheduled.
pub fn scheduled_offset(i: u64, rate: f64) -> Duration {
    if rate <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(i as f64 / rate)
}

/// When closed-loop user `u` starts.
pub fn user_start(u: usize, spawn_rate: f64) -> Duration {
    if spawn_rate <= 0.0 || !spawn_rate.is_finite() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(u as f64 / spawn_rate)
}

/// The next start of a user whose previous operation started at `started` and ended at
/// `ended`, with `pacing`.
pub fn next_start(started: Instant, ended: Instant, pacing: Duration) -> Instant {
    (started + pacing).max(ended)
}

/// At most how many operations a closed loop can issue in `length` (each user at most one
/// per pacing, or per 10 ms when unpaced), capped at [`CLOSED_LOOP_PRESIGN_MAX`].
pub fn closed_loop_ops_max(
    users: usize,
    spawn_rate: f64,
    pacing: Duration,
    length: Duration,
) -> u64 {
    let period = pacing.max(Duration::from_millis(10)).as_secs_f64();
    let total: f64 = (0..users)
        .map(|u| {
            let active = (length.saturating_sub(user_start(u, spawn_rate))).as_secs_f64();
            if active > 0.0 {
                // Starts at 0, period, 2·period, … strictly before the end.
                (active / period).ceil()
            } else {
                0.0
            }
        })
        .sum();
    (total as u64).min(CLOSED_LOOP_PRESIGN_MAX)
}

/// Offer load with `model` from `start` for `length`, operation ids from `first_op`.
/// Returns the next unused operation id once every request was answered.
pub async fn drive(
    model: LoadModel,
    workload: Arc<dyn Workload>,
    tracker: Arc<Tracker>,
    start: Instant,
    length: Duration,
    first_op: u64,
) -> u64 {
    match model {
        LoadModel::Open { rate } => {
            open_loop(rate, workload, tracker, start, length, first_op).await
        }
        LoadModel::Closed {
            users,
            spawn_rate,
            pacing,
            wait,
        } => {
            let users = Users {
                users,
                spawn_rate,
                pacing,
                wait,
            };
            closed_loop(users, workload, tracker, start, length, first_op).await
        }
    }
}

async fn open_loop(
    rate: f64,
    workload: Arc<dyn Workload>,
    tracker: Arc<Tracker>,
    start: Instant,
    length: Duration,
    first_op: u64,
) -> u64 {
    let total = due(length.as_secs_f64(), rate, u64::MAX);
    let chunk = workload.chunk_max().max(1) as u64;
    let mut sent = 0u64;
    let mut requests = JoinSet::new();
    tokio::time::sleep_until(start.into()).await;
    while sent < total {
        tokio::time::sleep(SEND_TICK).await;
        let target = due(start.elapsed().as_secs_f64(), rate, total);
        while sent < target {
            let end = (sent + chunk).min(target);
            for i in sent..end {
                tracker.issue(first_op + i, start + scheduled_offset(i, rate));
            }
            requests.spawn(workload.clone().send(first_op + sent..first_op + end));
            sent = end;
        }
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
    first_op + total
}

struct Users {
    users: usize,
    spawn_rate: f64,
    pacing: Duration,
    wait: Wait,
}

async fn closed_loop(
    users: Users,
    workload: Arc<dyn Workload>,
    tracker: Arc<Tracker>,
    start: Instant,
    length: Duration,
    first_op: u64,
) -> u64 {
    let next_op = Arc::new(AtomicU64::new(first_op));
    let end = start + length;
    let mut running = JoinSet::new();
    for u in 0..users.users {
        let (workload, tracker, next_op) = (workload.clone(), tracker.clone(), next_op.clone());
        let (pacing, wait) = (users.pacing, users.wait);
        let begin = start + user_start(u, users.spawn_rate);
        running.spawn(async move {
            let mut at = begin;
            loop {
                tokio::time::sleep_until(at.into()).await;
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let op = next_op.fetch_add(1, Ordering::Relaxed);
                tracker.issue(op, started);
                let done = tracker.done(op);
                workload.clone().send(op..op + 1).await;
                if wait == Wait::Outcome {
                    let _ = tokio::time::timeout(USER_WAIT_MAX, done).await;
                }
                at = next_start(started, Instant::now(), pacing);
            }
        });
    }
    while running.join_next().await.is_some() {}
    next_op.load(Ordering::Relaxed)
}

/// The offered rates of a ramp `START..END[/STEP]` (ops/s). Without a step, five even steps.
pub fn parse_ramp(text: &str) -> Result<Vec<u64>> {
    let (range, step) = match text.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (text, None),
    };
    let (start, end) = range
        .split_once("..")
        .context("a ramp is START..END or START..END/STEP, e.g. 500..4000/500")?;
    let start: u64 = start.trim().parse().context("ramp start")?;
    let end: u64 = end.trim().parse().context("ramp end")?;
    if start == 0 || end < start {
        bail!("a ramp needs 0 < START <= END");
    }
    let step = match step {
        Some(step) => step.trim().parse().context("ramp step")?,
        None => ((end - start) / 4).max(1),
    };
    if step == 0 {
        bail!("the ramp step must be at least 1");
    }
    let mut rates: Vec<u64> = (0..)
        .map(|k| start + k * step)
        .take_while(|r| *r <= end)
        .collect();
    if rates.last() != Some(&end) {
        rates.push(end);
    }
    Ok(rates)
}

/// The saturation point of ramp steps run in order: the highest offered rate of the steps
/// that passed before the first one that broke a gate. `None` when the first step broke.
pub fn saturation(steps: &[(u64, bool)]) -> Option<u64> {
    steps
        .iter()
        .take_while(|(_, passed)| *passed)
        .map(|(rate, _)| *rate)
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule() {
        assert_eq!(due(0.0, 1000.0, 10_000), 0);
        assert_eq!(due(0.0105, 1000.0, 10_000), 10);
        assert_eq!(due(100.0, 1000.0, 10_000), 10_000);
        assert_eq!(scheduled_offset(1500, 1000.0), Duration::from_millis(1500));
        assert_eq!(
            LoadModel::Open { rate: 200.0 }.expected_ops(Duration::from_secs(3)),
            600
        );
    }

    #[test]
    fn closed_loop_pacing_math() {
        // Seed 002's configuration: 10 users, all spawned in the first second, one request
        // per 15 s each, for 5 minutes: 20 requests per user, 200 in all.
        assert_eq!(user_start(9, 10.0), Duration::from_millis(900));
        assert_eq!(user_start(3, 0.0), Duration::ZERO);
        let ops = closed_loop_ops_max(10, 10.0, Duration::from_secs(15), Duration::from_secs(300));
        assert_eq!(ops, 200);
        let t = Instant::now();
        // A fast answer waits out the pacing; a slow one starts the next at once.
        assert_eq!(
            next_start(t, t + Duration::from_secs(2), Duration::from_secs(15)),
            t + Duration::from_secs(15)
        );
        assert_eq!(
            next_start(t, t + Duration::from_secs(20), Duration::from_secs(15)),
            t + Duration::from_secs(20)
        );
        assert_eq!(next_start(t, t, Duration::ZERO), t);
    }

    #[test]
    fn ramps_parse_and_saturation_is_the_last_passing_step() {
        assert_eq!(
            parse_ramp("500..2000/500").ok(),
            Some(vec![500, 1000, 1500, 2000])
        );
        assert_eq!(
            parse_ramp("100..500").ok(),
            Some(vec![100, 200, 300, 400, 500])
        );
        assert_eq!(parse_ramp("100..250/100").ok(), Some(vec![100, 200, 250]));
        assert_eq!(parse_ramp("7..7").ok(), Some(vec![7]));
        for bad in ["", "100", "0..10", "10..5", "1..5/0", "a..b"] {
            assert!(parse_ramp(bad).is_err(), "{bad}");
        }
        assert_eq!(
            saturation(&[(100, true), (200, true), (300, false)]),
            Some(200)
        );
        assert_eq!(saturation(&[(100, false)]), None);
        assert_eq!(saturation(&[(100, true), (200, true)]), Some(200));
    }
}
