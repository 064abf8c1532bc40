//! Basalt's RPC: HTTP+JSON API, WebSocket subscriptions, a CometBFT-compatible JSON-RPC
//! subset, OpenAPI document, Prometheus metrics endpoint, behind admission control, on its own
//! runtime.
//!
//! # What it guarantees
//!
//! - **Isolation from consensus.** [`spawn`] runs the server on its own multi-thread tokio
//!   runtime on dedicated OS threads, and calls the node's synchronous reads that may touch
//!   storage on that runtime's bounded blocking pool (status and account reads, from
//!   in-memory snapshots, run on its workers). However much HTTP traffic arrives, no RPC task ever
//!   takes a turn on the node's runtime (see seed 000: a validator whose consensus shared a
//!   runtime with client HTTP doubled its block time under load).
//! - **Admission control, no queues.** At most `max_concurrent_requests` API requests run
//!   at once; the next one is answered at once with 503 `overloaded` (never queued). Each
//!   request has a deadline (503 `timeout`), bodies a size limit (413 `body_too_large`),
//!   submissions a count limit (413 `too_many_txs`), WebSocket connections and their watch
//!   lists a bound. `/metrics` and `/openapi.json` have their own small limit so a flood
//!   cannot blind the scraper. Every shed request is counted in `basalt_rpc_shed_total`.
//! - **Typed errors only.** Every failing response is
//!   `{"error":{"code":"...","message":"..."}}` with a 4xx/5xx status; a panic in a handler
//!   or in the node's code becomes a 500 `internal` for that request only.
//! - **Receipts are not raced.** A WebSocket client that watches a hash already committed
//!   gets its receipt at once; a lagging client is told and its watched hashes re-checked.
//! - **CometBFT tools work.** `POST /` (JSON-RPC 2.0, batches bounded), the URI form
//!   (`GET /status`, `/block?height=`, `/tx?hash=0x…`, `/broadcast_tx_sync?tx=0x…`, ...) and
//!   `GET /websocket` (subscriptions to `tm.event='NewBlock'` and `tm.event='Tx'`) answer
//!   `status`, `block`, `tx`, `broadcast_tx_sync|async|commit` and `health` in CometBFT 0.38's
//!   shapes, behind the same admission control (the `/v1` routes' concurrency limit is
//!   shared). `broadcast_tx_commit` subscribes before submitting and checks the status after,
//!   so it cannot miss the commit; it answers a JSON-RPC error when its wait runs out.
//!
//! # What it does not do
//!
//! - Decide anything or check signatures: the node's [`NodeApi`] does.
//! - Limit TCP connections or slow header senders (hyper's defaults apply); a gateway or
//!   a proxy in front is the place for per-client rate limits.
//! - Serve CometBFT methods beyond that subset (`abci_query`, `tx_search`, `validators`,
//!   `commit`, ...), event queries other than the two above, or proofs; hashes Basalt has no
//!   counterpart for (validators, consensus, results, evidence) are `""`.

mod api;
mod cometbft;
mod config;
mod error;
pub mod json;
mod metrics;
mod openapi;
mod ratelimit;
mod routes;
mod server;
mod ws;

pub use api::{
    AccountRecord, BlockAt, BlockEvent, BlockRecord, CommitTime, NodeApi, NodeStatus, Rejection,
    SyncStatus, TxStatus,
};
pub use cometbft::{
    ASYNC_SUBMITS_MAX, BATCH_REQUESTS_MAX, ROUTE_COMET_BLOCK, ROUTE_COMET_BROADCAST_TX_ASYNC,
    ROUTE_COMET_BROADCAST_TX_COMMIT, ROUTE_COMET_BROADCAST_TX_SYNC, ROUTE_COMET_HEALTH,
    ROUTE_COMET_JSONRPC, ROUTE_COMET_STATUS, ROUTE_COMET_TX, ROUTE_COMET_WEBSOCKET,
};
pub use config::{
    RpcConfig, RpcLimits, BLOCKING_THREADS_MAX, BODY_BYTES_MAX_DEFAULT,
    CONCURRENT_REQUESTS_MAX_DEFAULT, OPS_CONCURRENT_REQUESTS_MAX,
    REQUESTS_PER_CLIENT_BURST_SECONDS, REQUESTS_PER_CLIENT_PER_SEC_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT, SHUTDOWN_GRACE_MS, THREAD_NICENESS_DEFAULT,
    TXS_PER_REQUEST_MAX_DEFAULT, WATCHED_HASHES_MAX_DEFAULT, WORKER_THREADS_DEFAULT,
    WS_CONNECTIONS_MAX_DEFAULT, WS_MESSAGE_BYTES_MAX, WS_SEND_TIMEOUT_MS,
};
pub use error::ApiError;
pub use metrics::{RpcMetrics, ShedReason, UNMATCHED_ROUTE};
pub use openapi::openapi_document;
pub use ratelimit::{ClientLimiter, CLIENTS_TRACKED_MAX};
pub use routes::{
    router, COMMIT_TIMES_PAGE_MAX, METRICS_CONTENT_TYPE, ROUTES, ROUTE_ACCOUNT, ROUTE_BLOCK,
    ROUTE_BOOK, ROUTE_COMMITS, ROUTE_METRICS, ROUTE_OPENAPI, ROUTE_SIMULATE, ROUTE_STATUS,
    ROUTE_SUBMIT, ROUTE_SUBSCRIBE, ROUTE_TX,
};
pub use server::{lower_priority, spawn, RpcHandle, THREAD_NAME};
