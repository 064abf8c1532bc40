//! [`BalancedClient`]: one client over several nodes, balanced by tower's power-of-two-choices
//! balancer over a discovered set of healthy endpoints.
//!
//! Shape: each endpoint is a tower `Service` (a [`Client`] for that node) wrapped in
//! `PendingRequests` so its load is its number of requests in flight. A health checker
//! (`GET /v1/status` on every endpoint, every [`BalancedConfig::health_interval`]) feeds
//! `Change::Insert` / `Change::Remove` into the [`tower::discover::Discover`] stream of a
//! [`tower::balance::p2c::Balance`]; a [`tower::buffer::Buffer`] in front makes the balancer
//! shareable between tasks. A request that fails with a transport error, a timeout, a 5xx
//! or an overload answer takes its endpoint out of the set at once (until the next health
//! check passes) and is retried once, which sends it to another endpoint whenever another
//! healthy one exists.

use crate::api::{Admission, ChainClient, CommittedReceipt};
use crate::client::{Client, ClientConfig};
use crate::error::ClientError;
use basalt_rpc::json::{AccountJson, BlockJson, ReceiptJson, TxStatusJson};
use basalt_rpc::{BlockAt, NodeStatus};
use basalt_types::{Hash, PublicKey, SignedTx};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceExt};

/// Default interval between health checks of every endpoint.
pub const HEALTH_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default deadline of one health check (`GET /v1/status` is a snapshot read).
pub const HEALTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Default bound of the queue in front of the balancer: requests waiting for an endpoint
/// to be picked. Callers beyond it wait for a slot (bounded by the call timeout).
pub const BALANCER_QUEUE_MAX_DEFAULT: usize = 1024;
/// Extra time a call may spend queued in front of the balancer beyond the endpoint
/// client's own timeout, so that the endpoint's timeout (which names the endpoint) fires
/// first.
const QUEUE_GRACE: Duration = Duration::from_secs(1);

/// How a [`BalancedClient`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancedConfig {
    /// Configuration of each endpoint's [`Client`] (its timeout bounds each attempt).
    pub client: ClientConfig,
    /// Interval between health checks.
    pub health_interval: Duration,
    /// Deadline of one health check.
    pub health_timeout: Duration,
    /// Bound of the request queue in front of the balancer.
    pub queue_max: usize,
}

impl Default for BalancedConfig {
    fn default() -> Self {
        BalancedConfig {
            client: ClientConfig::default(),
            health_interval: HEALTH_INTERVAL_DEFAULT,
            health_timeout: HEALTH_TIMEOUT_DEFAULT,
            queue_max: BALANCER_QUEUE_MAX_DEFAULT,
        }
    }
}

/// One API call, as a request to the balanced service. Cheap to clone (for the retry).
#[derive(Debug, Clone)]
enum Call {
    Submit(Arc<Vec<SignedTx>>),
    TxStatus(Hash),
    Block(BlockAt),
    Account(PublicKey),
    Status,
    Simulate(Arc<SignedTx>),
    NonceAndStatus(PublicKey, Hash),
}

/// The answer to a [`Call`].
#[derive(Debug)]
enum Reply {
    Submit(Vec<Admission>),
    TxStatus(TxStatusJson),
    Block(Box<BlockJson>),
    Account(Box<AccountJson>),
    Status(Box<NodeStatus>),
    Simulate(ReceiptJson),
    NonceAndStatus(u64, TxStatusJson),
}

/// What an endpoint service returns: which endpoint answered, and its answer. Errors travel
/// inside, so the balancer never sees a failed service (tower would drop it for good).
#[derive(Debug)]
struct Served {
    endpoint: usize,
    result: Result<Reply, ClientError>,
}

async fn execute(client: &Client, call: Call) -> Result<Reply, ClientError> {
    Ok(match call {
        Call::Submit(txs) => Reply::Submit(client.submit(&txs).await?),
        Call::TxStatus(hash) => Reply::TxStatus(client.tx_status(hash).await?),
        Call::Block(at) => Reply::Block(Box::new(client.block(at).await?)),
        Call::Account(address) => Reply::Account(Box::new(client.account(address).await?)),
        Call::Status => Reply::Status(Box::new(client.status().await?)),
        Call::Simulate(tx) => Reply::Simulate(client.simulate(&tx).await?),
        Call::NonceAndStatus(address, hash) => {
            let (nonce, status) = ChainClient::nonce_and_status(client, address, hash).await?;
            Reply::NonceAndStatus(nonce, status)
        }
    })
}

/// One endpoint as a tower service.
#[derive(Clone)]
struct EndpointService {
    index: usize,
    client: Client,
}

impl Service<Call> for EndpointService {
    type Response = Served;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Served, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Admission is the node's business (it sheds with 503); the balancer only needs to
        // know the endpoint is in the healthy set.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let client = self.client.clone();
        let endpoint = self.index;
        Box::pin(async move {
            Ok(Served {
                endpoint,
                result: execute(&client, call).await,
            })
        })
    }
}

type LoadedEndpoint = PendingRequests<EndpointService, CompleteOnResponse>;
type Discovered = Change<usize, LoadedEndpoint>;
type DiscoverStream =
    Pin<Box<dyn futures::Stream<Item = Result<Discovered, Infallible>> + Send + 'static>>;

/// Which endpoints are in the balancer's set, and the channel that tells it.
struct Health {
    healthy: Vec<bool>,
    changes: futures::channel::mpsc::UnboundedSender<Discovered>,
}

struct Inner {
    endpoints: Vec<Client>,
    failovers: AtomicU64,
    ejections: AtomicU64,
    service: BoxCloneSyncService<Call, Served, BoxError>,
    health: Mutex<Health>,
    config: BalancedConfig,
}

/// A client over several nodes: every call goes to one healthy node picked by tower's
/// power-of-two-choices balancer (the less loaded of two random healthy endpoints).
///
/// Guarantees: every call is bounded by the endpoint client's timeout plus a short queueing
/// grace, twice at most (one retry); an endpoint that fails a request or a health check
/// leaves the set until a health check passes again; a failed request (transport error,
/// timeout, 5xx, 503/429) is retried once, on another endpoint when another healthy one
/// exists. The last healthy endpoint is not taken out by a failed request (only by a failed
/// health check), so one flaky answer cannot empty the set.
///
/// Not guaranteed: that a submission is not admitted twice by two nodes; it is harmless,
/// since a transaction is identified by its hash and nodes refuse duplicates.
#[derive(Clone)]
pub struct BalancedClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BalancedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancedClient")
            .field("endpoints", &self.endpoints())
            .field("healthy", &self.healthy_endpoints())
            .finish()
    }
}

impl BalancedClient {
    /// A balanced client over `urls` with the default configuration. Runs one health check
    /// before returning and keeps checking in the background while the client lives.
    ///
    /// Must run inside a tokio runtime; the client's background tasks (the balancer's
    /// queue worker, the health checker) live on it, so use the client on that runtime.
    pub async fn new<S: AsRef<str>>(urls: &[S]) -> Result<BalancedClient, ClientError> {
        BalancedClient::with_config(urls, BalancedConfig::default()).await
    }

    /// A balanced client over `urls` with `config`.
    pub async fn with_config<S: AsRef<str>>(
        urls: &[S],
        config: BalancedConfig,
    ) -> Result<BalancedClient, ClientError> {
        let runtime = crate::runtime()?;
        if urls.is_empty() {
            return Err(ClientError::Invalid {
                message: "a balanced client needs at least one endpoint".into(),
            });
        }
        let endpoints = urls
            .iter()
            .map(|url| Client::with_config(url.as_ref(), config.client.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        // Unbounded, but a change is sent only when an endpoint's health flips (at most once
        // per endpoint per health interval), and the balancer drains the channel on every
        // request it serves. Only a flapping endpoint with no traffic at all makes it grow.
        let (changes, discovered) = futures::channel::mpsc::unbounded::<Discovered>();
        let discover: DiscoverStream = Box::pin(discovered.map(Ok::<_, Infallible>));
        let balance: Balance<DiscoverStream, Call> = Balance::new(discover);
        let buffered = Buffer::new(balance, config.queue_max.max(1));
        let inner = Arc::new(Inner {
            health: Mutex::new(Health {
                healthy: vec![false; endpoints.len()],
                changes,
            }),
            endpoints,
            failovers: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            service: BoxCloneSyncService::new(buffered),
            config,
        });
        inner.check_health().await;
        runtime.spawn(health_loop(Arc::downgrade(&inner)));
        Ok(BalancedClient { inner })
    }

    /// Every endpoint's base URL, in the order given.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .iter()
            .map(|client| client.base_url().to_owned())
            .collect()
    }

    /// Base URLs of the endpoints currently in the balancer's set.
    pub fn healthy_endpoints(&self) -> Vec<String> {
        let health = self.inner.lock_health();
        self.inner
            .endpoints
            .iter()
            .zip(&health.healthy)
            .filter(|(_, healthy)| **healthy)
            .map(|(client, _)| client.base_url().to_owned())
            .collect()
    }

    /// The plain client of endpoint `index` (for calls that must go to one node).
    pub fn endpoint(&self, index: usize) -> Option<&Client> {
        self.inner.endpoints.get(index)
    }

    /// Calls retried after a failed first attempt, so far.
    pub fn failovers(&self) -> u64 {
        self.inner.failovers.load(Ordering::Relaxed)
    }

    /// Endpoints taken out of the set after a failed request, so far (failed health
    /// checks not counted).
    pub fn ejections(&self) -> u64 {
        self.inner.ejections.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &BalancedConfig {
        &self.inner.config
    }

    /// Run a health check of every endpoint now (the background checker also runs them
    /// every [`BalancedConfig::health_interval`]).
    pub async fn check_health(&self) {
        self.inner.check_health().await;
    }

    /// `POST /v1/txs` on one healthy endpoint (see [`Client::submit`]).
    pub async fn submit(&self, txs: &[SignedTx]) -> Result<Vec<Admission>, ClientError> {
        if txs.is_empty() {
            return Ok(Vec::new());
        }
        match self.call(Call::Submit(Arc::new(txs.to_vec()))).await? {
            Reply::Submit(results) => Ok(results),
            other => Err(mismatch(&other)),
        }
    }

    /// `GET /v1/txs/{hash}` (see [`Client::tx_status`]).
    pub async fn tx_status(&self, hash: Hash) -> Result<TxStatusJson, ClientError> {
        match self.call(Call::TxStatus(hash)).await? {
            Reply::TxStatus(status) => Ok(status),
            other => Err(mismatch(&other)),
        }
    }

    /// `GET /v1/blocks/{height|latest}` (see [`Client::block`]).
    pub async fn block(&self, at: BlockAt) -> Result<BlockJson, ClientError> {
        match self.call(Call::Block(at)).await? {
            Reply::Block(block) => Ok(*block),
            other => Err(mismatch(&other)),
        }
    }

    /// `GET /v1/accounts/{address}` (see [`Client::account`]).
    pub async fn account(&self, address: PublicKey) -> Result<AccountJson, ClientError> {
        match self.call(Call::Account(address)).await? {
            Reply::Account(account) => Ok(*account),
            other => Err(mismatch(&other)),
        }
    }

    /// `GET /v1/status` of one healthy endpoint.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        match self.call(Call::Status).await? {
            Reply::Status(status) => Ok(*status),
            other => Err(mismatch(&other)),
        }
    }

    /// `POST /v1/simulate` (see [`Client::simulate`]).
    pub async fn simulate(&self, tx: &SignedTx) -> Result<ReceiptJson, ClientError> {
        match self.call(Call::Simulate(Arc::new(tx.clone()))).await? {
            Reply::Simulate(receipt) => Ok(receipt),
            other => Err(mismatch(&other)),
        }
    }

    /// One call with the retry policy: a transient failure takes the endpoint out and the
    /// call is retried once.
    async fn call(&self, call: Call) -> Result<Reply, ClientError> {
        self.call_served(call).await.map(|(_, reply)| reply)
    }

    /// Like [`BalancedClient::call`], also saying which endpoint answered.
    async fn call_served(&self, call: Call) -> Result<(usize, Reply), ClientError> {
        match self.dispatch(call.clone()).await {
            Ok(served) => Ok(served),
            Err((endpoint, error)) if error.is_transient() => {
                if let Some(index) = endpoint {
                    self.inner.eject(index, &error);
                }
                self.inner.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "balanced call failed; retrying once");
                self.dispatch(call).await.map_err(|(endpoint, error)| {
                    if let (Some(index), true) = (endpoint, error.is_transient()) {
                        self.inner.eject(index, &error);
                    }
                    error
                })
            }
            Err((_, error)) => Err(error),
        }
    }

    async fn dispatch(&self, call: Call) -> Result<(usize, Reply), (Option<usize>, ClientError)> {
        let endpoints = self.inner.endpoints.len();
        if self.inner.healthy_count() == 0 {
            return Err((None, ClientError::NoHealthyEndpoint { endpoints }));
        }
        let limit = self.inner.config.client.timeout + QUEUE_GRACE;
        let service = self.inner.service.clone();
        match tokio::time::timeout(limit, service.oneshot(call)).await {
            Err(_) => Err((None, ClientError::timeout("balanced call", limit))),
            Ok(Err(error)) => Err((
                None,
                ClientError::Transport {
                    endpoint: "balancer".into(),
                    message: error.to_string(),
                },
            )),
            Ok(Ok(Served { endpoint, result })) => result
                .map(|reply| (endpoint, reply))
                .map_err(|error| (Some(endpoint), error)),
        }
    }
}

fn mismatch(reply: &Reply) -> ClientError {
    ClientError::Decode {
        endpoint: "balancer".into(),
        message: format!("internal: mismatched reply {reply:?}"),
    }
}

impl Inner {
    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        // The guarded data is two plain vectors updated in one step; a panic elsewhere
        // cannot leave them half-written.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn healthy_count(&self) -> usize {
        self.lock_health().healthy.iter().filter(|h| **h).count()
    }

    fn service_for(&self, index: usize) -> Option<LoadedEndpoint> {
        let client = self.endpoints.get(index)?.clone();
        Some(PendingRequests::new(
            EndpointService { index, client },
            CompleteOnResponse::default(),
        ))
    }

    /// Put endpoint `index` in or out of the balancer's set. True when that changed it.
    fn set_health(&self, index: usize, healthy: bool) -> bool {
        let mut health = self.lock_health();
        self.set_health_locked(&mut health, index, healthy)
    }

    fn set_health_locked(&self, health: &mut Health, index: usize, healthy: bool) -> bool {
        let Some(current) = health.healthy.get(index).copied() else {
            return false;
        };
        if current == healthy {
            return false;
        }
        let change = if healthy {
            match self.service_for(index) {
                Some(service) => Change::Insert(index, service),
                None => return false,
            }
        } else {
            Change::Remove(index)
        };
        if health.changes.unbounded_send(change).is_err() {
            return false;
        }
        if let Some(slot) = health.healthy.get_mut(index) {
            *slot = healthy;
        }
        tracing::info!(
            endpoint = self.endpoints.get(index).map(Client::base_url),
            healthy,
            "endpoint health changed"
        );
        true
    }

    /// Take endpoint `index` out after a failed request, unless it is the last one in.
    fn eject(&self, index: usize, error: &ClientError) {
        let mut health = self.lock_health();
        if health.healthy.iter().filter(|healthy| **healthy).count() <= 1 {
            return;
        }
        if self.set_health_locked(&mut health, index, false) {
            self.ejections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "endpoint taken out until it passes a health check");
        }
    }

    async fn check_health(&self) {
        let limit = self.config.health_timeout;
        let checks = self.endpoints.iter().map(|client| async move {
            matches!(
                tokio::time::timeout(limit, client.status()).await,
                Ok(Ok(_))
            )
        });
        let results = futures::future::join_all(checks).await;
        for (index, healthy) in results.into_iter().enumerate() {
            let _ = self.set_health(index, healthy);
        }
    }
}

/// Check every endpoint each interval while the client lives.
async fn health_loop(inner: Weak<Inner>) {
    let Some(interval) = inner.upgrade().map(|inner| inner.config.health_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.check_health().await;
    }
}

impl ChainClient for BalancedClient {
    async fn submit(&self, txs: &[SignedTx]) -> Result<Vec<Admission>, ClientError> {
        BalancedClient::submit(self, txs).await
    }

    async fn tx_status(&self, hash: Hash) -> Result<TxStatusJson, ClientError> {
        BalancedClient::tx_status(self, hash).await
    }

    async fn account(&self, address: PublicKey) -> Result<AccountJson, ClientError> {
        BalancedClient::account(self, address).await
    }

    async fn status(&self) -> Result<NodeStatus, ClientError> {
        BalancedClient::status(self).await
    }

    async fn simulate(&self, tx: &SignedTx) -> Result<ReceiptJson, ClientError> {
        BalancedClient::simulate(self, tx).await
    }

    async fn nonce_and_status(
        &self,
        address: PublicKey,
        hash: Hash,
    ) -> Result<(u64, TxStatusJson), ClientError> {
        match self.call(Call::NonceAndStatus(address, hash)).await? {
            Reply::NonceAndStatus(nonce, status) => Ok((nonce, status)),
            other => Err(mismatch(&other)),
        }
    }

    /// The nonce read goes through the balancer (with its retry); the dry runs go to the
    /// endpoint that answered it.
    async fn dry_run<F>(
        &self,
        address: PublicKey,
        build: F,
        concurrency: usize,
    ) -> Result<Vec<Result<ReceiptJson, ClientError>>, ClientError>
    where
        F: FnOnce(u64) -> Vec<SignedTx> + Send,
    {
        let (endpoint, reply) = self.call_served(Call::Account(address)).await?;
        let Reply::Account(account) = reply else {
            return Err(mismatch(&reply));
        };
        let Some(client) = self.inner.endpoints.get(endpoint) else {
            return Err(mismatch(&Reply::Account(account)));
        };
        Ok(client
            .simulate_each(build(account.nonce), concurrency)
            .await)
    }

    /// Polls [`BalancedClient::tx_status`]; wrap the client in [`crate::WithSubscription`]
    /// to wait over a WebSocket instead.
    async fn wait_receipt(
        &self,
        hash: Hash,
        deadline: Instant,
    ) -> Result<CommittedReceipt, ClientError> {
        let started = Instant::now();
        let interval = self.inner.config.client.receipt_poll_interval;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::timeout(
                    format!("receipt of {hash}"),
                    started.elapsed(),
                ));
            }
            if let Ok(Ok(status)) = tokio::time::timeout(remaining, self.tx_status(hash)).await {
                if let Some(committed) = CommittedReceipt::from_status(&status) {
                    return Ok(committed);
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(interval.min(remaining)).await;
        }
    }
}
