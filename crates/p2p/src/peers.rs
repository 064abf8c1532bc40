//! Peer bookkeeping that needs no socket: static-peer re-dial schedule, invalid-message
//! counts and bans. Time is passed in, so the rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use crate::config::{
    BANNED_PEERS_MAX, BAN_DURATION, INVALID_MESSAGES_WINDOW, REDIAL_BACKOFF_INITIAL,
    REDIAL_BACKOFF_MAX, REDIAL_BACKOFF_RESET_AFTER, SLOW_PEER_DISCONNECT_AFTER, SLOW_PEER_QUIET,
};

/// Peers whose gossip send queue keeps overflowing (gossipsub reports a slow peer at each
/// heartbeat while messages to it are dropped), and since when without a pause.
#[derive(Debug, Default)]
pub(crate) struct SlowPeers {
    /// Peer → (first report of the current stretch, latest report).
    stretches: HashMap<PeerId, (Instant, Instant)>,
}

impl SlowPeers {
    /// Gossipsub reported `peer` slow at `now`; `true` when it has been slow for
    /// [`SLOW_PEER_DISCONNECT_AFTER`] without a pause of [`SLOW_PEER_QUIET`]: disconnect it
    /// (its stretch is forgotten).
    pub(crate) fn report(&mut self, peer: PeerId, now: Instant) -> bool {
        let stretch = self.stretches.entry(peer).or_insert((now, now));
        if now.saturating_duration_since(stretch.1) >= SLOW_PEER_QUIET {
            stretch.0 = now;
        }
        stretch.1 = now;
        if now.saturating_duration_since(stretch.0) >= SLOW_PEER_DISCONNECT_AFTER {
            self.stretches.remove(&peer);
            return true;
        }
        false
    }

    /// `peer` disconnected.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.stretches.remove(peer);
    }

    /// True when gossip to `peer` overflowed within [`SLOW_PEER_QUIET`] before `now`: what
    /// we publish may not reach it.
    pub(crate) fn is_slow(&self, peer: &PeerId, now: Instant) -> bool {
        self.stretches
            .get(peer)
            .is_some_and(|(_, latest)| now.saturating_duration_since(*latest) < SLOW_PEER_QUIET)
    }

    /// Peers tracked (at most the connected ones).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.stretches.len()
    }
}

#[derive(Debug)]
struct StaticPeer {
    address: Multiaddr,
    /// Connected since, or `None` when disconnected.
    connected_since: Option<Instant>,
    dialing: bool,
    next_dial: Instant,
    backoff: Duration,
}

/// Static peers and when each is due to be dialed again.
#[derive(Debug, Default)]
pub(crate) struct StaticPeers {
    peers: HashMap<PeerId, StaticPeer>,
}

impl StaticPeers {
    /// Track `peer` at `address`, due for a dial at `now`.
    pub(crate) fn add(&mut self, peer: PeerId, address: Multiaddr, now: Instant) {
        self.peers.insert(
            peer,
            StaticPeer {
                address,
                connected_since: None,
                dialing: false,
                next_dial: now,
                backoff: REDIAL_BACKOFF_INITIAL,
            },
        );
    }

    /// Peers due for a dial at `now`; they are marked as dialing.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        let mut due = Vec::new();
        for (peer, state) in &mut self.peers {
            if state.connected_since.is_none() && !state.dialing && state.next_dial <= now {
                state.dialing = true;
                due.push((*peer, state.address.clone()));
            }
        }
        due
    }

    /// The first connection to `peer` is up.
    pub(crate) fn on_connected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.connected_since = Some(now);
            state.dialing = false;
        }
    }

    /// The last connection to `peer` closed: schedule a re-dial.
    pub(crate) fn on_disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(state) = self.peers.get_mut(peer) {
            let stable = state.connected_since.is_some_and(|since| {
                now.saturating_duration_since(since) >= REDIAL_BACKOFF_RESET_AFTER
            });
            if stable {
                state.backoff = REDIAL_BACKOFF_INITIAL;
            }
            state.connected_since = None;
            state.dialing = false;
            schedule(state, now);
        }
    }

    /// A dial of `peer` failed: schedule the next one.
    pub(crate) fn on_dial_failed(&mut self, peer: &PeerId, now: Instant) {
        if let Some(state) = self.peers.get_mut(peer) {
            if state.connected_since.is_none() {
                state.dialing = false;
                schedule(state, now);
            }
        }
    }

    /// Do not dial `peer` before `until` (it is banned).
    pub(crate) fn defer(&mut self, peer: &PeerId, until: Instant) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.next_dial = state.next_dial.max(until);
        }
    }

    /// True if `peer` is a static peer.
    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Static peers configured.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Every static peer and its address.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = (&PeerId, &Multiaddr)> {
        self.peers
            .iter()
            .map(|(peer, state)| (peer, &state.address))
    }
}

fn schedule(state: &mut StaticPeer, now: Instant) {
    state.next_dial = now + state.backoff;
    state.backoff = (state.backoff * 2).min(REDIAL_BACKOFF_MAX);
}

#[derive(Debug)]
struct InvalidCount {
    count: u32,
    window_start: Instant,
}

/// Invalid-message counts per peer and the bans they lead to.
#[derive(Debug)]
pub(crate) struct PeerGuard {
    threshold: u32,
    counts: HashMap<PeerId, InvalidCount>,
    bans: HashMap<PeerId, Instant>,
}

/// What [`PeerGuard::record_invalid`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Keep the peer.
    Tolerated,
    /// Ban it until the given instant; `lifted` is a ban ended early to make room.
    Ban {
        until: Instant,
        lifted: Option<PeerId>,
    },
}

impl PeerGuard {
    /// A guard that bans after more than `threshold` invalid messages in a window.
    pub(crate) fn new(threshold: u32) -> Self {
        Self {
            threshold,
            counts: HashMap::new(),
            bans: HashMap::new(),
        }
    }

    /// Count one invalid message from `peer`.
    pub(crate) fn record_invalid(&mut self, peer: PeerId, now: Instant) -> Judgement {
        if self.bans.contains_key(&peer) {
            return Judgement::Tolerated;
        }
        let entry = self.counts.entry(peer).or_insert(InvalidCount {
            count: 0,
            window_start: now,
        });
        if now.saturating_duration_since(entry.window_start) > INVALID_MESSAGES_WINDOW {
            entry.count = 0;
            entry.window_start = now;
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count <= self.threshold {
            return Judgement::Tolerated;
        }
        self.counts.remove(&peer);
        let lifted = self.make_room();
        let until = now + BAN_DURATION;
        self.bans.insert(peer, until);
        Judgement::Ban { until, lifted }
    }

    fn make_room(&mut self) -> Option<PeerId> {
        if self.bans.len() < BANNED_PEERS_MAX {
            return None;
        }
        let soonest = self
            .bans
            .iter()
            .min_by_key(|(_, until)| **until)
            .map(|(peer, _)| *peer)?;
        self.bans.remove(&soonest);
        Some(soonest)
    }

    /// True while `peer` is banned.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    /// Lift the bans that ended by `now` and forget stale counts; returns the unbanned peers.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        self.counts.retain(|_, count| {
            now.saturating_duration_since(count.window_start) <= INVALID_MESSAGES_WINDOW
        });
        let ended: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &ended {
            self.bans.remove(peer);
        }
        ended
    }

    /// Number of peers banned now.
    pub(crate) fn banned(&self) -> usize {
        self.bans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_slow_without_a_pause_is_disconnected_after_the_limit() {
        let mut slow = SlowPeers::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        let heartbeat = Duration::from_millis(200);
        let beats = (SLOW_PEER_DISCONNECT_AFTER.as_millis() / heartbeat.as_millis()) as u32;
        for i in 0..beats {
            assert!(!slow.report(peer, t0 + heartbeat * i), "beat {i}");
        }
        assert!(slow.report(peer, t0 + heartbeat * beats));
        assert_eq!(slow.len(), 0, "forgotten once disconnected");

        // A pause starts the count over.
        let t1 = t0 + Duration::from_secs(60);
        for i in 0..beats {
            assert!(!slow.report(peer, t1 + heartbeat * i));
        }
        let after_pause = t1 + heartbeat * beats + SLOW_PEER_QUIET;
        assert!(!slow.report(peer, after_pause));
        assert!(!slow.report(peer, after_pause + heartbeat));
        // Slow until a quiet period passes since its latest report.
        let latest = after_pause + heartbeat;
        assert!(slow.is_slow(&peer, latest + SLOW_PEER_QUIET / 2));
        assert!(!slow.is_slow(&peer, latest + SLOW_PEER_QUIET));
        assert!(!slow.is_slow(&PeerId::random(), latest));
        slow.forget(&peer);
        assert_eq!(slow.len(), 0);
        assert!(!slow.is_slow(&peer, latest));
    }

    fn address() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/1".parse().unwrap()
    }

    #[test]
    fn static_peer_is_due_at_start_then_backs_off() {
        let start = Instant::now();
        let peer = PeerId::random();
        let mut peers = StaticPeers::default();
        peers.add(peer, address(), start);
        assert_eq!(peers.due(start).len(), 1);
        // Dialing: not due again until the dial resolves.
        assert!(peers.due(start + Duration::from_secs(100)).is_empty());
        peers.on_dial_failed(&peer, start);
        assert!(peers.due(start).is_empty());
        assert_eq!(peers.due(start + REDIAL_BACKOFF_INITIAL).len(), 1);
        // Second failure waits twice as long.
        let t = start + REDIAL_BACKOFF_INITIAL;
        peers.on_dial_failed(&peer, t);
        assert!(peers.due(t + REDIAL_BACKOFF_INITIAL).is_empty());
        assert_eq!(peers.due(t + REDIAL_BACKOFF_INITIAL * 2).len(), 1);
    }

    #[test]
    fn backoff_is_capped() {
        let mut now = Instant::now();
        let peer = PeerId::random();
        let mut peers = StaticPeers::default();
        peers.add(peer, address(), now);
        for _ in 0..40 {
            assert_eq!(peers.due(now + REDIAL_BACKOFF_MAX).len(), 1);
            now += REDIAL_BACKOFF_MAX;
            peers.on_dial_failed(&peer, now);
        }
        assert_eq!(peers.due(now + REDIAL_BACKOFF_MAX).len(), 1);
    }

    #[test]
    fn stable_connection_resets_backoff_flapping_does_not() {
        let start = Instant::now();
        let peer = PeerId::random();
        let mut peers = StaticPeers::default();
        peers.add(peer, address(), start);
        let _ = peers.due(start);
        // Flap three times quickly: backoff grows.
        let mut now = start;
        for _ in 0..3 {
            peers.on_connected(&peer, now);
            peers.on_disconnected(&peer, now);
            let _ = peers.due(now + REDIAL_BACKOFF_MAX);
            now += REDIAL_BACKOFF_MAX;
        }
        peers.on_connected(&peer, now);
        peers.on_disconnected(&peer, now);
        assert!(peers.due(now + REDIAL_BACKOFF_INITIAL).is_empty());
        // A long connection resets it.
        let _ = peers.due(now + REDIAL_BACKOFF_MAX);
        now += REDIAL_BACKOFF_MAX;
        peers.on_connected(&peer, now);
        now += REDIAL_BACKOFF_RESET_AFTER;
        peers.on_disconnected(&peer, now);
        assert_eq!(peers.due(now + REDIAL_BACKOFF_INITIAL).len(), 1);
    }

    #[test]
    fn ban_defers_dial() {
        let start = Instant::now();
        let peer = PeerId::random();
        let mut peers = StaticPeers::default();
        peers.add(peer, address(), start);
        peers.defer(&peer, start + BAN_DURATION);
        assert!(peers.due(start + BAN_DURATION / 2).is_empty());
        assert_eq!(peers.due(start + BAN_DURATION).len(), 1);
    }

    #[test]
    fn ban_after_threshold_and_lift_after_duration() {
        let start = Instant::now();
        let peer = PeerId::random();
        let mut guard = PeerGuard::new(3);
        for _ in 0..3 {
            assert_eq!(guard.record_invalid(peer, start), Judgement::Tolerated);
        }
        let Judgement::Ban { until, lifted } = guard.record_invalid(peer, start) else {
            panic!("expected a ban");
        };
        assert_eq!(until, start + BAN_DURATION);
        assert_eq!(lifted, None);
        assert!(guard.is_banned(&peer));
        assert!(guard.expire(start + BAN_DURATION / 2).is_empty());
        assert_eq!(guard.expire(until), vec![peer]);
        assert!(!guard.is_banned(&peer));
        assert_eq!(guard.banned(), 0);
    }

    #[test]
    fn counts_restart_after_window() {
        let start = Instant::now();
        let peer = PeerId::random();
        let mut guard = PeerGuard::new(2);
        guard.record_invalid(peer, start);
        guard.record_invalid(peer, start);
        let later = start + INVALID_MESSAGES_WINDOW + Duration::from_millis(1);
        assert_eq!(guard.record_invalid(peer, later), Judgement::Tolerated);
        assert_eq!(guard.record_invalid(peer, later), Judgement::Tolerated);
        assert!(matches!(
            guard.record_invalid(peer, later),
            Judgement::Ban { .. }
        ));
    }

    #[test]
    fn ban_list_is_bounded() {
        let start = Instant::now();
        let mut guard = PeerGuard::new(0);
        let first = PeerId::random();
        assert!(matches!(
            guard.record_invalid(first, start),
            Judgement::Ban { lifted: None, .. }
        ));
        for i in 1..BANNED_PEERS_MAX {
            let now = start + Duration::from_millis(i as u64);
            guard.record_invalid(PeerId::random(), now);
        }
        assert_eq!(guard.banned(), BANNED_PEERS_MAX);
        let Judgement::Ban { lifted, .. } =
            guard.record_invalid(PeerId::random(), start + Duration::from_secs(1))
        else {
            panic!("expected a ban");
        };
        assert_eq!(lifted, Some(first));
        assert_eq!(guard.banned(), BANNED_PEERS_MAX);
    }
}

/// Per-peer token buckets for consensus gossip: one peer can take at most its rate of the
/// node's event queue, so a flooding peer cannot crowd out the validators' own messages
/// (seed 001). Integer arithmetic in milli-messages; one bucket per connected peer.
#[derive(Debug)]
pub(crate) struct PeerRates {
    /// Messages per second per peer; 0 = unlimited.
    rate: u64,
    /// Bucket size in messages.
    burst: u64,
    buckets: HashMap<PeerId, (u64, Instant)>,
}

impl PeerRates {
    /// `rate` messages per second per peer (0 = unlimited), bursts of up to `burst`.
    pub(crate) fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate,
            burst: burst.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Take one message's token from `peer`'s bucket; false when it has none left.
    pub(crate) fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let capacity = self.burst.saturating_mul(1000);
        let (tokens, last) = self.buckets.entry(peer).or_insert((capacity, now));
        let elapsed_us =
            u64::try_from(now.saturating_duration_since(*last).as_micros()).unwrap_or(u64::MAX);
        // rate msgs/s = rate milli-messages per ms = rate/1000 milli-messages per µs.
        let refill = elapsed_us.saturating_mul(self.rate) / 1000;
        *tokens = tokens.saturating_add(refill).min(capacity);
        *last = now;
        if *tokens >= 1000 {
            *tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Forget a disconnected peer.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate() {
        let now = Instant::now();
        let peer = PeerId::random();
        let other = PeerId::random();
        let mut rates = PeerRates::new(1000, 100);
        let admitted = (0..150).filter(|_| rates.admit(peer, now)).count();
        assert_eq!(admitted, 100, "burst");
        // Another peer is not affected.
        assert!(rates.admit(other, now));
        // 10 ms later: 10 more.
        let later = now + Duration::from_millis(10);
        let admitted = (0..50).filter(|_| rates.admit(peer, later)).count();
        assert_eq!(admitted, 10);
        // Refill never exceeds the burst.
        let much_later = now + Duration::from_secs(60);
        let admitted = (0..500).filter(|_| rates.admit(peer, much_later)).count();
        assert_eq!(admitted, 100);
        rates.forget(&peer);
        assert!(PeerRates::new(0, 1).admit(peer, now), "0 = unlimited");
    }
}
