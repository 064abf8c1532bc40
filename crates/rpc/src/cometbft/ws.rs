//! `GET /websocket`: JSON-RPC over WebSocket, with `subscribe`, `unsubscribe` and
//! `unsubscribe_all` for `tm.event='NewBlock'` and `tm.event='Tx'`.
//!
//! Every other method works here too, one call at a time per connection. Events carry the
//! subscribe request's id, as in CometBFT. A connection holds at most one subscription per
//! query, so at most [`EventKind::ALL`]`.len()` in all, and takes the node's event stream only
//! while it has one. A connection that falls behind the node's bounded event stream has its
//! subscriptions cancelled with a JSON-RPC error (CometBFT's "client is not pulling messages
//! fast enough"); it never slows the node.

use super::jsonrpc::{parse_request, Params, Request, RpcError, RpcResponse};
use super::{block_events, methods, EventKind};
use crate::api::{BlockEvent, NodeApi};
use crate::config::{WS_MESSAGE_BYTES_MAX, WS_SEND_TIMEOUT_MS};
use crate::error::ApiError;
use crate::metrics::ShedReason;
use crate::routes::AppState;
use crate::ws::shutdown_signalled;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit};

/// Upgrade to a WebSocket session, if a connection slot is free (shared with
/// `/v1/subscribe`).
pub(crate) async fn upgrade<S: NodeApi>(
    State(shared): State<AppState<S>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let mut error = RpcError::invalid_request(rejection.body_text());
            error.status = rejection.status();
            return error.into_response_with_id(Value::Null);
        }
    };
    let Ok(slot) = shared.ws_slots.clone().try_acquire_owned() else {
        shared.metrics.shed(ShedReason::Overloaded);
        let error = ApiError::overloaded("too many WebSocket connections");
        return RpcError::from_api(&error).into_response_with_id(Value::Null);
    };
    upgrade
        .max_message_size(WS_MESSAGE_BYTES_MAX)
        .max_frame_size(WS_MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| session(socket, shared, slot))
}

async fn session<S: NodeApi>(socket: WebSocket, shared: AppState<S>, _slot: OwnedSemaphorePermit) {
    let _open = shared.metrics.ws_connection_guard();
    let mut shutdown = shared.shutdown.clone();
    let mut session = Session {
        shared,
        socket,
        subscriptions: Vec::new(),
        events: None,
    };
    loop {
        let step = tokio::select! {
            biased;
            () = shutdown_signalled(&mut shutdown) => Step::Shutdown,
            incoming = session.socket.recv() => Step::Client(incoming),
            event = next_event(&mut session.events) => Step::Event(event),
        };
        let outgoing = match step {
            Step::Shutdown => {
                session.close("server shutting down").await;
                return;
            }
            Step::Client(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Step::Client(Some(Ok(message))) => session.on_client(message).await,
            Step::Event(Ok(event)) => match session.on_event(&event).await {
                Ok(()) => Vec::new(),
                Err(()) => return,
            },
            Step::Event(Err(RecvError::Lagged(missed))) => session.on_lagged(missed),
            Step::Event(Err(RecvError::Closed)) => {
                session.close("node event stream closed").await;
                return;
            }
        };
        for response in &outgoing {
            if session.send(response).await.is_err() {
                return;
            }
        }
    }
}

/// What woke the session loop.
enum Step {
    Shutdown,
    Client(Option<Result<Message, axum::Error>>),
    Event(Result<Arc<BlockEvent>, RecvError>),
}

/// The next event, or never when the connection subscribes to nothing.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<BlockEvent>>>,
) -> Result<Arc<BlockEvent>, RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// An event as sent: a JSON-RPC success response borrowing the shared rendering.
#[derive(Serialize)]
struct EventMessage<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: &'a Value,
}

struct Subscription {
    kind: EventKind,
    /// The subscribe request's id: every event of this subscription carries it.
    id: Value,
}

struct Session<S: NodeApi> {
    shared: AppState<S>,
    socket: WebSocket,
    subscriptions: Vec<Subscription>,
    events: Option<broadcast::Receiver<Arc<BlockEvent>>>,
}

impl<S: NodeApi> Session<S> {
    async fn on_client(&mut self, message: Message) -> Vec<RpcResponse> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let error = RpcError::invalid_request("send JSON-RPC requests as text messages");
                return vec![RpcResponse::failure(Value::Null, error)];
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Vec::new(),
        };
        let value: Value = match serde_json::from_str(text.as_str()) {
            Ok(value) => value,
            Err(error) => {
                return vec![RpcResponse::failure(
                    Value::Null,
                    RpcError::parse(error.to_string()),
                )]
            }
        };
        if value.is_array() {
            let error = RpcError::invalid_request("batches are served over HTTP POST /");
            return vec![RpcResponse::failure(Value::Null, error)];
        }
        let request = match parse_request(value) {
            Ok(request) => request,
            Err((id, error)) => return vec![RpcResponse::failure(id, error)],
        };
        let Request { id, method, params } = request;
        // A notification gets no answer; CometBFT does not even run it.
        let Some(id) = id else {
            return Vec::new();
        };
        let outcome = match method.as_str() {
            "subscribe" => self.subscribe(&params, &id),
            "unsubscribe" => self.unsubscribe(&params),
            "unsubscribe_all" => {
                self.subscriptions.clear();
                self.events = None;
                Ok(json!({}))
            }
            _ => methods::call(&self.shared, &method, &params).await,
        };
        vec![RpcResponse::new(id, outcome)]
    }

    fn subscribe(&mut self, params: &Params, id: &Value) -> Result<Value, RpcError> {
        let kind = query_kind(params)?;
        if self.subscriptions.iter().any(|sub| sub.kind == kind) {
            return Err(RpcError::internal("already subscribed"));
        }
        if self.events.is_none() {
            self.events = Some(self.shared.api.subscribe());
        }
        self.subscriptions.push(Subscription {
            kind,
            id: id.clone(),
        });
        Ok(json!({}))
    }

    fn unsubscribe(&mut self, params: &Params) -> Result<Value, RpcError> {
        let kind = query_kind(params)?;
        let before = self.subscriptions.len();
        self.subscriptions.retain(|sub| sub.kind != kind);
        if self.subscriptions.len() == before {
            return Err(RpcError::internal("subscription not found"));
        }
        if self.subscriptions.is_empty() {
            self.events = None;
        }
        Ok(json!({}))
    }

    /// Send the block's events to the subscriptions, one message at a time straight from
    /// the shared rendering: a connection never holds more than the message being sent.
    async fn on_event(&mut self, event: &BlockEvent) -> Result<(), ()> {
        if self.subscriptions.is_empty() {
            return Ok(());
        }
        let events = match block_events(&self.shared, event).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(height = event.height, data = %error.data, "block event not rendered");
                return Ok(());
            }
        };
        for kind in EventKind::ALL {
            let Some(id) = self
                .subscriptions
                .iter()
                .find(|sub| sub.kind == kind)
                .map(|sub| sub.id.clone())
            else {
                continue;
            };
            let results = match kind {
                EventKind::NewBlock => std::slice::from_ref(&events.new_block),
                EventKind::Tx => events.txs.as_slice(),
            };
            for result in results {
                let message = EventMessage {
                    jsonrpc: "2.0",
                    id: &id,
                    result,
                };
                let text = serde_json::to_string(&message).map_err(|_| ())?;
                self.send_raw(Message::Text(text.into())).await?;
            }
        }
        Ok(())
    }

    /// Cancel every subscription with an error carrying its id, and let go of the stream.
    fn on_lagged(&mut self, missed: u64) -> Vec<RpcResponse> {
        self.events = None;
        self.subscriptions
            .drain(..)
            .map(|sub| {
                let error = RpcError::server(format!(
                    "subscription was canceled (reason: client is not pulling messages fast \
                     enough; {missed} events missed)"
                ));
                RpcResponse::failure(sub.id, error)
            })
            .collect()
    }

    async fn send(&mut self, response: &RpcResponse) -> Result<(), ()> {
        let text = serde_json::to_string(response).map_err(|_| ())?;
        self.send_raw(Message::Text(text.into())).await
    }

    /// Send one message; a client that does not take it within the send timeout is dead.
    async fn send_raw(&mut self, message: Message) -> Result<(), ()> {
        let deadline = Duration::from_millis(WS_SEND_TIMEOUT_MS);
        match tokio::time::timeout(deadline, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    async fn close(&mut self, reason: &'static str) {
        let frame = CloseFrame {
            code: close_code::AWAY,
            reason: reason.into(),
        };
        let _ = self.send_raw(Message::Close(Some(frame))).await;
    }
}

fn query_kind(params: &Params) -> Result<EventKind, RpcError> {
    let query = params.string("query", 0)?;
    EventKind::parse(&query).ok_or_else(|| {
        let query: String = query.chars().take(120).collect();
        RpcError::invalid_params(format!(
            "unsupported query {query:?}: supported are tm.event='NewBlock' and tm.event='Tx'"
        ))
    })
}
