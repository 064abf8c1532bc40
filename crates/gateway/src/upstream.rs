//! The upstream set: every node behind the gateway, which of them are healthy, and tower's
//! power-of-two-choices balancer over the healthy ones.
//!
//! Shape (the SDK's `basalt_client::balance` does the same for clients): each upstream is a
//! tower `Service` wrapped in `PendingRequests`, so its load is its number of attempts in
//! flight. The health checker (`GET /v1/status` every interval) and failed attempts feed
//! `Change::Insert` / `Change::Remove` into the [`tower::discover::Discover`] stream of a
//! [`tower::balance::p2c::Balance`]; a [`tower::buffer::Buffer`] in front makes it shared.
//! Attempts carry their errors inside the response, so the balancer never sees a failed
//! service (tower would drop it for good).

use crate::config::GatewayConfig;
use crate::metrics::{EjectReason, GatewayMetrics};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use basalt_rpc::{NodeStatus, SyncStatus};
use futures::future::BoxFuture;
use futures::StreamExt;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceExt};

/// One HTTP request to send to an upstream. Cheap to clone behind an `Arc` (for failover).
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) method: Method,
    /// Path and query, starting with `/`.
    pub(crate) path: String,
    /// Headers to forward (end-to-end ones only).
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What the balancer is asked for.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Send this request to the upstream picked.
    Http(Arc<Attempt>),
    /// Only say which upstream is picked (for WebSocket bridges).
    Pick,
}

/// Why an attempt got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptError {
    /// Refused, reset, or broke off; the message says how.
    Transport(String),
    /// No answer within the attempt's deadline.
    Timeout,
}

impl AttemptError {
    pub(crate) fn reason(&self) -> EjectReason {
        match self {
            AttemptError::Transport(_) => EjectReason::Transport,
            AttemptError::Timeout => EjectReason::Timeout,
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Transport(message) => write!(f, "transport error: {message}"),
            AttemptError::Timeout => write!(f, "no answer before the attempt deadline"),
        }
    }
}

/// What an upstream service returns: which upstream it is, and its answer (none for a
/// [`Job::Pick`]).
pub(crate) struct Served {
    pub(crate) upstream: usize,
    pub(crate) result: Result<Option<reqwest::Response>, AttemptError>,
}

/// `reqwest`'s error with its causes (its own message is terse).
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Send `attempt` to `base`, waiting at most `limit` for the response headers.
pub(crate) async fn send(
    http: &reqwest::Client,
    base: &str,
    attempt: &Attempt,
    limit: Duration,
) -> Result<reqwest::Response, AttemptError> {
    let request = http
        .request(attempt.method.clone(), format!("{base}{}", attempt.path))
        .headers(attempt.headers.clone())
        .body(attempt.body.clone());
    match tokio::time::timeout(limit, request.send()).await {
        Err(_) => Err(AttemptError::Timeout),
        Ok(Err(error)) if error.is_timeout() => Err(AttemptError::Timeout),
        Ok(Err(error)) => Err(AttemptError::Transport(describe(&error))),
        Ok(Ok(response)) => Ok(response),
    }
}

/// One upstream as a tower service.
#[derive(Clone)]
struct UpstreamService {
    index: usize,
    base: Arc<str>,
    http: reqwest::Client,
    limit: Duration,
}

impl Service<Job> for UpstreamService {
    type Response = Served;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Served, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Admission is the node's business (it sheds with 503); the balancer only needs to
        // know the upstream is in the healthy set.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: Job) -> Self::Future {
        let upstream = self.index;
        let (base, http, limit) = (self.base.clone(), self.http.clone(), self.limit);
        Box::pin(async move {
            let result = match job {
                Job::Pick => Ok(None),
                Job::Http(attempt) => send(&http, &base, &attempt, limit).await.map(Some),
            };
            Ok(Served { upstream, result })
        })
    }
}

type Loaded = PendingRequests<UpstreamService, CompleteOnResponse>;
type Discovered = Change<usize, Loaded>;
type DiscoverStream =
    Pin<Box<dyn futures::Stream<Item = Result<Discovered, Infallible>> + Send + 'static>>;

/// Health of every upstream and the channel that tells the balancer.
struct Health {
    healthy: Vec<bool>,
    /// Consecutive failed health checks.
    failures: Vec<u32>,
    changes: futures::channel::mpsc::UnboundedSender<Discovered>,
}

/// Every upstream, their health, and the balancer over the healthy ones.
pub(crate) struct Upstreams {
    urls: Vec<Arc<str>>,
    http: reqwest::Client,
    health: Mutex<Health>,
    service: BoxCloneSyncService<Job, Served, BoxError>,
    /// Bumped when upstream `i` is found dead (failed health checks or an unreachable
    /// request): WebSocket bridges to it close so their clients reconnect elsewhere.
    dead: Vec<watch::Sender<u64>>,
    metrics: GatewayMetrics,
    config: GatewayConfig,
}

impl Upstreams {
    /// The set over `urls` (normalized), all out until a health check passes. Must run
    /// inside a tokio runtime: the balancer's queue worker is spawned on it.
    pub(crate) fn new(
        urls: Vec<String>,
        config: GatewayConfig,
        metrics: GatewayMetrics,
    ) -> Result<Arc<Upstreams>, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.attempt_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|error| format!("building the HTTP client: {}", describe(&error)))?;
        // Unbounded, but a change is sent only when an upstream's health flips, and the
        // balancer drains the channel on every request. Only flapping without traffic
        // makes it grow, by one entry per upstream per health interval at most.
        let (changes, discovered) = futures::channel::mpsc::unbounded::<Discovered>();
        let discover: DiscoverStream = Box::pin(discovered.map(Ok::<_, Infallible>));
        let balance: Balance<DiscoverStream, Job> = Balance::new(discover);
        // Requests beyond the concurrency limit never get here, so this bound is not hit.
        let buffered = Buffer::new(balance, config.max_concurrent_requests.max(1));
        for url in &urls {
            metrics.set_healthy(url, false);
        }
        let count = urls.len();
        Ok(Arc::new(Upstreams {
            urls: urls.into_iter().map(Arc::from).collect(),
            http,
            health: Mutex::new(Health {
                healthy: vec![false; count],
                failures: vec![0; count],
                changes,
            }),
            service: BoxCloneSyncService::new(buffered),
            dead: (0..count).map(|_| watch::channel(0).0).collect(),
            metrics,
            config,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // Updates are single assignments after the channel send: never half-done.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many upstreams there are.
    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }

    /// Base URL of upstream `index` (also its metric label).
    pub(crate) fn url(&self, index: usize) -> &str {
        self.urls.get(index).map_or("unknown", |url| url)
    }

    /// The shared HTTP client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn healthy_count(&self) -> usize {
        self.lock()
            .healthy
            .iter()
            .filter(|healthy| **healthy)
            .count()
    }

    /// Indices of the upstreams in the set now.
    pub(crate) fn healthy(&self) -> Vec<usize> {
        let health = self.lock();
        (0..health.healthy.len())
            .filter(|index| health.healthy.get(*index).copied().unwrap_or(false))
            .collect()
    }

    /// A receiver that changes when upstream `index` is found dead.
    pub(crate) fn dead_signal(&self, index: usize) -> Option<watch::Receiver<u64>> {
        self.dead.get(index).map(watch::Sender::subscribe)
    }

    fn mark_dead(&self, index: usize) {
        if let Some(dead) = self.dead.get(index) {
            dead.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }

    fn service_for(&self, index: usize) -> Option<Loaded> {
        let base = self.urls.get(index)?.clone();
        Some(PendingRequests::new(
            UpstreamService {
                index,
                base,
                http: self.http.clone(),
                limit: self.config.attempt_timeout(),
            },
            CompleteOnResponse::default(),
        ))
    }

    /// Put upstream `index` in or out of the balancer's set. True when that changed it.
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
        self.metrics.set_healthy(self.url(index), healthy);
        tracing::info!(
            upstream = self.url(index),
            healthy,
            "upstream health changed"
        );
        true
    }

    /// Take upstream `index` out after a failed attempt, unless it is the last one in (one
    /// bad answer must not empty the set; the health checker can). It comes back when a
    /// health check passes.
    pub(crate) fn eject(&self, index: usize, reason: EjectReason) {
        let mut health = self.lock();
        if let Some(failures) = health.failures.get_mut(index) {
            *failures = (*failures).max(self.config.unhealthy_after);
        }
        if health.healthy.iter().filter(|healthy| **healthy).count() <= 1 {
            return;
        }
        if self.set_health_locked(&mut health, index, false) {
            drop(health);
            self.metrics.ejected(self.url(index), reason);
            tracing::warn!(
                upstream = self.url(index),
                reason = reason.as_str(),
                "upstream ejected until it passes a health check"
            );
        }
        if reason != EjectReason::ServerError {
            // Unreachable: its WebSocket bridges are as good as dead.
            self.mark_dead(index);
        }
    }

    /// One health check of upstream `index`: a 200 `/v1/status` from a node not syncing.
    async fn probe(&self, index: usize) -> bool {
        let Some(base) = self.urls.get(index) else {
            return false;
        };
        let check = async {
            let response = self
                .http
                .get(format!("{base}/v1/status"))
                .send()
                .await
                .ok()?;
            if !response.status().is_success() {
                return None;
            }
            let status: NodeStatus = response.json().await.ok()?;
            Some(status.sync != SyncStatus::Syncing)
        };
        matches!(
            tokio::time::timeout(self.config.health_timeout(), check).await,
            Ok(Some(true))
        )
    }

    /// Check every upstream once, concurrently, and update the set.
    pub(crate) async fn check_health(&self) {
        let probes = (0..self.urls.len()).map(|index| self.probe(index));
        let results = futures::future::join_all(probes).await;
        let mut died = Vec::new();
        {
            let mut health = self.lock();
            for (index, passed) in results.into_iter().enumerate() {
                let Some(failures) = health.failures.get_mut(index) else {
                    continue;
                };
                if passed {
                    *failures = 0;
                    self.set_health_locked(&mut health, index, true);
                    continue;
                }
                *failures = failures.saturating_add(1);
                if *failures >= self.config.unhealthy_after
                    && self.set_health_locked(&mut health, index, false)
                {
                    died.push(index);
                }
            }
        }
        for index in died {
            self.metrics
                .ejected(self.url(index), EjectReason::HealthCheck);
            self.mark_dead(index);
        }
    }

    /// Send `job` to the upstream the balancer picks, waiting at most `limit`. The error
    /// names the upstream when one was picked.
    pub(crate) async fn dispatch(
        &self,
        job: Job,
        limit: Duration,
    ) -> Result<(usize, Option<reqwest::Response>), (Option<usize>, AttemptError)> {
        let service = self.service.clone();
        match tokio::time::timeout(limit, service.oneshot(job)).await {
            Err(_) => Err((None, AttemptError::Timeout)),
            Ok(Err(error)) => Err((None, AttemptError::Transport(format!("balancer: {error}")))),
            Ok(Ok(Served { upstream, result })) => result
                .map(|response| (upstream, response))
                .map_err(|error| (Some(upstream), error)),
        }
    }

    /// The upstream the balancer picks now, if any is healthy.
    pub(crate) async fn pick(&self) -> Option<usize> {
        if self.healthy_count() == 0 {
            return None;
        }
        let limit = self.config.attempt_timeout();
        self.dispatch(Job::Pick, limit)
            .await
            .ok()
            .map(|(upstream, _)| upstream)
    }
}

/// Check every upstream each interval while the set lives.
pub(crate) async fn health_loop(upstreams: Weak<Upstreams>) {
    let Some(interval) = upstreams
        .upgrade()
        .map(|upstreams| upstreams.config.health_interval())
    else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(upstreams) = upstreams.upgrade() else {
            return;
        };
        upstreams.check_health().await;
    }
}
