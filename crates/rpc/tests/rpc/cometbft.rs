//! The CometBFT JSON-RPC subset: shapes, errors, batches, the URI form, WebSocket events,
//! admission control.

use crate::mock::*;
use basalt_rpc::json::ReceiptJson;
use basalt_rpc::TxStatus;
use basalt_types::{sha256, Hash, Keypair, Signature, SignedTx};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn upper(hash: &Hash) -> String {
    hash.to_hex().to_uppercase()
}

fn address(key: &basalt_types::PublicKey) -> String {
    hex::encode_upper(&sha256(&key.0).0[..20])
}

fn request(id: Value, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// POST one request to `/`; the HTTP status and the body.
async fn call(server: &TestServer, method: &str, params: Value) -> (u16, Value) {
    server.post("/", &request(json!(1), method, params)).await
}

/// The `result` of a successful call.
async fn result(server: &TestServer, method: &str, params: Value) -> Value {
    let (status, body) = call(server, method, params).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], 1, "{body}");
    assert!(body.get("error").is_none(), "{body}");
    body["result"].clone()
}

/// The `error` of a failed call answered with HTTP 200.
async fn error(server: &TestServer, method: &str, params: Value) -> Value {
    let (status, body) = call(server, method, params).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("result").is_none(), "{body}");
    body["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_has_the_cometbft_shape() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let status = result(&server, "status", json!({})).await;
    let node_info = &status["node_info"];
    assert_eq!(node_info["version"], "0.38.17");
    assert_eq!(node_info["network"], CHAIN_ID);
    assert_eq!(node_info["moniker"], "mock-0");
    assert_eq!(node_info["id"].as_str().unwrap().len(), 40);
    assert_eq!(
        node_info["protocol_version"],
        json!({"p2p": "8", "block": "11", "app": "0"})
    );
    let block1 = server.node.inner.blocks.lock().unwrap()[&1].block.clone();
    assert_eq!(
        status["sync_info"],
        json!({
            "latest_block_hash": upper(&Hash([1; 32])),
            "latest_app_hash": upper(&Hash([2; 32])),
            "latest_block_height": "1",
            "latest_block_time": "2023-11-14T22:13:20.100000000Z",
            "earliest_block_hash": upper(&block1.id()),
            "earliest_app_hash": upper(&block1.header.state_root),
            "earliest_block_height": "1",
            "earliest_block_time": "2023-11-14T22:13:20.100000000Z",
            "catching_up": false,
        })
    );
    let key = Keypair::from_label("validator-0").public();
    assert_eq!(
        status["validator_info"],
        json!({
            "address": address(&key),
            "pub_key": { "type": "tendermint/PubKeyEd25519", "value": b64(&key.0) },
            "voting_power": "1",
        })
    );
    // `health` is empty; both also answer in the URI form, with id -1.
    assert_eq!(result(&server, "health", json!(null)).await, json!({}));
    let (code, body) = server.get("/status").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["id"], -1);
    assert_eq!(body["result"]["node_info"]["network"], CHAIN_ID);
    let (code, body) = server.get("/health").await;
    assert_eq!(
        (code, body),
        (200, json!({"jsonrpc": "2.0", "id": -1, "result": {}}))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_have_the_cometbft_shape() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let first = result(&server, "block", json!({ "height": "1" })).await;
    let block1 = server.node.inner.blocks.lock().unwrap()[&1].block.clone();
    let id = upper(&block1.id());
    assert_eq!(
        first["block_id"],
        json!({ "hash": id, "parts": { "total": 1, "hash": id } })
    );
    let header = &first["block"]["header"];
    assert_eq!(header["version"], json!({"block": "11", "app": "0"}));
    assert_eq!(header["chain_id"], CHAIN_ID);
    assert_eq!(header["height"], "1");
    assert_eq!(header["time"], "2023-11-14T22:13:20.100000000Z");
    assert_eq!(
        header["last_block_id"],
        json!({"hash": "", "parts": {"total": 0, "hash": ""}})
    );
    assert_eq!(header["last_commit_hash"], "");
    assert_eq!(header["data_hash"], upper(&block1.header.txs_root));
    assert_eq!(header["app_hash"], upper(&Hash([0xaa; 32])));
    for absent in [
        "validators_hash",
        "next_validators_hash",
        "consensus_hash",
        "last_results_hash",
        "evidence_hash",
    ] {
        assert_eq!(header[absent], "", "{absent}");
    }
    let proposer = Keypair::from_label("validator-0").public();
    assert_eq!(header["proposer_address"], address(&proposer));
    let txs: Vec<Value> = block1
        .txs
        .iter()
        .map(|tx| json!(b64(&tx.to_bytes())))
        .collect();
    assert_eq!(first["block"]["data"], json!({ "txs": txs }));
    assert_eq!(first["block"]["evidence"], json!({ "evidence": [] }));
    assert_eq!(
        first["block"]["last_commit"],
        json!({
            "height": "0",
            "round": 0,
            "block_id": {"hash": "", "parts": {"total": 0, "hash": ""}},
            "signatures": [],
        })
    );

    // Block 2 carries the commit of block 1; without a height, the latest block comes back.
    server.node.add_block(2, vec![transfer(3, 1)], true);
    let second = result(&server, "block", json!({})).await;
    assert_eq!(second["block"]["header"]["height"], "2");
    let last_commit = &second["block"]["last_commit"];
    assert_eq!(last_commit["height"], "1");
    assert_eq!(last_commit["round"], 0);
    assert_eq!(last_commit["block_id"]["hash"], upper(&Hash([2; 32])));
    assert_eq!(
        last_commit["signatures"],
        json!([{
            "block_id_flag": 2,
            "validator_address": address(&proposer),
            "timestamp": "2023-11-14T22:13:20.200000000Z",
            "signature": b64(&[7; 64]),
        }])
    );
    assert_eq!(
        second["block"]["header"]["last_block_id"]["hash"],
        upper(&Hash([1; 32]))
    );
    // Positional params, and the URI form.
    let positional = server
        .post("/", &request(json!("p"), "block", json!([2])))
        .await
        .1;
    assert_eq!(positional["id"], "p");
    assert_eq!(positional["result"], second);
    let (code, body) = server.get("/block?height=2").await;
    assert_eq!((code, &body["result"]), (200, &second), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_errors_are_json_rpc_errors() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let missing = error(&server, "block", json!({ "height": "9" })).await;
    assert_eq!(missing["code"], -32603);
    assert_eq!(missing["message"], "Internal error");
    assert_eq!(
        missing["data"],
        "height 9 must be less than or equal to the current blockchain height 1"
    );
    for bad in [
        json!({"height": "0"}),
        json!({"height": "x"}),
        json!({"height": [1]}),
    ] {
        let invalid = error(&server, "block", bad.clone()).await;
        assert_eq!(invalid["code"], -32602, "{bad}: {invalid}");
        assert_eq!(invalid["message"], "Invalid params");
    }
    // The URI form answers the same errors with a status.
    let (code, body) = server.get("/block?height=9").await;
    assert_eq!((code, body["error"]["code"].clone()), (404, json!(-32603)));
    assert_eq!(body["id"], -1);
    let (code, body) = server.get("/block?height=abc").await;
    assert_eq!((code, body["error"]["code"].clone()), (400, json!(-32602)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_by_hash_in_base64_and_hex() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let committed = transfer(1, 5); // block 1, index 0
    let batch = batch_tx(2); // block 1, index 1
    let hash = committed.hash();
    let expected = json!({
        "hash": upper(&hash),
        "height": "1",
        "index": 0,
        "tx_result": {
            "code": 0,
            "data": b64(&basalt_types::encode(&success_receipt(&committed))),
            // The receipt in Basalt's JSON.
            "log": serde_json::to_string(&ReceiptJson::from(&success_receipt(&committed))).unwrap(),
            "info": "",
            "gas_wanted": "0",
            "gas_used": "0",
            "events": [],
            "codespace": "",
        },
        "tx": b64(&committed.to_bytes()),
    });
    let by_base64 = result(
        &server,
        "tx",
        json!({ "hash": b64(&hash.0), "prove": true }),
    )
    .await;
    assert_eq!(by_base64, expected);
    let by_hex = result(&server, "tx", json!({ "hash": hash.to_hex() })).await;
    assert_eq!(by_hex, expected);
    let (code, body) = server.get(&format!("/tx?hash=0x{}", upper(&hash))).await;
    assert_eq!((code, &body["result"]), (200, &expected), "{body}");
    let second = result(&server, "tx", json!([batch.hash().to_hex()])).await;
    assert_eq!(second["index"], 1);
    assert_eq!(second["tx"], b64(&batch.to_bytes()));

    // A failed transaction has a non-zero code in the basalt codespace.
    let failing = transfer(40, 1);
    server.node.add_block(2, vec![failing.clone()], true);
    server.node.set_status(
        failing.hash(),
        TxStatus::Committed {
            height: 2,
            index: 0,
            receipt: failed_receipt(&failing),
        },
    );
    let failed = result(&server, "tx", json!({ "hash": failing.hash().to_hex() })).await;
    assert_eq!(failed["tx_result"]["code"], 23);
    assert_eq!(failed["tx_result"]["codespace"], "basalt");
    assert!(failed["tx_result"]["log"]
        .as_str()
        .unwrap()
        .contains("batch_failed"));

    // Pending and unknown hashes are not found; a malformed one is an invalid param.
    let pending = transfer(41, 1);
    server.node.set_status(pending.hash(), TxStatus::Pending);
    for unknown in [pending.hash(), Hash([9; 32])] {
        let missing = error(&server, "tx", json!({ "hash": unknown.to_hex() })).await;
        assert_eq!(missing["code"], -32603);
        assert_eq!(
            missing["data"],
            format!("tx ({}) not found", upper(&unknown))
        );
    }
    for bad in [json!({}), json!({"hash": "abcd"}), json!({"hash": 5})] {
        assert_eq!(error(&server, "tx", bad).await["code"], -32602);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_congested_node_refuses_broadcasts_with_their_own_code() {
    let server = TestServer::start(MockNode::new(), |_| {});
    server.node.inner.congested.store(true, Ordering::SeqCst);
    let tx = transfer(30, 1);
    for method in ["broadcast_tx_sync", "broadcast_tx_async"] {
        let refused = result(&server, method, json!({ "tx": b64(&tx.to_bytes()) })).await;
        assert_eq!(refused["code"], 24, "{method}: {refused}");
        assert!(
            refused["log"].as_str().unwrap().starts_with("congested: "),
            "{method}: {refused}"
        );
    }
    assert_eq!(
        server.node.inner.statuses.lock().unwrap().get(&tx.hash()),
        None
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_tx_sync_admits_and_refuses_with_codes() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let good = transfer(10, 1);
    let bytes = good.to_bytes();
    let admitted = result(&server, "broadcast_tx_sync", json!({ "tx": b64(&bytes) })).await;
    assert_eq!(
        admitted,
        json!({
            "code": 0,
            "data": "",
            "log": "",
            "codespace": "",
            "hash": upper(&sha256(&bytes)),
        })
    );
    assert_eq!(
        sha256(&bytes),
        good.hash(),
        "the CometBFT hash is Basalt's hash"
    );
    assert_eq!(
        server.node.inner.statuses.lock().unwrap().get(&good.hash()),
        Some(&TxStatus::Pending)
    );
    // Again: the node's `duplicate`.
    let again = result(&server, "broadcast_tx_sync", json!({ "tx": b64(&bytes) })).await;
    assert_eq!(again["code"], 7);
    assert_eq!(again["codespace"], "basalt");
    assert!(again["log"].as_str().unwrap().starts_with("duplicate: "));

    let mut forged = transfer(11, 1);
    forged.signature = Signature([9; 64]);
    let refused = result(
        &server,
        "broadcast_tx_sync",
        json!({ "tx": format!("0x{}", hex::encode(forged.to_bytes())) }),
    )
    .await;
    assert_eq!(refused["code"], 4);
    assert_eq!(refused["log"], "bad_signature: bad signature");
    assert_eq!(refused["hash"], upper(&forged.hash()));

    let garbage = [0u8, 0xff, 0x13];
    let undecodable = result(&server, "broadcast_tx_sync", json!([b64(&garbage)])).await;
    assert_eq!(undecodable["code"], 2);
    assert_eq!(undecodable["hash"], upper(&sha256(&garbage)));
    assert!(undecodable["log"].as_str().unwrap().starts_with("decode: "));

    // URI form with 0x-hex.
    let fresh = transfer(12, 1);
    let (code, body) = server
        .get(&format!(
            "/broadcast_tx_sync?tx=0x{}",
            hex::encode(fresh.to_bytes())
        ))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"]["code"], 0);
    assert_eq!(body["result"]["hash"], upper(&fresh.hash()));

    for bad in [json!({}), json!({"tx": "@@@"}), json!({"tx": 1})] {
        assert_eq!(
            error(&server, "broadcast_tx_sync", bad).await["code"],
            -32602
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_tx_async_answers_before_admission() {
    let gate = Arc::new(Notify::new());
    let server = TestServer::start(MockNode::with_submit_gate(gate.clone()), |_| {});
    let tx = transfer(10, 1);
    let answer = result(
        &server,
        "broadcast_tx_async",
        json!({ "tx": b64(&tx.to_bytes()) }),
    )
    .await;
    assert_eq!(answer["code"], 0);
    assert_eq!(answer["hash"], upper(&tx.hash()));
    // The submission is still waiting at the node's gate; release it and it lands.
    let node = server.node.clone();
    wait_until("the async submit to reach the node", || {
        node.inner.submits_waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    gate.notify_waiters();
    wait_until("the async submit to be admitted", || {
        node.inner.statuses.lock().unwrap().get(&tx.hash()) == Some(&TxStatus::Pending)
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_tx_commit_waits_for_the_block() {
    let server = Arc::new(TestServer::start(MockNode::new(), |_| {}));
    let tx = transfer(10, 1);
    let bytes = b64(&tx.to_bytes());
    let waiting = {
        let server = server.clone();
        tokio::spawn(
            async move { result(&server, "broadcast_tx_commit", json!({ "tx": bytes })).await },
        )
    };
    let node = server.node.clone();
    let hash = tx.hash();
    wait_until("the tx to be admitted", || {
        node.inner.statuses.lock().unwrap().get(&hash) == Some(&TxStatus::Pending)
    })
    .await;
    let event = server
        .node
        .add_block(2, vec![transfer(11, 1), tx.clone()], true);
    server.node.publish(event);
    let committed = waiting.await.unwrap();
    assert_eq!(committed["hash"], upper(&hash));
    assert_eq!(committed["height"], "2");
    assert_eq!(committed["check_tx"]["code"], 0);
    assert_eq!(committed["tx_result"]["code"], 0);
    assert_eq!(
        committed["tx_result"]["data"],
        b64(&basalt_types::encode(&success_receipt(&tx)))
    );

    // A refused transaction answers at once with the check's code and height 0.
    let mut forged = transfer(12, 1);
    forged.signature = Signature([9; 64]);
    let refused = result(
        &server,
        "broadcast_tx_commit",
        json!({ "tx": b64(&forged.to_bytes()) }),
    )
    .await;
    assert_eq!(refused["check_tx"]["code"], 4);
    assert_eq!(refused["height"], "0");
    assert_eq!(refused["tx_result"]["code"], 0);
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_tx_commit_times_out_with_a_json_rpc_error() {
    let server = TestServer::start(MockNode::new(), |config| config.request_timeout_ms = 1_200);
    let tx = transfer(10, 1);
    let started = std::time::Instant::now();
    let timed_out = error(
        &server,
        "broadcast_tx_commit",
        json!({ "tx": b64(&tx.to_bytes()) }),
    )
    .await;
    assert_eq!(timed_out["code"], -32603);
    assert_eq!(
        timed_out["data"],
        "timed out waiting for tx to be included in a block"
    );
    // It answered before admission control's deadline would have (503).
    assert!(started.elapsed() < Duration::from_millis(1_200));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_and_batches() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let (code, body) = server.post_raw("/", "{not json").await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], Value::Null);
    let (code, body) = server.post_raw("/", "42").await;
    assert_eq!((code, body["error"]["code"].clone()), (200, json!(-32600)));
    let (code, body) = server.post_raw("/", "[]").await;
    assert_eq!((code, body["error"]["code"].clone()), (400, json!(-32600)));
    let (code, body) = server.post_raw("/", "").await;
    assert_eq!((code, body["error"]["code"].clone()), (400, json!(-32600)));
    let unknown = error(&server, "abci_query", json!({})).await;
    assert_eq!(
        (unknown["code"].clone(), unknown["message"].clone()),
        (json!(-32601), json!("Method not found"))
    );
    // Subscriptions need a WebSocket.
    let subscribe = error(
        &server,
        "subscribe",
        json!({"query": "tm.event='NewBlock'"}),
    )
    .await;
    assert_eq!(subscribe["code"], -32601);

    // A batch: answers in order, none for the notification, errors per item.
    let batch = json!([
        request(json!(1), "health", json!({})),
        { "jsonrpc": "2.0", "method": "health" },
        request(json!("two"), "block", json!({ "height": "1" })),
        request(json!(3), "nope", json!({})),
        { "jsonrpc": "2.0", "id": 4 },
        request(json!(5), "status", json!(null)),
    ]);
    let (code, body) = server.post("/", &batch).await;
    assert_eq!(code, 200, "{body}");
    let answers = body.as_array().unwrap();
    let ids: Vec<Value> = answers.iter().map(|answer| answer["id"].clone()).collect();
    assert_eq!(
        ids,
        vec![json!(1), json!("two"), json!(3), json!(4), json!(5)]
    );
    assert_eq!(answers[0]["result"], json!({}));
    assert_eq!(answers[1]["result"]["block"]["header"]["height"], "1");
    assert_eq!(answers[2]["error"]["code"], -32601);
    assert_eq!(answers[3]["error"]["code"], -32600);
    assert_eq!(answers[4]["result"]["node_info"]["network"], CHAIN_ID);

    // Only notifications: nothing to answer.
    let response = server
        .client
        .post(server.url("/"))
        .json(&json!({ "jsonrpc": "2.0", "method": "health" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    // Over the batch limit: one error, 413.
    let oversized: Vec<Value> = (0..=basalt_rpc::BATCH_REQUESTS_MAX)
        .map(|id| request(json!(id), "health", json!({})))
        .collect();
    let (code, body) = server.post("/", &json!(oversized)).await;
    assert_eq!((code, body["error"]["code"].clone()), (413, json!(-32600)));
    // Wrong HTTP method: a JSON-RPC shaped 405.
    let (code, body) = server.get("/").await;
    assert_eq!(code, 405);
    assert_eq!(body["jsonrpc"], "2.0");

    let text = server.metrics();
    assert!(
        metric_value(
            &text,
            "basalt_rpc_requests_total{route=\"/\",status=\"200\"}"
        )
        .is_some_and(|count| count >= 4.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_and_concurrency_limit_apply() {
    let gate = Arc::new(Notify::new());
    let server = Arc::new(TestServer::start(
        MockNode::with_submit_gate(gate.clone()),
        |config| {
            config.max_concurrent_requests = 1;
            config.max_body_bytes = 1024;
        },
    ));
    let oversize = json!(request(
        json!(1),
        "broadcast_tx_sync",
        json!({"tx": "A".repeat(4096)})
    ));
    let (code, body) = server.post("/", &oversize).await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"]["code"], -32600);
    assert!(body["error"]["data"]
        .as_str()
        .unwrap()
        .contains("body_too_large"));

    // One broadcast held at the node's gate fills the single slot, for /v1 too.
    let tx = transfer(10, 1);
    let held = {
        let server = server.clone();
        let bytes = b64(&tx.to_bytes());
        tokio::spawn(
            async move { result(&server, "broadcast_tx_sync", json!({ "tx": bytes })).await },
        )
    };
    let node = server.node.clone();
    wait_until("the broadcast to reach the node", || {
        node.inner.submits_waiting.load(Ordering::SeqCst) == 1
    })
    .await;
    let (code, body) = call(&server, "health", json!({})).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32603);
    assert!(body["error"]["data"]
        .as_str()
        .unwrap()
        .starts_with("overloaded"));
    let (code, body) = server.get("/v1/status").await;
    assert_eq!((code, error_code(&body)), (503, "overloaded"));
    gate.notify_waiters();
    assert_eq!(held.await.unwrap()["code"], 0);
    Arc::into_inner(server).unwrap().stop().await;
}

async fn connect(server: &TestServer) -> Socket {
    let url = format!("{}/websocket", server.base.replace("http://", "ws://"));
    let (socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    socket
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

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
async fn websocket_subscriptions_push_new_blocks_and_txs() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let mut socket = connect(&server).await;
    let new_block = "tm.event='NewBlock'";
    send(
        &mut socket,
        request(json!(7), "subscribe", json!({ "query": new_block })),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({"jsonrpc": "2.0", "id": 7, "result": {}})
    );
    send(
        &mut socket,
        request(json!("t"), "subscribe", json!(["tm.event = 'Tx'"])),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["result"], json!({}));
    // Twice the same query, or another query: errors, and the connection stays.
    send(
        &mut socket,
        request(json!(8), "subscribe", json!({ "query": new_block })),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["error"]["data"],
        "already subscribed"
    );
    let other = "tm.event='Tx' AND tx.height=5";
    send(
        &mut socket,
        request(json!(9), "subscribe", json!({ "query": other })),
    )
    .await;
    let refused = next_json(&mut socket).await;
    assert_eq!(
        (refused["id"].clone(), refused["error"]["code"].clone()),
        (json!(9), json!(-32602))
    );
    // Ordinary methods work over the socket too.
    send(&mut socket, request(json!(10), "health", json!({}))).await;
    assert_eq!(next_json(&mut socket).await["result"], json!({}));

    let txs: Vec<SignedTx> = vec![transfer(3, 1), transfer(4, 1)];
    let event = server.node.add_block(2, txs.clone(), true);
    server.node.publish(event.clone());
    let pushed = next_json(&mut socket).await;
    assert_eq!(pushed["jsonrpc"], "2.0");
    assert_eq!(pushed["id"], 7);
    let result = &pushed["result"];
    assert_eq!(result["query"], new_block);
    assert_eq!(result["events"]["tm.event"], json!(["NewBlock"]));
    assert_eq!(result["data"]["type"], "tendermint/event/NewBlock");
    let value = &result["data"]["value"];
    assert_eq!(value["block"]["header"]["height"], "2");
    assert_eq!(value["block_id"]["hash"], upper(&event.block_id));
    assert_eq!(value["block"]["data"]["txs"][1], b64(&txs[1].to_bytes()));
    let tx_results = value["result_finalize_block"]["tx_results"]
        .as_array()
        .unwrap();
    assert_eq!(tx_results.len(), 2);
    assert_eq!(tx_results[0]["code"], 0);
    // Same block over `block`.
    let block = result_of_block(&server, 2).await;
    assert_eq!(value["block"], block["block"]);

    for (index, tx) in txs.iter().enumerate() {
        let pushed = next_json(&mut socket).await;
        assert_eq!(pushed["id"], "t");
        let result = &pushed["result"];
        assert_eq!(result["query"], "tm.event='Tx'");
        assert_eq!(result["data"]["type"], "tendermint/event/Tx");
        assert_eq!(
            result["data"]["value"]["TxResult"],
            json!({
                "height": "2",
                "index": index,
                "tx": b64(&tx.to_bytes()),
                "result": tx_results[index],
            })
        );
        assert_eq!(result["events"]["tx.hash"], json!([upper(&tx.hash())]));
        assert_eq!(result["events"]["tx.height"], json!(["2"]));
    }

    // Unsubscribe (cosmjs re-sends the subscribe request with the method changed).
    send(
        &mut socket,
        request(json!(7), "unsubscribe", json!({ "query": new_block })),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["result"], json!({}));
    send(
        &mut socket,
        request(json!(11), "unsubscribe", json!({ "query": new_block })),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["error"]["data"],
        "subscription not found"
    );
    send(
        &mut socket,
        request(json!(12), "unsubscribe_all", json!({})),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["result"], json!({}));
    // No connection holds the node's event stream now.
    let event = server.node.add_block(3, vec![], true);
    assert!(server.node.inner.events.send(Arc::new(event)).is_err());
    send(&mut socket, request(json!(13), "health", json!({}))).await;
    assert_eq!(
        next_json(&mut socket).await["id"],
        13,
        "no event after unsubscribing"
    );

    // Garbage gets errors; the connection survives.
    socket.send(Message::text("{nope")).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"]["code"], -32700);
    socket.send(Message::binary(vec![1, 2])).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"]["code"], -32600);
    send(&mut socket, json!([request(json!(1), "health", json!({}))])).await;
    assert_eq!(next_json(&mut socket).await["error"]["code"], -32600);
    send(&mut socket, request(json!(14), "health", json!({}))).await;
    assert_eq!(next_json(&mut socket).await["id"], 14);
    socket.close(None).await.unwrap();
    server.stop().await;
}

async fn result_of_block(server: &TestServer, height: u64) -> Value {
    result(server, "block", json!({ "height": height })).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_websocket_has_its_subscriptions_cancelled() {
    let server = TestServer::start(MockNode::with_event_capacity(4), |_| {});
    let mut socket = connect(&server).await;
    send(
        &mut socket,
        request(
            json!(1),
            "subscribe",
            json!({ "query": "tm.event='NewBlock'" }),
        ),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["result"], json!({}));
    // Hold the session inside a node call while ten blocks are published.
    let gated = Hash([0xee; 32]);
    let latch = server.node.gate_status(gated);
    send(
        &mut socket,
        request(json!(2), "tx", json!({ "hash": gated.to_hex() })),
    )
    .await;
    let node = server.node.clone();
    wait_until("the session to be inside tx_status", || {
        node.inner.status_gate_entered.load(Ordering::SeqCst) == 1
    })
    .await;
    for height in 2..=11u64 {
        let event = server.node.add_block(height, vec![], true);
        server.node.publish(event);
    }
    latch.open();
    let not_found = next_json(&mut socket).await;
    assert_eq!(
        (not_found["id"].clone(), not_found["error"]["code"].clone()),
        (json!(2), json!(-32603))
    );
    let cancelled = next_json(&mut socket).await;
    assert_eq!(cancelled["id"], 1);
    assert_eq!(cancelled["error"]["code"], -32000);
    assert!(cancelled["error"]["data"]
        .as_str()
        .unwrap()
        .contains("not pulling messages fast enough"));
    // Subscribing again works.
    send(
        &mut socket,
        request(
            json!(3),
            "subscribe",
            json!({ "query": "tm.event='NewBlock'" }),
        ),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["result"], json!({}));
    let event = server.node.add_block(12, vec![], true);
    server.node.publish(event);
    let pushed = next_json(&mut socket).await;
    assert_eq!(pushed["id"], 3);
    assert_eq!(
        pushed["result"]["data"]["value"]["block"]["header"]["height"],
        "12"
    );
    server.stop().await;
}
