//! The OpenAPI 3.0 document served at `/openapi.json`, written by hand.
//!
//! A test checks that it lists every route of [`crate::ROUTES`] and that every `$ref`
//! resolves; keep it next to the handlers when a route changes.

use crate::routes::METRICS_CONTENT_TYPE;
use serde_json::{json, Value};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn integer() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn array_of(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

fn string_enum(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

fn hex32() -> Value {
    json!({
        "type": "string",
        "pattern": "^[0-9a-f]{64}$",
        "description": "32 bytes, lower-case hex",
    })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": properties })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": json_content(schema_ref("ErrorResponse")),
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({ "description": description, "content": json_content(schema_ref(schema)) })
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": json_content(schema_ref(schema)) })
}

/// The 503 of `POST /v1/txs`: shed like every route, or refused while consensus is slow.
const SUBMIT_503: &str = concat!(
    "Shed by admission control: code `overloaded` (too many requests in flight; nothing ",
    "queues), `timeout` (the request deadline passed), or `congested`: this validator's ",
    "recent blocks come slower than its idle blocks, and it admits its clients' ",
    "transactions at a limited rate: a request first waits its turn (briefly, a bounded ",
    "number at once), and past that the whole request is refused before any signature ",
    "check; retry after a backoff or at another validator."
);

/// [`with_shed_responses`] with `description` as the 503.
fn with_503(responses: Value, description: &str) -> Value {
    let mut responses = with_shed_responses(responses);
    if let Some(map) = responses.as_object_mut() {
        map.insert("503".to_owned(), error_response(description));
    }
    responses
}

/// Add the responses every admitted route can give besides its own.
fn with_shed_responses(responses: Value) -> Value {
    let mut responses = responses;
    if let Some(map) = responses.as_object_mut() {
        map.insert(
            "503".to_owned(),
            error_response(concat!(
                "Shed by admission control: code `overloaded` (too many requests in flight; ",
                "nothing queues) or `timeout` (the request deadline passed)."
            )),
        );
        map.insert(
            "500".to_owned(),
            error_response("Code `internal`: the node failed to answer."),
        );
    }
    responses
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": schema,
    })
}

fn submit_path() -> Value {
    json!({
        "post": {
            "operationId": "submitTxs",
            "summary": "Submit signed transactions to the mempool",
            "description": concat!(
                "Each entry is the canonical borsh encoding of a SignedTx, in hex (default) ",
                "or base64. One result per entry, same order; `hash` is sha256 of the decoded ",
                "bytes even when the entry is rejected. Bytes that are not a SignedTx are ",
                "rejected with code `decode` (or `too_large`); other codes come from the node: ",
                "`bad_signature`, `wrong_chain_id`, `stale_nonce`, `duplicate`, ",
                "`mempool_full`, `too_large`, `overloaded`."
            ),
            "requestBody": json_body("SubmitRequest"),
            "responses": with_503(json!({
                "200": json_response("Per-transaction results", "SubmitResponse"),
                "400": error_response(concat!(
                    "`bad_json` (not JSON of the request's shape), `bad_encoding` (an entry ",
                    "is not hex/base64), `bad_request` (empty list)"
                )),
                "413": error_response("`body_too_large` or `too_many_txs`"),
            }), SUBMIT_503),
        }
    })
}

fn tx_path() -> Value {
    json!({
        "get": {
            "operationId": "getTx",
            "summary": "A transaction's status and, once committed, its receipt",
            "parameters": [path_param("hash", "Transaction hash", hex32())],
            "responses": with_shed_responses(json!({
                "200": json_response("Status (an unknown hash answers `unknown`)", "TxStatus"),
                "400": error_response("`bad_encoding`: not 64 hex digits"),
            })),
        }
    })
}

fn block_path() -> Value {
    let height = json!({ "oneOf": [integer(), string_enum(&["latest"])] });
    json!({
        "get": {
            "operationId": "getBlock",
            "summary": "A committed block with its commit certificate",
            "parameters": [path_param("height", "A height, or `latest`", height)],
            "responses": with_shed_responses(json!({
                "200": json_response("The block", "Block"),
                "400": error_response("`bad_request`: neither a number nor `latest`"),
                "404": error_response("`not_found`: no such block"),
            })),
        }
    })
}

fn account_path() -> Value {
    json!({
        "get": {
            "operationId": "getAccount",
            "summary": "An account with a Merkle proof of it (or of its absence)",
            "parameters": [path_param("address", "Address (ed25519 public key)", hex32())],
            "responses": with_shed_responses(json!({
                "200": json_response(
                    "The account (zero values and `exists: false` when absent)",
                    "Account",
                ),
                "400": error_response("`bad_encoding`: not 64 hex digits"),
            })),
        }
    })
}

fn book_path() -> Value {
    let market = json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX });
    json!({
        "get": {
            "operationId": "getBook",
            "summary": "A market's resting orders, best first",
            "parameters": [path_param("market", "Market id", market)],
            "responses": with_shed_responses(json!({
                "200": json_response("The book", "Book"),
                "400": error_response("`bad_request`: market is not a number"),
                "404": error_response("`not_found`: unknown market"),
            })),
        }
    })
}

fn status_path() -> Value {
    json!({
        "get": {
            "operationId": "getStatus",
            "summary": "The node's view of the chain and of itself",
            "responses": with_shed_responses(json!({
                "200": json_response("Status", "Status"),
            })),
        }
    })
}

fn commits_path() -> Value {
    let mut from = query_param(
        "from",
        false,
        "First height wanted (default 0: the oldest remembered)",
    );
    from["schema"] = integer();
    json!({
        "get": {
            "operationId": "getCommitTimes",
            "summary": concat!(
                "When this node made each recent height durable, by its own clock, oldest ",
                "first, at most 1000 per answer (ask again from the last height + 1). The ",
                "node remembers a bounded window of recent heights."
            ),
            "parameters": [from],
            "responses": with_shed_responses(json!({
                "200": json_response("Commit times", "CommitTimes"),
                "400": error_response("`bad_request`: from is not a number"),
            })),
        }
    })
}

fn simulate_path() -> Value {
    json!({
        "post": {
            "operationId": "simulate",
            "summary": "The receipt a transaction would get if executed now (no state change)",
            "requestBody": json_body("SimulateRequest"),
            "responses": with_shed_responses(json!({
                "200": json_response("The receipt", "SimulateResponse"),
                "400": error_response(concat!(
                    "`bad_json`, `bad_encoding`, `decode`, `too_large`, or the node's ",
                    "rejection code (e.g. `bad_signature`)"
                )),
                "413": error_response("`body_too_large`"),
            })),
        }
    })
}

fn subscribe_path() -> Value {
    json!({
        "get": {
            "operationId": "subscribe",
            "summary": "WebSocket: committed blocks and receipts of watched transactions",
            "description": concat!(
                "Upgrade to a WebSocket and send JSON text messages (SubscribeCommand): ",
                "`{\"subscribe\":\"blocks\"}`, ",
                "`{\"subscribe\":\"receipts\",\"hashes\":[...]}`, ",
                "`{\"unsubscribe\":\"blocks\"}`, ",
                "`{\"unsubscribe\":\"receipts\",\"hashes\":[...]}` (no hashes: unwatch all). ",
                "The server pushes ServerMessage objects: `subscribed`/`unsubscribed` ",
                "acknowledgements; `block` for every committed block; `receipt` once per ",
                "watched hash (hashes already committed when watched are pushed at once, ",
                "before the acknowledgement); `lagged` when this connection fell behind ",
                "(watched hashes are then re-checked and their receipts pushed); `error` ",
                "for a bad command (codes `bad_json`, `bad_request`, `bad_encoding`, ",
                "`too_many_hashes`: at most 10000 watched hashes per connection)."
            ),
            "responses": {
                "101": { "description": "Switching protocols to WebSocket" },
                "400": error_response("`upgrade_required`: not a WebSocket upgrade request"),
                "426": error_response("`upgrade_required`: not a WebSocket upgrade request"),
                "503": error_response("`overloaded`: too many requests or connections"),
            },
        }
    })
}

fn metrics_path() -> Value {
    let mut content = serde_json::Map::new();
    content.insert(
        METRICS_CONTENT_TYPE.to_owned(),
        json!({ "schema": string() }),
    );
    json!({
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of the node and of this RPC",
            "responses": {
                "200": { "description": "OpenMetrics text exposition", "content": content },
                "503": error_response("`overloaded` or `timeout`"),
            },
        }
    })
}

fn openapi_path() -> Value {
    json!({
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.0 document",
                    "content": json_content(json!({ "type": "object" })),
                },
                "503": error_response("`overloaded` or `timeout`"),
            },
        }
    })
}

fn jsonrpc_response(description: &str) -> Value {
    json!({ "description": description, "content": json_content(schema_ref("JsonRpcResponse")) })
}

fn query_param(name: &str, required: bool, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": string(),
    })
}

/// `GET /<method>`: CometBFT's URI form of a method.
fn comet_uri_path(method: &str, summary: &str, parameters: Value) -> Value {
    json!({
        "get": {
            "operationId": format!("comet_{method}"),
            "summary": summary,
            "tags": ["CometBFT"],
            "parameters": parameters,
            "responses": {
                "200": jsonrpc_response("`{\"jsonrpc\":\"2.0\",\"id\":-1,\"result\":...}`"),
                "400": jsonrpc_response("JSON-RPC error -32602 (invalid params)"),
                "404": jsonrpc_response("JSON-RPC error -32603: no such block or transaction"),
                "500": jsonrpc_response("JSON-RPC error -32603: the node failed or a wait ran out"),
                "503": jsonrpc_response("Shed by admission control (`overloaded`, `timeout`)"),
            },
        }
    })
}

fn comet_paths() -> Vec<(&'static str, Value)> {
    let tx = || {
        json!([query_param(
            "tx",
            true,
            "Canonical SignedTx bytes: 0x-hex or base64"
        )])
    };
    vec![
        (
            "/",
            json!({
                "post": {
                    "operationId": "comet_jsonrpc",
                    "summary": "CometBFT 0.38 JSON-RPC 2.0: one request or a batch",
                    "tags": ["CometBFT"],
                    "description": concat!(
                        "Methods `health`, `status`, `block` {height?}, `tx` {hash: base64 or ",
                        "hex}, `broadcast_tx_sync|async|commit` {tx: base64}, in CometBFT 0.38's ",
                        "shapes. A batch is an array of at most 100 requests. Per-call errors ",
                        "answer 200 with a JSON-RPC error; a request without `id` is a ",
                        "notification and gets no answer (204 when nothing is answered)."
                    ),
                    "requestBody": {
                        "required": true,
                        "content": json_content(json!({ "type": "object" })),
                    },
                    "responses": {
                        "200": jsonrpc_response("A JSON-RPC response, or an array of them"),
                        "204": { "description": "Only notifications: nothing to answer" },
                        "400": jsonrpc_response("-32700 parse error or -32600 invalid request"),
                        "413": jsonrpc_response("-32600: body or batch over the limit"),
                        "503": jsonrpc_response("Shed by admission control"),
                    },
                }
            }),
        ),
        (
            "/websocket",
            json!({
                "get": {
                    "operationId": "comet_websocket",
                    "summary": "CometBFT JSON-RPC over WebSocket, with subscriptions",
                    "tags": ["CometBFT"],
                    "description": concat!(
                        "Every method of `POST /`, plus `subscribe`, `unsubscribe` {query} and ",
                        "`unsubscribe_all`. Queries: `tm.event='NewBlock'` and `tm.event='Tx'`. ",
                        "Events carry the subscribe request's id; a connection that falls ",
                        "behind has its subscriptions cancelled with error -32000."
                    ),
                    "responses": {
                        "101": { "description": "Switching protocols to WebSocket" },
                        "400": jsonrpc_response("Not a WebSocket upgrade request"),
                        "503": jsonrpc_response("Too many requests or connections"),
                    },
                }
            }),
        ),
        (
            "/health",
            comet_uri_path("health", "Empty result when the RPC is up", json!([])),
        ),
        (
            "/status",
            comet_uri_path("status", "Node, sync and validator info", json!([])),
        ),
        (
            "/block",
            comet_uri_path(
                "block",
                "A block (latest without height)",
                json!([query_param("height", false, "A height above 0")]),
            ),
        ),
        (
            "/tx",
            comet_uri_path(
                "tx",
                "A committed transaction with its result",
                json!([query_param(
                    "hash",
                    true,
                    "0x-hex, hex or base64 of the sha256 hash"
                )]),
            ),
        ),
        (
            "/broadcast_tx_sync",
            comet_uri_path("broadcast_tx_sync", "Submit and wait for admission", tx()),
        ),
        (
            "/broadcast_tx_async",
            comet_uri_path("broadcast_tx_async", "Submit without waiting", tx()),
        ),
        (
            "/broadcast_tx_commit",
            comet_uri_path("broadcast_tx_commit", "Submit and wait for the block", tx()),
        ),
    ]
}

fn paths() -> Value {
    let mut paths = basalt_paths();
    if let Value::Object(map) = &mut paths {
        for (route, path) in comet_paths() {
            map.insert(route.to_owned(), path);
        }
    }
    paths
}

fn basalt_paths() -> Value {
    json!({
        "/v1/txs": submit_path(),
        "/v1/txs/{hash}": tx_path(),
        "/v1/blocks/{height}": block_path(),
        "/v1/accounts/{address}": account_path(),
        "/v1/markets/{market}/book": book_path(),
        "/v1/status": status_path(),
        "/v1/commits": commits_path(),
        "/v1/simulate": simulate_path(),
        "/v1/subscribe": subscribe_path(),
        "/metrics": metrics_path(),
        "/openapi.json": openapi_path(),
    })
}

fn error_schemas() -> Value {
    let mut response = object(&["error"], json!({ "error": schema_ref("ErrorBody") }));
    response["description"] = json!(concat!(
        "Body of every 4xx/5xx response. Unknown routes answer 404 `not_found`; a known ",
        "route with another method answers 405 `method_not_allowed`."
    ));
    json!({
        "ErrorBody": object(&["code", "message"], json!({
            "code": { "type": "string", "description": "Stable snake-case code" },
            "message": string(),
        })),
        "ErrorResponse": response,
    })
}

fn tx_schemas() -> Value {
    let encoded_txs = json!({
        "type": "array",
        "minItems": 1,
        "maxItems": 10000,
        "items": string(),
        "description": "SignedTx canonical bytes, encoded as `encoding` says",
    });
    json!({
        "Encoding": { "type": "string", "enum": ["hex", "base64"], "default": "hex" },
        "SubmitRequest": object(&["txs"], json!({
            "txs": encoded_txs,
            "encoding": schema_ref("Encoding"),
        })),
        "SubmitResult": object(&["hash", "accepted"], json!({
            "hash": hex32(),
            "accepted": { "type": "boolean" },
            "error": schema_ref("ErrorBody"),
        })),
        "SubmitResponse": object(&["results"], json!({
            "results": array_of(schema_ref("SubmitResult")),
        })),
        "TxStatus": object(&["hash", "status"], json!({
            "hash": hex32(),
            "status": string_enum(&["pending", "committed", "rejected", "unknown"]),
            "height": integer(),
            "index": integer(),
            "receipt": schema_ref("Receipt"),
            "error": schema_ref("ErrorBody"),
        })),
        "ItemResult": object(&["result"], json!({
            "result": string_enum(&["applied", "failed", "rolled_back"]),
            "order_id": integer(),
            "error": schema_ref("ErrorBody"),
        })),
        "Receipt": object(&["tx_hash", "status", "items"], json!({
            "tx_hash": hex32(),
            "status": string_enum(&["success", "failed"]),
            "error": schema_ref("ErrorBody"),
            "items": array_of(schema_ref("ItemResult")),
        })),
        "SimulateRequest": object(&["tx"], json!({
            "tx": { "type": "string", "description": "SignedTx canonical bytes, encoded" },
            "encoding": schema_ref("Encoding"),
        })),
        "SimulateResponse": object(&["receipt"], json!({ "receipt": schema_ref("Receipt") })),
    })
}

fn payload_schemas() -> Value {
    let mut item = object(
        &["op"],
        json!({
            "op": string_enum(&[
                "transfer", "place_order", "cancel_order", "create_task", "respond_task",
            ]),
            "to": hex32(),
            "asset": integer(),
            "amount": integer(),
            "market": integer(),
            "side": string_enum(&["buy", "sell"]),
            "price_ticks": integer(),
            "quantity": integer(),
            "order_id": integer(),
            "task_id": hex32(),
            "payload_hash": hex32(),
            "result_hash": hex32(),
        }),
    );
    item["description"] = json!(concat!(
        "`transfer` {to, asset, amount}; `place_order` {market, side, price_ticks, ",
        "quantity}; `cancel_order` {market, order_id}; `create_task` {task_id, ",
        "payload_hash}; `respond_task` {task_id, result_hash}"
    ));
    let mut payload = object(
        &["type"],
        json!({
            "type": string_enum(&["single", "batch"]),
            "item": schema_ref("BatchItem"),
            "mode": string_enum(&["atomic", "independent"]),
            "items": array_of(schema_ref("BatchItem")),
        }),
    );
    payload["description"] = json!("`single` {item} or `batch` {mode, items}");
    json!({ "BatchItem": item, "Payload": payload })
}

fn block_schemas() -> Value {
    let nullable_certificate = json!({
        "allOf": [schema_ref("CommitCertificate")],
        "nullable": true,
    });
    let commit_signature = object(
        &["validator", "signature"],
        json!({
            "validator": integer(),
            "signature": { "type": "string", "description": "64 bytes, hex" },
        }),
    );
    json!({
        "Tx": object(&["hash", "chain_id", "sender", "nonce", "payload", "signature"], json!({
            "hash": hex32(),
            "chain_id": string(),
            "sender": hex32(),
            "nonce": integer(),
            "payload": schema_ref("Payload"),
            "signature": { "type": "string", "description": "64 bytes, hex" },
        })),
        "BlockHeader": object(
            &[
                "height", "round", "proposer", "parent_hash", "state_root", "txs_root",
                "time_ms", "last_commit_hash",
            ],
            json!({
                "height": integer(),
                "round": integer(),
                "proposer": integer(),
                "parent_hash": hex32(),
                "state_root": hex32(),
                "txs_root": hex32(),
                "time_ms": integer(),
                "last_commit_hash": hex32(),
            }),
        ),
        "CommitCertificate": object(&["height", "round", "block_id", "signatures"], json!({
            "height": integer(),
            "round": integer(),
            "block_id": hex32(),
            "signatures": array_of(commit_signature),
        })),
        "Block": object(&["id", "header", "txs", "last_commit", "certificate"], json!({
            "id": hex32(),
            "header": schema_ref("BlockHeader"),
            "txs": array_of(schema_ref("Tx")),
            "last_commit": nullable_certificate.clone(),
            "certificate": nullable_certificate,
        })),
    })
}

fn state_schemas() -> Value {
    let balances = json!({
        "type": "object",
        "additionalProperties": integer(),
        "description": "Asset id (decimal string) to free balance",
    });
    let proof = json!({
        "type": "string",
        "description": "Hex of the borsh encoding of basalt_app::AccountProof",
    });
    json!({
        "Account": object(
            &["address", "nonce", "balances", "exists", "proof", "state_root", "height"],
            json!({
                "address": hex32(),
                "nonce": integer(),
                "balances": balances,
                "exists": { "type": "boolean" },
                "proof": proof,
                "state_root": hex32(),
                "height": integer(),
            }),
        ),
        "Order": object(&["order_id", "owner", "price_ticks", "quantity"], json!({
            "order_id": integer(),
            "owner": hex32(),
            "price_ticks": integer(),
            "quantity": integer(),
        })),
        "Book": object(&["market", "base", "quote", "bids", "asks"], json!({
            "market": integer(),
            "base": integer(),
            "quote": integer(),
            "bids": array_of(schema_ref("Order")),
            "asks": array_of(schema_ref("Order")),
        })),
        "Validator": object(&["public_key", "power"], json!({
            "public_key": hex32(),
            "power": integer(),
        })),
        "CommitTimes": object(&["commits"], json!({
            "commits": array_of(object(&["height", "at_unix_us"], json!({
                "height": integer(),
                "at_unix_us": integer(),
            }))),
        })),
        "Status": object(
            &[
                "chain_id", "node_id", "height", "round", "sync", "peers", "validators",
                "validator_index", "latest_block_id", "latest_state_root", "latest_time_ms",
            ],
            json!({
                "chain_id": string(),
                "node_id": string(),
                "height": integer(),
                "round": integer(),
                "sync": string_enum(&["idle", "syncing", "synced"]),
                "peers": integer(),
                "validators": array_of(schema_ref("Validator")),
                "validator_index": { "type": "integer", "nullable": true },
                "latest_block_id": hex32(),
                "latest_state_root": hex32(),
                "latest_time_ms": integer(),
            }),
        ),
    })
}

fn subscription_schemas() -> Value {
    let mut command = json!({
        "type": "object",
        "properties": {
            "subscribe": string_enum(&["blocks", "receipts"]),
            "unsubscribe": string_enum(&["blocks", "receipts"]),
            "hashes": { "type": "array", "maxItems": 10000, "items": hex32() },
        },
    });
    command["description"] = json!("Exactly one of `subscribe` or `unsubscribe`.");
    let mut message = object(
        &["type"],
        json!({
            "type": string_enum(&[
                "subscribed", "unsubscribed", "block", "receipt", "lagged", "error",
            ]),
            "topic": string_enum(&["blocks", "receipts"]),
            "watching": integer(),
            "already_committed": integer(),
            "height": integer(),
            "id": hex32(),
            "time_ms": integer(),
            "txs": { "type": "integer", "description": "Transactions in the block" },
            "hash": hex32(),
            "index": integer(),
            "receipt": schema_ref("Receipt"),
            "missed": integer(),
            "error": schema_ref("ErrorBody"),
        }),
    );
    message["description"] = json!(concat!(
        "`subscribed` {topic, watching?, already_committed?}; `unsubscribed` {topic, ",
        "watching?}; `block` {height, id, time_ms, txs}; `receipt` {hash, height, index, ",
        "receipt}; `lagged` {missed}; `error` {error}"
    ));
    json!({ "SubscribeCommand": command, "ServerMessage": message })
}

fn comet_schemas() -> Value {
    let mut response = object(
        &["jsonrpc", "id"],
        json!({
            "jsonrpc": string_enum(&["2.0"]),
            "id": { "description": "The request's id (-1 in the URI form)" },
            "result": { "type": "object", "description": "CometBFT 0.38's result shape" },
            "error": object(&["code", "message"], json!({
                "code": { "type": "integer" },
                "message": string(),
                "data": string(),
            })),
        }),
    );
    response["description"] = json!(concat!(
        "A JSON-RPC 2.0 response with exactly one of `result` or `error`. Hashes are ",
        "upper-case hex, transaction bytes base64, 64-bit integers decimal strings."
    ));
    json!({ "JsonRpcResponse": response })
}

fn schemas() -> Value {
    let mut all = serde_json::Map::new();
    for group in [
        error_schemas(),
        tx_schemas(),
        payload_schemas(),
        block_schemas(),
        state_schemas(),
        subscription_schemas(),
        comet_schemas(),
    ] {
        if let Value::Object(map) = group {
            all.extend(map);
        }
    }
    Value::Object(all)
}

/// The OpenAPI 3.0 document describing every route, its parameters, bodies and errors.
pub fn openapi_document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Basalt node RPC",
            "version": env!("CARGO_PKG_VERSION"),
            "description": concat!(
                "HTTP+JSON API of a Basalt node. Hashes and keys are lower-case hex. Every ",
                "error is `{\"error\":{\"code\",\"message\"}}` with a 4xx/5xx status. ",
                "Admission control answers 503 `overloaded` when the server is full (nothing ",
                "queues), 503 `timeout` past the request deadline, and 413 `body_too_large` ",
                "over the body limit."
            ),
        },
        "paths": paths(),
        "components": { "schemas": schemas() },
    })
}
