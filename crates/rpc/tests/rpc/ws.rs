//! WebSocket subscriptions: blocks, receipts (live and already committed), lag, limits.

use crate::mock::*;
use basalt_rpc::{RpcLimits, RpcMetrics, TxStatus};
use basalt_types::Hash;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(url: &str) -> Socket {
    let (socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    socket
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// The next JSON text message, or a panic after the deadline.
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("no message before the deadline")
            .expect("stream ended")
            .expect("websocket error");
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_pushed() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let mut socket = connect(&server.ws_url()).await;
    send(&mut socket, json!({ "subscribe": "blocks" })).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "subscribed", "topic": "blocks" })
    );
    let registry_text = server.metrics();
    assert!(
        registry_text.contains("basalt_rpc_ws_connections 1"),
        "{registry_text}"
    );

    let event = server
        .node
        .add_block(2, vec![transfer(3, 1), transfer(4, 1)], true);
    server.node.publish(event.clone());
    assert_eq!(
        next_json(&mut socket).await,
        json!({
            "type": "block",
            "height": 2,
            "id": event.block_id.to_hex(),
            "time_ms": event.time_ms,
            "txs": 2,
        })
    );

    send(&mut socket, json!({ "unsubscribe": "blocks" })).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "unsubscribed", "topic": "blocks" })
    );
    socket.close(None).await.unwrap();
    wait_until("the connection gauge to drop", || {
        server.metrics().contains("basalt_rpc_ws_connections 0")
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_pushed_live_and_when_already_committed() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let mut socket = connect(&server.ws_url()).await;
    let committed = transfer(1, 5); // committed in block 1 at index 0
    let later = transfer(3, 1);
    server.node.set_status(later.hash(), TxStatus::Pending);
    send(
        &mut socket,
        json!({
            "subscribe": "receipts",
            "hashes": [later.hash(), committed.hash(), later.hash()],
        }),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({
            "type": "receipt",
            "hash": committed.hash().to_hex(),
            "height": 1,
            "index": 0,
            "receipt": {
                "tx_hash": committed.hash().to_hex(),
                "status": "success",
                "items": [ { "result": "applied" } ],
            },
        })
    );
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "subscribed", "topic": "receipts", "watching": 1, "already_committed": 1 })
    );

    // A block without the watched hash pushes nothing; the next one with it does.
    let other = server.node.add_block(2, vec![transfer(5, 1)], true);
    server.node.publish(other);
    let event = server
        .node
        .add_block(3, vec![transfer(6, 1), later.clone()], true);
    server.node.publish(event);
    let receipt = next_json(&mut socket).await;
    assert_eq!(receipt["type"], "receipt");
    assert_eq!(receipt["hash"], later.hash().to_hex());
    assert_eq!(receipt["height"], 3);
    assert_eq!(receipt["index"], 1);
    assert_eq!(receipt["receipt"]["tx_hash"], later.hash().to_hex());

    // Watching and unwatching.
    send(
        &mut socket,
        json!({ "subscribe": "receipts", "hashes": [Hash([1; 32])] }),
    )
    .await;
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["watching"], 1);
    send(&mut socket, json!({ "unsubscribe": "receipts" })).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "unsubscribed", "topic": "receipts", "watching": 0 })
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_the_connection_survives() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let mut socket = connect(&server.ws_url()).await;
    socket.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_json");
    send(&mut socket, json!({ "subscribe": "gossip" })).await;
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_request");
    send(
        &mut socket,
        json!({ "subscribe": "blocks", "unsubscribe": "blocks" }),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_request");
    send(
        &mut socket,
        json!({ "subscribe": "receipts", "hashes": ["beef"] }),
    )
    .await;
    let error = next_json(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "bad_encoding");
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_request");
    send(&mut socket, json!({ "subscribe": "blocks" })).await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_is_bounded() {
    let limits = RpcLimits {
        max_watched_hashes: 2,
        ..RpcLimits::default()
    };
    let app = basalt_rpc::router(MockNode::new(), limits, RpcMetrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut socket = connect(&format!("ws://{address}/v1/subscribe")).await;
    let three = [Hash([1; 32]), Hash([2; 32]), Hash([3; 32])];
    send(
        &mut socket,
        json!({ "subscribe": "receipts", "hashes": three }),
    )
    .await;
    let error = next_json(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["code"], "too_many_hashes");
    send(
        &mut socket,
        json!({ "subscribe": "receipts", "hashes": &three[..2] }),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["watching"], 2);
    send(
        &mut socket,
        json!({ "subscribe": "receipts", "hashes": &three[2..] }),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "too_many_hashes"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_told_it_lagged_and_gets_missed_receipts() {
    // Capacity 4: the fifth unread event pushes the oldest out.
    let server = TestServer::start(MockNode::with_event_capacity(4), |_| {});
    let mut socket = connect(&server.ws_url()).await;
    send(&mut socket, json!({ "subscribe": "blocks" })).await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");

    // Hold the session inside a node call, so it reads no events for a while. The hashes
    // are read in order: `missed_tx` (pending then) first, then the gated one.
    let gated = Hash([0xee; 32]);
    let latch = server.node.gate_status(gated);
    let missed_tx = transfer(20, 1);
    server.node.set_status(missed_tx.hash(), TxStatus::Pending);
    send(
        &mut socket,
        json!({ "subscribe": "receipts", "hashes": [missed_tx.hash(), gated] }),
    )
    .await;
    let node = server.node.clone();
    wait_until("the session to be inside tx_status", || {
        node.inner.status_gate_entered.load(Ordering::SeqCst) == 1
    })
    .await;
    // Ten blocks while the session is away; `missed_tx` commits in the first, whose event
    // the session will never see.
    for height in 2..=11u64 {
        let txs = if height == 2 {
            vec![missed_tx.clone()]
        } else {
            vec![]
        };
        let event = server.node.add_block(height, txs, true);
        server.node.publish(event);
    }
    latch.open();

    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "subscribed", "topic": "receipts", "watching": 2, "already_committed": 0 })
    );
    assert_eq!(
        next_json(&mut socket).await,
        json!({ "type": "lagged", "missed": 6 })
    );
    // Re-checked after the lag: the receipt from the dropped event is not lost.
    let receipt = next_json(&mut socket).await;
    assert_eq!(receipt["type"], "receipt", "{receipt}");
    assert_eq!(receipt["hash"], missed_tx.hash().to_hex());
    assert_eq!(receipt["height"], 2);
    for height in 8..=11u64 {
        let block = next_json(&mut socket).await;
        assert_eq!(block["type"], "block", "{block}");
        assert_eq!(block["height"], height);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let mut socket = connect(&server.ws_url()).await;
    send(&mut socket, json!({ "subscribe": "blocks" })).await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    server.stop().await;
    let closing = tokio::time::timeout(DEADLINE, socket.next())
        .await
        .expect("no close before the deadline");
    match closing {
        Some(Ok(Message::Close(frame))) => {
            assert_eq!(u16::from(frame.unwrap().code), 1001);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}
