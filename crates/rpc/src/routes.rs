//! The router: routes, handlers and admission control.
//!
//! Layers, outermost first: metrics (route template, status, latency) → panic guard → body
//! size limit → per-group admission control (load shed → concurrency limit → deadline) →
//! handler. The `/v1` routes and the CometBFT routes share one concurrency limit. Synchronous
//! node calls that may touch storage run on the blocking pool behind a bounded number of
//! slots, so a slow storage read can stall neither the async workers nor, after its request
//! timed out, pile up without bound; status and account reads (in-memory snapshots) run on
//! the workers.

use crate::api::{BlockAt, NodeApi};
use crate::cometbft::{
    ROUTE_COMET_BLOCK, ROUTE_COMET_BROADCAST_TX_ASYNC, ROUTE_COMET_BROADCAST_TX_COMMIT,
    ROUTE_COMET_BROADCAST_TX_SYNC, ROUTE_COMET_HEALTH, ROUTE_COMET_JSONRPC, ROUTE_COMET_STATUS,
    ROUTE_COMET_TX, ROUTE_COMET_WEBSOCKET,
};
use crate::config::{RpcLimits, OPS_CONCURRENT_REQUESTS_MAX, REQUESTS_PER_CLIENT_BURST_SECONDS};
use crate::error::ApiError;
use crate::json::{
    AccountJson, BlockJson, BookJson, Encoding, ErrorBody, ReceiptJson, SimulateRequest,
    SimulateResponse, SubmitRequest, SubmitResponse, SubmitResult, TxStatusJson,
};
use crate::metrics::{self, RpcMetrics, ShedReason};
use crate::ratelimit::{ClientLimiter, CLIENTS_TRACKED_MAX};
use crate::{cometbft, openapi, ws};
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Json, Router};
use basalt_types::{sha256, Hash, PublicKey, SignedTx};
use base64::Engine;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShedLayer;
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

/// `POST` transactions.
pub const ROUTE_SUBMIT: &str = "/v1/txs";
/// `GET` a transaction's status.
pub const ROUTE_TX: &str = "/v1/txs/{hash}";
/// `GET` a block by height or `latest`.
pub const ROUTE_BLOCK: &str = "/v1/blocks/{height}";
/// `GET` an account with its proof.
pub const ROUTE_ACCOUNT: &str = "/v1/accounts/{address}";
/// `GET` a market's order book.
pub const ROUTE_BOOK: &str = "/v1/markets/{market}/book";
/// `GET` the node status.
pub const ROUTE_STATUS: &str = "/v1/status";
/// `GET` when this node made recent heights durable (`?from=<height>`).
pub const ROUTE_COMMITS: &str = "/v1/commits";
/// Most commit times in one `/v1/commits` answer (ask again from the last height + 1).
pub const COMMIT_TIMES_PAGE_MAX: usize = 1000;
/// `POST` a transaction to dry-run.
pub const ROUTE_SIMULATE: &str = "/v1/simulate";
/// `GET` (WebSocket) block and receipt subscriptions.
pub const ROUTE_SUBSCRIBE: &str = "/v1/subscribe";
/// `GET` Prometheus metrics.
pub const ROUTE_METRICS: &str = "/metrics";
/// `GET` the OpenAPI document.
pub const ROUTE_OPENAPI: &str = "/openapi.json";

/// Every route template the server serves (also the possible `route` metric labels, with
/// [`metrics::UNMATCHED_ROUTE`]).
pub const ROUTES: [&str; 20] = [
    ROUTE_SUBMIT,
    ROUTE_TX,
    ROUTE_BLOCK,
    ROUTE_ACCOUNT,
    ROUTE_BOOK,
    ROUTE_STATUS,
    ROUTE_COMMITS,
    ROUTE_SIMULATE,
    ROUTE_SUBSCRIBE,
    ROUTE_METRICS,
    ROUTE_OPENAPI,
    ROUTE_COMET_JSONRPC,
    ROUTE_COMET_WEBSOCKET,
    ROUTE_COMET_HEALTH,
    ROUTE_COMET_STATUS,
    ROUTE_COMET_BLOCK,
    ROUTE_COMET_TX,
    ROUTE_COMET_BROADCAST_TX_SYNC,
    ROUTE_COMET_BROADCAST_TX_ASYNC,
    ROUTE_COMET_BROADCAST_TX_COMMIT,
];

/// Content type of `/metrics` (OpenMetrics text, what prometheus-client encodes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What every handler shares.
pub(crate) struct Shared<S> {
    pub(crate) api: S,
    pub(crate) limits: RpcLimits,
    pub(crate) metrics: RpcMetrics,
    /// The OpenAPI document, serialized once.
    pub(crate) openapi: Bytes,
    /// One permit per open WebSocket connection.
    pub(crate) ws_slots: Arc<Semaphore>,
    /// One permit per running blocking node call; held until the call returns, even when
    /// the request that made it has timed out.
    pub(crate) blocking_slots: Arc<Semaphore>,
    /// Becomes `true` when the server shuts down (WebSocket sessions close).
    pub(crate) shutdown: watch::Receiver<bool>,
    /// What the CometBFT routes share.
    pub(crate) comet: cometbft::CometState,
}

pub(crate) type AppState<S> = Arc<Shared<S>>;

/// The RPC's HTTP router with admission control, for `api`.
///
/// The router itself has no shutdown signal: WebSocket sessions end when their client or the
/// node's event stream goes away. [`crate::spawn`] serves it with one.
pub fn router<S: NodeApi>(api: S, limits: RpcLimits, metrics: RpcMetrics) -> Router {
    // The sender is dropped at once: the receiver then never reports a shutdown.
    let (_never, shutdown) = watch::channel(false);
    let ws_slots = Arc::new(Semaphore::new(limits.max_ws_connections));
    build_router(api, limits, metrics, shutdown, ws_slots)
}

pub(crate) fn build_router<S: NodeApi>(
    api: S,
    limits: RpcLimits,
    metrics: RpcMetrics,
    shutdown: watch::Receiver<bool>,
    ws_slots: Arc<Semaphore>,
) -> Router {
    let openapi = Bytes::from(openapi::openapi_document().to_string());
    let shared = Arc::new(Shared {
        api,
        ws_slots,
        blocking_slots: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
        openapi,
        shutdown,
        comet: cometbft::CometState::new(),
        limits: limits.clone(),
        metrics: metrics.clone(),
    });
    let timeout = limits.request_timeout();
    // One limit for `/v1` and the CometBFT routes: both reach the same node.
    let api_slots = Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1)));
    let api_routes = Router::new()
        .route(ROUTE_SUBMIT, post(submit_txs::<S>))
        .route(ROUTE_TX, get(tx_status::<S>))
        .route(ROUTE_BLOCK, get(block::<S>))
        .route(ROUTE_ACCOUNT, get(account::<S>))
        .route(ROUTE_BOOK, get(book::<S>))
        .route(ROUTE_STATUS, get(status::<S>))
        .route(ROUTE_COMMITS, get(commit_times::<S>))
        .route(ROUTE_SIMULATE, post(simulate::<S>))
        .route(ROUTE_SUBSCRIBE, get(ws::subscribe::<S>))
        .method_not_allowed_fallback(method_not_allowed);
    let api_routes = with_admission(
        api_routes,
        api_slots.clone(),
        timeout,
        &metrics,
        IntoResponse::into_response,
    );
    let limiter = Arc::new(ClientLimiter::new(
        limits.max_requests_per_client_per_sec,
        limits
            .max_requests_per_client_per_sec
            .saturating_mul(REQUESTS_PER_CLIENT_BURST_SECONDS),
        CLIENTS_TRACKED_MAX,
    ));
    let api_routes = api_routes.layer(middleware::from_fn_with_state(
        (limiter.clone(), metrics.clone()),
        rate_limit,
    ));
    let comet_routes = cometbft::routes::<S>().method_not_allowed_fallback(comet_not_allowed);
    let comet_routes = with_admission(comet_routes, api_slots, timeout, &metrics, |error| {
        cometbft::error_response(&error)
    });
    let comet_routes = comet_routes.layer(middleware::from_fn_with_state(
        (limiter, metrics.clone()),
        rate_limit,
    ));
    let ops_routes = Router::new()
        .route(ROUTE_METRICS, get(metrics_text::<S>))
        .route(ROUTE_OPENAPI, get(openapi_json::<S>))
        .method_not_allowed_fallback(method_not_allowed);
    let ops_slots = Arc::new(Semaphore::new(OPS_CONCURRENT_REQUESTS_MAX));
    let ops_routes = with_admission(
        ops_routes,
        ops_slots,
        timeout,
        &metrics,
        IntoResponse::into_response,
    );
    api_routes
        .merge(comet_routes)
        .merge(ops_routes)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(shared)
}

/// Shed at once when every slot of `in_flight` is taken (503 `overloaded`), and give each
/// request `timeout` (503 `timeout`); `render` shapes the error the way the routes answer.
/// Nothing queues: a full server answers immediately.
fn with_admission<S: NodeApi>(
    routes: Router<AppState<S>>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    metrics: &RpcMetrics,
    render: fn(ApiError) -> Response,
) -> Router<AppState<S>> {
    let metrics = metrics.clone();
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| {
                let metrics = metrics.clone();
                async move { render(shed_response(&metrics, &error)) }
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
            .layer(TimeoutLayer::new(timeout)),
    )
}

fn shed_response(metrics: &RpcMetrics, error: &BoxError) -> ApiError {
    if error.is::<Overloaded>() {
        metrics.shed(ShedReason::Overloaded);
        ApiError::overloaded("too many requests in flight; retry later")
    } else if error.is::<Elapsed>() {
        metrics.shed(ShedReason::Timeout);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ShedReason::Timeout.as_str(),
            "the request did not finish before its deadline",
        )
    } else {
        ApiError::internal(format!("admission control: {error}"))
    }
}

/// A panic anywhere below becomes a 500 `internal` for this request only.
/// 429 `rate_limited` when the client's address is over its rate. Requests without a peer
/// address (a router served without connect info, as in tests) are not limited.
async fn rate_limit(
    State((limiter, metrics)): State<(Arc<ClientLimiter>, RpcMetrics)>,
    request: Request,
    next: Next,
) -> Response {
    if limiter.is_enabled() {
        let client = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        if let Some(client) = client {
            if !limiter.admit(client, std::time::Instant::now()) {
                metrics.shed(ShedReason::RateLimited);
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ShedReason::RateLimited.as_str(),
                    "this client sent more requests per second than the node serves one client",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

async fn catch_panic(request: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("rpc request handler panicked");
            ApiError::internal("the request handler failed").into_response()
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found(format!("no route for {method} {path}"))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on this route"),
    )
}

async fn comet_not_allowed(method: Method) -> Response {
    cometbft::error_response(&method_not_allowed(method).await)
}

/// Run a synchronous node call on the blocking pool, holding a slot until it returns.
pub(crate) async fn run_blocking<S, T, F>(shared: &Shared<S>, call: F) -> Result<T, ApiError>
where
    S: NodeApi,
    T: Send + 'static,
    F: FnOnce(&S) -> T + Send + 'static,
{
    let slot = shared
        .blocking_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::internal("blocking pool closed"))?;
    let api = shared.api.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        call(&api)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "rpc node call failed");
        ApiError::internal("the node failed to answer")
    })
}

pub(crate) fn body_bytes(
    shared: &Shared<impl NodeApi>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            shared.metrics.shed(ShedReason::BodyTooLarge);
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ShedReason::BodyTooLarge.as_str(),
                format!(
                    "request body is larger than {} bytes",
                    shared.limits.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request(format!(
                "could not read the body: {}",
                rejection.body_text()
            ))
        }
    })
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::bad_json(error.to_string()))
}

fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(value)| value)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

/// Bytes from their text encoding.
fn decode_text(encoding: Encoding, text: &str) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Hex => hex::decode(text).map_err(|error| format!("not hex: {error}")),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|error| format!("not base64: {error}")),
    }
}

/// The per-item rejection for bytes that are not a signed transaction.
pub(crate) fn decode_rejection(error: &basalt_types::DecodeError) -> ErrorBody {
    let code = match error {
        basalt_types::DecodeError::InputTooLarge { .. } => "too_large",
        _ => "decode",
    };
    ErrorBody {
        code: code.to_owned(),
        message: format!("not a signed transaction: {error}"),
    }
}

async fn submit_txs<S: NodeApi>(
    State(shared): State<AppState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let body = body_bytes(&shared, body)?;
    let request: SubmitRequest = parse_json(&body)?;
    drop(body);
    if request.txs.is_empty() {
        return Err(ApiError::bad_request("txs is empty"));
    }
    if request.txs.len() > shared.limits.max_txs_per_request {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_txs",
            format!(
                "{} transactions in one request; at most {}",
                request.txs.len(),
                shared.limits.max_txs_per_request
            ),
        ));
    }
    match shared.api.admit(request.txs.len()) {
        Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
        Ok(_) => {}
        Err(why) => {
            shared.metrics.shed(ShedReason::Congested);
            return Err(ApiError::congested(why));
        }
    }
    let mut results: Vec<SubmitResult> = Vec::with_capacity(request.txs.len());
    let mut decoded: Vec<(usize, SignedTx)> = Vec::with_capacity(request.txs.len());
    for (position, text) in request.txs.iter().enumerate() {
        let bytes = decode_text(request.encoding, text)
            .map_err(|why| ApiError::bad_encoding(format!("txs[{position}]: {why}")))?;
        let hash = sha256(&bytes);
        match SignedTx::from_bytes(&bytes) {
            Ok(tx) => {
                decoded.push((position, tx));
                results.push(SubmitResult {
                    hash,
                    accepted: true,
                    error: None,
                });
            }
            Err(error) => results.push(SubmitResult {
                hash,
                accepted: false,
                error: Some(decode_rejection(&error)),
            }),
        }
    }
    drop(request);
    if !decoded.is_empty() {
        let (positions, txs): (Vec<usize>, Vec<SignedTx>) = decoded.into_iter().unzip();
        let mut outcomes = shared.api.submit(txs).await.into_iter();
        for position in positions {
            let Some(result) = results.get_mut(position) else {
                continue;
            };
            match outcomes.next() {
                Some(Ok(_)) => {}
                Some(Err(rejection)) => {
                    result.accepted = false;
                    result.error = Some((&rejection).into());
                }
                None => {
                    result.accepted = false;
                    result.error = Some(ErrorBody {
                        code: "internal".to_owned(),
                        message: "the node returned no result for this transaction".to_owned(),
                    });
                }
            }
        }
    }
    Ok(Json(SubmitResponse { results }))
}

async fn tx_status<S: NodeApi>(
    State(shared): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<TxStatusJson>, ApiError> {
    let text = path_param(path)?;
    let hash = Hash::from_hex(&text)
        .ok_or_else(|| ApiError::bad_encoding("a transaction hash is 64 hex digits"))?;
    let status = run_blocking(&shared, move |api| api.tx_status(hash)).await?;
    Ok(Json(TxStatusJson::new(hash, &status)))
}

async fn block<S: NodeApi>(
    State(shared): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BlockJson>, ApiError> {
    let text = path_param(path)?;
    let at = if text == "latest" {
        BlockAt::Latest
    } else {
        let height = text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("height is a number or \"latest\""))?;
        BlockAt::Height(height)
    };
    let record = run_blocking(&shared, move |api| api.block(at))
        .await?
        .ok_or_else(|| match at {
            BlockAt::Latest => ApiError::not_found("no block committed yet"),
            BlockAt::Height(height) => ApiError::not_found(format!("no block at height {height}")),
        })?;
    Ok(Json(BlockJson::new(
        &record.block,
        record.certificate.as_ref(),
    )))
}

async fn account<S: NodeApi>(
    State(shared): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountJson>, ApiError> {
    let text = path_param(path)?;
    let address = PublicKey::from_hex(&text)
        .ok_or_else(|| ApiError::bad_encoding("an address is 64 hex digits"))?;
    // In memory and quick: answered on this worker (see `NodeApi::account`).
    let record = shared
        .api
        .account(address)
        .ok_or_else(|| ApiError::internal("the node could not build an account proof"))?;
    Ok(Json(AccountJson::new(address, &record)))
}

async fn book<S: NodeApi>(
    State(shared): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BookJson>, ApiError> {
    let text = path_param(path)?;
    let market = text
        .parse::<u32>()
        .map_err(|_| ApiError::bad_request("a market id is a number"))?;
    let book = run_blocking(&shared, move |api| api.book(market))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown market {market}")))?;
    Ok(Json(BookJson::from(&book)))
}

async fn status<S: NodeApi>(State(shared): State<AppState<S>>) -> Result<Response, ApiError> {
    Ok(Json(shared.api.status()).into_response())
}

/// `?from=` of `/v1/commits`.
#[derive(serde::Deserialize)]
struct CommitsQuery {
    #[serde(default)]
    from: u64,
}

/// The `/v1/commits` answer.
#[derive(serde::Serialize)]
struct CommitsJson {
    commits: Vec<crate::api::CommitTime>,
}

async fn commit_times<S: NodeApi>(
    State(shared): State<AppState<S>>,
    query: Result<Query<CommitsQuery>, QueryRejection>,
) -> Result<Json<CommitsJson>, ApiError> {
    let Query(CommitsQuery { from }) =
        query.map_err(|_| ApiError::bad_request("from is a height (a number)"))?;
    let commits = run_blocking(&shared, move |api| {
        api.commit_times(from, COMMIT_TIMES_PAGE_MAX)
    })
    .await?;
    Ok(Json(CommitsJson { commits }))
}

async fn simulate<S: NodeApi>(
    State(shared): State<AppState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SimulateResponse>, ApiError> {
    let body = body_bytes(&shared, body)?;
    let request: SimulateRequest = parse_json(&body)?;
    let bytes = decode_text(request.encoding, &request.tx)
        .map_err(|why| ApiError::bad_encoding(format!("tx: {why}")))?;
    let tx = SignedTx::from_bytes(&bytes).map_err(|error| {
        let body = decode_rejection(&error);
        ApiError::new(StatusCode::BAD_REQUEST, body.code, body.message)
    })?;
    let receipt = run_blocking(&shared, move |api| api.simulate(tx))
        .await?
        .map_err(|rejection| {
            ApiError::new(StatusCode::BAD_REQUEST, rejection.code, rejection.message)
        })?;
    Ok(Json(SimulateResponse {
        receipt: ReceiptJson::from(&receipt),
    }))
}

async fn metrics_text<S: NodeApi>(State(shared): State<AppState<S>>) -> Result<Response, ApiError> {
    let text = run_blocking(&shared, |api| api.metrics_text()).await?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

async fn openapi_json<S: NodeApi>(State(shared): State<AppState<S>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        shared.openapi.clone(),
    )
        .into_response()
}
