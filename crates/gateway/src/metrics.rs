//! The gateway's own metrics (`/metrics` is never proxied): requests by route and status,
//! attempts by route, upstream and outcome, failovers, upstream health, ejections, shed
//! requests, tracked hashes, WebSocket bridges, latency.
//!
//! Label values are bounded: routes are templates from [`crate::ROUTES`], upstreams are the
//! configured URLs, outcomes and reasons are fixed words.

use crate::routes::ROUTES;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::time::{Duration, Instant};

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// How one attempt on one upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    /// The upstream answered 2xx or 3xx.
    Ok,
    /// The upstream answered 4xx (the request's fault; passed through, not retried).
    ClientError,
    /// The upstream answered 5xx.
    ServerError,
    /// No answer: refused, reset, or the answer broke off.
    Transport,
    /// No answer within the attempt deadline.
    Timeout,
}

impl AttemptOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::ClientError => "client_error",
            AttemptOutcome::ServerError => "server_error",
            AttemptOutcome::Transport => "transport",
            AttemptOutcome::Timeout => "timeout",
        }
    }

    /// The outcome of an answer with this status.
    pub fn of_status(status: u16) -> AttemptOutcome {
        match status {
            500.. => AttemptOutcome::ServerError,
            400..=499 => AttemptOutcome::ClientError,
            _ => AttemptOutcome::Ok,
        }
    }
}

/// Why an upstream left the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectReason {
    /// Consecutive failed health checks.
    HealthCheck,
    /// A request could not reach it (or its answer broke off).
    Transport,
    /// A request got no answer in time.
    Timeout,
    /// It answered a request with 5xx.
    ServerError,
}

impl EjectReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::HealthCheck => "health_check",
            EjectReason::Transport => "transport",
            EjectReason::Timeout => "timeout",
            EjectReason::ServerError => "server_error",
        }
    }
}

/// Why a request was shed by the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedReason {
    /// The concurrency limit (or the WebSocket limit) was full.
    Overloaded,
    /// The request ran past its deadline.
    Timeout,
    /// The body was larger than allowed.
    BodyTooLarge,
    /// No upstream was healthy.
    NoHealthyUpstream,
}

impl ShedReason {
    /// Every reason, for pre-creating series.
    pub const ALL: [ShedReason; 4] = [
        ShedReason::Overloaded,
        ShedReason::Timeout,
        ShedReason::BodyTooLarge,
        ShedReason::NoHealthyUpstream,
    ];

    /// The label value (also the error code of the response).
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Overloaded => "overloaded",
            ShedReason::Timeout => "timeout",
            ShedReason::BodyTooLarge => "body_too_large",
            ShedReason::NoHealthyUpstream => "no_healthy_upstream",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    route: &'static str,
    upstream: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EjectionLabels {
    upstream: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

fn duration_histogram() -> Histogram {
    // 0.25 ms .. ~8 s: a proxied local read is about a millisecond, a deadline is seconds.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The gateway's metrics. Cheap to clone (handles to shared series).
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    failovers: Family<RouteLabels, Counter>,
    healthy: Family<UpstreamLabels, Gauge>,
    ejections: Family<EjectionLabels, Counter>,
    shed: Family<ReasonLabels, Counter>,
    duplicates_admitted: Counter,
    tracked_hashes: Gauge,
    tracker_hits: Counter,
    tracker_evictions: Counter,
    receipts_recorded: Counter,
    watch_dropped: Counter,
    receipt_subscription_up: Gauge,
    receipt_subscription_connects: Counter,
    ws_connections: Gauge,
    ws_upstream_drops: Counter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// Metrics not registered anywhere (see [`GatewayMetrics::register`]).
    pub fn new() -> Self {
        let metrics = GatewayMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(duration_histogram),
            failovers: Family::default(),
            healthy: Family::default(),
            ejections: Family::default(),
            shed: Family::default(),
            duplicates_admitted: Counter::default(),
            tracked_hashes: Gauge::default(),
            tracker_hits: Counter::default(),
            tracker_evictions: Counter::default(),
            receipts_recorded: Counter::default(),
            watch_dropped: Counter::default(),
            receipt_subscription_up: Gauge::default(),
            receipt_subscription_connects: Counter::default(),
            ws_connections: Gauge::default(),
            ws_upstream_drops: Counter::default(),
        };
        for reason in ShedReason::ALL {
            // Every series up front, so a scrape shows zeros rather than absence.
            let _ = metrics.shed.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        metrics
    }

    /// Register into `registry` under its prefix (`basalt` makes
    /// `basalt_gateway_requests_total` and so on).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_requests",
            "Requests answered by the gateway, by route template and HTTP status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "gateway_request_duration",
            "Latency of requests through the gateway (all attempts), by route template",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "gateway_upstream_requests",
            "Attempts sent to upstreams, by route template, upstream and outcome",
            self.attempts.clone(),
        );
        registry.register_with_unit(
            "gateway_upstream_duration",
            "Latency of one attempt on one upstream, until its response headers",
            Unit::Seconds,
            self.attempt_duration.clone(),
        );
        registry.register(
            "gateway_failovers",
            "Attempts made after a failed one (on another upstream), by route template",
            self.failovers.clone(),
        );
        registry.register(
            "gateway_upstream_healthy",
            "1 when the upstream is in the balancer's set, else 0",
            self.healthy.clone(),
        );
        registry.register(
            "gateway_ejections",
            "Upstreams taken out of the set, by upstream and reason",
            self.ejections.clone(),
        );
        registry.register(
            "gateway_shed",
            "Requests refused by the gateway itself, by reason",
            self.shed.clone(),
        );
        registry.register(
            "gateway_duplicates_admitted",
            "Duplicate answers for transactions the gateway had already sent, reported as \
             admitted",
            self.duplicates_admitted.clone(),
        );
        registry.register(
            "gateway_tracked_hashes",
            "Submitted transactions tracked to their receipts",
            self.tracked_hashes.clone(),
        );
        registry.register(
            "gateway_tracker_hits",
            "Transaction status requests answered from the tracker",
            self.tracker_hits.clone(),
        );
        registry.register(
            "gateway_tracker_evictions",
            "Tracked transactions forgotten to stay within the tracker's bounds",
            self.tracker_evictions.clone(),
        );
        registry.register(
            "gateway_receipts_recorded",
            "Receipts of tracked transactions recorded",
            self.receipts_recorded.clone(),
        );
        registry.register(
            "gateway_watch_dropped",
            "Hashes not handed to the receipt subscription at once (queue full)",
            self.watch_dropped.clone(),
        );
        registry.register(
            "gateway_receipt_subscription_up",
            "1 while the receipt subscription to an upstream is open",
            self.receipt_subscription_up.clone(),
        );
        registry.register(
            "gateway_receipt_subscription_connects",
            "Receipt subscription connections opened (more than one: it failed over)",
            self.receipt_subscription_connects.clone(),
        );
        registry.register(
            "gateway_ws_connections",
            "Open client WebSocket bridges",
            self.ws_connections.clone(),
        );
        registry.register(
            "gateway_ws_upstream_drops",
            "Client WebSocket bridges closed because their upstream went away",
            self.ws_upstream_drops.clone(),
        );
    }

    /// Count an answered request.
    pub(crate) fn observe(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Count one attempt on `upstream`.
    pub(crate) fn attempt(
        &self,
        route: &'static str,
        upstream: &str,
        outcome: AttemptOutcome,
        elapsed: Duration,
    ) {
        self.attempts
            .get_or_create(&AttemptLabels {
                route,
                upstream: upstream.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.attempt_duration
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn failover(&self, route: &'static str) {
        self.failovers.get_or_create(&RouteLabels { route }).inc();
    }

    pub(crate) fn set_healthy(&self, upstream: &str, healthy: bool) {
        self.healthy
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .set(i64::from(healthy));
    }

    pub(crate) fn ejected(&self, upstream: &str, reason: EjectReason) {
        self.ejections
            .get_or_create(&EjectionLabels {
                upstream: upstream.to_owned(),
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn shed(&self, reason: ShedReason) {
        self.shed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn duplicate_admitted(&self) {
        self.duplicates_admitted.inc();
    }

    pub(crate) fn set_tracked(&self, count: usize) {
        self.tracked_hashes
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn tracker_hit(&self) {
        self.tracker_hits.inc();
    }

    pub(crate) fn evicted(&self, count: u64) {
        self.tracker_evictions.inc_by(count);
    }

    pub(crate) fn receipt_recorded(&self) {
        self.receipts_recorded.inc();
    }

    pub(crate) fn watch_dropped(&self) {
        self.watch_dropped.inc();
    }

    pub(crate) fn receipt_subscription(&self, up: bool) {
        self.receipt_subscription_up.set(i64::from(up));
        if up {
            self.receipt_subscription_connects.inc();
        }
    }

    pub(crate) fn ws_upstream_dropped(&self) {
        self.ws_upstream_drops.inc();
    }

    /// Count a client WebSocket bridge as open until the guard drops.
    pub(crate) fn ws_connection_guard(&self) -> GaugeGuard {
        self.ws_connections.inc();
        GaugeGuard {
            gauge: self.ws_connections.clone(),
        }
    }

    /// Attempts on `upstream` for `route` that ended with `outcome`, so far.
    pub fn attempts(&self, route: &'static str, upstream: &str, outcome: AttemptOutcome) -> u64 {
        self.attempts
            .get_or_create(&AttemptLabels {
                route,
                upstream: upstream.to_owned(),
                outcome: outcome.as_str(),
            })
            .get()
    }

    /// True while `upstream` is in the balancer's set.
    pub fn healthy(&self, upstream: &str) -> bool {
        self.healthy
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .get()
            == 1
    }

    /// Failovers on `route`, so far.
    pub fn failovers(&self, route: &'static str) -> u64 {
        self.failovers.get_or_create(&RouteLabels { route }).get()
    }

    /// Ejections of `upstream` for `reason`, so far.
    pub fn ejections(&self, upstream: &str, reason: EjectReason) -> u64 {
        self.ejections
            .get_or_create(&EjectionLabels {
                upstream: upstream.to_owned(),
                reason: reason.as_str(),
            })
            .get()
    }

    /// Requests shed for `reason`, so far.
    pub fn shed_count(&self, reason: ShedReason) -> u64 {
        self.shed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Duplicate answers reported as admitted, so far.
    pub fn duplicates_admitted(&self) -> u64 {
        self.duplicates_admitted.get()
    }

    /// Tracked transactions now.
    pub fn tracked_hashes(&self) -> i64 {
        self.tracked_hashes.get()
    }

    /// Status requests answered from the tracker, so far.
    pub fn tracker_hits(&self) -> u64 {
        self.tracker_hits.get()
    }

    /// Receipts recorded by the tracker, so far.
    pub fn receipts_recorded(&self) -> u64 {
        self.receipts_recorded.get()
    }

    /// Receipt subscription connections opened, so far.
    pub fn receipt_subscription_connects(&self) -> u64 {
        self.receipt_subscription_connects.get()
    }

    /// Open client WebSocket bridges now.
    pub fn ws_connections(&self) -> i64 {
        self.ws_connections.get()
    }
}

/// Decrements a gauge when dropped, however the holder ends.
pub(crate) struct GaugeGuard {
    gauge: Gauge,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The route label of a matched path: one of the known templates, or `unmatched`.
pub(crate) fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|path| ROUTES.iter().find(|route| **route == path.as_str()))
        .copied()
        .unwrap_or(UNMATCHED_ROUTE)
}

/// Middleware: time every request and count it by route template and status.
pub(crate) async fn track(
    State(metrics): State<GatewayMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(route, response.status().as_u16(), started.elapsed());
    response
}
