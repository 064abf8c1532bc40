//! Transaction admission driven by consensus latency: a validator sheds its own clients'
//! submissions when its blocks come slower than they did idle.
//!
//! Seed 000's chain starved its consensus with client traffic on one validator. Basalt's
//! RPC already runs apart from consensus (own runtime, concurrency cap, per-client rate,
//! niced threads), but every admitted transaction still costs each validator signature
//! checks, gossip, execution and storage, and on a saturated machine that work competes
//! with consensus for the same cores. A client that submits as fast as it is answered
//! (a closed loop) raises its rate to whatever the node absorbs, and block time follows.
//!
//! The controller compares the median interval of the last [`RECENT_HEIGHTS`] blocks
//! decided in round 0 with the idle reference: empty blocks are taken in runs of
//! [`IDLE_BATCH`], and the reference is the median of the medians of the last
//! [`IDLE_BATCHES`] runs (a machine busy with something else for a few seconds, such as a
//! load generator signing its transactions, does not move it; lasting slower idle blocks
//! do, once they are most of the memory). The lowest run median would be more robust
//! still, but it sits below the typical idle interval, and a target taken from it is
//! one the chain misses with no load at all. While the recent median stays
//! within `target_permille` of the idle one, submissions are admitted freely. Above it,
//! a token bucket limits this node's admissions. The controller steps at most once every
//! [`STEP_HEIGHTS`] heights (a change shows in the median only after about half its
//! window): above target, the rate is cut to [`DECREASE_PERMILLE`] of itself (the first
//! time, of what was being admitted); at or below target while the bucket refused
//! something, it grows to [`INCREASE_PERMILLE`] of itself. After [`RELEASE_HEIGHTS`]
//! heights without a refusal the limit is lifted. The rate never goes under
//! `min_per_sec`, nor under [`FLOOR_PERMILLE`] of what was admitted when the limit was
//! set: a node never refuses everything, and when two thirds of its clients'
//! transactions are gone and blocks are still slow, transactions are not what slows them.
//!
//! The steps are small and slow on purpose: on a shared machine one block interval moves
//! by several milliseconds with nothing changed, and a controller that chases that noise
//! admits in bursts, which is what moves the tail of consensus latency.
//!
//! Heights decided in a later round are left out of the recent window (a timeout is not
//! load), and nothing is limited while no idle reference exists: before [`IDLE_BATCH`]
//! empty blocks have been seen, everything is admitted.
//!
//! A request that finds the bucket empty waits its turn, up to [`WAIT_MAX`] and with at
//! most [`WAITERS_MAX`] others; past that it is refused with 503 `congested` (retryable:
//! clients back off, or go to another validator). Only whole requests are delayed or refused, before their signatures are
//! checked.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Empty blocks per run whose median is one idle measurement.
pub const IDLE_BATCH: usize = 32;
/// Idle measurements kept; the reference is their median (about 25 s of idle blocks).
pub const IDLE_BATCHES: usize = 16;
/// Round-0 intervals whose median is compared with the idle reference (about 1.2 s at
/// 50 ms blocks).
pub const RECENT_HEIGHTS: usize = 25;
/// Heights between two steps of the rate.
pub const STEP_HEIGHTS: u32 = 10;
/// Heights without a refusal after which the limit is lifted.
pub const RELEASE_HEIGHTS: u32 = 200;
/// A cut keeps this much of the rate, per mille.
pub const DECREASE_PERMILLE: u64 = 850;
/// A raise makes the rate this much of itself, per mille.
pub const INCREASE_PERMILLE: u64 = 1050;
/// Smallest raise, transactions/s.
pub const INCREASE_MIN: u64 = 10;
/// A limit is set only while this node's clients supply at least this much of the
/// transactions the chain commits, per mille: the node is the hot spot of seed 000. When
/// the load is spread over the validators (a gateway, a balancing SDK) or the chain is
/// slowed by something else (a gossip flood), refusing one validator's share does not
/// make blocks faster; measured under `gossip-flood` without this rule, every validator
/// cut its clients to the floor and nonce gaps stalled 99 % of the transfers.
pub const SHARE_MIN_PERMILLE: u64 = 500;
/// The limit never goes below this much of what was being admitted when it was set, per
/// mille. Measured under `http-flood`: a closed-loop client's own requests (refused ones,
/// reads) keep a shared machine busy at any admitted rate; cut to 200/s, blocks were still
/// 1.06× idle and the clients, retrying in vain, gave up on 7–20 % of their transfers
/// (pre-signed nonce sequences: one given up stalls the sender's later ones). At half,
/// two runs held 1,046 and 1,243/s with blocks 1.08× and 1.10×.
pub const FLOOR_PERMILLE: u64 = 333;
/// The bucket holds this long of the rate (bursts).
pub const BURST: Duration = Duration::from_millis(50);
/// A request that finds the bucket empty waits its turn, up to this long, instead of being
/// refused: a closed-loop client is slowed to the rate rather than spinning on refusals
/// (under `http-flood`, ~1,000 refused requests a second, each costing the node and the
/// client CPU the chain needed). Past it, 503 `congested`.
pub const WAIT_MAX: Duration = Duration::from_millis(200);
/// Requests waiting their turn at once; one more is refused. A waiting request holds one
/// of the RPC's concurrency slots (256 by default), and reads need the others.
pub const WAITERS_MAX: usize = 64;
/// Default of [`AdmissionConfig::target_permille`].
pub const TARGET_PERMILLE_DEFAULT: u32 = 1050;
/// Default of [`AdmissionConfig::min_per_sec`].
pub const MIN_PER_SEC_DEFAULT: u64 = 200;

/// How the controller is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Off: everything is admitted (to measure what the controller prevents).
    pub enabled: bool,
    /// The recent median block interval may be this much of the idle one (per mille)
    /// before submissions are limited.
    pub target_permille: u32,
    /// The limit never goes below this, transactions/s.
    pub min_per_sec: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            target_permille: TARGET_PERMILLE_DEFAULT,
            min_per_sec: MIN_PER_SEC_DEFAULT,
        }
    }
}

/// Why a submission was refused: the figures behind the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Congested {
    /// Median of the recent round-0 block intervals, µs.
    pub recent_us: u64,
    /// The idle reference (median of the medians of recent runs of empty blocks), µs.
    pub idle_us: u64,
    /// The admission rate in force, transactions/s.
    pub rate_per_sec: u64,
}

impl std::fmt::Display for Congested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "consensus is slower than idle (block interval median {:.1} ms, idle {:.1} ms); \
             this validator admits {} transactions/s now: retry later or at another validator",
            self.recent_us as f64 / 1e3,
            self.idle_us as f64 / 1e3,
            self.rate_per_sec
        )
    }
}

/// The controller's state. Pure: time comes in as arguments.
#[derive(Debug)]
pub struct Controller {
    config: AdmissionConfig,
    /// Empty-block intervals of the run being gathered.
    idle_batch: Vec<u64>,
    /// Medians of the last runs.
    idle_medians: VecDeque<u64>,
    recent: VecDeque<u64>,
    /// The limit in force, transactions/s; `None` = admit everything.
    rate: Option<u64>,
    /// The lowest the limit may go while it is in force.
    floor: u64,
    /// Bucket content, thousandths of a transaction; may go negative by one request.
    tokens_milli: i64,
    refilled_at: Option<Instant>,
    heights_since_step: u32,
    /// Heights since a request was last delayed or refused (the limit last bound).
    heights_since_limited: u32,
    admitted_since_height: u64,
    /// Transactions delayed or refused since the last height: the limit binds.
    limited_since_height: u64,
    /// When each waiting request's turn comes, earliest first (at most [`WAITERS_MAX`]).
    waiting_until: VecDeque<Instant>,
    /// Admitted transactions/s, smoothed over heights (the first limit starts from it).
    admitted_per_sec: u64,
    /// Committed transactions/s (every validator's clients), smoothed over heights.
    committed_per_sec: u64,
    /// Consecutive heights whose blocks carried transactions.
    loaded_heights: u32,
    last_height_at: Option<Instant>,
}

fn median<'a>(values: impl IntoIterator<Item = &'a u64>) -> Option<u64> {
    let mut sorted: Vec<u64> = values.into_iter().copied().collect();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

/// An average over about 8 heights: 7/8 of `average`, 1/8 of `sample`.
fn smooth(average: u64, sample: u64) -> u64 {
    average.saturating_mul(7).saturating_add(sample) / 8
}

fn push_bounded(window: &mut VecDeque<u64>, value: u64, max: usize) {
    if window.len() == max {
        window.pop_front();
    }
    window.push_back(value);
}

impl Controller {
    /// A controller with nothing learned yet (it admits everything).
    pub fn new(config: AdmissionConfig) -> Controller {
        Controller {
            config,
            idle_batch: Vec::with_capacity(IDLE_BATCH),
            idle_medians: VecDeque::with_capacity(IDLE_BATCHES),
            recent: VecDeque::with_capacity(RECENT_HEIGHTS),
            rate: None,
            floor: 0,
            tokens_milli: 0,
            refilled_at: None,
            heights_since_step: 0,
            heights_since_limited: 0,
            admitted_since_height: 0,
            limited_since_height: 0,
            waiting_until: VecDeque::with_capacity(WAITERS_MAX),
            admitted_per_sec: 0,
            committed_per_sec: 0,
            loaded_heights: 0,
            last_height_at: None,
        }
    }

    /// The limit in force (transactions/s), if any.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The idle reference, µs: the median of the medians of the last runs of empty
    /// blocks.
    pub fn idle_us(&self) -> Option<u64> {
        median(&self.idle_medians)
    }

    /// Median recent round-0 interval, µs, once the window is full.
    pub fn recent_us(&self) -> Option<u64> {
        (self.recent.len() == RECENT_HEIGHTS)
            .then(|| median(&self.recent))
            .flatten()
    }

    /// The recent median above which submissions are limited, µs.
    pub fn target_us(&self) -> Option<u64> {
        self.idle_us()
            .map(|idle| idle.saturating_mul(u64::from(self.config.target_permille)) / 1000)
    }

    /// A height was decided at `now`, `interval` after the previous one, in `round`, with
    /// `txs` transactions in its block.
    pub fn observe_height(&mut self, now: Instant, interval: Duration, round: u32, txs: usize) {
        let interval_us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
        if let Some(last) = self.last_height_at.replace(now) {
            let elapsed_us = u64::try_from(now.duration_since(last).as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let per_sec = self.admitted_since_height.saturating_mul(1_000_000) / elapsed_us;
            self.admitted_per_sec = smooth(self.admitted_per_sec, per_sec);
        }
        let committed = u64::try_from(txs)
            .unwrap_or(u64::MAX)
            .saturating_mul(1_000_000)
            .checked_div(interval_us);
        if let Some(per_sec) = committed {
            self.committed_per_sec = smooth(self.committed_per_sec, per_sec);
        }
        self.loaded_heights = if txs == 0 {
            0
        } else {
            self.loaded_heights.saturating_add(1)
        };
        if round == 0 {
            if txs == 0 {
                self.idle_batch.push(interval_us);
                if self.idle_batch.len() == IDLE_BATCH {
                    if let Some(m) = median(&self.idle_batch) {
                        push_bounded(&mut self.idle_medians, m, IDLE_BATCHES);
                    }
                    self.idle_batch.clear();
                }
            }
            push_bounded(&mut self.recent, interval_us, RECENT_HEIGHTS);
        }
        let limited = self.limited_since_height > 0;
        self.admitted_since_height = 0;
        self.limited_since_height = 0;
        self.heights_since_step = self.heights_since_step.saturating_add(1);
        self.heights_since_limited = if limited {
            0
        } else {
            self.heights_since_limited.saturating_add(1)
        };
        if !self.config.enabled {
            return;
        }
        let (Some(target), Some(recent)) = (self.target_us(), self.recent_us()) else {
            return;
        };
        let min = self.config.min_per_sec.max(1);
        if recent <= target && self.rate.is_some() && self.heights_since_limited >= RELEASE_HEIGHTS
        {
            self.rate = None;
            return;
        }
        if self.heights_since_step < STEP_HEIGHTS {
            return;
        }
        if recent > target {
            let from = match self.rate {
                Some(rate) => rate,
                // A first limit only when this node's own clients are what loads the chain
                // (else there is nothing to take from them), and once the load has lasted
                // a whole recent window: the first limit and its floor are taken from the
                // smoothed admitted rate, not from a load just starting.
                None if self.admitted_per_sec > min
                    && self.is_hot_spot()
                    && self.loaded_heights >= RECENT_HEIGHTS as u32 =>
                {
                    self.admitted_per_sec
                }
                None => return,
            };
            if self.rate.is_none() {
                self.floor = (from.saturating_mul(FLOOR_PERMILLE) / 1000).max(min);
            }
            let cut = (from.saturating_mul(DECREASE_PERMILLE) / 1000).max(self.floor);
            if self.rate.is_none() {
                self.tokens_milli = capacity_milli(cut);
                self.refilled_at = Some(now);
            }
            self.rate = Some(cut);
            self.heights_since_step = 0;
        } else if let Some(rate) = self.rate {
            if self.heights_since_limited < STEP_HEIGHTS {
                let raised = (rate.saturating_mul(INCREASE_PERMILLE) / 1000)
                    .max(rate.saturating_add(INCREASE_MIN));
                self.rate = Some(raised);
                self.heights_since_step = 0;
            }
        }
    }

    /// Do this node's clients supply most of what the chain commits?
    fn is_hot_spot(&self) -> bool {
        self.admitted_per_sec.saturating_mul(1000)
            >= self.committed_per_sec.saturating_mul(SHARE_MIN_PERMILLE)
    }

    /// May `txs` transactions be admitted at `now`, and after how long a wait? Counts the
    /// answer. `Ok(ZERO)`: at once; `Ok(wait)`: the bucket is in debt and the request's
    /// turn comes after `wait` (at most [`WAIT_MAX`]), its tokens already taken; `Err`:
    /// refused, nothing taken.
    pub fn admit(&mut self, now: Instant, txs: usize) -> Result<Duration, Congested> {
        let txs = u64::try_from(txs).unwrap_or(u64::MAX);
        let Some(rate) = self.rate else {
            self.admitted_since_height = self.admitted_since_height.saturating_add(txs);
            return Ok(Duration::ZERO);
        };
        let capacity = capacity_milli(rate);
        let elapsed_us = self
            .refilled_at
            .map_or(0, |at| now.saturating_duration_since(at).as_micros());
        self.refilled_at = Some(now);
        // rate/s × µs = rate × µs / 1e6 transactions = rate × µs / 1e3 thousandths.
        let refill = u128::from(rate).saturating_mul(elapsed_us) / 1000;
        let refill = i64::try_from(refill).unwrap_or(i64::MAX);
        self.tokens_milli = self.tokens_milli.saturating_add(refill).min(capacity);
        // The debt is repaid at `rate`: thousandths / (rate/s) = debt × 1000 / rate µs.
        let debt = u64::try_from(self.tokens_milli.saturating_neg().max(0)).unwrap_or(0);
        let wait_us = debt.saturating_mul(1000) / rate.max(1);
        let wait = Duration::from_micros(wait_us);
        while self
            .waiting_until
            .front()
            .is_some_and(|until| *until <= now)
        {
            self.waiting_until.pop_front();
        }
        let waiters_full = !wait.is_zero() && self.waiting_until.len() >= WAITERS_MAX;
        if wait > WAIT_MAX || waiters_full {
            self.limited_since_height = self.limited_since_height.saturating_add(txs);
            return Err(Congested {
                recent_us: self.recent_us().unwrap_or(0),
                idle_us: self.idle_us().unwrap_or(0),
                rate_per_sec: rate,
            });
        }
        let cost = i64::try_from(txs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.tokens_milli = self.tokens_milli.saturating_sub(cost);
        self.admitted_since_height = self.admitted_since_height.saturating_add(txs);
        if !wait.is_zero() {
            self.limited_since_height = self.limited_since_height.saturating_add(txs);
            if let Some(until) = now.checked_add(wait) {
                self.waiting_until.push_back(until);
            }
        }
        Ok(wait)
    }
}

/// What the bucket holds at most at `rate`: [`BURST`] worth, and at least one transaction.
fn capacity_milli(rate: u64) -> i64 {
    let burst_us = u64::try_from(BURST.as_micros()).unwrap_or(u64::MAX);
    let milli = rate.saturating_mul(burst_us) / 1000;
    i64::try_from(milli).unwrap_or(i64::MAX).max(1000)
}

/// The controller shared by the driver (heights) and the RPC (submissions), with its
/// metrics.
#[derive(Debug)]
pub struct Admission {
    controller: Mutex<Controller>,
    admitted: Counter,
    delayed: Counter,
    refused: Counter,
    rate: Gauge,
    idle_us: Gauge,
    recent_us: Gauge,
}

impl Admission {
    /// A controller configured by `config`, its metrics registered in `registry`.
    pub fn new(config: AdmissionConfig, registry: &mut Registry) -> Admission {
        let admission = Admission {
            controller: Mutex::new(Controller::new(config)),
            admitted: Counter::default(),
            delayed: Counter::default(),
            refused: Counter::default(),
            rate: Gauge::default(),
            idle_us: Gauge::default(),
            recent_us: Gauge::default(),
        };
        registry.register(
            "admission_admitted_txs",
            "Transactions let through by consensus-latency admission",
            admission.admitted.clone(),
        );
        registry.register(
            "admission_delayed_txs",
            "Admitted transactions that waited for their turn (at most 200 ms)",
            admission.delayed.clone(),
        );
        registry.register(
            "admission_refused_txs",
            "Transactions refused (503 congested) because blocks came slower than idle",
            admission.refused.clone(),
        );
        registry.register(
            "admission_rate_limit",
            "Transactions/s this node admits from its clients; 0 = no limit in force",
            admission.rate.clone(),
        );
        registry.register(
            "admission_idle_block_interval_microseconds",
            "Idle reference: median of the medians of the last runs of 32 empty blocks, 0 until learned",
            admission.idle_us.clone(),
        );
        registry.register(
            "admission_recent_block_interval_microseconds",
            "Median interval of the last 9 blocks decided in round 0",
            admission.recent_us.clone(),
        );
        admission
    }

    /// A height was decided (see [`Controller::observe_height`]).
    pub fn observe_height(&self, interval: Duration, round: u32, txs: usize) {
        let Ok(mut controller) = self.controller.lock() else {
            return;
        };
        controller.observe_height(Instant::now(), interval, round, txs);
        let gauge = |v: Option<u64>| i64::try_from(v.unwrap_or(0)).unwrap_or(i64::MAX);
        self.rate.set(gauge(controller.rate()));
        self.idle_us.set(gauge(controller.idle_us()));
        self.recent_us.set(gauge(controller.recent_us()));
    }

    /// May `txs` transactions from a client be admitted now?
    pub fn admit(&self, txs: usize) -> Result<Duration, Congested> {
        let count = u64::try_from(txs).unwrap_or(u64::MAX);
        let answer = match self.controller.lock() {
            Ok(mut controller) => controller.admit(Instant::now(), txs),
            // A poisoned lock means a panic elsewhere; admitting keeps the node usable.
            Err(_) => Ok(Duration::ZERO),
        };
        match answer {
            Ok(wait) => {
                self.admitted.inc_by(count);
                if !wait.is_zero() {
                    self.delayed.inc_by(count);
                }
            }
            Err(_) => {
                self.refused.inc_by(count);
            }
        };
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_millis(50);
    const SLOW: Duration = Duration::from_millis(60);

    /// A controller that has seen enough empty blocks, and a clock.
    fn learned(config: AdmissionConfig) -> (Controller, Instant) {
        let mut c = Controller::new(config);
        let mut now = Instant::now();
        idle_runs(&mut c, &mut now, 1, IDLE);
        (c, now)
    }

    /// A learned controller whose limit is in force: ~2,000/s admitted, then slow blocks.
    fn limited() -> (Controller, Instant) {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        drive(&mut c, &mut now, 40, IDLE, 100);
        drive(&mut c, &mut now, RECENT_HEIGHTS, SLOW, 100);
        (c, now)
    }

    /// `runs` runs of empty blocks `interval` apart.
    fn idle_runs(c: &mut Controller, now: &mut Instant, runs: usize, interval: Duration) {
        for _ in 0..runs * IDLE_BATCH {
            *now += interval;
            c.observe_height(*now, interval, 0, 0);
        }
    }

    /// `per_height` transactions offered (all at once) per height of `interval`, for
    /// `heights` heights; returns how many were admitted.
    fn drive(
        c: &mut Controller,
        now: &mut Instant,
        heights: usize,
        interval: Duration,
        per_height: usize,
    ) -> usize {
        let mut admitted = 0;
        for _ in 0..heights {
            // Offered in 10 requests spread over the height.
            for _ in 0..10 {
                *now += interval / 10;
                if c.admit(*now, per_height / 10).is_ok() {
                    admitted += per_height / 10;
                }
            }
            c.observe_height(*now, interval, 0, per_height);
        }
        admitted
    }

    #[test]
    fn nothing_is_refused_before_an_idle_reference_exists() {
        let mut c = Controller::new(AdmissionConfig::default());
        let mut now = Instant::now();
        // Loaded and slow from the start: no empty block, so no reference.
        assert_eq!(drive(&mut c, &mut now, 50, SLOW * 2, 100), 5000);
        assert_eq!(c.rate(), None);
    }

    #[test]
    fn a_load_just_starting_is_not_limited_before_a_whole_window() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        // Slow from the first loaded height: the median crosses after 13 heights, but the
        // admitted rate is still ramping up; the first limit waits for 25 loaded heights.
        drive(&mut c, &mut now, RECENT_HEIGHTS - 1, SLOW, 100);
        assert_eq!(c.rate(), None);
        drive(&mut c, &mut now, 1, SLOW, 100);
        let first = c.rate().expect("a limit after a whole window of load");
        // 85 % of ~1,600/s (the smoothed admitted rate by then).
        assert!((1200..=1420).contains(&first), "{first}");
    }

    #[test]
    fn a_request_finding_the_bucket_empty_waits_its_turn_up_to_the_bound() {
        let (mut c, mut now) = limited();
        let rate = c.rate().expect("limited");
        // Let the bucket fill, then send requests of 10 at one instant.
        now += Duration::from_secs(1);
        let mut waits = Vec::new();
        let refusal = loop {
            match c.admit(now, 10) {
                Ok(wait) => waits.push(wait),
                Err(congested) => break congested,
            }
            assert!(waits.len() < 10_000, "never refused");
        };
        assert_eq!(refusal.rate_per_sec, rate);
        // A full bucket first (no wait), then each request waits for the debt before it.
        assert!(waits[0].is_zero());
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        let last = *waits.last().expect("some admitted");
        assert!(last <= WAIT_MAX && last > WAIT_MAX * 9 / 10, "{last:?}");
        // About a burst plus WAIT_MAX worth of the rate got in.
        let admitted = waits.len() as u64 * 10;
        let expected = rate * (BURST + WAIT_MAX).as_millis() as u64 / 1000;
        assert!(
            admitted.abs_diff(expected) <= 20,
            "{admitted} vs {expected}"
        );
        // A refusal takes nothing: the next request at the same instant is refused too,
        // and once the debt is repaid requests go through at once again.
        assert!(c.admit(now, 10).is_err());
        now += WAIT_MAX + BURST;
        assert_eq!(c.admit(now, 10).map(|w| w.is_zero()), Ok(true));
    }

    #[test]
    fn at_most_so_many_requests_wait_at_once() {
        let (mut c, mut now) = limited();
        // One transaction per request: WAIT_MAX worth of the rate would be more than
        // WAITERS_MAX requests.
        let rate = c.rate().expect("limited");
        assert!(rate * WAIT_MAX.as_millis() as u64 / 1000 > WAITERS_MAX as u64 * 2);
        now += Duration::from_secs(1);
        let mut waiting = 0;
        let refused_at = loop {
            match c.admit(now, 1) {
                Ok(wait) if wait.is_zero() => {}
                Ok(_) => waiting += 1,
                Err(_) => break waiting,
            }
        };
        assert_eq!(refused_at, WAITERS_MAX);
        // The first waiters' turns come: as many new ones may wait again.
        now += Duration::from_millis(20);
        assert!(c.admit(now, 1).is_ok_and(|w| !w.is_zero()));
    }

    #[test]
    fn blocks_within_target_admit_everything() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        // 52 ms is within 1.05 × 50 ms.
        let admitted = drive(&mut c, &mut now, 40, Duration::from_millis(52), 100);
        assert_eq!(admitted, 4000);
        assert_eq!(c.rate(), None);
        assert_eq!(c.target_us(), Some(52_500));
    }

    #[test]
    fn slow_blocks_limit_admission_below_what_was_admitted() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        // 2,000/s admitted while blocks are within target.
        drive(&mut c, &mut now, 40, IDLE, 100);
        assert_eq!(c.rate(), None);
        // Then blocks slow down: the median crosses once 13 of the 25 are slow, and the
        // rate is cut then, and again every STEP_HEIGHTS heights while they stay slow.
        let mut changes = Vec::new();
        let mut last = None;
        for height in 1..=RECENT_HEIGHTS + 2 * STEP_HEIGHTS as usize {
            drive(&mut c, &mut now, 1, SLOW, 100);
            if c.rate() != last {
                changes.push((height, c.rate()));
                last = c.rate();
            }
        }
        let heights: Vec<usize> = changes.iter().map(|(h, _)| *h).collect();
        assert_eq!(heights, vec![13, 23, 33, 43], "{changes:?}");
        let first = changes[0].1.expect("a limit");
        // 85 % of what was admitted: between 1,667/s (slow heights) and 2,000/s (idle).
        assert!((1416..=1700).contains(&first), "{first}");
        for pair in changes.windows(2) {
            let (before, after) = (pair[0].1.unwrap_or(0), pair[1].1.unwrap_or(0));
            assert_eq!(after, before * DECREASE_PERMILLE / 1000);
        }
        // What is refused is counted, and the bucket admits about the rate.
        let admitted = drive(&mut c, &mut now, 20, SLOW, 200);
        let limit_per_height = c.rate().unwrap_or(0) * 60 / 1000;
        assert!(
            admitted < 20 * 200 / 2,
            "a limit well under the offer must refuse most of it: {admitted}"
        );
        assert!(admitted as u64 >= limit_per_height, "{admitted}");
    }

    #[test]
    fn the_limit_grows_while_blocks_are_fast_and_is_lifted_when_nothing_is_refused() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        drive(&mut c, &mut now, 40, IDLE, 100);
        drive(&mut c, &mut now, RECENT_HEIGHTS + 20, SLOW, 100);
        assert!(c.rate().is_some());
        // Blocks back to idle speed while clients still offer more than the limit: once
        // the median is back under target (5 heights), the limit grows every height.
        drive(&mut c, &mut now, RECENT_HEIGHTS, IDLE, 200);
        let low = c.rate().expect("still limited");
        drive(&mut c, &mut now, 10, IDLE, 200);
        let grown = c.rate().expect("still limited");
        assert!(grown > low, "{grown} > {low}");
        // Offer less than the limit: RELEASE_HEIGHTS heights without a request delayed or
        // refused lift it. (Quiet heights first, so that the bucket's debt from the last
        // burst, up to WAIT_MAX worth, is repaid.)
        drive(&mut c, &mut now, 5, IDLE, 0);
        drive(&mut c, &mut now, RELEASE_HEIGHTS as usize - 6, IDLE, 10);
        assert!(c.rate().is_some());
        drive(&mut c, &mut now, 1, IDLE, 10);
        assert_eq!(c.rate(), None);
    }

    #[test]
    fn the_limit_never_goes_below_the_floors() {
        // Set while 400/s were admitted: half of it is under the configured 300/s.
        let config = AdmissionConfig {
            min_per_sec: 300,
            ..AdmissionConfig::default()
        };
        let (mut c, mut now) = learned(config);
        drive(&mut c, &mut now, 40, IDLE, 20);
        drive(&mut c, &mut now, 500, SLOW * 3, 100);
        assert_eq!(c.rate(), Some(300));
        // At 300/s and 180 ms heights, 54 a height get in (of 100 offered).
        let admitted = drive(&mut c, &mut now, 100, SLOW * 3, 100);
        assert!((5200..=5600).contains(&admitted), "{admitted}");

        // Set while about 1,800/s were admitted: never under a third of that.
        let (mut c, mut now) = learned(AdmissionConfig::default());
        drive(&mut c, &mut now, 40, IDLE, 100);
        let mut lowest = u64::MAX;
        for _ in 0..500 {
            drive(&mut c, &mut now, 1, SLOW, 100);
            lowest = lowest.min(c.rate().unwrap_or(u64::MAX));
        }
        assert!((550..=670).contains(&lowest), "{lowest}");
        assert_eq!(c.rate(), Some(lowest));
    }

    #[test]
    fn later_rounds_and_idle_nodes_do_not_limit_clients() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        drive(&mut c, &mut now, 40, IDLE, 100);
        // A timeout round (a validator down) is not load.
        for _ in 0..30 {
            now += Duration::from_secs(1);
            c.observe_height(now, Duration::from_secs(1), 1, 100);
        }
        assert_eq!(c.rate(), None);
        // Slow blocks carrying 4× what this node's clients send (the load is spread over
        // four validators, or the chain is slowed by something else): no limit.
        let (mut c, mut now) = learned(AdmissionConfig::default());
        for _ in 0..100 {
            for _ in 0..10 {
                now += SLOW / 10;
                assert!(c.admit(now, 10).is_ok());
            }
            c.observe_height(now, SLOW, 0, 400);
        }
        assert_eq!(c.rate(), None);
        // Slow round-0 blocks while this node's clients send nothing: the load is
        // elsewhere, nothing to take from them.
        let (mut c, mut now) = learned(AdmissionConfig::default());
        drive(&mut c, &mut now, 40, SLOW, 0);
        assert_eq!(c.rate(), None);
    }

    #[test]
    fn switched_off_it_admits_everything() {
        let config = AdmissionConfig {
            enabled: false,
            ..AdmissionConfig::default()
        };
        let (mut c, mut now) = learned(config);
        drive(&mut c, &mut now, 40, IDLE, 100);
        assert_eq!(drive(&mut c, &mut now, 100, SLOW * 2, 100), 10_000);
    }

    #[test]
    fn a_few_slow_idle_seconds_do_not_raise_the_reference_but_lasting_ones_do() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        let disturbed = Duration::from_millis(54);
        // A full memory of idle runs, then a few slow ones: the reference does not move.
        idle_runs(&mut c, &mut now, IDLE_BATCHES - 1, IDLE);
        idle_runs(&mut c, &mut now, IDLE_BATCHES / 2 - 1, disturbed);
        assert_eq!(c.idle_us(), Some(50_000));
        // Once most of the memory is slow runs, the reference follows.
        idle_runs(&mut c, &mut now, 1, disturbed);
        assert_eq!(c.idle_us(), Some(54_000));
    }

    #[test]
    fn loaded_blocks_do_not_move_the_idle_reference() {
        let (mut c, mut now) = learned(AdmissionConfig::default());
        drive(&mut c, &mut now, 200, SLOW * 2, 100);
        assert_eq!(c.idle_us(), Some(50_000));
    }
}
