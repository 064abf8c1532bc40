//! RPC metrics: requests by route and status, latency by route, shed requests by reason,
//! open WebSocket connections.
//!
//! Route labels are route templates (`/v1/txs/{hash}`), never raw paths, so the number of
//! series is bounded whatever clients send.

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

/// Why a request was shed before (or instead of) being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShedReason {
    /// The concurrency limit was full (or the WebSocket connection limit).
    Overloaded,
    /// The request ran past its deadline.
    Timeout,
    /// The body was larger than allowed.
    BodyTooLarge,
    /// The client made more requests per second than it may.
    RateLimited,
    /// Transactions refused because the node's blocks come slower than idle.
    Congested,
}

impl ShedReason {
    /// Every reason, for pre-creating series.
    pub const ALL: [ShedReason; 5] = [
        ShedReason::Overloaded,
        ShedReason::Timeout,
        ShedReason::BodyTooLarge,
        ShedReason::RateLimited,
        ShedReason::Congested,
    ];

    /// The label value (also the error code of the response).
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Overloaded => "overloaded",
            ShedReason::Timeout => "timeout",
            ShedReason::BodyTooLarge => "body_too_large",
            ShedReason::RateLimited => "rate_limited",
            ShedReason::Congested => "congested",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ShedLabels {
    reason: &'static str,
}

fn duration_histogram() -> Histogram {
    // 0.25 ms .. ~8 s: a local read is well under a millisecond, a deadline is seconds.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The RPC's metrics. Cheap to clone (handles to shared series).
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    shed: Family<ShedLabels, Counter>,
    ws_connections: Gauge,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcMetrics {
    /// Metrics not registered anywhere (register them with [`RpcMetrics::register`]).
    pub fn new() -> Self {
        let metrics = RpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            shed: Family::default(),
            ws_connections: Gauge::default(),
        };
        for reason in ShedReason::ALL {
            // Create every series up front so a scrape shows zeros, not absence.
            let _ = metrics.shed.get_or_create(&ShedLabels {
                reason: reason.as_str(),
            });
        }
        metrics
    }

    /// New metrics, registered into `registry`.
    pub fn registered(registry: &mut Registry) -> Self {
        let metrics = Self::new();
        metrics.register(registry);
        metrics
    }

    /// Register into `registry` as `rpc_requests_total`, `rpc_request_duration_seconds`,
    /// `rpc_shed_total` and `rpc_ws_connections`, under the registry's own prefix. The node's
    /// registry is `Registry::with_prefix("basalt")`, which makes them
    /// `basalt_rpc_requests_total` and so on.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_requests",
            "RPC requests served, by route template and HTTP status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "rpc_request_duration",
            "RPC request latency, by route template",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "rpc_shed",
            "RPC requests refused by admission control, by reason",
            self.shed.clone(),
        );
        registry.register(
            "rpc_ws_connections",
            "Open WebSocket subscription connections",
            self.ws_connections.clone(),
        );
    }

    /// Count a served request.
    pub fn observe(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Count a shed request.
    pub fn shed(&self, reason: ShedReason) {
        self.shed
            .get_or_create(&ShedLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Requests shed for `reason` so far.
    pub fn shed_count(&self, reason: ShedReason) -> u64 {
        self.shed
            .get_or_create(&ShedLabels {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Requests served on `route` with `status` so far.
    pub fn request_count(&self, route: &'static str, status: u16) -> u64 {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .get()
    }

    /// Open WebSocket connections now.
    pub fn ws_connections(&self) -> i64 {
        self.ws_connections.get()
    }

    /// Count a WebSocket connection as open until the guard drops.
    pub(crate) fn ws_connection_guard(&self) -> WsConnectionGuard {
        self.ws_connections.inc();
        WsConnectionGuard {
            gauge: self.ws_connections.clone(),
        }
    }
}

/// Decrements the connection gauge when the connection ends, however it ends.
pub(crate) struct WsConnectionGuard {
    gauge: Gauge,
}

impl Drop for WsConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The route label for a matched path: one of the known templates, or `unmatched`.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched
        .and_then(|path| ROUTES.iter().find(|route| **route == path.as_str()))
        .copied()
        .unwrap_or(UNMATCHED_ROUTE)
}

/// Middleware: time every request and count it by route template and status.
pub(crate) async fn track(
    State(metrics): State<RpcMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = route_label(request.extensions().get::<MatchedPath>());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(route, response.status().as_u16(), started.elapsed());
    response
}
