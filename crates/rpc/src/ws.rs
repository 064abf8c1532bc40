//! `GET /v1/subscribe`: WebSocket subscriptions to committed blocks and to receipts.
//!
//! Protocol (JSON text messages):
//!
//! - client → server: `{"subscribe": "blocks"}`, `{"subscribe": "receipts", "hashes": [..]}`,
//!   `{"unsubscribe": "blocks"}`, `{"unsubscribe": "receipts", "hashes": [..]}` (no `hashes`
//!   unwatches everything).
//! - server → client: [`ServerMessage`]: `subscribed`, `unsubscribed`, `block`, `receipt`,
//!   `lagged`, `error`.
//!
//! Guarantees: a watched hash gets its receipt once, including when it was already
//! committed at subscribe time (checked with [`NodeApi::tx_status`], pushed before the
//! `subscribed` acknowledgement) and when the connection lagged (watched hashes are
//! re-checked after the `lagged` message). A slow client lags; it never slows the node,
//! whose broadcast channel is bounded. What is not guaranteed: a `block` message for every
//! block (a lagging client misses some and is told how many).

use crate::api::{BlockEvent, NodeApi, TxStatus};
use crate::config::{WS_MESSAGE_BYTES_MAX, WS_SEND_TIMEOUT_MS};
use crate::error::ApiError;
use crate::json::{ServerMessage, Topic};
use crate::metrics::ShedReason;
use crate::routes::{run_blocking, AppState};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use basalt_types::Hash;
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit};

/// Upgrade to a WebSocket session, if a connection slot is free.
pub(crate) async fn subscribe<S: NodeApi>(
    State(shared): State<AppState<S>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                "upgrade_required",
                rejection.body_text(),
            )
            .into_response()
        }
    };
    let Ok(slot) = shared.ws_slots.clone().try_acquire_owned() else {
        shared.metrics.shed(ShedReason::Overloaded);
        return ApiError::overloaded("too many WebSocket connections").into_response();
    };
    upgrade
        .max_message_size(WS_MESSAGE_BYTES_MAX)
        .max_frame_size(WS_MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| session(socket, shared, slot))
}

async fn session<S: NodeApi>(socket: WebSocket, shared: AppState<S>, _slot: OwnedSemaphorePermit) {
    let _open = shared.metrics.ws_connection_guard();
    let events = shared.api.subscribe();
    let shutdown = shared.shutdown.clone();
    let mut session = Session {
        shared,
        socket,
        blocks: false,
        watched: HashSet::new(),
    };
    session.run(events, shutdown).await;
}

/// What woke the session loop.
enum Step {
    Shutdown,
    Client(Option<Result<Message, axum::Error>>),
    Event(Result<Arc<BlockEvent>, RecvError>),
}

/// Whether the session goes on after handling a step.
enum Flow {
    Send(Vec<ServerMessage>),
    Close(Option<CloseFrame>),
}

#[derive(Debug, Deserialize)]
struct Command {
    #[serde(default)]
    subscribe: Option<Topic>,
    #[serde(default)]
    unsubscribe: Option<Topic>,
    #[serde(default)]
    hashes: Option<Vec<String>>,
}

struct Session<S: NodeApi> {
    shared: AppState<S>,
    socket: WebSocket,
    blocks: bool,
    watched: HashSet<Hash>,
}

impl<S: NodeApi> Session<S> {
    async fn run(
        &mut self,
        mut events: broadcast::Receiver<Arc<BlockEvent>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let step = tokio::select! {
                biased;
                () = shutdown_signalled(&mut shutdown) => Step::Shutdown,
                incoming = self.socket.recv() => Step::Client(incoming),
                event = events.recv() => Step::Event(event),
            };
            let flow = match step {
                Step::Shutdown => Flow::Close(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "server shutting down".into(),
                })),
                Step::Client(None | Some(Err(_))) => return,
                Step::Client(Some(Ok(message))) => self.on_client(message).await,
                Step::Event(Ok(event)) => Flow::Send(self.on_event(&event)),
                Step::Event(Err(RecvError::Lagged(missed))) => {
                    Flow::Send(self.on_lagged(missed).await)
                }
                Step::Event(Err(RecvError::Closed)) => Flow::Close(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "node event stream closed".into(),
                })),
            };
            match flow {
                Flow::Send(messages) => {
                    for message in &messages {
                        if self.send(message).await.is_err() {
                            return;
                        }
                    }
                }
                Flow::Close(frame) => {
                    if let Some(frame) = frame {
                        let _ = self.send_raw(Message::Close(Some(frame))).await;
                    }
                    return;
                }
            }
        }
    }

    async fn on_client(&mut self, message: Message) -> Flow {
        match message {
            Message::Text(text) => Flow::Send(self.on_command(text.as_str()).await),
            Message::Binary(_) => Flow::Send(vec![ServerMessage::error(
                "bad_request",
                "send JSON text messages",
            )]),
            Message::Ping(_) | Message::Pong(_) => Flow::Send(Vec::new()),
            Message::Close(_) => Flow::Close(None),
        }
    }

    async fn on_command(&mut self, text: &str) -> Vec<ServerMessage> {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => return vec![ServerMessage::error("bad_json", error.to_string())],
        };
        let command: Command = match serde_json::from_value(value) {
            Ok(command) => command,
            Err(error) => return vec![ServerMessage::error("bad_request", error.to_string())],
        };
        let hashes = match command.hashes.as_deref().map(parse_hashes).transpose() {
            Ok(hashes) => hashes,
            Err(message) => return vec![ServerMessage::error("bad_encoding", message)],
        };
        match (command.subscribe, command.unsubscribe) {
            (Some(Topic::Blocks), None) => {
                self.blocks = true;
                vec![ServerMessage::Subscribed {
                    topic: Topic::Blocks,
                    watching: None,
                    already_committed: None,
                }]
            }
            (Some(Topic::Receipts), None) => self.watch(hashes.unwrap_or_default()).await,
            (None, Some(Topic::Blocks)) => {
                self.blocks = false;
                vec![ServerMessage::Unsubscribed {
                    topic: Topic::Blocks,
                    watching: None,
                }]
            }
            (None, Some(Topic::Receipts)) => {
                match hashes {
                    Some(hashes) => hashes.iter().for_each(|hash| {
                        self.watched.remove(hash);
                    }),
                    None => self.watched.clear(),
                }
                vec![ServerMessage::Unsubscribed {
                    topic: Topic::Receipts,
                    watching: Some(self.watched.len()),
                }]
            }
            _ => vec![ServerMessage::error(
                "bad_request",
                "send exactly one of \"subscribe\" or \"unsubscribe\"",
            )],
        }
    }

    /// Watch `hashes`: push receipts of those already committed, remember the rest.
    async fn watch(&mut self, hashes: Vec<Hash>) -> Vec<ServerMessage> {
        let max = self.shared.limits.max_watched_hashes;
        let mut seen = HashSet::with_capacity(hashes.len());
        let fresh: Vec<Hash> = hashes
            .into_iter()
            .filter(|hash| !self.watched.contains(hash) && seen.insert(*hash))
            .collect();
        if self.watched.len().saturating_add(fresh.len()) > max {
            return vec![ServerMessage::error(
                "too_many_hashes",
                format!(
                    "watching {} hashes, asked for {} more; at most {max} per connection",
                    self.watched.len(),
                    fresh.len()
                ),
            )];
        }
        let statuses = match statuses(&self.shared, fresh).await {
            Ok(statuses) => statuses,
            Err(error) => return vec![ServerMessage::error(&error.code, error.message)],
        };
        let mut out = Vec::new();
        for (hash, status) in statuses {
            match committed_receipt(hash, status) {
                Some(message) => out.push(message),
                None => {
                    self.watched.insert(hash);
                }
            }
        }
        let already_committed = out.len();
        out.push(ServerMessage::Subscribed {
            topic: Topic::Receipts,
            watching: Some(self.watched.len()),
            already_committed: Some(already_committed),
        });
        out
    }

    fn on_event(&mut self, event: &BlockEvent) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        if self.blocks {
            out.push(ServerMessage::block(event));
        }
        if self.watched.is_empty() {
            return out;
        }
        for (index, (hash, receipt)) in event.txs.iter().zip(&event.receipts).enumerate() {
            if self.watched.remove(hash) {
                out.push(ServerMessage::Receipt {
                    hash: *hash,
                    height: event.height,
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    receipt: receipt.into(),
                });
            }
        }
        out
    }

    /// Tell the client it missed events, then re-check watched hashes (their receipts may
    /// have been in the missed events).
    async fn on_lagged(&mut self, missed: u64) -> Vec<ServerMessage> {
        let mut out = vec![ServerMessage::Lagged { missed }];
        if self.watched.is_empty() {
            return out;
        }
        let watched: Vec<Hash> = self.watched.iter().copied().collect();
        match statuses(&self.shared, watched).await {
            Ok(statuses) => {
                for (hash, status) in statuses {
                    if let Some(message) = committed_receipt(hash, status) {
                        self.watched.remove(&hash);
                        out.push(message);
                    }
                }
            }
            Err(error) => out.push(ServerMessage::error(&error.code, error.message)),
        }
        out
    }

    async fn send(&mut self, message: &ServerMessage) -> Result<(), ()> {
        let text = serde_json::to_string(message).map_err(|_| ())?;
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
}

/// The status of each hash, read on the blocking pool.
async fn statuses<S: NodeApi>(
    shared: &AppState<S>,
    hashes: Vec<Hash>,
) -> Result<Vec<(Hash, TxStatus)>, ApiError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    run_blocking(shared, move |api| {
        hashes
            .into_iter()
            .map(|hash| (hash, api.tx_status(hash)))
            .collect()
    })
    .await
}

fn committed_receipt(hash: Hash, status: TxStatus) -> Option<ServerMessage> {
    match status {
        TxStatus::Committed {
            height,
            index,
            receipt,
        } => Some(ServerMessage::Receipt {
            hash,
            height,
            index,
            receipt: (&receipt).into(),
        }),
        _ => None,
    }
}

/// The hashes, or which one is not 64 hex digits.
fn parse_hashes(texts: &[String]) -> Result<Vec<Hash>, String> {
    texts
        .iter()
        .enumerate()
        .map(|(position, text)| {
            Hash::from_hex(text).ok_or_else(|| format!("hashes[{position}] is not 64 hex digits"))
        })
        .collect()
}

/// Resolves when shutdown is signalled; never, when the sender is gone without signalling.
pub(crate) async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
