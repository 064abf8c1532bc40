//! The receipt subscription: one WebSocket to a healthy upstream's `/v1/subscribe` that
//! watches every pending tracked transaction and records its receipt in the tracker.
//!
//! When the connection drops (or its upstream is found dead, or goes silent) the task
//! connects to another healthy upstream and watches every pending tracked hash again; the
//! node pushes the receipts of those already committed at subscribe time, so nothing that
//! committed meanwhile is missed. A node watches at most
//! [`WATCHED_PER_CONNECTION_MAX`] hashes per connection; beyond that, transactions are still
//! tracked and their status requests are proxied.

use crate::config::{
    HASHES_PER_MESSAGE_MAX, TRACKED_PENDING_TTL_MS, WATCHED_PER_CONNECTION_MAX,
    WS_CONNECT_TIMEOUT_MS, WS_PING_INTERVAL_MS, WS_SEND_TIMEOUT_MS, WS_UPSTREAM_MESSAGE_BYTES_MAX,
};
use crate::metrics::GatewayMetrics;
use crate::routes::Shared;
use crate::tracker::Tracker;
use crate::upstream::Upstreams;
use axum::body::Bytes;
use basalt_rpc::json::{ServerMessage, TxStatusJson, TxStatusKind};
use basalt_types::Hash;
use futures::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// First pause before reconnecting; doubles per failure.
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(100);
/// Longest pause before reconnecting.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// Interval between sweeps that unwatch hashes no longer pending in the tracker.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Track `hash` (admitted through the gateway) and hand it to the receipt subscription.
pub(crate) fn track(shared: &Shared, hash: Hash) {
    let (new, evicted) = shared.tracker.admit(hash);
    shared.metrics.evicted(evicted);
    shared.metrics.set_tracked(shared.tracker.len());
    if new && shared.watch_queue.try_send(hash).is_err() {
        // Still tracked: the subscription picks it up from the tracker when it reconnects.
        shared.metrics.watch_dropped();
    }
}

/// Open a WebSocket to `path` (path and query) on the upstream at `base` (`http://..`).
pub(crate) async fn connect(base: &str, path: &str) -> Result<UpstreamSocket, String> {
    let url = format!("ws{}{path}", base.trim_start_matches("http"));
    let config = WebSocketConfig::default()
        .max_message_size(Some(WS_UPSTREAM_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(WS_UPSTREAM_MESSAGE_BYTES_MAX));
    let limit = Duration::from_millis(WS_CONNECT_TIMEOUT_MS);
    match tokio::time::timeout(
        limit,
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
    )
    .await
    {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(error)) => Err(format!("{url}: {error}")),
        Err(_) => Err(format!("{url}: no WebSocket within {limit:?}")),
    }
}

/// Send one message; a peer that does not take it within the send timeout is dead.
pub(crate) async fn send(socket: &mut UpstreamSocket, message: Message) -> Result<(), ()> {
    let limit = Duration::from_millis(WS_SEND_TIMEOUT_MS);
    match tokio::time::timeout(limit, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
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

/// Resolves when `dead` changes (its upstream was found dead); never without a signal.
pub(crate) async fn dead_signalled(dead: &mut Option<watch::Receiver<u64>>) {
    match dead {
        Some(dead) => {
            if dead.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Shutdown,
    Reconnect,
}

/// The subscription task.
pub(crate) struct ReceiptSubscription {
    pub(crate) upstreams: Arc<Upstreams>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) queue: mpsc::Receiver<Hash>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// What one connection watches.
struct Watching {
    watched: HashSet<Hash>,
    /// Most hashes to ask this node to watch.
    cap: usize,
}

impl ReceiptSubscription {
    fn ttl() -> Duration {
        Duration::from_millis(TRACKED_PENDING_TTL_MS)
    }

    /// Run until shutdown, (re)connecting to healthy upstreams.
    pub(crate) async fn run(mut self) {
        let mut delay = RECONNECT_DELAY_MIN;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            // Queued hashes are in the tracker: a new session starts from there.
            while self.queue.try_recv().is_ok() {}
            let connected = match self.upstreams.pick().await {
                Some(upstream) => {
                    let base = self.upstreams.url(upstream).to_owned();
                    match connect(&base, basalt_rpc::ROUTE_SUBSCRIBE).await {
                        Ok(socket) => Some((upstream, socket)),
                        Err(error) => {
                            tracing::debug!(%error, "receipt subscription: cannot connect");
                            None
                        }
                    }
                }
                None => None,
            };
            if let Some((upstream, socket)) = connected {
                delay = RECONNECT_DELAY_MIN;
                self.metrics.receipt_subscription(true);
                tracing::debug!(
                    upstream = self.upstreams.url(upstream),
                    "receipt subscription connected"
                );
                let end = self.session(upstream, socket).await;
                self.metrics.receipt_subscription(false);
                if end == End::Shutdown {
                    return;
                }
                continue;
            }
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                () = shutdown_signalled(&mut shutdown) => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RECONNECT_DELAY_MAX);
        }
    }

    async fn session(&mut self, upstream: usize, mut socket: UpstreamSocket) -> End {
        let mut watching = Watching {
            watched: HashSet::new(),
            cap: WATCHED_PER_CONNECTION_MAX,
        };
        let everything = self.tracker.pending(watching.cap, Self::ttl());
        if self
            .watch(&mut socket, &mut watching, everything)
            .await
            .is_err()
        {
            return End::Reconnect;
        }
        let mut dead = self.upstreams.dead_signal(upstream);
        if let Some(dead) = dead.as_mut() {
            dead.borrow_and_update();
        }
        let mut shutdown = self.shutdown.clone();
        let ping_interval = Duration::from_millis(WS_PING_INTERVAL_MS);
        let mut ping = tokio::time::interval(ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown_signalled(&mut shutdown) => {
                    let _ = send(&mut socket, Message::Close(None)).await;
                    return End::Shutdown;
                }
                () = dead_signalled(&mut dead) => return End::Reconnect,
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_interval * 3 {
                        tracing::debug!("receipt subscription silent; reconnecting");
                        return End::Reconnect;
                    }
                    if send(&mut socket, Message::Ping(Bytes::new())).await.is_err() {
                        return End::Reconnect;
                    }
                }
                _ = sweep.tick() => {
                    if self.sweep(&mut socket, &mut watching).await.is_err() {
                        return End::Reconnect;
                    }
                }
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = tokio::time::Instant::now();
                        self.on_message(text.as_str(), &mut watching);
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Reconnect,
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                },
                hash = self.queue.recv() => {
                    let Some(first) = hash else {
                        return End::Shutdown;
                    };
                    let mut hashes = vec![first];
                    while hashes.len() < HASHES_PER_MESSAGE_MAX {
                        match self.queue.try_recv() {
                            Ok(hash) => hashes.push(hash),
                            Err(_) => break,
                        }
                    }
                    if self.watch(&mut socket, &mut watching, hashes).await.is_err() {
                        return End::Reconnect;
                    }
                }
            }
        }
    }

    /// Ask the node to watch those of `hashes` still pending and not yet watched, within
    /// the per-connection bound.
    async fn watch(
        &self,
        socket: &mut UpstreamSocket,
        watching: &mut Watching,
        hashes: Vec<Hash>,
    ) -> Result<(), ()> {
        let ttl = Self::ttl();
        let mut fresh = Vec::new();
        for hash in hashes {
            if watching.watched.len() >= watching.cap {
                break;
            }
            if !watching.watched.contains(&hash) && self.tracker.is_pending(&hash, ttl) {
                watching.watched.insert(hash);
                fresh.push(hash);
            }
        }
        subscribe_message(socket, "subscribe", &fresh).await
    }

    /// Stop watching hashes the tracker no longer waits for (forgotten, or too old).
    async fn sweep(&self, socket: &mut UpstreamSocket, watching: &mut Watching) -> Result<(), ()> {
        let ttl = Self::ttl();
        let gone: Vec<Hash> = watching
            .watched
            .iter()
            .filter(|hash| !self.tracker.is_pending(hash, ttl))
            .copied()
            .collect();
        for hash in &gone {
            watching.watched.remove(hash);
        }
        subscribe_message(socket, "unsubscribe", &gone).await
    }

    fn on_message(&self, text: &str, watching: &mut Watching) {
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(ServerMessage::Receipt {
                hash,
                height,
                index,
                receipt,
            }) => {
                watching.watched.remove(&hash);
                let status = TxStatusJson {
                    hash,
                    status: TxStatusKind::Committed,
                    height: Some(height),
                    index: Some(index),
                    receipt: Some(receipt),
                    error: None,
                };
                let Ok(json) = serde_json::to_vec(&status) else {
                    return;
                };
                let (recorded, evicted) = self.tracker.commit(hash, Bytes::from(json));
                if recorded {
                    self.metrics.receipt_recorded();
                }
                self.metrics.evicted(evicted);
                self.metrics.set_tracked(self.tracker.len());
            }
            Ok(ServerMessage::Error { error }) => {
                tracing::warn!(code = %error.code, message = %error.message, "receipt subscription");
                if error.code == "too_many_hashes" {
                    // The node watches fewer than assumed: ask for no more here.
                    watching.cap = watching.watched.len();
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "undecodable subscription message"),
        }
    }
}

/// `{"<verb>":"receipts","hashes":[..]}` in chunks; nothing for no hashes.
async fn subscribe_message(
    socket: &mut UpstreamSocket,
    verb: &str,
    hashes: &[Hash],
) -> Result<(), ()> {
    for chunk in hashes.chunks(HASHES_PER_MESSAGE_MAX) {
        let text = serde_json::json!({
            verb: "receipts",
            "hashes": chunk.iter().map(Hash::to_hex).collect::<Vec<_>>(),
        })
        .to_string();
        send(socket, Message::Text(text.into())).await?;
    }
    Ok(())
}
