//! A CometBFT-compatible JSON-RPC subset, so tools written for CometBFT 0.38 (cosmjs's
//! `Comet38Client`, block explorers, scripts using `curl .../status`) can talk to a node.
//!
//! Served beside `/v1`, behind the same admission control (the API routes' concurrency
//! limit, the body limit and the request deadline; shed answers are JSON-RPC errors):
//!
//! - `POST /`: JSON-RPC 2.0, one request or a batch of at most [`BATCH_REQUESTS_MAX`].
//! - `GET /health`, `/status`, `/block?height=`, `/tx?hash=0x…`, `/broadcast_tx_sync?tx=0x…`,
//!   `/broadcast_tx_async?tx=`, `/broadcast_tx_commit?tx=`: the URI form (id -1).
//! - `GET /websocket`: JSON-RPC over WebSocket, with `subscribe`, `unsubscribe` and
//!   `unsubscribe_all` for `tm.event='NewBlock'` and `tm.event='Tx'`.
//!
//! Transactions are Basalt's canonical `SignedTx` bytes; a transaction's hash is sha256 of
//! them, which is Basalt's own transaction hash. What is not served: every other CometBFT
//! method (`abci_query`, `tx_search`, `validators`, `commit`, ...), other queries, proofs
//! (`prove` is ignored), and hashes Basalt has no counterpart for (they are `""`). Shapes
//! are documented in [`shapes`].

mod http;
mod jsonrpc;
mod methods;
mod shapes;
mod ws;

use crate::api::{BlockAt, BlockEvent, NodeApi};
use crate::error::ApiError;
use crate::routes::{run_blocking, AppState};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use jsonrpc::RpcError;
use serde_json::{json, Value};
use shapes::{hash_hex, BlockIdJson, BlockJson, ChainContext, Earliest, TxResultJson};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `POST` JSON-RPC 2.0.
pub const ROUTE_COMET_JSONRPC: &str = "/";
/// `GET` (WebSocket) JSON-RPC with subscriptions.
pub const ROUTE_COMET_WEBSOCKET: &str = "/websocket";
/// `GET` URI form of `health`.
pub const ROUTE_COMET_HEALTH: &str = "/health";
/// `GET` URI form of `status`.
pub const ROUTE_COMET_STATUS: &str = "/status";
/// `GET` URI form of `block`.
pub const ROUTE_COMET_BLOCK: &str = "/block";
/// `GET` URI form of `tx`.
pub const ROUTE_COMET_TX: &str = "/tx";
/// `GET` URI form of `broadcast_tx_sync`.
pub const ROUTE_COMET_BROADCAST_TX_SYNC: &str = "/broadcast_tx_sync";
/// `GET` URI form of `broadcast_tx_async`.
pub const ROUTE_COMET_BROADCAST_TX_ASYNC: &str = "/broadcast_tx_async";
/// `GET` URI form of `broadcast_tx_commit`.
pub const ROUTE_COMET_BROADCAST_TX_COMMIT: &str = "/broadcast_tx_commit";

/// The URI-form routes; each serves the method of its name.
const URI_ROUTES: [&str; 7] = [
    ROUTE_COMET_HEALTH,
    ROUTE_COMET_STATUS,
    ROUTE_COMET_BLOCK,
    ROUTE_COMET_TX,
    ROUTE_COMET_BROADCAST_TX_SYNC,
    ROUTE_COMET_BROADCAST_TX_ASYNC,
    ROUTE_COMET_BROADCAST_TX_COMMIT,
];

/// Most requests in one JSON-RPC batch. A batch holds one admission slot for all of its
/// calls, so it is kept to what one client plausibly pipelines; more is 413.
pub const BATCH_REQUESTS_MAX: usize = 100;
/// Calls of one batch running at once: a batch may not take more of the blocking pool than
/// a few single requests would.
const BATCH_CALLS_CONCURRENT_MAX: usize = 4;
/// `broadcast_tx_async` submissions admitted in the background at once. Each holds one
/// decoded transaction (at most 64 KiB), so this bounds their memory to 64 MiB; past it
/// the transaction is refused with code `overloaded`.
pub const ASYNC_SUBMITS_MAX: usize = 1024;

/// The CometBFT routes, to be put behind admission control by the caller.
pub(crate) fn routes<S: NodeApi>() -> Router<AppState<S>> {
    let router = Router::new()
        .route(ROUTE_COMET_JSONRPC, post(http::post::<S>))
        .route(ROUTE_COMET_WEBSOCKET, get(ws::upgrade::<S>));
    URI_ROUTES.iter().fold(router, |router, route| {
        router.route(route, get(http::uri::<S>))
    })
}

/// A Basalt API error (admission control, wrong method) as a JSON-RPC error response.
pub(crate) fn error_response(error: &ApiError) -> Response {
    RpcError::from_api(error).into_response_with_id(Value::Null)
}

/// State the CometBFT routes share across requests.
pub(crate) struct CometState {
    async_submits: Arc<Semaphore>,
    /// Block 1's facts, once read (they never change).
    earliest: OnceLock<Earliest>,
    /// The latest block's rendered events, so that N subscribed connections read and render
    /// a block once, not N times.
    latest_events: Mutex<Option<Arc<BlockEvents>>>,
}

impl CometState {
    pub(crate) fn new() -> Self {
        CometState {
            async_submits: Arc::new(Semaphore::new(ASYNC_SUBMITS_MAX)),
            earliest: OnceLock::new(),
            latest_events: Mutex::new(None),
        }
    }

    fn async_submit_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.async_submits.clone().try_acquire_owned().ok()
    }

    fn earliest(&self) -> Option<Earliest> {
        self.earliest.get().copied()
    }

    fn remember_earliest(&self, earliest: Earliest) {
        let _ = self.earliest.set(earliest);
    }

    fn cached_events(&self, event: &BlockEvent) -> Option<Arc<BlockEvents>> {
        let cached = self.latest_events.lock().ok()?.clone()?;
        (cached.height == event.height && cached.block_id == event.block_id).then_some(cached)
    }

    fn cache_events(&self, events: Arc<BlockEvents>) {
        if let Ok(mut latest) = self.latest_events.lock() {
            *latest = Some(events);
        }
    }
}

/// An event query a connection can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    NewBlock,
    Tx,
}

impl EventKind {
    /// In the order their events are sent for a block (CometBFT's: the block, then its
    /// transactions).
    const ALL: [EventKind; 2] = [EventKind::NewBlock, EventKind::Tx];

    fn name(self) -> &'static str {
        match self {
            EventKind::NewBlock => "NewBlock",
            EventKind::Tx => "Tx",
        }
    }

    /// The canonical query, echoed in every event.
    fn query(self) -> &'static str {
        match self {
            EventKind::NewBlock => "tm.event='NewBlock'",
            EventKind::Tx => "tm.event='Tx'",
        }
    }

    /// `tm.event='NewBlock'` or `tm.event='Tx'`, spaces around `=` allowed.
    fn parse(query: &str) -> Option<EventKind> {
        let (key, value) = query.split_once('=')?;
        if key.trim() != "tm.event" {
            return None;
        }
        let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
        EventKind::ALL.into_iter().find(|kind| kind.name() == value)
    }
}

/// The `result` objects of one block's events: the NewBlock one and one per transaction.
struct BlockEvents {
    height: u64,
    block_id: basalt_types::Hash,
    new_block: Value,
    txs: Vec<Value>,
}

/// The rendered events of a committed block, read from the node (once per block for all
/// connections, via the cache).
async fn block_events<S: NodeApi>(
    shared: &AppState<S>,
    event: &BlockEvent,
) -> Result<Arc<BlockEvents>, RpcError> {
    if let Some(cached) = shared.comet.cached_events(event) {
        return Ok(cached);
    }
    let height = event.height;
    let (record, status) = run_blocking(shared, move |api| {
        (api.block(BlockAt::Height(height)), api.status())
    })
    .await
    .map_err(|error| RpcError::from_api(&error))?;
    let record = record
        .filter(|record| record.block.id() == event.block_id)
        .ok_or_else(|| RpcError::not_found(format!("block {height} is not readable")))?;
    let chain = ChainContext {
        chain_id: &status.chain_id,
        validators: &status.validators,
    };
    let results: Vec<TxResultJson> = event.receipts.iter().map(TxResultJson::executed).collect();
    // The state root after this block is the node's latest only while it is the tip.
    let app_hash = if status.height == height {
        base64_of(&status.latest_state_root.0)
    } else {
        String::new()
    };
    let new_block = json!({
        "query": EventKind::NewBlock.query(),
        "data": {
            "type": "tendermint/event/NewBlock",
            "value": {
                "block": BlockJson::new(&record.block, &chain),
                "block_id": BlockIdJson::new(&event.block_id),
                "result_finalize_block": {
                    "events": [],
                    "tx_results": results,
                    "validator_updates": [],
                    "consensus_param_updates": null,
                    "app_hash": app_hash,
                },
            },
        },
        "events": { "tm.event": ["NewBlock"], "block.height": [height.to_string()] },
    });
    let txs = record
        .block
        .txs
        .iter()
        .zip(&results)
        .zip(&event.txs)
        .enumerate()
        .map(|(index, ((tx, result), hash))| {
            json!({
                "query": EventKind::Tx.query(),
                "data": {
                    "type": "tendermint/event/Tx",
                    "value": {
                        "TxResult": {
                            "height": height.to_string(),
                            "index": index,
                            "tx": base64_of(&tx.to_bytes()),
                            "result": result,
                        },
                    },
                },
                "events": {
                    "tm.event": ["Tx"],
                    "tx.hash": [hash_hex(hash)],
                    "tx.height": [height.to_string()],
                },
            })
        })
        .collect();
    let events = Arc::new(BlockEvents {
        height,
        block_id: event.block_id,
        new_block,
        txs,
    });
    shared.comet.cache_events(events.clone());
    Ok(events)
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn queries_parse_strictly() {
        assert_eq!(
            EventKind::parse("tm.event='NewBlock'"),
            Some(EventKind::NewBlock)
        );
        assert_eq!(EventKind::parse(" tm.event = 'Tx' "), Some(EventKind::Tx));
        for other in [
            "tm.event='NewBlockHeader'",
            "tm.event='Tx' AND tx.height=5",
            "tm.event=Tx",
            "tx.height='1'",
            "",
        ] {
            assert_eq!(EventKind::parse(other), None, "{other}");
        }
    }
}
