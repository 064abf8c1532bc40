//! How far ahead the network is, from verified messages only.
//!
//! A node syncs when its peers are ahead. "Ahead" must not be a claim any peer can make: a
//! single unverified message for height 10⁹ would otherwise put the node into sync mode for
//! good (buffering every consensus message, fetching from whoever claimed it). So the tip
//! is the highest height that validators holding more than a third of the power have
//! *signed* messages for (at least one of them is honest), and the sync peer is one that
//! relayed such a message recently — never one whose fetch just failed.

use basalt_consensus::ValidatorSet;
use basalt_p2p::PeerId;
use basalt_types::Height;
use std::time::{Duration, Instant};

/// A validator's signed height older than this no longer counts.
pub const TIP_STALE_AFTER: Duration = Duration::from_secs(30);
/// A peer whose fetch failed is not chosen again for this long (when another one is known).
pub const PEER_FAILURE_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Seen {
    height: Height,
    peer: PeerId,
    at: Instant,
}

/// The highest verified height per validator, and who relayed it.
#[derive(Debug, Default)]
pub struct Tips {
    by_validator: Vec<Option<Seen>>,
    failed: Vec<(PeerId, Instant)>,
}

impl Tips {
    /// Validator `validator` signed a message for `height`, relayed by `peer`.
    pub fn record(&mut self, validator: u16, height: Height, peer: PeerId, now: Instant) {
        let index = usize::from(validator);
        if index >= self.by_validator.len() {
            if index >= usize::from(u16::MAX) {
                return;
            }
            self.by_validator.resize(index + 1, None);
        }
        if let Some(slot) = self.by_validator.get_mut(index) {
            let stale = slot.is_none_or(|s| now.saturating_duration_since(s.at) > TIP_STALE_AFTER);
            if stale || slot.is_some_and(|s| height >= s.height) {
                *slot = Some(Seen {
                    height,
                    peer,
                    at: now,
                });
            }
        }
    }

    /// Fetching from `peer` failed.
    pub fn peer_failed(&mut self, peer: PeerId, now: Instant) {
        self.failed.retain(|(p, at)| {
            *p != peer && now.saturating_duration_since(*at) < PEER_FAILURE_BACKOFF
        });
        self.failed.push((peer, now));
    }

    /// The highest height validators with more than a third of the power signed for, and
    /// a peer to fetch it from (the most recent relayer at that height or above, avoiding
    /// peers that just failed when there is another).
    pub fn ahead(&self, validators: &ValidatorSet, now: Instant) -> Option<(PeerId, Height)> {
        let mut seen: Vec<(u16, Seen)> = self
            .by_validator
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = (*s)?;
                (now.saturating_duration_since(s.at) <= TIP_STALE_AFTER)
                    .then(|| u16::try_from(i).ok().map(|i| (i, s)))
                    .flatten()
            })
            .collect();
        seen.sort_by_key(|(_, s)| std::cmp::Reverse(s.height));
        let mut power = 0u64;
        let mut tip = None;
        for (validator, s) in &seen {
            power = power.saturating_add(validators.power(*validator));
            if validators.is_one_third(power) {
                tip = Some(s.height);
                break;
            }
        }
        let tip = tip?;
        let failed = |peer: &PeerId| {
            self.failed.iter().any(|(p, at)| {
                p == peer && now.saturating_duration_since(*at) < PEER_FAILURE_BACKOFF
            })
        };
        let candidates: Vec<&Seen> = seen
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.height >= tip)
            .collect();
        let peer = candidates
            .iter()
            .filter(|s| !failed(&s.peer))
            .max_by_key(|s| s.at)
            .or_else(|| candidates.iter().max_by_key(|s| s.at))?
            .peer;
        Some((peer, tip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_types::{PublicKey, ValidatorInfo};

    fn set(n: u8) -> ValidatorSet {
        ValidatorSet::new(
            (0..n)
                .map(|i| ValidatorInfo {
                    public_key: PublicKey([i; 32]),
                    power: 1,
                })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn one_validator_alone_cannot_claim_the_network_is_ahead() {
        let now = Instant::now();
        let validators = set(4);
        let liar = PeerId::random();
        let honest = PeerId::random();
        let mut tips = Tips::default();
        tips.record(3, 1_000_000, liar, now);
        assert_eq!(
            tips.ahead(&validators, now),
            None,
            "f = 1: one signer is not enough"
        );
        tips.record(1, 20, honest, now);
        // Two validators (> 1/3 of 4): the tip is the lower of the top two heights.
        assert_eq!(tips.ahead(&validators, now), Some((honest, 20)));
        tips.record(2, 25, honest, now);
        assert_eq!(tips.ahead(&validators, now).map(|(_, h)| h), Some(25));
    }

    #[test]
    fn stale_entries_expire_and_failed_peers_are_avoided() {
        let now = Instant::now();
        let validators = set(4);
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut tips = Tips::default();
        tips.record(0, 50, a, now);
        tips.record(1, 50, b, now + Duration::from_millis(1));
        let later = now + Duration::from_millis(2);
        assert_eq!(
            tips.ahead(&validators, later),
            Some((b, 50)),
            "most recent relayer"
        );
        tips.peer_failed(b, later);
        assert_eq!(tips.ahead(&validators, later), Some((a, 50)));
        let much_later = now + TIP_STALE_AFTER + Duration::from_secs(1);
        assert_eq!(tips.ahead(&validators, much_later), None);
        tips.record(9_000, 1, a, now); // an index beyond the set is ignored by ahead()
    }
}
