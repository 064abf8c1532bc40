//! Basalt's gateway: one endpoint with the node's API in front of every validator. Health
//! checks, power-of-two-choices balancing, failover, and tracking of submitted
//! transactions to their receipts.
//!
//! Seed 000 is why it exists: when every client talks to one validator, that validator's
//! consensus work waits behind HTTP and the whole network's block time doubles. Clients of
//! the gateway spread over every healthy validator instead.
//!
//! # What it guarantees
//!
//! - **Balance over healthy upstreams.** Requests go to one upstream picked by tower's
//!   p2c balancer (the less loaded of two random healthy upstreams, load = attempts in
//!   flight) over a discovered set. An active health check (`GET /v1/status` every
//!   `health_interval_ms`) takes an upstream out after `unhealthy_after` failures in a row
//!   (or while it syncs) and puts it back after one success. No single validator takes the
//!   whole load.
//! - **Failover.** An attempt that gets no answer, times out or gets a 5xx takes its
//!   upstream out at once (never the last one; the next passing health check brings it
//!   back) and the request is sent again, to another upstream, at most `attempts_max`
//!   times within the request deadline. Every proxied route is idempotent: reads, dry runs,
//!   and submissions of signed bytes, which nodes deduplicate by hash. A `duplicate` answer
//!   for a transaction the gateway already sent is reported to the caller as admitted.
//! - **Receipt tracking.** Transactions admitted through the gateway are tracked (bounded,
//!   FIFO) and watched over one WebSocket subscription to a healthy upstream that fails
//!   over when it drops; `GET /v1/txs/{hash}` answers from the tracker once the receipt is
//!   known, else asks the nodes (an answer other than `committed` is checked with every
//!   healthy upstream, so a lagging node cannot deny a commit another node showed).
//! - **WebSockets.** Each client socket on `/v1/subscribe` or `/websocket` is bridged to its
//!   own socket on a healthy upstream; when that upstream goes away the client's socket is
//!   closed with code 1012 and a reason, so the client reconnects (the SDK re-subscribes).
//! - **Admission control and typed errors.** Like the node's RPC: a concurrency limit that
//!   sheds at once (503 `overloaded`), a request deadline (503 `timeout`), a body limit
//!   (413 `body_too_large`), a WebSocket limit; 503 `no_healthy_upstream` when every
//!   upstream is down; 502 `upstream_failed` when every attempt failed. Every error body is
//!   `{"error":{"code","message"}}`; a panic in a handler is a 500 for that request only.
//!   Every queue and map is bounded.
//! - **Its own metrics** on `/metrics` (never proxied): see [`GatewayMetrics`].
//!
//! # What it does not do
//!
//! - TLS, authentication or per-client rate limits.
//! - Translate `duplicate` answers of the CometBFT routes (they pass through as the node
//!   wrote them), or fail over in the middle of a streamed answer or a WebSocket session
//!   (the client reconnects).
//! - Guarantee that two requests of one client reach the same node: reads of different
//!   nodes may be at different heights.

mod config;
mod metrics;
mod receipts;
mod routes;
mod server;
#[cfg(test)]
mod tests;
mod tracker;
mod upstream;
mod ws;

pub use config::{
    normalize_upstream, GatewayConfig, ATTEMPTS_MAX_DEFAULT, ATTEMPT_TIMEOUT_MS_DEFAULT,
    BODY_BYTES_MAX_DEFAULT, BUFFERED_RESPONSE_BYTES_MAX, CONCURRENT_REQUESTS_MAX_DEFAULT,
    HEALTH_INTERVAL_MS_DEFAULT, HEALTH_TIMEOUT_MS_DEFAULT, LISTEN_PORT_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT, TRACKED_HASHES_MAX_DEFAULT, TRACKED_RECEIPT_BYTES_MAX_DEFAULT,
    UNHEALTHY_AFTER_DEFAULT, WORKER_THREADS_DEFAULT, WS_CONNECTIONS_MAX_DEFAULT,
};
pub use metrics::{AttemptOutcome, EjectReason, GatewayMetrics, ShedReason, UNMATCHED_ROUTE};
pub use routes::{
    FROM_TRACKER, METRICS_CONTENT_TYPE, ROUTES, ROUTE_COMET_BLOCK, ROUTE_COMET_BROADCAST_ASYNC,
    ROUTE_COMET_BROADCAST_COMMIT, ROUTE_COMET_BROADCAST_SYNC, ROUTE_COMET_HEALTH, ROUTE_COMET_RPC,
    ROUTE_COMET_STATUS, ROUTE_COMET_TX, ROUTE_COMET_WEBSOCKET, UPSTREAM_HEADER,
};
pub use server::{spawn, GatewayHandle, THREAD_NAME};
pub use tracker::{Tracked, Tracker};
