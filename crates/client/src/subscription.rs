//! [`Subscription`]: receipt waiting over one WebSocket (`/v1/subscribe`), multiplexing many
//! waiters, reconnecting and re-subscribing, and falling back to polling.
//!
//! One background task owns the socket. Waiters register a hash in a shared table and the
//! task tells the server to watch it (`{"subscribe":"receipts","hashes":[..]}`); the server
//! pushes a receipt once per watched hash, including for hashes already committed when they
//! are subscribed, so re-subscribing every outstanding hash after a reconnect misses
//! nothing. While no socket can be opened (or beyond the per-connection watch bound) the
//! task polls `GET /v1/txs/{hash}` for the outstanding hashes instead.

use crate::api::{Admission, ChainClient, CommittedReceipt};
use crate::client::{normalize_base_url, Client, ClientConfig};
use crate::error::ClientError;
use basalt_rpc::json::{AccountJson, ReceiptJson, ServerMessage, TxStatusJson};
use basalt_rpc::{NodeStatus, WATCHED_HASHES_MAX_DEFAULT};
use basalt_types::{Hash, PublicKey, SignedTx};
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Default deadline for opening the WebSocket (TCP connect and upgrade).
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default first delay before reconnecting after a failed connect; doubles per failure.
pub const RECONNECT_DELAY_MIN_DEFAULT: Duration = Duration::from_millis(100);
/// Default longest delay between reconnect attempts.
pub const RECONNECT_DELAY_MAX_DEFAULT: Duration = Duration::from_secs(5);
/// Default interval between polls of unwatched hashes (fallback mode).
pub const POLL_INTERVAL_DEFAULT: Duration = Duration::from_millis(500);
/// Default number of status polls in flight at once in fallback mode.
pub const POLL_CONCURRENCY_DEFAULT: usize = 16;
/// Default interval between pings; a connection silent for three intervals is dead.
pub const PING_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// Default most waiters registered at once; one more fails at once with
/// [`ClientError::LocalLimit`]. Bounds the waiter table and the command queue (each
/// waiter queues at most one watch and one unwatch command).
pub const WAITERS_MAX_DEFAULT: usize = 100_000;
/// Hashes per subscribe message: keeps each message well under the server's 1 MiB bound.
const HASHES_PER_MESSAGE_MAX: usize = 1000;
/// Deadline of one WebSocket send; a socket that takes longer is dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`Subscription`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionConfig {
    /// Deadline for opening the socket.
    pub connect_timeout: Duration,
    /// First reconnect delay (doubles per failure up to `reconnect_delay_max`).
    pub reconnect_delay_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_delay_max: Duration,
    /// Interval between polls of hashes the socket does not watch.
    pub poll_interval: Duration,
    /// Status polls in flight at once.
    pub poll_concurrency: usize,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Most hashes watched on one connection (the server's bound); more are polled.
    pub watched_max: usize,
    /// Most waiters at once.
    pub waiters_max: usize,
    /// Configuration of the HTTP clients used for polling.
    pub client: ClientConfig,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        SubscriptionConfig {
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            reconnect_delay_min: RECONNECT_DELAY_MIN_DEFAULT,
            reconnect_delay_max: RECONNECT_DELAY_MAX_DEFAULT,
            poll_interval: POLL_INTERVAL_DEFAULT,
            poll_concurrency: POLL_CONCURRENCY_DEFAULT,
            ping_interval: PING_INTERVAL_DEFAULT,
            watched_max: WATCHED_HASHES_MAX_DEFAULT,
            waiters_max: WAITERS_MAX_DEFAULT,
            client: ClientConfig::default(),
        }
    }
}

/// What the socket task is asked to do.
#[derive(Debug, Clone, Copy)]
enum Command {
    Watch(Hash),
    Unwatch(Hash),
}

type Sender = oneshot::Sender<CommittedReceipt>;

#[derive(Default)]
struct Waiters {
    by_hash: HashMap<Hash, Vec<(u64, Sender)>>,
    count: usize,
    next_id: u64,
}

struct Shared {
    waiters: Mutex<Waiters>,
    connected: AtomicBool,
    connections: AtomicU64,
    config: SubscriptionConfig,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // Every update of the table is a single insert or remove: never half-done.
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hand `receipt` to every waiter of its hash.
    fn resolve(&self, receipt: &CommittedReceipt) {
        let senders = {
            let mut waiters = self.lock();
            let senders = waiters.by_hash.remove(&receipt.hash).unwrap_or_default();
            waiters.count = waiters.count.saturating_sub(senders.len());
            senders
        };
        for (_, sender) in senders {
            let _ = sender.send(receipt.clone());
        }
    }

    fn outstanding(&self) -> Vec<Hash> {
        self.lock().by_hash.keys().copied().collect()
    }

    fn is_waited(&self, hash: &Hash) -> bool {
        self.lock().by_hash.contains_key(hash)
    }
}

/// Receipt waiting over one WebSocket connection to `/v1/subscribe`, shared by any number
/// of waiters. Cheap to clone; the connection closes when the last clone is dropped.
///
/// Guarantees: [`Subscription::wait_receipt`] returns the committed receipt or
/// [`ClientError::Timeout`] at its deadline, whatever happens to the connection. After a
/// dropped connection the task reconnects (rotating over the given endpoints, with
/// exponential backoff) and re-subscribes every outstanding hash; the server pushes
/// receipts of hashes that committed meanwhile, so nothing is missed. While no socket can
/// be opened the outstanding hashes are polled over HTTP.
///
/// Not guaranteed: a receipt before the deadline when no endpoint answers at all.
#[derive(Clone)]
pub struct Subscription {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("connected", &self.is_connected())
            .field("waiters", &self.waiters())
            .finish()
    }
}

impl Subscription {
    /// A subscription to the first of `urls` that accepts a WebSocket (base URLs such as
    /// `http://127.0.0.1:26650`), with the default configuration. Returns at once; the
    /// connection is opened in the background, by a task on the caller's tokio runtime
    /// (calling this outside one is an [`ClientError::Invalid`] error).
    pub fn connect<S: AsRef<str>>(urls: &[S]) -> Result<Subscription, ClientError> {
        Subscription::with_config(urls, SubscriptionConfig::default())
    }

    /// Like [`Subscription::connect`], with `config`.
    pub fn with_config<S: AsRef<str>>(
        urls: &[S],
        config: SubscriptionConfig,
    ) -> Result<Subscription, ClientError> {
        let runtime = crate::runtime()?;
        if urls.is_empty() {
            return Err(ClientError::Invalid {
                message: "a subscription needs at least one endpoint".into(),
            });
        }
        let clients = urls
            .iter()
            .map(|url| Client::with_config(url.as_ref(), config.client.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let sockets = urls
            .iter()
            .map(|url| {
                normalize_base_url(url.as_ref())
                    .map(|base| format!("ws{}/v1/subscribe", base.trim_start_matches("http")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            waiters: Mutex::new(Waiters::default()),
            connected: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            config,
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = SocketTask {
            shared: shared.clone(),
            commands: receiver,
            clients,
            sockets,
            current: 0,
        };
        runtime.spawn(task.run());
        Ok(Subscription { shared, commands })
    }

    /// True while a WebSocket is open.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// WebSocket connections opened so far (more than one means it reconnected).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Waiters registered now.
    pub fn waiters(&self) -> usize {
        self.shared.lock().count
    }

    /// The committed receipt of `hash`, or [`ClientError::Timeout`] at `deadline`. Any
    /// number of waiters may wait for any hashes at once; they share one connection.
    pub async fn wait_receipt(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> Result<CommittedReceipt, ClientError> {
        let started = Instant::now();
        let (sender, receiver) = oneshot::channel();
        let id = {
            let mut waiters = self.shared.lock();
            if waiters.count >= self.shared.config.waiters_max {
                return Err(ClientError::LocalLimit {
                    what: "receipt waiters".into(),
                    max: self.shared.config.waiters_max,
                });
            }
            let id = waiters.next_id;
            waiters.next_id = waiters.next_id.wrapping_add(1);
            waiters.count += 1;
            let entry = waiters.by_hash.entry(hash).or_default();
            let first = entry.is_empty();
            entry.push((id, sender));
            if first {
                let _ = self.commands.send(Command::Watch(hash));
            }
            id
        };
        let _guard = WaiterGuard {
            subscription: self,
            hash,
            id,
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(receipt)) => Ok(receipt),
            // The sender is only dropped by a resolution, which sends first; treat anything
            // else like a timeout rather than guess.
            Ok(Err(_)) | Err(_) => Err(ClientError::timeout(
                format!("receipt of {hash}"),
                started.elapsed(),
            )),
        }
    }
}

/// Removes a waiter that stopped waiting (timed out or cancelled), and unwatches its hash
/// when it was the last waiter for it.
struct WaiterGuard<'a> {
    subscription: &'a Subscription,
    hash: Hash,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut waiters = self.subscription.shared.lock();
        let Some(entry) = waiters.by_hash.get_mut(&self.hash) else {
            return; // Resolved.
        };
        let before = entry.len();
        entry.retain(|(id, _)| *id != self.id);
        let removed = before - entry.len();
        let now_empty = entry.is_empty();
        if now_empty {
            waiters.by_hash.remove(&self.hash);
        }
        waiters.count = waiters.count.saturating_sub(removed);
        drop(waiters);
        if now_empty {
            let _ = self.subscription.commands.send(Command::Unwatch(self.hash));
        }
    }
}

/// Why a session or a polling spell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every [`Subscription`] handle is gone.
    Shutdown,
    /// The connection broke (or a polling spell is over): connect again.
    Reconnect,
}

/// What one connection watches.
struct Watching {
    /// Hashes the server was asked to watch.
    watched: HashSet<Hash>,
    /// Hashes polled over HTTP instead (beyond `cap`).
    overflow: HashSet<Hash>,
    /// Most hashes to ask the server to watch.
    cap: usize,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct SocketTask {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    clients: Vec<Client>,
    sockets: Vec<String>,
    current: usize,
}

impl SocketTask {
    async fn run(mut self) {
        let config = self.shared.config.clone();
        let mut delay = config.reconnect_delay_min;
        loop {
            let url = self.sockets.get(self.current).cloned().unwrap_or_default();
            let opened = tokio::time::timeout(
                config.connect_timeout,
                tokio_tungstenite::connect_async(url.as_str()),
            )
            .await;
            match opened {
                Ok(Ok((socket, _))) => {
                    tracing::debug!(%url, "receipt subscription connected");
                    delay = config.reconnect_delay_min;
                    self.shared.connected.store(true, Ordering::Relaxed);
                    self.shared.connections.fetch_add(1, Ordering::Relaxed);
                    let end = self.session(socket).await;
                    self.shared.connected.store(false, Ordering::Relaxed);
                    if end == End::Shutdown {
                        return;
                    }
                    tracing::debug!(%url, "receipt subscription dropped; reconnecting");
                }
                Ok(Err(error)) => {
                    tracing::debug!(%url, %error, "receipt subscription: cannot connect");
                    self.current = (self.current + 1) % self.sockets.len().max(1);
                }
                Err(_) => {
                    tracing::debug!(%url, "receipt subscription: connect timed out");
                    self.current = (self.current + 1) % self.sockets.len().max(1);
                }
            }
            let until = tokio::time::Instant::now() + delay;
            if self.poll_until(until).await == End::Shutdown {
                return;
            }
            delay = (delay * 2).min(config.reconnect_delay_max);
        }
    }

    /// Serve one open socket until it breaks or every handle is gone.
    async fn session(&mut self, mut socket: Socket) -> End {
        let config = self.shared.config.clone();
        let mut watching = Watching {
            watched: HashSet::new(),
            overflow: HashSet::new(),
            cap: config.watched_max,
        };
        let everything = self.shared.outstanding();
        if self
            .watch(&mut socket, &mut watching, everything)
            .await
            .is_err()
        {
            return End::Reconnect;
        }
        let mut ping = tokio::time::interval(config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = ping.tick() => {
                    if last_heard.elapsed() > config.ping_interval * 3 {
                        tracing::debug!("receipt subscription silent; reconnecting");
                        return End::Reconnect;
                    }
                    if send(&mut socket, Message::Ping(Vec::new().into())).await.is_err() {
                        return End::Reconnect;
                    }
                }
                _ = poll.tick(), if !watching.overflow.is_empty() => {
                    watching.overflow.retain(|hash| self.shared.is_waited(hash));
                    let hashes: Vec<Hash> = watching.overflow.iter().copied().collect();
                    self.poll_once(hashes).await;
                    watching.overflow.retain(|hash| self.shared.is_waited(hash));
                }
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = tokio::time::Instant::now();
                        self.on_server_message(text.as_str(), &mut watching);
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::Reconnect,
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                },
                command = self.commands.recv() => {
                    let Some(first) = command else {
                        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.close(None)).await;
                        return End::Shutdown;
                    };
                    let mut to_watch = Vec::new();
                    let mut to_unwatch = Vec::new();
                    let mut next = Some(first);
                    let mut taken = 0usize;
                    while let Some(command) = next {
                        match command {
                            Command::Watch(hash) => to_watch.push(hash),
                            Command::Unwatch(hash) => to_unwatch.push(hash),
                        }
                        taken += 1;
                        next = if taken < HASHES_PER_MESSAGE_MAX {
                            self.commands.try_recv().ok()
                        } else {
                            None
                        };
                    }
                    if self.unwatch(&mut socket, &mut watching, to_unwatch).await.is_err()
                        || self.watch(&mut socket, &mut watching, to_watch).await.is_err()
                    {
                        return End::Reconnect;
                    }
                }
            }
        }
    }

    /// Ask the server to watch `hashes` (those still waited for and not yet watched); those
    /// beyond the per-connection bound are polled instead.
    async fn watch(
        &self,
        socket: &mut Socket,
        watching: &mut Watching,
        hashes: Vec<Hash>,
    ) -> Result<(), ()> {
        let mut fresh = Vec::new();
        for hash in hashes {
            if watching.watched.contains(&hash)
                || watching.overflow.contains(&hash)
                || !self.shared.is_waited(&hash)
            {
                continue;
            }
            if watching.watched.len() < watching.cap {
                watching.watched.insert(hash);
                fresh.push(hash);
            } else {
                watching.overflow.insert(hash);
            }
        }
        for chunk in fresh.chunks(HASHES_PER_MESSAGE_MAX) {
            let text = serde_json::json!({
                "subscribe": "receipts",
                "hashes": chunk.iter().map(Hash::to_hex).collect::<Vec<_>>(),
            })
            .to_string();
            send(socket, Message::Text(text.into())).await?;
        }
        Ok(())
    }

    /// Stop watching `hashes` nobody waits for any more.
    async fn unwatch(
        &self,
        socket: &mut Socket,
        watching: &mut Watching,
        hashes: Vec<Hash>,
    ) -> Result<(), ()> {
        let mut gone = Vec::new();
        for hash in hashes {
            if self.shared.is_waited(&hash) {
                continue; // A new waiter came for it meanwhile.
            }
            watching.overflow.remove(&hash);
            if watching.watched.remove(&hash) {
                gone.push(hash);
            }
        }
        for chunk in gone.chunks(HASHES_PER_MESSAGE_MAX) {
            let text = serde_json::json!({
                "unsubscribe": "receipts",
                "hashes": chunk.iter().map(Hash::to_hex).collect::<Vec<_>>(),
            })
            .to_string();
            send(socket, Message::Text(text.into())).await?;
        }
        Ok(())
    }

    fn on_server_message(&self, text: &str, watching: &mut Watching) {
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(ServerMessage::Receipt {
                hash,
                height,
                index,
                receipt,
            }) => {
                watching.watched.remove(&hash);
                watching.overflow.remove(&hash);
                self.shared.resolve(&CommittedReceipt {
                    hash,
                    height,
                    index,
                    receipt,
                });
            }
            Ok(ServerMessage::Error { error }) => {
                tracing::warn!(code = %error.code, message = %error.message, "subscription error");
                if error.code == "too_many_hashes" {
                    // The server watches fewer hashes than we assumed, and the message does
                    // not say which were refused: poll everything we asked for as well, and
                    // ask for no more on this connection.
                    watching.cap = watching.watched.len();
                    let asked: Vec<Hash> = watching.watched.iter().copied().collect();
                    watching.overflow.extend(asked);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "undecodable subscription message"),
        }
    }

    /// Without a socket: poll every outstanding hash each poll interval until `until`.
    async fn poll_until(&mut self, until: tokio::time::Instant) -> End {
        loop {
            // Commands only matter to a socket; the waiter table is the source of truth.
            loop {
                match self.commands.try_recv() {
                    Ok(_) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return End::Shutdown,
                }
            }
            let outstanding = self.shared.outstanding();
            if !outstanding.is_empty() {
                self.poll_once(outstanding).await;
            }
            let next = tokio::time::Instant::now() + self.shared.config.poll_interval;
            if next >= until {
                tokio::time::sleep_until(until).await;
                return End::Reconnect;
            }
            tokio::time::sleep_until(next).await;
        }
    }

    /// One status poll of each of `hashes`, a bounded number at a time; committed receipts
    /// go to their waiters.
    async fn poll_once(&self, hashes: Vec<Hash>) {
        let Some(client) = self.clients.get(self.current).cloned() else {
            return;
        };
        let shared = self.shared.clone();
        futures::stream::iter(hashes)
            .map(|hash| {
                let client = client.clone();
                async move { client.tx_status(hash).await }
            })
            .buffer_unordered(self.shared.config.poll_concurrency.max(1))
            .for_each(|status| {
                if let Ok(status) = status {
                    if let Some(committed) = CommittedReceipt::from_status(&status) {
                        shared.resolve(&committed);
                    }
                }
                futures::future::ready(())
            })
            .await;
    }
}

async fn send(socket: &mut Socket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// A [`ChainClient`] whose receipts come from a [`Subscription`]; every other call goes to
/// `client`. This is what the batch submitter should be given.
#[derive(Debug, Clone)]
pub struct WithSubscription<C> {
    /// Answers every HTTP call.
    pub client: C,
    /// Answers [`ChainClient::wait_receipt`].
    pub subscription: Subscription,
}

impl<C: ChainClient> WithSubscription<C> {
    /// Pair `client` with `subscription`.
    pub fn new(client: C, subscription: Subscription) -> Self {
        WithSubscription {
            client,
            subscription,
        }
    }
}

impl<C: ChainClient> ChainClient for WithSubscription<C> {
    async fn submit(&self, txs: &[SignedTx]) -> Result<Vec<Admission>, ClientError> {
        self.client.submit(txs).await
    }

    async fn tx_status(&self, hash: Hash) -> Result<TxStatusJson, ClientError> {
        self.client.tx_status(hash).await
    }

    async fn account(&self, address: PublicKey) -> Result<AccountJson, ClientError> {
        self.client.account(address).await
    }

    async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.client.status().await
    }

    async fn simulate(&self, tx: &SignedTx) -> Result<ReceiptJson, ClientError> {
        self.client.simulate(tx).await
    }

    async fn nonce_and_status(
        &self,
        address: PublicKey,
        hash: Hash,
    ) -> Result<(u64, TxStatusJson), ClientError> {
        self.client.nonce_and_status(address, hash).await
    }

    async fn dry_run<F>(
        &self,
        address: PublicKey,
        build: F,
        concurrency: usize,
    ) -> Result<Vec<Result<ReceiptJson, ClientError>>, ClientError>
    where
        F: FnOnce(u64) -> Vec<SignedTx> + Send,
    {
        self.client.dry_run(address, build, concurrency).await
    }

    async fn wait_receipt(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> Result<CommittedReceipt, ClientError> {
        self.subscription.wait_receipt(hash, deadline).await
    }
}
