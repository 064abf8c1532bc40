//! HTTP routes: happy paths, error paths, admission control, metrics, OpenAPI.

use crate::mock::*;
use basalt_rpc::{RpcLimits, RpcMetrics, TxStatus, ROUTES};
use basalt_types::{sha256, Hash, PublicKey, Signature};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_accepts_rejects_and_hashes_every_item() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let good = transfer(10, 1);
    let mut forged = transfer(11, 1);
    forged.signature = Signature([9; 64]);
    let garbage = vec![0x00, 0xff, 0x13];
    let (status, body) = server
        .post(
            "/v1/txs",
            &json!({ "txs": [
                hex::encode(good.to_bytes()),
                hex::encode(forged.to_bytes()),
                hex::encode(&garbage),
            ] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0],
        json!({ "hash": good.hash().to_hex(), "accepted": true })
    );
    assert_eq!(results[1]["hash"], forged.hash().to_hex());
    assert_eq!(results[1]["accepted"], false);
    assert_eq!(results[1]["error"]["code"], "bad_signature");
    assert_eq!(results[2]["hash"], sha256(&garbage).to_hex());
    assert_eq!(results[2]["accepted"], false);
    assert_eq!(results[2]["error"]["code"], "decode");
    assert_eq!(
        server.node.inner.statuses.lock().unwrap().get(&good.hash()),
        Some(&TxStatus::Pending)
    );

    // base64, and a resubmission is the node's `duplicate`.
    let fresh = transfer(12, 1);
    let (status, body) = server
        .post(
            "/v1/txs",
            &json!({
                "encoding": "base64",
                "txs": [
                    base64::engine::general_purpose::STANDARD.encode(fresh.to_bytes()),
                    base64::engine::general_purpose::STANDARD.encode(good.to_bytes()),
                ],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["accepted"], true);
    assert_eq!(body["results"][0]["hash"], fresh.hash().to_hex());
    assert_eq!(body["results"][1]["error"]["code"], "duplicate");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_errors_are_typed() {
    let server = TestServer::start(MockNode::new(), |config| {
        config.max_txs_per_request = 3;
        config.max_body_bytes = 1024;
    });
    let (status, body) = server.post_raw("/v1/txs", "{\"txs\": [").await;
    assert_eq!((status, error_code(&body)), (400, "bad_json"), "{body}");

    let (status, body) = server.post_raw("/v1/txs", "{\"tx\": []}").await;
    assert_eq!((status, error_code(&body)), (400, "bad_json"), "{body}");

    let (status, body) = server.post("/v1/txs", &json!({ "txs": ["zz"] })).await;
    assert_eq!((status, error_code(&body)), (400, "bad_encoding"), "{body}");

    let (status, body) = server
        .post("/v1/txs", &json!({ "txs": ["@@@"], "encoding": "base64" }))
        .await;
    assert_eq!((status, error_code(&body)), (400, "bad_encoding"), "{body}");

    let (status, body) = server.post("/v1/txs", &json!({ "txs": [] })).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");

    // The count is checked before any entry is decoded.
    let (status, body) = server
        .post("/v1/txs", &json!({ "txs": ["00", "01", "02", "03"] }))
        .await;
    assert_eq!((status, error_code(&body)), (413, "too_many_txs"), "{body}");

    let oversize = json!({ "txs": ["ab".repeat(4096)] }).to_string();
    let (status, body) = server.post_raw("/v1/txs", oversize).await;
    assert_eq!(
        (status, error_code(&body)),
        (413, "body_too_large"),
        "{body}"
    );
    let text = server.metrics();
    assert_eq!(
        metric_value(&text, "basalt_rpc_shed_total{reason=\"body_too_large\"}"),
        Some(1.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_congested_node_refuses_whole_submissions_before_decoding() {
    let server = TestServer::start(MockNode::new(), |_| {});
    server.node.inner.congested.store(true, Ordering::SeqCst);
    let tx = transfer(20, 1);
    // An undecodable entry too: refused as a whole, nothing is looked at.
    let request = json!({ "txs": [hex::encode(tx.to_bytes()), "zz"] });
    let (status, body) = server.post("/v1/txs", &request).await;
    assert_eq!((status, error_code(&body)), (503, "congested"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 refused"),
        "the node's reason is passed on: {body}"
    );
    assert_eq!(
        server.node.inner.statuses.lock().unwrap().get(&tx.hash()),
        None,
        "a refused request never reaches submit"
    );
    let text = server.metrics();
    assert_eq!(
        metric_value(&text, "basalt_rpc_shed_total{reason=\"congested\"}"),
        Some(1.0),
        "{text}"
    );
    // Reads are not affected, and submissions go through once the node admits again.
    let (status, _) = server.get("/v1/status").await;
    assert_eq!(status, 200);
    server.node.inner.congested.store(false, Ordering::SeqCst);
    let request = json!({ "txs": [hex::encode(tx.to_bytes())] });
    let (status, body) = server.post("/v1/txs", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["accepted"], true, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_waits_as_long_as_the_node_says_then_goes_through() {
    let server = TestServer::start(MockNode::new(), |_| {});
    server.node.inner.admit_wait_ms.store(150, Ordering::SeqCst);
    let tx = transfer(21, 1);
    let started = Instant::now();
    let request = json!({ "txs": [hex::encode(tx.to_bytes())] });
    let (status, body) = server.post("/v1/txs", &request).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["accepted"], true, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_status_in_every_state() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let committed = transfer(1, 5); // in block 1, index 0
    let (status, body) = server
        .get(&format!("/v1/txs/{}", committed.hash().to_hex()))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "committed");
    assert_eq!(body["height"], 1);
    assert_eq!(body["index"], 0);
    assert_eq!(
        body["receipt"],
        json!({
            "tx_hash": committed.hash().to_hex(),
            "status": "success",
            "items": [ { "result": "applied" } ],
        })
    );

    let failing = transfer(40, 1);
    server.node.set_status(
        failing.hash(),
        TxStatus::Committed {
            height: 7,
            index: 3,
            receipt: failed_receipt(&failing),
        },
    );
    let (_, body) = server.get(&format!("/v1/txs/{}", failing.hash())).await;
    assert_eq!(
        body["receipt"],
        json!({
            "tx_hash": failing.hash().to_hex(),
            "status": "failed",
            "error": { "code": "batch_failed", "message": "atomic batch failed" },
            "items": [
                { "result": "applied", "order_id": 9 },
                { "result": "failed", "error": {
                    "code": "insufficient_balance",
                    "message": "insufficient balance of asset 1: need 10, have 3",
                } },
                { "result": "rolled_back" },
            ],
        })
    );

    let pending = transfer(41, 1);
    server.node.set_status(pending.hash(), TxStatus::Pending);
    let (_, body) = server.get(&format!("/v1/txs/{}", pending.hash())).await;
    assert_eq!(
        body,
        json!({ "hash": pending.hash().to_hex(), "status": "pending" })
    );

    let rejected = transfer(42, 1);
    server.node.set_status(
        rejected.hash(),
        TxStatus::Rejected(basalt_rpc::Rejection::new(
            "mempool_full",
            "mempool is full",
        )),
    );
    let (_, body) = server.get(&format!("/v1/txs/{}", rejected.hash())).await;
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["error"]["code"], "mempool_full");

    let (status, body) = server.get(&format!("/v1/txs/{}", Hash([3; 32]))).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "unknown");

    for bad in ["xyz", "abcd", &"g".repeat(64)] {
        let (status, body) = server.get(&format!("/v1/txs/{bad}")).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "bad_encoding"),
            "{bad}: {body}"
        );
    }
    // Not even UTF-8 once percent-decoded.
    let (status, body) = server.get("/v1/txs/%FF%FE").await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_times_from_a_height() {
    let server = TestServer::start(MockNode::new(), |_| {});
    server.node.add_block(2, vec![], false);
    server.node.add_block(3, vec![], false);
    let (status, body) = server.get("/v1/commits?from=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["commits"],
        json!([
            {"height": 2, "at_unix_us": (GENESIS_TIME_MS + 200) * 1000},
            {"height": 3, "at_unix_us": (GENESIS_TIME_MS + 300) * 1000},
        ])
    );
    let (status, body) = server.get("/v1/commits").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["commits"][0]["height"], 1, "no from: the oldest");
    let (status, body) = server.get("/v1/commits?from=9").await;
    assert_eq!((status, body["commits"].clone()), (200, json!([])));
    let (status, body) = server.get("/v1/commits?from=two").await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_by_height_and_latest() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let event = server.node.add_block(2, vec![transfer(3, 9)], false);

    let (status, one) = server.get("/v1/blocks/1").await;
    assert_eq!(status, 200, "{one}");
    let record = server.node.inner.blocks.lock().unwrap()[&1].clone();
    assert_eq!(one["id"], record.block.id().to_hex());
    let header = &one["header"];
    assert_eq!(header["height"], 1);
    assert_eq!(header["round"], 0);
    assert_eq!(header["proposer"], 0);
    assert_eq!(header["parent_hash"], Hash::ZERO.to_hex());
    assert_eq!(header["txs_root"], record.block.header.txs_root.to_hex());
    assert_eq!(header["time_ms"], GENESIS_TIME_MS + 100);
    assert_eq!(header["last_commit_hash"], Hash::ZERO.to_hex());
    assert_eq!(header["state_root"], Hash([0xaa; 32]).to_hex());
    assert_eq!(one["last_commit"], Value::Null);
    assert_eq!(one["certificate"]["height"], 1);
    assert_eq!(one["certificate"]["block_id"], record.block.id().to_hex());
    assert_eq!(one["certificate"]["signatures"][0]["validator"], 0);
    assert_eq!(
        one["certificate"]["signatures"][0]["signature"],
        "07".repeat(64)
    );

    let txs = one["txs"].as_array().unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0]["hash"], transfer(1, 5).hash().to_hex());
    assert_eq!(txs[0]["sender"], alice().public().to_hex());
    assert_eq!(txs[0]["nonce"], 1);
    assert_eq!(
        txs[0]["payload"],
        json!({ "type": "single", "item": {
            "op": "transfer", "to": bob().public().to_hex(), "asset": 0, "amount": 5,
        } })
    );
    assert_eq!(
        txs[1]["payload"],
        json!({ "type": "batch", "mode": "atomic", "items": [
            {
                "op": "place_order", "market": MARKET, "side": "sell",
                "price_ticks": 12, "quantity": 2,
            },
            { "op": "cancel_order", "market": MARKET, "order_id": 4 },
        ] })
    );

    let (status, latest) = server.get("/v1/blocks/latest").await;
    assert_eq!(status, 200);
    assert_eq!(latest["id"], event.block_id.to_hex());
    assert_eq!(latest["certificate"], Value::Null);
    assert_eq!(latest["last_commit"]["height"], 1);

    let (status, body) = server.get("/v1/blocks/99").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    let (status, body) = server.get("/v1/blocks/tip").await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_with_verifiable_proofs() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let alice = alice().public();
    let (status, body) = server.get(&format!("/v1/accounts/{alice}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["address"], alice.to_hex());
    assert_eq!(body["exists"], true);
    assert_eq!(body["nonce"], 1);
    // 30 of asset 1 are locked in the resting bid (10 ticks x 3).
    assert_eq!(body["balances"], json!({ "0": 1_000_000, "1": 999_970 }));
    assert_eq!(body["height"], 1);
    let root = Hash::from_hex(body["state_root"].as_str().unwrap()).unwrap();
    let account = server.node.inner.app.lock().unwrap().account(&alice);
    assert!(verify(&body, root, &alice, Some(&account)));

    let nobody = PublicKey([5; 32]);
    let (status, body) = server.get(&format!("/v1/accounts/{nobody}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["exists"], false);
    assert_eq!(body["nonce"], 0);
    assert_eq!(body["balances"], json!({}));
    assert!(verify(&body, root, &nobody, None));
    assert!(!verify(&body, root, &nobody, Some(&account)));

    let (status, body) = server.get("/v1/accounts/not-a-key").await;
    assert_eq!((status, error_code(&body)), (400, "bad_encoding"), "{body}");
    server.stop().await;
}

fn verify(
    body: &Value,
    root: Hash,
    address: &PublicKey,
    account: Option<&basalt_app::Account>,
) -> bool {
    let bytes = hex::decode(body["proof"].as_str().unwrap()).unwrap();
    let proof: basalt_app::AccountProof = basalt_types::decode(&bytes, 1 << 20).unwrap();
    basalt_app::verify_account_proof(root, address, account, &proof)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn book_status_and_unknown_market() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let (status, body) = server.get(&format!("/v1/markets/{MARKET}/book")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["market"], MARKET);
    assert_eq!(body["base"], 0);
    assert_eq!(body["quote"], 1);
    assert_eq!(body["asks"], json!([]));
    let bids = body["bids"].as_array().unwrap();
    assert_eq!(bids.len(), 1);
    assert_eq!(bids[0]["owner"], alice().public().to_hex());
    assert_eq!(bids[0]["price_ticks"], 10);
    assert_eq!(bids[0]["quantity"], 3);
    assert!(bids[0]["order_id"].is_u64());

    let (status, body) = server.get("/v1/markets/99/book").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    let (status, body) = server.get("/v1/markets/-1/book").await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");

    let (status, body) = server.get("/v1/status").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chain_id"], CHAIN_ID);
    assert_eq!(body["node_id"], "mock-0");
    assert_eq!(body["sync"], "synced");
    assert_eq!(body["peers"], 3);
    assert_eq!(body["validator_index"], 0);
    assert_eq!(body["latest_block_id"], Hash([1; 32]).to_hex());
    assert_eq!(
        body["validators"][0]["public_key"],
        basalt_types::Keypair::from_label("validator-0")
            .public()
            .to_hex()
    );
    assert_eq!(body["validators"][0]["power"], 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_returns_receipt_or_rejection() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let tx = transfer(1, 7);
    let (status, body) = server
        .post("/v1/simulate", &json!({ "tx": hex::encode(tx.to_bytes()) }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["receipt"]["tx_hash"], tx.hash().to_hex());
    assert_eq!(body["receipt"]["status"], "success");

    let stale = transfer(0, 7);
    let (_, body) = server
        .post(
            "/v1/simulate",
            &json!({ "tx": hex::encode(stale.to_bytes()) }),
        )
        .await;
    assert_eq!(body["receipt"]["status"], "failed");
    assert_eq!(body["receipt"]["error"]["code"], "stale_nonce");

    let mut forged = tx.clone();
    forged.signature = Signature([1; 64]);
    let (status, body) = server
        .post(
            "/v1/simulate",
            &json!({ "tx": hex::encode(forged.to_bytes()) }),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "bad_signature"),
        "{body}"
    );
    let (status, body) = server.post("/v1/simulate", &json!({ "tx": "0" })).await;
    assert_eq!((status, error_code(&body)), (400, "bad_encoding"), "{body}");
    let (status, body) = server.post("/v1/simulate", &json!({ "tx": "00" })).await;
    assert_eq!((status, error_code(&body)), (400, "decode"), "{body}");
    let (status, body) = server.post_raw("/v1/simulate", "not json").await;
    assert_eq!((status, error_code(&body)), (400, "bad_json"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let (status, body) = server.get("/v2/nothing").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
    // `/` is CometBFT's JSON-RPC route: POST only, errors JSON-RPC shaped.
    let (status, body) = server.get("/").await;
    assert_eq!((status, &body["jsonrpc"]), (405, &json!("2.0")), "{body}");
    let response = server
        .client
        .delete(server.url("/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "method_not_allowed");
    // A plain GET on the WebSocket route is not an upgrade.
    let (status, body) = server.get("/v1/subscribe").await;
    assert!(status >= 400, "{status}");
    assert_eq!(error_code(&body), "upgrade_required");
    // Route labels are templates, and unmatched paths share one label.
    let text = server.metrics();
    assert_eq!(
        metric_value(
            &text,
            "basalt_rpc_requests_total{route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_node_text() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(response.text().await.unwrap(), METRICS_TEXT);

    for _ in 0..2 {
        server.get(&format!("/v1/txs/{}", Hash([4; 32]))).await;
    }
    let text = server.metrics();
    assert_eq!(
        metric_value(
            &text,
            "basalt_rpc_requests_total{route=\"/v1/txs/{hash}\",status=\"200\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "basalt_rpc_request_duration_seconds_count{route=\"/v1/txs/{hash}\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "basalt_rpc_requests_total{route=\"/metrics\",status=\"200\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("basalt_rpc_ws_connections 0"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let response = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.0"));
    let paths = document["paths"].as_object().unwrap();
    for route in ROUTES {
        assert!(
            paths.contains_key(route),
            "{route} missing from the OpenAPI paths"
        );
    }
    assert_eq!(paths.len(), ROUTES.len());
    // Every local $ref resolves.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let name = reference.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "dangling $ref {reference}");
    }
    assert!(schemas.contains_key("ErrorResponse"));
    server.stop().await;
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_concurrent_request_is_shed_at_once() {
    let gate = Arc::new(Notify::new());
    let server = Arc::new(TestServer::start(
        MockNode::with_submit_gate(gate.clone()),
        |config| config.max_concurrent_requests = 2,
    ));
    let submit = |nonce: u64| {
        let server = server.clone();
        async move {
            let body = json!({ "txs": [hex::encode(transfer(100 + nonce, 1).to_bytes())] });
            server.post("/v1/txs", &body).await
        }
    };
    let first = tokio::spawn(submit(0));
    let second = tokio::spawn(submit(1));
    let node = server.node.clone();
    wait_until("two submits inside the node", || {
        node.inner.submits_waiting.load(Ordering::SeqCst) == 2
    })
    .await;

    let started = Instant::now();
    let (status, body) = submit(2).await;
    assert_eq!((status, error_code(&body)), (503, "overloaded"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shedding must not wait"
    );
    // Other API routes share the limit; operations routes have their own.
    let (status, body) = server.get("/v1/status").await;
    assert_eq!((status, error_code(&body)), (503, "overloaded"), "{body}");
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = server.metrics();
    assert_eq!(
        metric_value(&text, "basalt_rpc_shed_total{reason=\"overloaded\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "basalt_rpc_requests_total{route=\"/v1/txs\",status=\"503\"}"
        ),
        Some(1.0),
        "{text}"
    );

    gate.notify_waiters();
    for handle in [first, second] {
        let (status, body) = handle.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"][0]["accepted"], true);
    }
    // Capacity is back.
    let (status, _) = server.get("/v1/status").await;
    assert_eq!(status, 200);
    let server = Arc::into_inner(server).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_times_out() {
    let gate = Arc::new(Notify::new());
    let server = TestServer::start(MockNode::with_submit_gate(gate), |config| {
        config.request_timeout_ms = 300;
    });
    let body = json!({ "txs": [hex::encode(transfer(200, 1).to_bytes())] });
    let (status, body) = server.post("/v1/txs", &body).await;
    assert_eq!((status, error_code(&body)), (503, "timeout"), "{body}");
    let text = server.metrics();
    assert_eq!(
        metric_value(&text, "basalt_rpc_shed_total{reason=\"timeout\"}"),
        Some(1.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_serves_on_any_runtime() {
    let node = MockNode::new();
    let metrics = RpcMetrics::new();
    let app = basalt_rpc::router(node, RpcLimits::default(), metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let response = client()
        .get(format!("http://{address}/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(metrics.request_count(basalt_rpc::ROUTE_STATUS, 200), 1);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_listening_and_joins() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let (status, _) = server.get("/v1/status").await;
    assert_eq!(status, 200);
    let address = server.handle.as_ref().unwrap().local_addr();
    let started = Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

#[test]
fn spawn_reports_bind_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = basalt_rpc::RpcConfig {
        listen: taken.local_addr().unwrap(),
        ..basalt_rpc::RpcConfig::default()
    };
    let mut registry = prometheus_client::registry::Registry::with_prefix("basalt");
    assert!(basalt_rpc::spawn(config, MockNode::new(), &mut registry).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_calls_run_on_the_rpc_threads_only() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let (status, _) = server.get("/v1/status").await;
    assert_eq!(status, 200);
    let body = json!({ "txs": [hex::encode(transfer(300, 1).to_bytes())] });
    let (status, _) = server.post("/v1/txs", &body).await;
    assert_eq!(status, 200);
    let threads = server.node.inner.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 2);
    for name in threads {
        assert_eq!(name, basalt_rpc::THREAD_NAME);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_node_call_fails_one_request_only() {
    let server = TestServer::start(MockNode::new(), |_| {});
    let (status, body) = server
        .get(&format!("/v1/markets/{PANIC_MARKET}/book"))
        .await;
    assert_eq!((status, error_code(&body)), (500, "internal"), "{body}");
    let body = json!({ "txs": [hex::encode(transfer(PANIC_NONCE, 1).to_bytes())] });
    let (status, body) = server.post("/v1/txs", &body).await;
    assert_eq!((status, error_code(&body)), (500, "internal"), "{body}");
    let (status, _) = server.get(&format!("/v1/markets/{MARKET}/book")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_typed_429s_and_metrics_stay_reachable() {
    let server = TestServer::start(MockNode::new(), |config| {
        config.max_requests_per_client_per_sec = 5; // bursts of 10
    });
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (status, body) = server.get("/v1/status").await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(ok >= 10, "the burst is served: {statuses:?}");
    assert!(limited >= 20, "the rest is limited: {statuses:?}");
    assert_eq!(ok + limited, 40);
    // The CometBFT routes share the limit; the scraper's route does not.
    let response = server
        .client
        .get(server.url("/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &server.registry).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("shed") && l.contains("reason=\"rate_limited\""))
        .unwrap_or_default();
    let count: f64 = line
        .rsplit(' ')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    assert!(count >= 21.0, "shed counter by reason: {line:?}");
}
