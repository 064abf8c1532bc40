//! Gateway configuration, its bounds, and upstream URL checks.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Default listen port (below the devnet's first node at 26650).
pub const LISTEN_PORT_DEFAULT: u16 = 26600;
/// Default worker threads of the gateway's own runtime.
pub const WORKER_THREADS_DEFAULT: usize = 2;
/// Default interval between active health checks (`GET /v1/status` on every upstream).
/// Short, so that a dead validator leaves the set within about a second even without
/// traffic to reveal it.
pub const HEALTH_INTERVAL_MS_DEFAULT: u64 = 500;
/// Default deadline of one health check. `/v1/status` is a snapshot read; a node that needs
/// a second for it is not one to send traffic to.
pub const HEALTH_TIMEOUT_MS_DEFAULT: u64 = 1_000;
/// Default consecutive failed health checks that take an upstream out of the set. Two, so
/// one lost check under load does not eject a live node; a failed request ejects at once.
pub const UNHEALTHY_AFTER_DEFAULT: u32 = 2;
/// Default requests in flight at once; one more is answered at once with 503 `overloaded`.
/// Each node admits 256; four nodes behind one gateway.
pub const CONCURRENT_REQUESTS_MAX_DEFAULT: usize = 1024;
/// Default largest request body: the node's own bound (a 10k-transaction batch in hex).
pub const BODY_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// Default deadline of one request through the gateway, all attempts included: under the
/// SDK's 10 s call deadline, so a client hears the gateway's typed answer rather than its
/// own timeout.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 9_000;
/// Default deadline of one attempt on one upstream (until its response headers). A hung
/// node costs at most this before the request moves on.
pub const ATTEMPT_TIMEOUT_MS_DEFAULT: u64 = 4_000;
/// Default most upstreams one request is tried on.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 3;
/// Largest upstream answer the gateway reads whole (submission results, transaction
/// status); other answers are streamed through without being held.
pub const BUFFERED_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest pause between two chunks of a streamed upstream answer before it is cut.
pub const STREAM_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Default most WebSocket clients at once (each holds one upstream connection).
pub const WS_CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Largest WebSocket message a client may send (the node's own bound).
pub const WS_CLIENT_MESSAGE_BYTES_MAX: usize = basalt_rpc::WS_MESSAGE_BYTES_MAX;
/// Largest WebSocket message accepted from an upstream (a receipt of a full batch is tens
/// of KiB; this leaves room for the CometBFT event stream).
pub const WS_UPSTREAM_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Interval between pings to an upstream socket; one silent for three intervals is dead.
pub const WS_PING_INTERVAL_MS: u64 = 5_000;
/// Deadline of one WebSocket send; a peer that takes longer is dropped.
pub const WS_SEND_TIMEOUT_MS: u64 = 10_000;
/// Deadline for opening an upstream WebSocket.
pub const WS_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Default most transactions tracked to their receipts (FIFO by admission; the oldest is
/// forgotten first). About a minute of 1,500 submitted transactions per second.
pub const TRACKED_HASHES_MAX_DEFAULT: usize = 100_000;
/// Default most bytes of stored receipts in the tracker (a receipt of a full batch is tens
/// of KiB, so the count bound alone would not bound memory).
pub const TRACKED_RECEIPT_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;
/// A tracked transaction still pending after this long is no longer watched (it was most
/// likely dropped; asking for it is proxied to the nodes).
pub const TRACKED_PENDING_TTL_MS: u64 = 120_000;
/// Hashes queued between submission and the receipt subscription. Full means the
/// subscription is down or slow; a hash that does not fit is picked up from the tracker
/// when the subscription (re)connects.
pub const WATCH_QUEUE_MAX: usize = 65_536;
/// Most hashes the receipt subscription asks one node to watch: the node's own bound.
pub const WATCHED_PER_CONNECTION_MAX: usize = basalt_rpc::WATCHED_HASHES_MAX_DEFAULT;
/// Hashes per subscribe message: keeps each message well under the node's 1 MiB bound.
pub const HASHES_PER_MESSAGE_MAX: usize = 1_000;
/// Requests in flight at once on `/metrics`, apart from the API's limit so a flood cannot
/// blind the scraper.
pub const OPS_CONCURRENT_REQUESTS_MAX: usize = 8;
/// After shutdown is asked, how long in-flight requests get beyond their own deadline.
pub const SHUTDOWN_GRACE_MS: u64 = 1_000;

/// How to run the gateway ([`crate::spawn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Base URLs of the nodes (`http://host:port`), at least one.
    pub upstreams: Vec<String>,
    /// Worker threads of the gateway's own runtime.
    pub worker_threads: usize,
    /// Interval between health checks, ms.
    pub health_interval_ms: u64,
    /// Deadline of one health check, ms.
    pub health_timeout_ms: u64,
    /// Consecutive failed health checks that eject an upstream.
    pub unhealthy_after: u32,
    /// Requests in flight at once before 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// Largest request body (413 `body_too_large` above).
    pub max_body_bytes: usize,
    /// Deadline of one request, all attempts included, ms (503 `timeout` after).
    pub request_timeout_ms: u64,
    /// Deadline of one attempt on one upstream, ms.
    pub attempt_timeout_ms: u64,
    /// Most upstreams one request is tried on.
    pub attempts_max: u32,
    /// Most WebSocket clients at once.
    pub max_ws_connections: usize,
    /// Most transactions tracked to their receipts.
    pub tracked_hashes_max: usize,
    /// Most bytes of stored receipts.
    pub tracked_receipt_bytes_max: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, LISTEN_PORT_DEFAULT)),
            upstreams: Vec::new(),
            worker_threads: WORKER_THREADS_DEFAULT,
            health_interval_ms: HEALTH_INTERVAL_MS_DEFAULT,
            health_timeout_ms: HEALTH_TIMEOUT_MS_DEFAULT,
            unhealthy_after: UNHEALTHY_AFTER_DEFAULT,
            max_concurrent_requests: CONCURRENT_REQUESTS_MAX_DEFAULT,
            max_body_bytes: BODY_BYTES_MAX_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            attempt_timeout_ms: ATTEMPT_TIMEOUT_MS_DEFAULT,
            attempts_max: ATTEMPTS_MAX_DEFAULT,
            max_ws_connections: WS_CONNECTIONS_MAX_DEFAULT,
            tracked_hashes_max: TRACKED_HASHES_MAX_DEFAULT,
            tracked_receipt_bytes_max: TRACKED_RECEIPT_BYTES_MAX_DEFAULT,
        }
    }
}

impl GatewayConfig {
    /// The default configuration in front of `upstreams`.
    pub fn new<S: AsRef<str>>(upstreams: &[S]) -> Self {
        GatewayConfig {
            upstreams: upstreams
                .iter()
                .map(|url| url.as_ref().to_owned())
                .collect(),
            ..GatewayConfig::default()
        }
    }

    pub(crate) fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms.max(10))
    }

    pub(crate) fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.health_timeout_ms.max(1))
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    pub(crate) fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms.max(1))
    }

    /// Why this configuration cannot run, if it cannot; else the normalized upstream URLs.
    pub fn check(&self) -> Result<Vec<String>, String> {
        if self.upstreams.is_empty() {
            return Err("the gateway needs at least one upstream".into());
        }
        let mut urls = Vec::with_capacity(self.upstreams.len());
        for url in &self.upstreams {
            let url = normalize_upstream(url)?;
            if urls.contains(&url) {
                return Err(format!("upstream {url} is listed twice"));
            }
            urls.push(url);
        }
        if self.attempts_max == 0 || self.unhealthy_after == 0 {
            return Err("attempts_max and unhealthy_after must be at least 1".into());
        }
        if self.max_concurrent_requests == 0 || self.max_ws_connections == 0 {
            return Err("max_concurrent_requests and max_ws_connections must be at least 1".into());
        }
        if self.tracked_hashes_max == 0 {
            return Err("tracked_hashes_max must be at least 1".into());
        }
        Ok(urls)
    }
}

/// `url` without trailing slashes, checked to be a plain `http://host[:port]` base URL (the
/// gateway talks to nodes on a trusted network; it is built without TLS).
pub fn normalize_upstream(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let Some(rest) = trimmed.strip_prefix("http://") else {
        return Err(format!("upstream {url:?} is not an http:// URL"));
    };
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(format!(
            "upstream {url:?} must be a base URL such as http://127.0.0.1:26650"
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_checked() {
        assert_eq!(
            normalize_upstream(" http://127.0.0.1:1/ ").unwrap(),
            "http://127.0.0.1:1"
        );
        assert!(normalize_upstream("https://x").is_err());
        assert!(normalize_upstream("http://").is_err());
        assert!(normalize_upstream("http://x/v1").is_err());
        assert!(normalize_upstream("127.0.0.1:1").is_err());
        let twice = GatewayConfig::new(&["http://a:1", "http://a:1/"]);
        assert!(twice.check().is_err());
        assert!(GatewayConfig::default().check().is_err());
    }
}
