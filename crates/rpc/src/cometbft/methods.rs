//! The methods served over every transport: `health`, `status`, `block`, `tx` and
//! `broadcast_tx_sync|async|commit`.

use super::jsonrpc::{Params, RpcError};
use super::shapes::{
    hash_hex, status_result, BlockResult, BroadcastCommitResult, BroadcastResult, ChainContext,
    Earliest, TxResult, TxResultJson,
};
use crate::api::{BlockAt, BlockEvent, NodeApi, TxStatus};
use crate::json::ErrorBody;
use crate::metrics::ShedReason;
use crate::routes::{decode_rejection, run_blocking, AppState};
use basalt_types::{sha256, Hash, Receipt, SignedTx};
use futures::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Methods that only make sense on a WebSocket.
pub(crate) const WEBSOCKET_METHODS: [&str; 3] = ["subscribe", "unsubscribe", "unsubscribe_all"];

/// How much of the request deadline `broadcast_tx_commit` leaves for answering: its wait for
/// the block ends this much before the deadline, so the client gets CometBFT's timeout error
/// rather than admission control's 503.
const COMMIT_WAIT_MARGIN_MS: u64 = 500;

/// Run one method. A panic inside (in the node's code, say) fails this call only.
pub(crate) async fn call<S: NodeApi>(
    shared: &AppState<S>,
    method: &str,
    params: &Params,
) -> Result<Value, RpcError> {
    match AssertUnwindSafe(dispatch(shared, method, params))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!(method, "cometbft rpc method panicked");
            Err(RpcError::internal("the request handler failed"))
        }
    }
}

async fn dispatch<S: NodeApi>(
    shared: &AppState<S>,
    method: &str,
    params: &Params,
) -> Result<Value, RpcError> {
    match method {
        "health" => Ok(json!({})),
        "status" => status(shared).await,
        "block" => block(shared, params).await,
        "tx" => tx(shared, params).await,
        "broadcast_tx_sync" => broadcast_sync(shared, params).await,
        "broadcast_tx_async" => broadcast_async(shared, params).await,
        "broadcast_tx_commit" => broadcast_commit(shared, params).await,
        _ if WEBSOCKET_METHODS.contains(&method) => {
            let mut error = RpcError::method_not_found(method);
            error.data = format!("{method} is served over the WebSocket at /websocket");
            Err(error)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn to_value(result: impl Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(result).map_err(|error| RpcError::internal(error.to_string()))
}

/// A synchronous node call on the blocking pool, its failure as a JSON-RPC error.
async fn blocking<S, T, F>(shared: &AppState<S>, call: F) -> Result<T, RpcError>
where
    S: NodeApi,
    T: Send + 'static,
    F: FnOnce(&S) -> T + Send + 'static,
{
    run_blocking(shared, call)
        .await
        .map_err(|error| RpcError::from_api(&error))
}

async fn status<S: NodeApi>(shared: &AppState<S>) -> Result<Value, RpcError> {
    let known = shared.comet.earliest();
    let (status, earliest) = blocking(shared, move |api| {
        let status = api.status();
        let earliest = known.or_else(|| {
            (status.height > 0)
                .then(|| api.block(BlockAt::Height(1)))
                .flatten()
                .map(|record| Earliest::of(&record.block))
        });
        (status, earliest)
    })
    .await?;
    if let Some(earliest) = earliest {
        shared.comet.remember_earliest(earliest);
    }
    Ok(status_result(&status, earliest.as_ref()))
}

async fn block<S: NodeApi>(shared: &AppState<S>, params: &Params) -> Result<Value, RpcError> {
    let at = params
        .height("height", 0)?
        .map_or(BlockAt::Latest, BlockAt::Height);
    let (record, status) = blocking(shared, move |api| (api.block(at), api.status())).await?;
    let Some(record) = record else {
        return Err(match at {
            BlockAt::Latest => RpcError::not_found("no block committed yet"),
            BlockAt::Height(height) if height > status.height => RpcError::not_found(format!(
                "height {height} must be less than or equal to the current blockchain height {}",
                status.height
            )),
            BlockAt::Height(height) => {
                RpcError::not_found(format!("block at height {height} is not available"))
            }
        });
    };
    let chain = ChainContext {
        chain_id: &status.chain_id,
        validators: &status.validators,
    };
    to_value(BlockResult::new(&record, &chain))
}

async fn tx<S: NodeApi>(shared: &AppState<S>, params: &Params) -> Result<Value, RpcError> {
    let hash = params.hash("hash", 0)?;
    let found = blocking(shared, move |api| match api.tx_status(hash) {
        TxStatus::Committed {
            height,
            index,
            receipt,
        } => Some((height, index, receipt, api.block(BlockAt::Height(height)))),
        _ => None,
    })
    .await?;
    let Some((height, index, receipt, record)) = found else {
        return Err(RpcError::not_found(format!(
            "tx ({}) not found",
            hash_hex(&hash)
        )));
    };
    let bytes = record
        .and_then(|record| {
            let tx = record
                .block
                .txs
                .as_slice()
                .get(usize::try_from(index).ok()?)?;
            Some(tx.to_bytes())
        })
        .filter(|bytes| sha256(bytes) == hash)
        .ok_or_else(|| {
            RpcError::internal(format!(
                "tx ({}) is committed at height {height} but its block is not readable",
                hash_hex(&hash)
            ))
        })?;
    to_value(TxResult::new(&hash, height, index, &receipt, &bytes))
}

/// Ask the node to admit one transaction: after its wait, `None`; or its refusal while
/// the node limits admission.
async fn admit_one<S: NodeApi>(shared: &AppState<S>) -> Option<TxResultJson> {
    match shared.api.admit(1) {
        Ok(wait) => {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            None
        }
        Err(why) => {
            shared.metrics.shed(ShedReason::Congested);
            Some(TxResultJson::refused(&ErrorBody {
                code: "congested".to_owned(),
                message: why,
            }))
        }
    }
}

/// Decode, then admit to the mempool: CometBFT's `CheckTx`, as a result code.
async fn check_tx<S: NodeApi>(shared: &AppState<S>, tx: SignedTx) -> TxResultJson {
    if let Some(refused) = admit_one(shared).await {
        return refused;
    }
    match shared.api.submit(vec![tx]).await.into_iter().next() {
        Some(Ok(_)) => TxResultJson::ok(),
        Some(Err(rejection)) => TxResultJson::rejected(&rejection),
        None => TxResultJson::refused(&ErrorBody {
            code: "internal".to_owned(),
            message: "the node returned no result for this transaction".to_owned(),
        }),
    }
}

/// The transaction, or why bytes are not one.
fn decode_tx(bytes: &[u8]) -> Result<SignedTx, ErrorBody> {
    SignedTx::from_bytes(bytes).map_err(|error| decode_rejection(&error))
}

async fn broadcast_sync<S: NodeApi>(
    shared: &AppState<S>,
    params: &Params,
) -> Result<Value, RpcError> {
    let bytes = params.bytes("tx", 0)?;
    let hash = sha256(&bytes);
    let check = match decode_tx(&bytes) {
        Ok(tx) => check_tx(shared, tx).await,
        Err(why) => TxResultJson::refused(&why),
    };
    to_value(BroadcastResult::new(check, &hash))
}

/// Answer at once; admit in the background, at most a bounded number at a time (past the
/// bound the transaction is refused with code `overloaded`).
async fn broadcast_async<S: NodeApi>(
    shared: &AppState<S>,
    params: &Params,
) -> Result<Value, RpcError> {
    let bytes = params.bytes("tx", 0)?;
    let hash = sha256(&bytes);
    let tx = match decode_tx(&bytes) {
        Ok(tx) => tx,
        Err(why) => return to_value(BroadcastResult::new(TxResultJson::refused(&why), &hash)),
    };
    let check = if let Some(refused) = admit_one(shared).await {
        refused
    } else if let Some(slot) = shared.comet.async_submit_slot() {
        let api = shared.api.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // The node remembers a rejection; `tx` and `/v1/txs/{hash}` report it.
            let _ = api.submit(vec![tx]).await;
        });
        TxResultJson::ok()
    } else {
        shared.metrics.shed(ShedReason::Overloaded);
        TxResultJson::refused(&ErrorBody {
            code: "overloaded".to_owned(),
            message: "too many asynchronous submissions in flight".to_owned(),
        })
    };
    to_value(BroadcastResult::new(check, &hash))
}

/// How long `broadcast_tx_commit` waits for the block, from the start of the call.
fn commit_wait(shared: &AppState<impl NodeApi>) -> Duration {
    let timeout = shared.limits.request_timeout();
    let margin = Duration::from_millis(COMMIT_WAIT_MARGIN_MS).min(timeout / 2);
    timeout.saturating_sub(margin)
}

/// Admit, then wait for the block that commits the transaction. The event stream is
/// subscribed before the transaction is submitted, and the status is checked after: a
/// commit that happens at any moment is seen by one or the other.
async fn broadcast_commit<S: NodeApi>(
    shared: &AppState<S>,
    params: &Params,
) -> Result<Value, RpcError> {
    let deadline = Instant::now() + commit_wait(shared);
    let bytes = params.bytes("tx", 0)?;
    let hash = sha256(&bytes);
    let tx = match decode_tx(&bytes) {
        Ok(tx) => tx,
        Err(why) => {
            let refused = TxResultJson::refused(&why);
            return to_value(BroadcastCommitResult::refused(refused, &hash));
        }
    };
    let mut events = shared.api.subscribe();
    let check = check_tx(shared, tx).await;
    if check.code() != 0 {
        return to_value(BroadcastCommitResult::refused(check, &hash));
    }
    let (height, receipt) = wait_committed(shared, hash, &mut events, deadline).await?;
    to_value(BroadcastCommitResult::committed(&hash, height, &receipt))
}

async fn committed_status<S: NodeApi>(
    shared: &AppState<S>,
    hash: Hash,
) -> Result<Option<(u64, Receipt)>, RpcError> {
    let status = blocking(shared, move |api| api.tx_status(hash)).await?;
    Ok(match status {
        TxStatus::Committed {
            height, receipt, ..
        } => Some((height, receipt)),
        _ => None,
    })
}

fn find_in(event: &BlockEvent, hash: &Hash) -> Option<(u64, Receipt)> {
    let position = event.txs.iter().position(|candidate| candidate == hash)?;
    let receipt = event.receipts.get(position)?.clone();
    Some((event.height, receipt))
}

async fn wait_committed<S: NodeApi>(
    shared: &AppState<S>,
    hash: Hash,
    events: &mut broadcast::Receiver<Arc<BlockEvent>>,
    deadline: Instant,
) -> Result<(u64, Receipt), RpcError> {
    if let Some(found) = committed_status(shared, hash).await? {
        return Ok(found);
    }
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Err(RpcError::internal(
                    "timed out waiting for tx to be included in a block",
                ))
            }
            Ok(Ok(event)) => {
                if let Some(found) = find_in(&event, &hash) {
                    return Ok(found);
                }
            }
            // Missed events may have carried it: ask the node.
            Ok(Err(RecvError::Lagged(_))) => {
                if let Some(found) = committed_status(shared, hash).await? {
                    return Ok(found);
                }
            }
            Ok(Err(RecvError::Closed)) => {
                return Err(RpcError::internal("the node's event stream closed"))
            }
        }
    }
}
