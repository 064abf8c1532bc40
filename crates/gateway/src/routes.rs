//! The router: the node's routes, each proxied with failover, plus the gateway's own
//! `/metrics`.
//!
//! Layers, outermost first: metrics (route template, status, latency) → panic guard → body
//! size limit → admission control (load shed → concurrency limit → deadline) → handler.

use crate::config::{GatewayConfig, BUFFERED_RESPONSE_BYTES_MAX, OPS_CONCURRENT_REQUESTS_MAX};
use crate::metrics::{self, AttemptOutcome, EjectReason, GatewayMetrics, ShedReason};
use crate::tracker::Tracker;
use crate::upstream::{send, Attempt, AttemptError, Job, Upstreams};
use crate::{receipts, ws};
use axum::body::{Body, Bytes};
use axum::error_handling::HandleErrorLayer;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{BoxError, Router};
use basalt_rpc::json::{SubmitResponse, TxStatusJson, TxStatusKind};
use basalt_rpc::ApiError;
use basalt_types::Hash;
use futures::FutureExt;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShedLayer;
use tower::timeout::error::Elapsed;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

pub use basalt_rpc::{
    ROUTE_ACCOUNT, ROUTE_BLOCK, ROUTE_BOOK, ROUTE_METRICS, ROUTE_OPENAPI, ROUTE_SIMULATE,
    ROUTE_STATUS, ROUTE_SUBMIT, ROUTE_SUBSCRIBE, ROUTE_TX,
};

/// CometBFT JSON-RPC over HTTP POST.
pub const ROUTE_COMET_RPC: &str = "/";
/// CometBFT `status`.
pub const ROUTE_COMET_STATUS: &str = "/status";
/// CometBFT `block`.
pub const ROUTE_COMET_BLOCK: &str = "/block";
/// CometBFT `tx`.
pub const ROUTE_COMET_TX: &str = "/tx";
/// CometBFT `broadcast_tx_sync`.
pub const ROUTE_COMET_BROADCAST_SYNC: &str = "/broadcast_tx_sync";
/// CometBFT `broadcast_tx_async`.
pub const ROUTE_COMET_BROADCAST_ASYNC: &str = "/broadcast_tx_async";
/// CometBFT `broadcast_tx_commit`.
pub const ROUTE_COMET_BROADCAST_COMMIT: &str = "/broadcast_tx_commit";
/// CometBFT `health`.
pub const ROUTE_COMET_HEALTH: &str = "/health";
/// CometBFT event subscriptions (WebSocket).
pub const ROUTE_COMET_WEBSOCKET: &str = "/websocket";

/// Every route template the gateway serves (also the `route` metric labels, with
/// [`metrics::UNMATCHED_ROUTE`]).
pub const ROUTES: [&str; 19] = [
    ROUTE_SUBMIT,
    ROUTE_TX,
    ROUTE_BLOCK,
    ROUTE_ACCOUNT,
    ROUTE_BOOK,
    ROUTE_STATUS,
    ROUTE_SIMULATE,
    ROUTE_SUBSCRIBE,
    ROUTE_METRICS,
    ROUTE_OPENAPI,
    ROUTE_COMET_RPC,
    ROUTE_COMET_STATUS,
    ROUTE_COMET_BLOCK,
    ROUTE_COMET_TX,
    ROUTE_COMET_BROADCAST_SYNC,
    ROUTE_COMET_BROADCAST_ASYNC,
    ROUTE_COMET_BROADCAST_COMMIT,
    ROUTE_COMET_HEALTH,
    ROUTE_COMET_WEBSOCKET,
];

/// Content type of `/metrics` (OpenMetrics text, what prometheus-client encodes).
pub const METRICS_CONTENT_TYPE: &str = basalt_rpc::METRICS_CONTENT_TYPE;
/// Response header naming the upstream that answered.
pub const UPSTREAM_HEADER: &str = "x-basalt-upstream";
/// Value of [`UPSTREAM_HEADER`] when the gateway answered from its tracker.
pub const FROM_TRACKER: &str = "gateway-tracker";

/// Request headers passed to upstreams (the node API reads nothing else).
const FORWARDED_REQUEST_HEADERS: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::ACCEPT, header::USER_AGENT];

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) config: GatewayConfig,
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) watch_queue: mpsc::Sender<Hash>,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) registry: Arc<Registry>,
    /// One permit per open client WebSocket.
    pub(crate) ws_slots: Arc<Semaphore>,
    /// Becomes `true` when the gateway shuts down (WebSocket bridges close).
    pub(crate) shutdown: watch::Receiver<bool>,
}

pub(crate) type AppState = Arc<Shared>;

/// The gateway's router with admission control.
pub(crate) fn build_router(shared: AppState) -> Router {
    let config = &shared.config;
    let metrics = shared.metrics.clone();
    let timeout = config.request_timeout();
    let comet = || get(proxy).post(proxy);
    let api_routes = Router::new()
        .route(ROUTE_SUBMIT, post(submit))
        .route(ROUTE_TX, get(tx_status))
        .route(ROUTE_BLOCK, get(proxy))
        .route(ROUTE_ACCOUNT, get(proxy))
        .route(ROUTE_BOOK, get(proxy))
        .route(ROUTE_STATUS, get(proxy))
        .route(ROUTE_SIMULATE, post(proxy))
        .route(ROUTE_OPENAPI, get(proxy))
        .route(ROUTE_SUBSCRIBE, get(ws::bridge))
        .route(ROUTE_COMET_RPC, comet())
        .route(ROUTE_COMET_STATUS, comet())
        .route(ROUTE_COMET_BLOCK, comet())
        .route(ROUTE_COMET_TX, comet())
        .route(ROUTE_COMET_BROADCAST_SYNC, comet())
        .route(ROUTE_COMET_BROADCAST_ASYNC, comet())
        .route(ROUTE_COMET_BROADCAST_COMMIT, comet())
        .route(ROUTE_COMET_HEALTH, comet())
        .route(ROUTE_COMET_WEBSOCKET, get(ws::bridge))
        .method_not_allowed_fallback(method_not_allowed);
    let api_routes = with_admission(
        api_routes,
        config.max_concurrent_requests,
        timeout,
        &metrics,
    );
    let ops: MethodRouter<AppState> = get(metrics_text);
    let ops_routes = Router::new()
        .route(ROUTE_METRICS, ops)
        .method_not_allowed_fallback(method_not_allowed);
    let ops_routes = with_admission(ops_routes, OPS_CONCURRENT_REQUESTS_MAX, timeout, &metrics);
    api_routes
        .merge(ops_routes)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(shared)
}

/// Shed at once when `max_in_flight` requests are running (503 `overloaded`), and give each
/// request `timeout` (503 `timeout`). Nothing queues.
fn with_admission(
    routes: Router<AppState>,
    max_in_flight: usize,
    timeout: Duration,
    metrics: &GatewayMetrics,
) -> Router<AppState> {
    let metrics = metrics.clone();
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| {
                let metrics = metrics.clone();
                async move { shed_response(&metrics, &error) }
            }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max_in_flight.max(1)))
            .layer(TimeoutLayer::new(timeout)),
    )
}

fn shed_response(metrics: &GatewayMetrics, error: &BoxError) -> ApiError {
    if error.is::<Overloaded>() {
        metrics.shed(ShedReason::Overloaded);
        ApiError::overloaded("too many requests in flight at the gateway; retry later")
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
async fn catch_panic(request: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("gateway request handler panicked");
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

pub(crate) fn no_healthy_upstream(shared: &Shared) -> ApiError {
    shared.metrics.shed(ShedReason::NoHealthyUpstream);
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ShedReason::NoHealthyUpstream.as_str(),
        format!(
            "none of the {} upstreams is healthy; retry later",
            shared.upstreams.len()
        ),
    )
}

fn body_bytes(shared: &Shared, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            shared.metrics.shed(ShedReason::BodyTooLarge);
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ShedReason::BodyTooLarge.as_str(),
                format!(
                    "request body is larger than {} bytes",
                    shared.config.max_body_bytes
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

/// Whether a request may be sent again to another upstream after a failure that may have
/// reached the first one. Every route the gateway proxies is: reads, dry runs, and
/// submissions of signed bytes (a node refuses a transaction it already has as
/// `duplicate`), including the CometBFT subset (reads and hash-keyed broadcasts).
fn idempotent(method: &Method, route: &'static str) -> bool {
    *method == Method::GET
        || matches!(
            route,
            ROUTE_SUBMIT
                | ROUTE_SIMULATE
                | ROUTE_COMET_RPC
                | ROUTE_COMET_STATUS
                | ROUTE_COMET_BLOCK
                | ROUTE_COMET_TX
                | ROUTE_COMET_BROADCAST_SYNC
                | ROUTE_COMET_BROADCAST_ASYNC
                | ROUTE_COMET_BROADCAST_COMMIT
                | ROUTE_COMET_HEALTH
        )
}

fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = headers.get(&name) {
            out.insert(name, value.clone());
        }
    }
    out
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

/// A request that failed on every upstream tried.
pub(crate) enum Failure {
    /// The gateway's own typed answer.
    Api(ApiError),
    /// The last upstream's own 5xx answer, passed through.
    Upstream(usize, reqwest::Response),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure::Api(error)
    }
}

/// The answer of the upstream that served a request.
pub(crate) struct Forwarded<T> {
    pub(crate) upstream: usize,
    /// Attempts made (more than one: it failed over).
    pub(crate) attempts: u32,
    pub(crate) value: T,
}

/// Send `attempt` to healthy upstreams until one answers below 500, at most
/// `attempts_max` of them, within the request deadline. `finish` turns an answer into the
/// result (reading its body, say); its error counts as a failed attempt too.
///
/// A failed attempt (no answer, a timeout, or a 5xx) takes its upstream out of the set
/// until a health check passes, so the next attempt goes elsewhere whenever another
/// upstream is healthy. A request that is not [`idempotent`] is not tried again.
pub(crate) async fn forward<T, F, Fut>(
    shared: &Shared,
    route: &'static str,
    attempt: Arc<Attempt>,
    finish: F,
) -> Result<Forwarded<T>, Failure>
where
    F: Fn(reqwest::Response) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let upstreams = &shared.upstreams;
    let retry = idempotent(&attempt.method, route);
    let deadline = Instant::now() + shared.config.request_timeout();
    let mut attempts = 0u32;
    let mut last_error = String::from("no attempt made");
    let mut last_answer: Option<(usize, reqwest::Response)> = None;
    while attempts < shared.config.attempts_max {
        if upstreams.healthy_count() == 0 {
            break;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        if attempts > 0 {
            shared.metrics.failover(route);
        }
        attempts += 1;
        let limit = shared.config.attempt_timeout().min(remaining);
        let started = Instant::now();
        let failed = match upstreams.dispatch(Job::Http(attempt.clone()), limit).await {
            Ok((upstream, Some(response))) => {
                let status = response.status();
                let outcome = AttemptOutcome::of_status(status.as_u16());
                if outcome == AttemptOutcome::ServerError {
                    shared.metrics.attempt(
                        route,
                        upstreams.url(upstream),
                        outcome,
                        started.elapsed(),
                    );
                    last_error = format!("{} answered {status}", upstreams.url(upstream));
                    upstreams.eject(upstream, EjectReason::ServerError);
                    last_answer = Some((upstream, response));
                    None
                } else {
                    match tokio::time::timeout(remaining, finish(response)).await {
                        Ok(Ok(value)) => {
                            let label = upstreams.url(upstream);
                            shared
                                .metrics
                                .attempt(route, label, outcome, started.elapsed());
                            return Ok(Forwarded {
                                upstream,
                                attempts,
                                value,
                            });
                        }
                        Ok(Err(error)) => Some((Some(upstream), error)),
                        Err(_) => Some((Some(upstream), AttemptError::Timeout)),
                    }
                }
            }
            Ok((upstream, None)) => {
                Some((Some(upstream), AttemptError::Transport("no answer".into())))
            }
            Err(failed) => Some(failed),
        };
        if let Some((upstream, error)) = failed {
            last_error = error.to_string();
            if let Some(upstream) = upstream {
                let outcome = match error {
                    AttemptError::Timeout => AttemptOutcome::Timeout,
                    AttemptError::Transport(_) => AttemptOutcome::Transport,
                };
                let label = upstreams.url(upstream);
                shared
                    .metrics
                    .attempt(route, label, outcome, started.elapsed());
                last_error = format!("{label}: {error}");
                upstreams.eject(upstream, error.reason());
            }
        }
        if !retry {
            break;
        }
    }
    if let Some((upstream, response)) = last_answer {
        return Err(Failure::Upstream(upstream, response));
    }
    if attempts == 0 {
        if upstreams.healthy_count() == 0 {
            return Err(no_healthy_upstream(shared).into());
        }
        shared.metrics.shed(ShedReason::Timeout);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ShedReason::Timeout.as_str(),
            "the request did not finish before its deadline",
        )
        .into());
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        format!("{attempts} attempt(s) failed; last: {last_error}"),
    )
    .into())
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn upstream_header(label: &str) -> HeaderValue {
    HeaderValue::from_str(label).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Pass an upstream's answer through, streaming its body (a pause longer than
/// [`crate::config::STREAM_IDLE_TIMEOUT_MS`] between chunks cuts it).
pub(crate) fn stream_response(label: &str, response: reqwest::Response) -> Response {
    let status = response.status();
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(UPSTREAM_HEADER, upstream_header(label));
    let idle = Duration::from_millis(crate::config::STREAM_IDLE_TIMEOUT_MS);
    let chunks = futures::stream::unfold(Some(response), move |state| async move {
        let mut response = state?;
        match tokio::time::timeout(idle, response.chunk()).await {
            Ok(Ok(Some(chunk))) => Some((Ok::<Bytes, BoxError>(chunk), Some(response))),
            Ok(Ok(None)) => None,
            Ok(Err(error)) => Some((Err(BoxError::from(error)), None)),
            Err(_) => Some((Err(BoxError::from("upstream answer stalled")), None)),
        }
    });
    let mut out = Response::new(Body::from_stream(chunks));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn failure_response(shared: &Shared, failure: Failure) -> Response {
    match failure {
        Failure::Api(error) => error.into_response(),
        Failure::Upstream(upstream, response) => {
            stream_response(shared.upstreams.url(upstream), response)
        }
    }
}

/// An upstream answer read whole.
pub(crate) struct Buffered {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

/// Read `response` whole, refusing more than [`BUFFERED_RESPONSE_BYTES_MAX`] bytes.
pub(crate) async fn read_whole(mut response: reqwest::Response) -> Result<Buffered, AttemptError> {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > BUFFERED_RESPONSE_BYTES_MAX {
                    return Err(AttemptError::Transport(format!(
                        "answer larger than {BUFFERED_RESPONSE_BYTES_MAX} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return Err(AttemptError::Transport(crate::upstream::describe(&error)));
            }
        }
    }
    Ok(Buffered {
        status,
        content_type,
        body: Bytes::from(body),
    })
}

fn buffered_response(label: &str, buffered: Buffered) -> Response {
    let mut response = Response::new(Body::from(buffered.body));
    *response.status_mut() = buffered.status;
    if let Some(content_type) = buffered.content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
        .headers_mut()
        .insert(UPSTREAM_HEADER, upstream_header(label));
    response
}

fn json_response(label: &str, body: Vec<u8>) -> Response {
    buffered_response(
        label,
        Buffered {
            status: StatusCode::OK,
            content_type: Some(HeaderValue::from_static("application/json")),
            body: Bytes::from(body),
        },
    )
}

/// Any proxied route: forwarded with failover, the answer streamed back.
async fn proxy(
    State(shared): State<AppState>,
    matched: Option<MatchedPath>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = metrics::route_label(matched.as_ref());
    let body = match body_bytes(&shared, body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let attempt = Arc::new(Attempt {
        method,
        path: path_and_query(&uri),
        headers: forwarded_headers(&headers),
        body,
    });
    match forward(
        &shared,
        route,
        attempt,
        |response| async move { Ok(response) },
    )
    .await
    {
        Ok(forwarded) => stream_response(shared.upstreams.url(forwarded.upstream), forwarded.value),
        Err(failure) => failure_response(&shared, failure),
    }
}

/// `POST /v1/txs`: forwarded with failover; admitted hashes are tracked to their receipts.
/// A `duplicate` answer for a transaction this gateway already sent (an earlier attempt of
/// the same request, or an earlier request) means a node has it: it is reported admitted.
async fn submit(
    State(shared): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_bytes(&shared, body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let attempt = Arc::new(Attempt {
        method: Method::POST,
        path: ROUTE_SUBMIT.to_owned(),
        headers: forwarded_headers(&headers),
        body,
    });
    let forwarded = match forward(&shared, ROUTE_SUBMIT, attempt, read_whole).await {
        Ok(forwarded) => forwarded,
        Err(failure) => return failure_response(&shared, failure),
    };
    let label = shared.upstreams.url(forwarded.upstream);
    let buffered = forwarded.value;
    if buffered.status != StatusCode::OK {
        return buffered_response(label, buffered);
    }
    let Ok(mut answer) = serde_json::from_slice::<SubmitResponse>(&buffered.body) else {
        return buffered_response(label, buffered);
    };
    let failed_over = forwarded.attempts > 1;
    for result in &mut answer.results {
        let duplicate = result
            .error
            .as_ref()
            .is_some_and(|error| error.code == "duplicate");
        if !result.accepted
            && duplicate
            && (failed_over || shared.tracker.get(&result.hash).is_some())
        {
            result.accepted = true;
            result.error = None;
            shared.metrics.duplicate_admitted();
        }
        if result.accepted {
            receipts::track(&shared, result.hash);
        }
    }
    match serde_json::to_vec(&answer) {
        Ok(json) => json_response(label, json),
        Err(error) => ApiError::internal(format!("encoding the answer: {error}")).into_response(),
    }
}

/// `GET /v1/txs/{hash}`: from the tracker when its receipt is known; else proxied. An answer
/// other than `committed` is checked with the other healthy upstreams, so that a lagging
/// node cannot deny a commit another node already showed the caller (through its account
/// nonce, say): the first `committed` answer wins.
async fn tx_status(
    State(shared): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let text = match path {
        Ok(Path(text)) => text,
        Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
    };
    let Some(hash) = Hash::from_hex(&text) else {
        return ApiError::bad_encoding("a transaction hash is 64 hex digits").into_response();
    };
    if let Some(json) = shared.tracker.receipt(&hash) {
        shared.metrics.tracker_hit();
        return json_response(FROM_TRACKER, json.to_vec());
    }
    let attempt = Arc::new(Attempt {
        method: Method::GET,
        path: path_and_query(&uri),
        headers: forwarded_headers(&headers),
        body: Bytes::new(),
    });
    let forwarded = match forward(&shared, ROUTE_TX, attempt.clone(), read_whole).await {
        Ok(forwarded) => forwarded,
        Err(failure) => return failure_response(&shared, failure),
    };
    let label = shared.upstreams.url(forwarded.upstream).to_owned();
    let buffered = forwarded.value;
    if buffered.status != StatusCode::OK {
        return buffered_response(&label, buffered);
    }
    if is_committed(&buffered.body) {
        record_commit(&shared, hash, &buffered.body);
        return buffered_response(&label, buffered);
    }
    match committed_elsewhere(&shared, forwarded.upstream, &attempt).await {
        Some((upstream, body)) => {
            record_commit(&shared, hash, &body);
            let label = shared.upstreams.url(upstream);
            json_response(label, body.to_vec())
        }
        None => buffered_response(&label, buffered),
    }
}

fn is_committed(body: &[u8]) -> bool {
    serde_json::from_slice::<TxStatusJson>(body)
        .is_ok_and(|status| status.status == TxStatusKind::Committed)
}

fn record_commit(shared: &Shared, hash: Hash, body: &Bytes) {
    let (recorded, evicted) = shared.tracker.commit(hash, body.clone());
    if recorded {
        shared.metrics.receipt_recorded();
    }
    shared.metrics.evicted(evicted);
    shared.metrics.set_tracked(shared.tracker.len());
}

/// Ask every healthy upstream but `answered` for the same status at once; the first that
/// says committed.
async fn committed_elsewhere(
    shared: &Shared,
    answered: usize,
    attempt: &Arc<Attempt>,
) -> Option<(usize, Bytes)> {
    let upstreams = &shared.upstreams;
    let limit = shared.config.attempt_timeout();
    let asks = upstreams
        .healthy()
        .into_iter()
        .filter(|upstream| *upstream != answered)
        .map(|upstream| {
            let attempt = attempt.clone();
            async move {
                let started = Instant::now();
                let label = upstreams.url(upstream);
                let answer = async {
                    let response = send(upstreams.http(), label, &attempt, limit).await?;
                    read_whole(response).await
                };
                let result = tokio::time::timeout(limit, answer).await;
                let outcome = match &result {
                    Ok(Ok(buffered)) => AttemptOutcome::of_status(buffered.status.as_u16()),
                    Ok(Err(AttemptError::Transport(_))) => AttemptOutcome::Transport,
                    Ok(Err(AttemptError::Timeout)) | Err(_) => AttemptOutcome::Timeout,
                };
                shared
                    .metrics
                    .attempt(ROUTE_TX, label, outcome, started.elapsed());
                match result {
                    Ok(Ok(buffered))
                        if buffered.status == StatusCode::OK && is_committed(&buffered.body) =>
                    {
                        Some((upstream, buffered.body))
                    }
                    _ => None,
                }
            }
        });
    let mut answers: futures::stream::FuturesUnordered<_> = asks.collect();
    while let Some(answer) = futures::StreamExt::next(&mut answers).await {
        if answer.is_some() {
            return answer;
        }
    }
    None
}

async fn metrics_text(State(shared): State<AppState>) -> Response {
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        return ApiError::internal(format!("encoding metrics: {error}")).into_response();
    }
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}
