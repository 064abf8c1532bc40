//! `basalt gateway --upstream URL,URL,..`: one endpoint with the node API in front of every
//! validator (health checks, balancing, failover, receipt tracking), until Ctrl-C / SIGTERM.

use anyhow::{Context, Result};
use basalt_gateway::GatewayConfig;
use std::net::SocketAddr;

/// Arguments of `basalt gateway`.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Base URLs of the nodes' RPC, comma-separated (e.g.
    /// `http://127.0.0.1:26650,http://127.0.0.1:26660`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub upstream: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], basalt_gateway::LISTEN_PORT_DEFAULT)))]
    pub listen: SocketAddr,
    /// Interval between health checks of every upstream, ms.
    #[arg(long, default_value_t = basalt_gateway::HEALTH_INTERVAL_MS_DEFAULT)]
    pub health_interval_ms: u64,
    /// Consecutive failed health checks that take an upstream out.
    #[arg(long, default_value_t = basalt_gateway::UNHEALTHY_AFTER_DEFAULT)]
    pub unhealthy_after: u32,
    /// Deadline of one request through the gateway, all attempts included, ms.
    #[arg(long, default_value_t = basalt_gateway::REQUEST_TIMEOUT_MS_DEFAULT)]
    pub request_timeout_ms: u64,
    /// Deadline of one attempt on one upstream, ms.
    #[arg(long, default_value_t = basalt_gateway::ATTEMPT_TIMEOUT_MS_DEFAULT)]
    pub attempt_timeout_ms: u64,
    /// Most upstreams one request is tried on.
    #[arg(long, default_value_t = basalt_gateway::ATTEMPTS_MAX_DEFAULT)]
    pub attempts_max: u32,
    /// Requests in flight at once before 503 `overloaded`.
    #[arg(long, default_value_t = basalt_gateway::CONCURRENT_REQUESTS_MAX_DEFAULT)]
    pub max_concurrent_requests: usize,
    /// Most transactions tracked to their receipts.
    #[arg(long, default_value_t = basalt_gateway::TRACKED_HASHES_MAX_DEFAULT)]
    pub tracked_hashes_max: usize,
    /// Worker threads of the gateway's runtime.
    #[arg(long, default_value_t = basalt_gateway::WORKER_THREADS_DEFAULT)]
    pub worker_threads: usize,
}

impl GatewayArgs {
    /// Default arguments in front of `upstreams`, listening on `listen`.
    pub fn new(upstreams: Vec<String>, listen: SocketAddr) -> GatewayArgs {
        let defaults = GatewayConfig::default();
        GatewayArgs {
            upstream: upstreams,
            listen,
            health_interval_ms: defaults.health_interval_ms,
            unhealthy_after: defaults.unhealthy_after,
            request_timeout_ms: defaults.request_timeout_ms,
            attempt_timeout_ms: defaults.attempt_timeout_ms,
            attempts_max: defaults.attempts_max,
            max_concurrent_requests: defaults.max_concurrent_requests,
            tracked_hashes_max: defaults.tracked_hashes_max,
            worker_threads: defaults.worker_threads,
        }
    }

    /// The gateway configuration these arguments ask for.
    pub fn config(&self) -> GatewayConfig {
        GatewayConfig {
            listen: self.listen,
            upstreams: self.upstream.clone(),
            worker_threads: self.worker_threads,
            health_interval_ms: self.health_interval_ms,
            unhealthy_after: self.unhealthy_after,
            request_timeout_ms: self.request_timeout_ms,
            attempt_timeout_ms: self.attempt_timeout_ms,
            attempts_max: self.attempts_max,
            max_concurrent_requests: self.max_concurrent_requests,
            tracked_hashes_max: self.tracked_hashes_max,
            ..GatewayConfig::default()
        }
    }
}

/// Start the gateway on its own threads (returns once it listens).
pub fn start(args: &GatewayArgs) -> Result<basalt_gateway::GatewayHandle> {
    basalt_gateway::spawn(args.config())
        .with_context(|| format!("starting the gateway on {}", args.listen))
}

/// Run `basalt gateway`.
pub fn run(args: GatewayArgs) -> Result<()> {
    let handle = start(&args)?;
    println!(
        "gateway: {}  metrics {}/metrics  upstreams {}",
        handle.url(),
        handle.url(),
        args.upstream.join(",")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::node_cmd::shutdown_signal());
    tracing::info!("shutting down");
    handle.shutdown();
    Ok(())
}
