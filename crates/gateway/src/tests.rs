//! The gateway against mock nodes on loopback: health ejection and readmission, failover
//! from a dead upstream, duplicate-as-admitted, receipt tracking, spread, typed errors,
//! WebSocket bridges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use basalt_rpc::json::{
    ErrorBody, ErrorResponse, ReceiptJson, ReceiptStatusJson, ServerMessage, SubmitRequest,
    SubmitResponse, SubmitResult, TxStatusJson, TxStatusKind,
};
use basalt_rpc::{NodeStatus, SyncStatus};
use basalt_types::{sha256, Hash};
use futures::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as ClientMessage;

/// What mock nodes share: one "network" mempool, and a one-shot fault.
#[derive(Default)]
struct World {
    mempool: Mutex<HashSet<Hash>>,
    /// The next admission answers 503 `timeout` after admitting (a node whose own deadline
    /// passed while it worked).
    fail_after_admit: AtomicBool,
}

struct MockState {
    world: Arc<World>,
    healthy: AtomicBool,
    requests: AtomicU64,
    /// Hashes this node says are committed.
    committed: Mutex<HashSet<Hash>>,
}

type Mocked = Arc<MockState>;

/// A mock node on its own runtime; [`Mock::kill`] drops every task and socket at once.
struct Mock {
    url: String,
    state: Mocked,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Mock {
    fn start(world: &Arc<World>) -> Mock {
        let state = Arc::new(MockState {
            world: world.clone(),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            committed: Mutex::new(HashSet::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/status", get(mock_status))
            .route("/v1/txs", post(mock_submit))
            .route("/v1/txs/{hash}", get(mock_tx))
            .route("/v1/blocks/{height}", get(mock_block))
            .route("/v1/subscribe", get(mock_subscribe))
            .with_state(state.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(listener, app).await;
        });
        Mock {
            url,
            state,
            runtime: Some(runtime),
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn mock_status(State(state): State<Mocked>) -> Response {
    if !state.healthy.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(NodeStatus {
        chain_id: "mock".into(),
        node_id: "mock".into(),
        height: 7,
        round: 0,
        sync: SyncStatus::Synced,
        peers: 3,
        validators: Vec::new(),
        validator_index: None,
        latest_block_id: Hash::default(),
        latest_state_root: Hash::default(),
        latest_time_ms: 0,
    })
    .into_response()
}

async fn mock_submit(State(state): State<Mocked>, Json(request): Json<SubmitRequest>) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let mut results = Vec::new();
    let mut fail = false;
    for text in &request.txs {
        let hash = sha256(&hex::decode(text).unwrap());
        let fresh = state.world.mempool.lock().unwrap().insert(hash);
        if fresh {
            fail |= state.world.fail_after_admit.swap(false, Ordering::Relaxed);
            results.push(SubmitResult {
                hash,
                accepted: true,
                error: None,
            });
        } else {
            results.push(SubmitResult {
                hash,
                accepted: false,
                error: Some(ErrorBody {
                    code: "duplicate".into(),
                    message: "transaction already pending".into(),
                }),
            });
        }
    }
    if fail {
        let body = ErrorResponse {
            error: ErrorBody {
                code: "timeout".into(),
                message: "the request did not finish before its deadline".into(),
            },
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(SubmitResponse { results }).into_response()
}

fn committed_status(hash: Hash) -> TxStatusJson {
    TxStatusJson {
        hash,
        status: TxStatusKind::Committed,
        height: Some(7),
        index: Some(0),
        receipt: Some(receipt(hash)),
        error: None,
    }
}

fn receipt(hash: Hash) -> ReceiptJson {
    ReceiptJson {
        tx_hash: hash,
        status: ReceiptStatusJson::Success,
        error: None,
        items: Vec::new(),
    }
}

async fn mock_tx(State(state): State<Mocked>, Path(text): Path<String>) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let hash = Hash::from_hex(&text).unwrap();
    if state.committed.lock().unwrap().contains(&hash) {
        return Json(committed_status(hash)).into_response();
    }
    Json(TxStatusJson {
        hash,
        status: TxStatusKind::Unknown,
        height: None,
        index: None,
        receipt: None,
        error: None,
    })
    .into_response()
}

async fn mock_block(State(state): State<Mocked>, Path(height): Path<String>) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if height == "slow" {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Json(serde_json::json!({ "height": height })).into_response()
}

/// Receipt subscriptions that commit every watched hash at once; any other text is echoed.
async fn mock_subscribe(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(mock_session)
}

async fn mock_session(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(text) = message else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        if value["subscribe"] != "receipts" {
            let _ = socket.send(Message::Text(text)).await;
            continue;
        }
        for hash in value["hashes"].as_array().cloned().unwrap_or_default() {
            let hash = Hash::from_hex(hash.as_str().unwrap()).unwrap();
            let message = ServerMessage::Receipt {
                hash,
                height: 7,
                index: 0,
                receipt: receipt(hash),
            };
            let text = serde_json::to_string(&message).unwrap();
            let _ = socket.send(Message::Text(text.into())).await;
        }
    }
}

fn config(mocks: &[&Mock]) -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        health_interval_ms: 50,
        health_timeout_ms: 500,
        attempt_timeout_ms: 1_000,
        request_timeout_ms: 3_000,
        worker_threads: 1,
        ..GatewayConfig::new(&mocks.iter().map(|m| m.url.clone()).collect::<Vec<_>>())
    }
}

async fn start(config: GatewayConfig) -> GatewayHandle {
    tokio::task::spawn_blocking(move || spawn(config).unwrap())
        .await
        .unwrap()
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET `path` through the gateway: status, answering upstream, body.
async fn get_via(gateway: &GatewayHandle, path: &str) -> (u16, String, serde_json::Value) {
    let response = http()
        .get(format!("{}{path}", gateway.url()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let upstream = response
        .headers()
        .get(UPSTREAM_HEADER)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, upstream, response.json().await.unwrap_or_default())
}

async fn submit_via(gateway: &GatewayHandle, txs: &[&[u8]]) -> SubmitResponse {
    let request = SubmitRequest {
        txs: txs.iter().map(hex::encode).collect(),
        encoding: Default::default(),
    };
    let response = http()
        .post(format!("{}/v1/txs", gateway.url()))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn assert_error(status: u16, body: &serde_json::Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_eject_and_readmit_an_upstream() {
    let world = Arc::new(World::default());
    let (a, b) = (Mock::start(&world), Mock::start(&world));
    let gateway = start(config(&[&a, &b])).await;
    let metrics = gateway.metrics().clone();
    assert!(metrics.healthy(&a.url) && metrics.healthy(&b.url));

    a.state.healthy.store(false, Ordering::Relaxed);
    until("a ejected", || !metrics.healthy(&a.url)).await;
    assert_eq!(metrics.ejections(&a.url, EjectReason::HealthCheck), 1);
    for _ in 0..20 {
        let (status, upstream, _) = get_via(&gateway, "/v1/blocks/1").await;
        assert_eq!((status, upstream.as_str()), (200, b.url.as_str()));
    }

    a.state.healthy.store(true, Ordering::Relaxed);
    until("a readmitted", || metrics.healthy(&a.url)).await;
    let before = a.requests();
    for _ in 0..100 {
        assert_eq!(get_via(&gateway, "/v1/blocks/1").await.0, 200);
    }
    assert!(
        a.requests() > before,
        "a readmitted upstream takes traffic again"
    );
    let text = http()
        .get(format!("{}/metrics", gateway.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("basalt_gateway_upstream_healthy"), "{text}");
    assert!(text.contains("basalt_gateway_ejections_total"), "{text}");
    tokio::task::spawn_blocking(move || gateway.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_fails_over_without_an_error() {
    let world = Arc::new(World::default());
    let (mut a, b) = (Mock::start(&world), Mock::start(&world));
    // Health checks too rare to notice: only failed requests can find the dead node.
    let gateway = start(GatewayConfig {
        health_interval_ms: 60_000,
        ..config(&[&a, &b])
    })
    .await;
    let metrics = gateway.metrics().clone();
    a.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..50 {
        let (status, upstream, body) = get_via(&gateway, &format!("/v1/blocks/{i}")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(upstream, b.url);
    }
    assert!(metrics.failovers(ROUTES[2]) >= 1);
    assert!(metrics.ejections(&a.url, EjectReason::Transport) >= 1);
    assert!(!metrics.healthy(&a.url));
    // The last upstream is never taken out by a failed request: with both dead, the caller
    // gets a typed 502 after the attempts, not a hang.
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = get_via(&gateway, "/v1/blocks/1").await;
    assert_error(status, &body, 502, "upstream_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_upstream_is_a_typed_503() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let gateway = start(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::new(&[url])
    })
    .await;
    let (status, _, body) = get_via(&gateway, "/v1/status").await;
    assert_error(status, &body, 503, "no_healthy_upstream");
    assert_eq!(
        gateway.metrics().shed_count(ShedReason::NoHealthyUpstream),
        1
    );
    // The WebSocket route says the same before upgrading.
    let ws = format!("ws://{}/v1/subscribe", gateway.local_addr());
    assert!(tokio_tungstenite::connect_async(ws).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_after_failover_is_reported_admitted() {
    let world = Arc::new(World::default());
    let (a, b) = (Mock::start(&world), Mock::start(&world));
    let gateway = start(config(&[&a, &b])).await;
    let metrics = gateway.metrics().clone();
    // The first node admits the transaction, then answers 503 `timeout`; the second has it
    // by "gossip" and says duplicate. The caller must hear: admitted.
    world.fail_after_admit.store(true, Ordering::Relaxed);
    let answer = submit_via(&gateway, &[b"tx one"]).await;
    assert_eq!(answer.results.len(), 1);
    assert!(answer.results[0].accepted, "{answer:?}");
    assert_eq!(answer.results[0].error, None);
    assert_eq!(answer.results[0].hash, sha256(b"tx one"));
    assert_eq!(metrics.failovers(basalt_rpc::ROUTE_SUBMIT), 1);
    assert_eq!(metrics.duplicates_admitted(), 1);
    assert_eq!(a.requests() + b.requests(), 2);

    // The caller sends it again (its own retry): still admitted, the gateway sent it.
    let again = submit_via(&gateway, &[b"tx one", b"tx two"]).await;
    assert!(again.results.iter().all(|result| result.accepted));
    assert_eq!(metrics.duplicates_admitted(), 2);

    // A duplicate of a transaction the gateway never sent is the node's answer, unchanged.
    world.mempool.lock().unwrap().insert(sha256(b"foreign"));
    let foreign = submit_via(&gateway, &[b"foreign"]).await;
    assert!(!foreign.results[0].accepted);
    assert_eq!(foreign.results[0].error.as_ref().unwrap().code, "duplicate");
    assert_eq!(metrics.duplicates_admitted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_transactions_are_tracked_to_their_receipts() {
    let world = Arc::new(World::default());
    let (a, b) = (Mock::start(&world), Mock::start(&world));
    let gateway = start(GatewayConfig {
        tracked_hashes_max: 2,
        ..config(&[&a, &b])
    })
    .await;
    let metrics = gateway.metrics().clone();
    until("receipt subscription", || {
        metrics.receipt_subscription_connects() >= 1
    })
    .await;
    submit_via(&gateway, &[b"one"]).await;
    until("receipt recorded", || metrics.receipts_recorded() >= 1).await;
    let hash = sha256(b"one");
    let (status, upstream, body) = get_via(&gateway, &format!("/v1/txs/{hash}")).await;
    assert_eq!((status, upstream.as_str()), (200, FROM_TRACKER));
    let status: TxStatusJson = serde_json::from_value(body).unwrap();
    assert_eq!(status, committed_status(hash));
    assert_eq!(metrics.tracker_hits(), 1);

    // Bounded: two tracked at most, the oldest forgotten first.
    submit_via(&gateway, &[b"two", b"three"]).await;
    until("receipts recorded", || metrics.receipts_recorded() >= 3).await;
    assert_eq!(gateway.tracker().len(), 2);
    assert_eq!(metrics.tracked_hashes(), 2);
    assert_eq!(gateway.tracker().get(&hash), None);
    // A forgotten hash is asked of the nodes (which do not know it here).
    let (status, upstream, body) = get_via(&gateway, &format!("/v1/txs/{hash}")).await;
    assert_eq!(status, 200);
    assert_ne!(upstream, FROM_TRACKER);
    assert_eq!(body["status"], "unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_cannot_deny_a_commit() {
    let world = Arc::new(World::default());
    let (a, b) = (Mock::start(&world), Mock::start(&world));
    let hash = sha256(b"committed on b only");
    b.state.committed.lock().unwrap().insert(hash);
    let gateway = start(config(&[&a, &b])).await;
    for _ in 0..20 {
        let (status, upstream, body) = get_via(&gateway, &format!("/v1/txs/{hash}")).await;
        assert_eq!((status, upstream.as_str()), (200, b.url.as_str()), "{body}");
        assert_eq!(body["status"], "committed");
    }
    let (status, _, body) = get_via(&gateway, "/v1/txs/not-a-hash").await;
    assert_error(status, &body, 400, "bad_encoding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_spread_over_every_upstream() {
    let world = Arc::new(World::default());
    let mocks: Vec<Mock> = (0..4).map(|_| Mock::start(&world)).collect();
    let gateway = start(config(&mocks.iter().collect::<Vec<_>>())).await;
    let requests = 400;
    let answers = futures::stream::iter(0..requests)
        .map(|i| {
            let gateway = &gateway;
            async move { get_via(gateway, &format!("/v1/blocks/{i}")).await.0 }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(answers.iter().all(|status| *status == 200));
    let counts: Vec<u64> = mocks.iter().map(Mock::requests).collect();
    assert_eq!(counts.iter().sum::<u64>(), requests);
    for (mock, count) in mocks.iter().zip(&counts) {
        // An even share is 100; p2c keeps every upstream well above half of it.
        assert!(*count >= 50, "{counts:?}");
        let attempts = gateway
            .metrics()
            .attempts(ROUTES[2], &mock.url, AttemptOutcome::Ok);
        assert_eq!(attempts, *count);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_overload_get_typed_errors() {
    let world = Arc::new(World::default());
    let a = Mock::start(&world);
    let gateway = start(GatewayConfig {
        max_concurrent_requests: 1,
        max_body_bytes: 1024,
        ..config(&[&a])
    })
    .await;
    let client = http();
    let (status, _, body) = get_via(&gateway, "/nope").await;
    assert_error(status, &body, 404, "not_found");
    let response = client
        .delete(format!("{}/v1/status", gateway.url()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.unwrap(),
        405,
        "method_not_allowed",
    );
    let response = client
        .post(format!("{}/v1/txs", gateway.url()))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_error(
        status,
        &response.json().await.unwrap(),
        413,
        "body_too_large",
    );
    // Garbage is the node's to judge; the gateway passes its answer through.
    let response = client
        .post(format!("{}/v1/txs", gateway.url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());

    let slow = get_via(&gateway, "/v1/blocks/slow");
    let shed = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get_via(&gateway, "/v1/blocks/1").await
    };
    let ((slow_status, _, _), (status, _, body)) = tokio::join!(slow, shed);
    assert_eq!(slow_status, 200);
    assert_error(status, &body, 503, "overloaded");
    assert_eq!(gateway.metrics().shed_count(ShedReason::Overloaded), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_bridge_closes_with_a_reason_when_its_upstream_dies() {
    let world = Arc::new(World::default());
    let mut a = Mock::start(&world);
    let gateway = start(config(&[&a])).await;
    let url = format!("ws://{}/v1/subscribe", gateway.local_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(ClientMessage::Text("hello".into()))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap();
    assert_eq!(
        echoed.unwrap().unwrap(),
        ClientMessage::Text("hello".into())
    );
    until("bridge open", || gateway.metrics().ws_connections() == 1).await;

    a.kill();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(ClientMessage::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(u16::from(closed.code), 1012);
    assert!(closed.reason.as_str().contains("reconnect"), "{closed:?}");
    until("bridge closed", || gateway.metrics().ws_connections() == 0).await;
}
