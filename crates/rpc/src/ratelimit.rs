//! Per-client request rate limiting: one token bucket per client IP address, so that one
//! client's flood is answered 429 `rate_limited` while every other client is served (seed
//! 000: one client's traffic must not take a validator's RPC, nor its consensus, down).
//!
//! Integer arithmetic in milli-requests. The table of clients is bounded: when it is full,
//! clients whose bucket is full again (idle long enough) are forgotten; if none is, a new
//! client is refused until one is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients tracked at most.
pub const CLIENTS_TRACKED_MAX: usize = 65_536;

/// Token buckets by client address.
#[derive(Debug)]
pub struct ClientLimiter {
    /// Requests per second per client; 0 = unlimited.
    rate: u64,
    /// Bucket size in requests.
    burst: u64,
    capacity: usize,
    buckets: Mutex<HashMap<IpAddr, (u64, Instant)>>,
}

impl ClientLimiter {
    /// `rate` requests per second per client address (0 = unlimited), bursts of `burst`,
    /// at most `capacity` clients tracked.
    pub fn new(rate: u64, burst: u64, capacity: usize) -> ClientLimiter {
        ClientLimiter {
            rate,
            burst: burst.max(1),
            capacity: capacity.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// True when the limiter limits anything.
    pub fn is_enabled(&self) -> bool {
        self.rate > 0
    }

    /// Take one request's token from `client`'s bucket; false when it has none left.
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let full = self.burst.saturating_mul(1000);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&client) && buckets.len() >= self.capacity {
            let rate = self.rate;
            buckets.retain(|_, (tokens, last)| refill(*tokens, *last, now, rate, full) < full);
            if buckets.len() >= self.capacity {
                return false;
            }
        }
        let (tokens, last) = buckets.entry(client).or_insert((full, now));
        *tokens = refill(*tokens, *last, now, self.rate, full);
        *last = now;
        if *tokens >= 1000 {
            *tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// `tokens` (milli-requests) after refilling at `rate` per second since `last`.
fn refill(tokens: u64, last: Instant, now: Instant, rate: u64, full: u64) -> u64 {
    let elapsed_us =
        u64::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u64::MAX);
    tokens
        .saturating_add(elapsed_us.saturating_mul(rate) / 1000)
        .min(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_client_is_limited_the_others_are_not() {
        let now = Instant::now();
        let limiter = ClientLimiter::new(100, 10, 16);
        let admitted = (0..50).filter(|_| limiter.admit(ip(1), now)).count();
        assert_eq!(admitted, 10, "the burst");
        assert!(limiter.admit(ip(2), now), "another client is served");
        let later = now + Duration::from_millis(100);
        let admitted = (0..50).filter(|_| limiter.admit(ip(1), later)).count();
        assert_eq!(admitted, 10, "100/s for 100 ms");
        assert!(
            ClientLimiter::new(0, 1, 1).admit(ip(1), now),
            "0 = unlimited"
        );
    }

    #[test]
    fn the_client_table_is_bounded() {
        let now = Instant::now();
        let limiter = ClientLimiter::new(1, 1, 4);
        for i in 0..4 {
            assert!(limiter.admit(ip(i), now));
        }
        // Full, and every bucket is empty (just used): a new client waits.
        assert!(!limiter.admit(ip(9), now));
        assert_eq!(limiter.tracked(), 4);
        // A second later the buckets are full again: idle clients are forgotten.
        assert!(limiter.admit(ip(9), now + Duration::from_secs(1)));
        assert!(limiter.tracked() <= 4);
    }
}
