//! JSON-RPC 2.0 envelopes as CometBFT writes them, and request parameters in both of its
//! forms (a JSON `params` object or array, and the query string of the URI form).

use crate::error::ApiError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use basalt_types::Hash;
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The id CometBFT answers URI-form requests with (they carry none).
pub(crate) const URI_REQUEST_ID: i64 = -1;

/// A JSON-RPC error: CometBFT's code and message, a detail in `data`, and the HTTP status the
/// URI form (or a transport-level failure) answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    pub(crate) code: i32,
    pub(crate) message: &'static str,
    pub(crate) data: String,
    pub(crate) status: StatusCode,
}

impl RpcError {
    fn new(code: i32, message: &'static str, data: impl Into<String>, status: StatusCode) -> Self {
        RpcError {
            code,
            message,
            data: data.into(),
            status,
        }
    }

    /// -32700: the body is not JSON.
    pub(crate) fn parse(data: impl Into<String>) -> Self {
        Self::new(-32700, "Parse error", data, StatusCode::BAD_REQUEST)
    }

    /// -32600: JSON, but not a request (or a batch over the limit).
    pub(crate) fn invalid_request(data: impl Into<String>) -> Self {
        Self::new(-32600, "Invalid Request", data, StatusCode::BAD_REQUEST)
    }

    /// -32601.
    pub(crate) fn method_not_found(method: &str) -> Self {
        let method: String = method.chars().take(64).collect();
        Self::new(
            -32601,
            "Method not found",
            format!("no method {method:?}"),
            StatusCode::NOT_FOUND,
        )
    }

    /// -32602: a parameter is missing or malformed.
    pub(crate) fn invalid_params(data: impl Into<String>) -> Self {
        Self::new(-32602, "Invalid params", data, StatusCode::BAD_REQUEST)
    }

    /// -32603 for something the node does not have (CometBFT answers these as internal
    /// errors too; the URI form says 404).
    pub(crate) fn not_found(data: impl Into<String>) -> Self {
        Self::new(-32603, "Internal error", data, StatusCode::NOT_FOUND)
    }

    /// -32603: the node failed, or a wait ran out.
    pub(crate) fn internal(data: impl Into<String>) -> Self {
        Self::new(
            -32603,
            "Internal error",
            data,
            StatusCode::INTERNAL_SERVER_ERROR,
        )
    }

    /// -32000: a subscription ended by the server.
    pub(crate) fn server(data: impl Into<String>) -> Self {
        Self::new(
            -32000,
            "Server error",
            data,
            StatusCode::SERVICE_UNAVAILABLE,
        )
    }

    /// The same failure as a Basalt API error (admission control, body limit), keeping its
    /// status and putting its code in `data`.
    pub(crate) fn from_api(error: &ApiError) -> Self {
        let data = format!("{}: {}", error.code, error.message);
        let (code, message) = if error.status.is_server_error() {
            (-32603, "Internal error")
        } else {
            (-32600, "Invalid Request")
        };
        Self::new(code, message, data, error.status)
    }

    /// A whole HTTP response for this error (transport-level failures and the URI form).
    pub(crate) fn into_response_with_id(self, id: Value) -> Response {
        let status = self.status;
        (status, Json(RpcResponse::failure(id, self))).into_response()
    }
}

/// `{"code","message","data"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorObject {
    code: i32,
    message: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    data: String,
}

/// `{"jsonrpc":"2.0","id",("result"|"error")}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RpcResponse {
    jsonrpc: &'static str,
    id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorObject>,
}

impl RpcResponse {
    pub(crate) fn success(id: Value, result: Value) -> Self {
        RpcResponse {
            jsonrpc: "2.0",
            id,
            result: Some(result),
            error: None,
        }
    }

    pub(crate) fn failure(id: Value, error: RpcError) -> Self {
        RpcResponse {
            jsonrpc: "2.0",
            id,
            result: None,
            error: Some(ErrorObject {
                code: error.code,
                message: error.message,
                data: error.data,
            }),
        }
    }

    pub(crate) fn new(id: Value, outcome: Result<Value, RpcError>) -> Self {
        match outcome {
            Ok(result) => Self::success(id, result),
            Err(error) => Self::failure(id, error),
        }
    }
}

/// One parsed request. `id` is `None` for a notification (no `id` member), which gets no
/// answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) params: Params,
}

/// Parse one request object; on failure, the id to answer with (when one could be read).
pub(crate) fn parse_request(value: Value) -> Result<Request, (Value, RpcError)> {
    let Value::Object(mut object) = value else {
        return Err((
            Value::Null,
            RpcError::invalid_request("a request is a JSON object"),
        ));
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request("id must be a string, a number or null"),
            ))
        }
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    match object.get("jsonrpc") {
        None => {}
        Some(Value::String(version)) if version == "2.0" => {}
        Some(_) => {
            return Err((
                answer_id,
                RpcError::invalid_request("jsonrpc must be \"2.0\""),
            ))
        }
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => {
            return Err((
                answer_id,
                RpcError::invalid_request("method must be a string"),
            ))
        }
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Params::None,
        Some(Value::Object(named)) => Params::Named(named),
        Some(Value::Array(positional)) => Params::Positional(positional),
        Some(_) => {
            return Err((
                answer_id,
                RpcError::invalid_params("params must be an object or an array"),
            ))
        }
    };
    Ok(Request { id, method, params })
}

/// Request parameters, by name or position, from JSON or from a query string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Params {
    None,
    Named(Map<String, Value>),
    Positional(Vec<Value>),
    Uri(HashMap<String, String>),
}

/// One raw parameter value.
enum Raw<'a> {
    Json(&'a Value),
    Uri(&'a str),
}

impl Params {
    fn raw(&self, name: &str, position: usize) -> Option<Raw<'_>> {
        let raw = match self {
            Params::None => None,
            Params::Named(named) => named.get(name).map(Raw::Json),
            Params::Positional(values) => values.get(position).map(Raw::Json),
            Params::Uri(query) => query.get(name).map(|text| Raw::Uri(text.as_str())),
        };
        match raw {
            Some(Raw::Json(Value::Null)) => None,
            Some(Raw::Uri("")) => None,
            other => other,
        }
    }

    /// An optional positive height (`"5"` or `5`; URI: `5` or `"5"`).
    pub(crate) fn height(&self, name: &str, position: usize) -> Result<Option<u64>, RpcError> {
        let text = match self.raw(name, position) {
            None => return Ok(None),
            Some(Raw::Json(Value::Number(number))) => number.to_string(),
            Some(Raw::Json(Value::String(text))) => text.clone(),
            Some(Raw::Json(_)) => {
                return Err(RpcError::invalid_params(format!(
                    "{name} is a number or a decimal string"
                )))
            }
            Some(Raw::Uri(text)) => unquote(text).to_owned(),
        };
        let height: i64 = text.parse().map_err(|_| {
            RpcError::invalid_params(format!("{name} is a 64-bit integer, got {}", clip(&text)))
        })?;
        if height <= 0 {
            return Err(RpcError::invalid_params(format!(
                "height must be greater than 0, but got {height}"
            )));
        }
        Ok(Some(height.unsigned_abs()))
    }

    /// Required bytes: base64 in JSON (as CometBFT marshals `[]byte`), or `0x`-prefixed hex;
    /// in the URI form `0x`-hex, a quoted string (its literal bytes, as CometBFT reads it)
    /// or base64.
    pub(crate) fn bytes(&self, name: &str, position: usize) -> Result<Vec<u8>, RpcError> {
        match self.raw(name, position) {
            None => Err(RpcError::invalid_params(format!("missing {name}"))),
            Some(Raw::Json(Value::String(text))) => decode_bytes(name, text),
            Some(Raw::Json(_)) => Err(RpcError::invalid_params(format!(
                "{name} is a base64 string"
            ))),
            Some(Raw::Uri(text)) => {
                let quoted = text.len() >= 2 && text.starts_with('"') && text.ends_with('"');
                match text.get(1..text.len().saturating_sub(1)) {
                    Some(inner) if quoted => Ok(inner.as_bytes().to_vec()),
                    _ => decode_bytes(name, text),
                }
            }
        }
    }

    /// A required 32-byte hash: hex (optionally `0x`-prefixed, either case) or base64.
    pub(crate) fn hash(&self, name: &str, position: usize) -> Result<Hash, RpcError> {
        let text = match self.raw(name, position) {
            None => return Err(RpcError::invalid_params(format!("missing {name}"))),
            Some(Raw::Json(Value::String(text))) => text.as_str(),
            Some(Raw::Json(_)) => {
                return Err(RpcError::invalid_params(format!(
                    "{name} is a hex or base64 string"
                )))
            }
            Some(Raw::Uri(text)) => unquote(text),
        };
        let digits = strip_hex_prefix(text).unwrap_or(text);
        if let Some(hash) = Hash::from_hex(digits) {
            return Ok(hash);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| {
                RpcError::invalid_params(format!(
                    "{name} is 32 bytes in hex or base64, got {}",
                    clip(text)
                ))
            })?;
        let array: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            RpcError::invalid_params(format!("{name} is 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Hash(array))
    }

    /// A required string.
    pub(crate) fn string(&self, name: &str, position: usize) -> Result<String, RpcError> {
        match self.raw(name, position) {
            None => Err(RpcError::invalid_params(format!("missing {name}"))),
            Some(Raw::Json(Value::String(text))) => Ok(text.clone()),
            Some(Raw::Json(_)) => Err(RpcError::invalid_params(format!("{name} is a string"))),
            Some(Raw::Uri(text)) => Ok(unquote(text).to_owned()),
        }
    }
}

fn strip_hex_prefix(text: &str) -> Option<&str> {
    text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))
}

fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(text)
}

fn decode_bytes(name: &str, text: &str) -> Result<Vec<u8>, RpcError> {
    match strip_hex_prefix(text) {
        Some(digits) => hex::decode(digits)
            .map_err(|error| RpcError::invalid_params(format!("{name} is not hex: {error}"))),
        None => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|error| RpcError::invalid_params(format!("{name} is not base64: {error}"))),
    }
}

/// At most 80 characters of client text, for error messages.
fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn named(value: Value) -> Params {
        match value {
            Value::Object(map) => Params::Named(map),
            _ => Params::None,
        }
    }

    fn uri(pairs: &[(&str, &str)]) -> Params {
        Params::Uri(
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn requests_parse_and_fail_with_the_right_codes() {
        let request =
            parse_request(json!({"jsonrpc":"2.0","id":7,"method":"block","params":{"height":"3"}}))
                .unwrap();
        assert_eq!(request.id, Some(json!(7)));
        assert_eq!(request.params.height("height", 0).unwrap(), Some(3));
        let notification = parse_request(json!({"jsonrpc":"2.0","method":"health"})).unwrap();
        assert_eq!(notification.id, None);
        let (id, error) =
            parse_request(json!({"jsonrpc":"1.0","id":"a","method":"x"})).unwrap_err();
        assert_eq!((id, error.code), (json!("a"), -32600));
        let (id, error) = parse_request(json!({"id":[1],"method":"x"})).unwrap_err();
        assert_eq!((id, error.code), (Value::Null, -32600));
        let (_, error) = parse_request(json!({"id":1,"method":"x","params":3})).unwrap_err();
        assert_eq!(error.code, -32602);
        let (_, error) = parse_request(json!(["not", "an", "object"])).unwrap_err();
        assert_eq!(error.code, -32600);
    }

    #[test]
    fn heights_in_every_form() {
        assert_eq!(
            named(json!({"height": 5})).height("height", 0).unwrap(),
            Some(5)
        );
        assert_eq!(
            Params::Positional(vec![json!("9")])
                .height("height", 0)
                .unwrap(),
            Some(9)
        );
        assert_eq!(
            named(json!({"height": null})).height("height", 0).unwrap(),
            None
        );
        assert_eq!(
            uri(&[("height", "\"4\"")]).height("height", 0).unwrap(),
            Some(4)
        );
        assert_eq!(uri(&[("height", "")]).height("height", 0).unwrap(), None);
        for bad in [json!(0), json!("-1"), json!("x"), json!(1.5), json!([1])] {
            let error = named(json!({ "height": bad }))
                .height("height", 0)
                .unwrap_err();
            assert_eq!(error.code, -32602, "{bad}");
        }
    }

    #[test]
    fn bytes_and_hashes_in_every_form() {
        let hash = Hash([0xab; 32]);
        let base64 = base64::engine::general_purpose::STANDARD.encode(hash.0);
        for text in [
            hash.to_hex(),
            hash.to_hex().to_uppercase(),
            format!("0x{}", hash),
            base64,
        ] {
            assert_eq!(
                named(json!({ "hash": text })).hash("hash", 0).unwrap(),
                hash
            );
            assert_eq!(
                uri(&[("hash", text.as_str())]).hash("hash", 0).unwrap(),
                hash
            );
        }
        assert_eq!(
            named(json!({"hash": "AAAA"}))
                .hash("hash", 0)
                .unwrap_err()
                .code,
            -32602
        );
        assert_eq!(named(json!({})).hash("hash", 0).unwrap_err().code, -32602);

        assert_eq!(
            named(json!({"tx": "AQID"})).bytes("tx", 0).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            named(json!({"tx": "0x010203"})).bytes("tx", 0).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            uri(&[("tx", "0x010203")]).bytes("tx", 0).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            uri(&[("tx", "\"ab\"")]).bytes("tx", 0).unwrap(),
            b"ab".to_vec()
        );
        assert_eq!(
            named(json!({"tx": "@@"})).bytes("tx", 0).unwrap_err().code,
            -32602
        );
        assert_eq!(
            named(json!({"tx": 1})).bytes("tx", 0).unwrap_err().code,
            -32602
        );
    }

    #[test]
    fn responses_have_the_cometbft_shape() {
        let ok = RpcResponse::success(json!(1), json!({}));
        assert_eq!(
            serde_json::to_value(ok).unwrap(),
            json!({"jsonrpc":"2.0","id":1,"result":{}})
        );
        let failed = RpcResponse::failure(json!("x"), RpcError::internal("boom"));
        assert_eq!(
            serde_json::to_value(failed).unwrap(),
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32603,"message":"Internal error","data":"boom"}})
        );
    }
}
