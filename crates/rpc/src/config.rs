//! Server configuration and the limits that admission control enforces.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Default RPC worker threads. Two keep HTTP parsing and JSON off one core while leaving the
/// node's consensus runtime its own threads on a small machine.
pub const WORKER_THREADS_DEFAULT: usize = 2;
/// Default requests in flight at once; one more is shed at once with 503 `overloaded`.
pub const CONCURRENT_REQUESTS_MAX_DEFAULT: usize = 256;
/// Default largest request body: a 10k-transaction batch of small transfers in hex fits.
pub const BODY_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// Default request deadline; a request still running then gets 503 `timeout`.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default most transactions in one `POST /v1/txs` (one block's worth at most).
pub const TXS_PER_REQUEST_MAX_DEFAULT: usize = 10_000;
/// Most WebSocket connections at once. Each holds a broadcast receiver and a watch set;
/// this bounds their memory and the per-block fan-out work.
pub const WS_CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Most transaction hashes one WebSocket connection may watch for receipts.
pub const WATCHED_HASHES_MAX_DEFAULT: usize = 10_000;
/// Requests in flight at once on the operations routes (`/metrics`, `/openapi.json`). They
/// have their own small limit so that an API flood cannot hide itself from the scraper.
pub const OPS_CONCURRENT_REQUESTS_MAX: usize = 8;
/// Largest WebSocket message a client may send: a full watch list (10k hashes of 64 hex
/// digits plus quotes and commas is ~670 KiB) fits.
pub const WS_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// How long one WebSocket send may take before the connection is dropped as dead.
pub const WS_SEND_TIMEOUT_MS: u64 = 10_000;
/// Threads for blocking node calls (storage reads, proofs) on the RPC runtime.
pub const BLOCKING_THREADS_MAX: usize = 32;
/// Default requests per second one client address may make (0 = unlimited); above, 429
/// `rate_limited`. High enough for a gateway or a load generator in front of the node,
/// low enough that one client cannot take the whole RPC.
pub const REQUESTS_PER_CLIENT_PER_SEC_DEFAULT: u64 = 5_000;
/// Default OS niceness of the RPC threads: under CPU pressure the node's consensus threads
/// (niceness 0) get about ten times their share.
pub const THREAD_NICENESS_DEFAULT: u8 = 10;
/// A client may burst this many seconds' worth of its rate.
pub const REQUESTS_PER_CLIENT_BURST_SECONDS: u64 = 2;
/// After shutdown is asked, how long in-flight requests get beyond their own deadline.
pub const SHUTDOWN_GRACE_MS: u64 = 1_000;

/// How to run the RPC server ([`crate::spawn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Address to listen on; port 0 picks a free port ([`crate::RpcHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Worker threads of the RPC's own runtime.
    pub worker_threads: usize,
    /// Requests in flight at once before shedding with 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// Largest request body in bytes (413 `body_too_large` above).
    pub max_body_bytes: usize,
    /// Per-request deadline in ms (503 `timeout` after).
    pub request_timeout_ms: u64,
    /// Most transactions in one submit request (413 `too_many_txs` above).
    pub max_txs_per_request: usize,
    /// Requests per second one client address may make (429 `rate_limited` above); 0 =
    /// unlimited.
    pub max_requests_per_client_per_sec: u64,
    /// OS niceness of the RPC's threads (0..=19; 0 = the process's own).
    pub thread_niceness: u8,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 26657)),
            worker_threads: WORKER_THREADS_DEFAULT,
            max_concurrent_requests: CONCURRENT_REQUESTS_MAX_DEFAULT,
            max_body_bytes: BODY_BYTES_MAX_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            max_txs_per_request: TXS_PER_REQUEST_MAX_DEFAULT,
            max_requests_per_client_per_sec: REQUESTS_PER_CLIENT_PER_SEC_DEFAULT,
            thread_niceness: THREAD_NICENESS_DEFAULT,
        }
    }
}

/// The limits [`crate::router`] enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcLimits {
    /// Requests in flight at once on the API routes before shedding.
    pub max_concurrent_requests: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Per-request deadline in ms.
    pub request_timeout_ms: u64,
    /// Most transactions in one submit request.
    pub max_txs_per_request: usize,
    /// Most WebSocket connections at once (503 `overloaded` above).
    pub max_ws_connections: usize,
    /// Most hashes one WebSocket connection may watch.
    pub max_watched_hashes: usize,
    /// Requests per second one client address may make; 0 = unlimited.
    pub max_requests_per_client_per_sec: u64,
}

impl RpcLimits {
    /// The request deadline as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits::from(&RpcConfig::default())
    }
}

impl From<&RpcConfig> for RpcLimits {
    fn from(config: &RpcConfig) -> Self {
        RpcLimits {
            max_concurrent_requests: config.max_concurrent_requests,
            max_body_bytes: config.max_body_bytes,
            request_timeout_ms: config.request_timeout_ms,
            max_txs_per_request: config.max_txs_per_request,
            max_ws_connections: WS_CONNECTIONS_MAX_DEFAULT,
            max_watched_hashes: WATCHED_HASHES_MAX_DEFAULT,
            max_requests_per_client_per_sec: config.max_requests_per_client_per_sec,
        }
    }
}
