//! JSON-RPC over HTTP: `POST /` (one request or a batch) and the URI form (`GET /status`,
//! `GET /block?height=5`, ...).
//!
//! Per-call errors answer HTTP 200 with a JSON-RPC error, as CometBFT does for `POST /`.
//! Transport-level failures (not JSON, not a request, batch or body over the limit) and every
//! URI-form error carry a 4xx/5xx status as well.

use super::jsonrpc::{parse_request, Params, RpcError, RpcResponse, URI_REQUEST_ID};
use super::{methods, BATCH_CALLS_CONCURRENT_MAX, BATCH_REQUESTS_MAX};
use crate::api::NodeApi;
use crate::routes::{body_bytes, AppState};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;

/// `POST /`: one JSON-RPC request, or a batch (an array) of at most [`BATCH_REQUESTS_MAX`].
/// Notifications (no `id`) run but get no answer; a body of only notifications answers 204.
pub(crate) async fn post<S: NodeApi>(
    State(shared): State<AppState<S>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_bytes(&shared, body) {
        Ok(body) => body,
        Err(error) => return RpcError::from_api(&error).into_response_with_id(Value::Null),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return RpcError::invalid_request("empty body: send a JSON-RPC request")
            .into_response_with_id(Value::Null);
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => return RpcError::parse(error.to_string()).into_response_with_id(Value::Null),
    };
    drop(body);
    match value {
        Value::Array(requests) => batch(&shared, requests).await,
        request => match answer(&shared, request).await {
            Some(response) => Json(response).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    }
}

async fn batch<S: NodeApi>(shared: &AppState<S>, requests: Vec<Value>) -> Response {
    if requests.is_empty() {
        return RpcError::invalid_request("empty batch").into_response_with_id(Value::Null);
    }
    if requests.len() > BATCH_REQUESTS_MAX {
        let mut error = RpcError::invalid_request(format!(
            "{} requests in one batch; at most {BATCH_REQUESTS_MAX}",
            requests.len()
        ));
        error.status = StatusCode::PAYLOAD_TOO_LARGE;
        return error.into_response_with_id(Value::Null);
    }
    let responses: Vec<RpcResponse> = futures::stream::iter(requests)
        .map(|request| answer(shared, request))
        .buffered(BATCH_CALLS_CONCURRENT_MAX)
        .filter_map(std::future::ready)
        .collect()
        .await;
    if responses.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Json(responses).into_response()
    }
}

/// Run one request; `None` for a notification.
async fn answer<S: NodeApi>(shared: &AppState<S>, request: Value) -> Option<RpcResponse> {
    match parse_request(request) {
        Err((id, error)) => Some(RpcResponse::failure(id, error)),
        Ok(request) => {
            let outcome = methods::call(shared, &request.method, &request.params).await;
            request.id.map(|id| RpcResponse::new(id, outcome))
        }
    }
}

/// `GET /<method>?<params>`: the URI form. Answers with id -1, as CometBFT does.
pub(crate) async fn uri<S: NodeApi>(
    State(shared): State<AppState<S>>,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let id = Value::from(URI_REQUEST_ID);
    let params = match query {
        Ok(Query(query)) => Params::Uri(query),
        Err(rejection) => {
            return RpcError::invalid_params(rejection.body_text()).into_response_with_id(id)
        }
    };
    let method = uri.path().trim_start_matches('/');
    match methods::call(&shared, method, &params).await {
        Ok(result) => Json(RpcResponse::success(id, result)).into_response(),
        Err(error) => error.into_response_with_id(id),
    }
}
