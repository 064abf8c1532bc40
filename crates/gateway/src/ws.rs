//! WebSocket bridges: each client socket on `/v1/subscribe` or `/websocket` is joined to its
//! own socket on one healthy upstream, messages passed both ways unchanged.
//!
//! The upstream socket is opened before the client's upgrade is accepted, so a client never
//! gets a socket that leads nowhere (it gets 503 `no_healthy_upstream` or 502 instead).
//! When the upstream socket ends (closed, broken, silent for three ping intervals, or its
//! node found dead by the health checker) the client's socket is closed with code 1012
//! (service restart) and a reason: the client reconnects and lands on a healthy upstream.
//! The SDK's `Subscription` re-subscribes every hash it still waits for when it
//! reconnects, and the node pushes receipts already committed, so no receipt is lost.

use crate::config::{WS_CLIENT_MESSAGE_BYTES_MAX, WS_PING_INTERVAL_MS, WS_SEND_TIMEOUT_MS};
use crate::metrics::{self, AttemptOutcome, EjectReason, ShedReason};
use crate::receipts::{connect, dead_signalled, send, shutdown_signalled, UpstreamSocket};
use crate::routes::{no_healthy_upstream, AppState};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{MatchedPath, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use basalt_rpc::ApiError;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::Message as UpstreamMessage;

/// Upgrade to a bridged WebSocket, if a connection slot is free and an upstream accepts.
pub(crate) async fn bridge(
    State(shared): State<AppState>,
    matched: Option<MatchedPath>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let route = metrics::route_label(matched.as_ref());
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
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let mut last_error = String::from("no attempt made");
    for attempt in 0..shared.config.attempts_max {
        let Some(upstream) = shared.upstreams.pick().await else {
            return no_healthy_upstream(&shared).into_response();
        };
        if attempt > 0 {
            shared.metrics.failover(route);
        }
        let label = shared.upstreams.url(upstream).to_owned();
        let started = Instant::now();
        match connect(&label, &path).await {
            Ok(socket) => {
                let outcome = AttemptOutcome::Ok;
                shared
                    .metrics
                    .attempt(route, &label, outcome, started.elapsed());
                return upgrade
                    .max_message_size(WS_CLIENT_MESSAGE_BYTES_MAX)
                    .max_frame_size(WS_CLIENT_MESSAGE_BYTES_MAX)
                    .on_upgrade(move |client| session(client, socket, upstream, shared, slot));
            }
            Err(error) => {
                let outcome = AttemptOutcome::Transport;
                shared
                    .metrics
                    .attempt(route, &label, outcome, started.elapsed());
                shared.upstreams.eject(upstream, EjectReason::Transport);
                last_error = error;
            }
        }
    }
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        format!("no upstream accepted the WebSocket; last: {last_error}"),
    )
    .into_response()
}

/// What woke the bridge.
enum Step {
    Shutdown,
    UpstreamDead,
    Ping,
    Client(Option<Result<Message, axum::Error>>),
    Upstream(Option<Result<UpstreamMessage, tokio_tungstenite::tungstenite::Error>>),
}

async fn session(
    mut client: WebSocket,
    mut upstream: UpstreamSocket,
    index: usize,
    shared: AppState,
    _slot: OwnedSemaphorePermit,
) {
    let _open = shared.metrics.ws_connection_guard();
    let mut dead = shared.upstreams.dead_signal(index);
    if let Some(dead) = dead.as_mut() {
        let _ = dead.borrow_and_update();
    }
    let mut shutdown = shared.shutdown.clone();
    let ping_interval = Duration::from_millis(WS_PING_INTERVAL_MS);
    let mut ping = tokio::time::interval(ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let step = tokio::select! {
            biased;
            () = shutdown_signalled(&mut shutdown) => Step::Shutdown,
            () = dead_signalled(&mut dead) => Step::UpstreamDead,
            _ = ping.tick() => Step::Ping,
            incoming = client.recv() => Step::Client(incoming),
            incoming = upstream.next() => Step::Upstream(incoming),
        };
        let reason = match step {
            Step::Shutdown => {
                let _ = send(&mut upstream, UpstreamMessage::Close(None)).await;
                close_client(&mut client, close_code::AWAY, "gateway shutting down").await;
                return;
            }
            Step::UpstreamDead => "upstream found dead; reconnect",
            Step::Ping => {
                if last_heard.elapsed() > ping_interval * 3 {
                    "upstream silent; reconnect"
                } else if send(&mut upstream, UpstreamMessage::Ping(Default::default()))
                    .await
                    .is_err()
                {
                    "upstream unreachable; reconnect"
                } else {
                    continue;
                }
            }
            Step::Client(None | Some(Err(_))) => {
                let _ = send(&mut upstream, UpstreamMessage::Close(None)).await;
                return;
            }
            Step::Client(Some(Ok(message))) => {
                let forwarded = match message {
                    Message::Text(text) => UpstreamMessage::Text(text.as_str().into()),
                    Message::Binary(bytes) => UpstreamMessage::Binary(bytes),
                    // axum answers pings itself; pongs need nothing.
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Close(_) => {
                        let _ = send(&mut upstream, UpstreamMessage::Close(None)).await;
                        return;
                    }
                };
                if send(&mut upstream, forwarded).await.is_ok() {
                    continue;
                }
                "upstream unreachable; reconnect"
            }
            Step::Upstream(Some(Ok(message))) => {
                last_heard = tokio::time::Instant::now();
                let forwarded = match message {
                    UpstreamMessage::Text(text) => Message::Text(text.as_str().into()),
                    UpstreamMessage::Binary(bytes) => Message::Binary(bytes),
                    UpstreamMessage::Close(_) => {
                        shared.metrics.ws_upstream_dropped();
                        close_client(
                            &mut client,
                            close_code::RESTART,
                            "upstream closed; reconnect",
                        )
                        .await;
                        return;
                    }
                    // tungstenite answers pings itself.
                    UpstreamMessage::Ping(_)
                    | UpstreamMessage::Pong(_)
                    | UpstreamMessage::Frame(_) => continue,
                };
                if send_client(&mut client, forwarded).await.is_err() {
                    let _ = send(&mut upstream, UpstreamMessage::Close(None)).await;
                    return;
                }
                continue;
            }
            Step::Upstream(None | Some(Err(_))) => "upstream connection lost; reconnect",
        };
        shared.metrics.ws_upstream_dropped();
        tracing::debug!(
            upstream = shared.upstreams.url(index),
            reason,
            "bridge closed"
        );
        close_client(&mut client, close_code::RESTART, reason).await;
        return;
    }
}

/// Send one message to the client; a client that does not take it in time is dropped.
async fn send_client(client: &mut WebSocket, message: Message) -> Result<(), ()> {
    let limit = Duration::from_millis(WS_SEND_TIMEOUT_MS);
    match tokio::time::timeout(limit, client.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn close_client(client: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = send_client(client, Message::Close(Some(frame))).await;
}
