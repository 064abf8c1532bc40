//! Running the gateway on its own runtime, on its own OS threads.

use crate::config::{GatewayConfig, SHUTDOWN_GRACE_MS, WATCH_QUEUE_MAX};
use crate::metrics::GatewayMetrics;
use crate::receipts::ReceiptSubscription;
use crate::routes::{build_router, Shared};
use crate::tracker::Tracker;
use crate::upstream::{health_loop, Upstreams};
use axum::serve::ListenerExt;
use prometheus_client::registry::Registry;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Thread name of the gateway runtime's threads.
pub const THREAD_NAME: &str = "gateway";

/// A running gateway. Dropping it asks the gateway to stop without waiting; use
/// [`GatewayHandle::shutdown`] to wait.
#[derive(Debug)]
pub struct GatewayHandle {
    local_addr: SocketAddr,
    metrics: GatewayMetrics,
    tracker: Arc<Tracker>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl GatewayHandle {
    /// The address the gateway listens on (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The gateway's metrics (also served on `/metrics`).
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// The transactions tracked to their receipts.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Stop accepting, let in-flight requests finish (each bounded by its deadline, plus a
    /// short grace), close WebSocket bridges, and join the gateway's threads.
    ///
    /// Blocks the calling thread; from async code call it in `spawn_blocking`.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("gateway thread panicked");
            }
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Start the gateway on its own multi-thread tokio runtime (`config.worker_threads` workers
/// named [`THREAD_NAME`]), on dedicated OS threads.
///
/// Binds `config.listen` and runs one health check of every upstream before returning, so
/// bind errors come back here and healthy upstreams serve at once. May be called from
/// inside another tokio runtime.
pub fn spawn(config: GatewayConfig) -> io::Result<GatewayHandle> {
    let urls = config
        .check()
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()?;
    let metrics = GatewayMetrics::new();
    let mut registry = Registry::with_prefix("basalt");
    metrics.register(&mut registry);
    let tracker = Arc::new(Tracker::new(
        config.tracked_hashes_max,
        config.tracked_receipt_bytes_max,
    ));
    let (stop, stopped) = watch::channel(false);
    let grace = config.request_timeout() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
    let start = Start {
        config,
        urls,
        metrics: metrics.clone(),
        registry,
        tracker: tracker.clone(),
        stopped,
    };
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            runtime.block_on(start.serve(listener, grace, ready_tx));
            runtime.shutdown_timeout(Duration::from_millis(SHUTDOWN_GRACE_MS));
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            let _ = thread.join();
            return Err(error);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(io::Error::other("gateway thread exited before serving"));
        }
    }
    tracing::info!(%local_addr, "gateway listening");
    Ok(GatewayHandle {
        local_addr,
        metrics,
        tracker,
        stop,
        thread: Some(thread),
    })
}

/// Everything the runtime thread needs.
struct Start {
    config: GatewayConfig,
    urls: Vec<String>,
    metrics: GatewayMetrics,
    registry: Registry,
    tracker: Arc<Tracker>,
    stopped: watch::Receiver<bool>,
}

impl Start {
    /// Build the upstream set, check health once, serve until `stopped`, then drain for at
    /// most `grace`.
    async fn serve(
        self,
        listener: std::net::TcpListener,
        grace: Duration,
        ready: mpsc::SyncSender<io::Result<()>>,
    ) {
        let upstreams = match Upstreams::new(self.urls, self.config.clone(), self.metrics.clone()) {
            Ok(upstreams) => upstreams,
            Err(message) => {
                let _ = ready.send(Err(io::Error::other(message)));
                return;
            }
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        upstreams.check_health().await;
        tokio::spawn(health_loop(Arc::downgrade(&upstreams)));
        let (watch_queue, queue) = tokio::sync::mpsc::channel(WATCH_QUEUE_MAX);
        let subscription = ReceiptSubscription {
            upstreams: upstreams.clone(),
            tracker: self.tracker.clone(),
            metrics: self.metrics.clone(),
            queue,
            shutdown: self.stopped.clone(),
        };
        tokio::spawn(subscription.run());
        let shared = Arc::new(Shared {
            ws_slots: Arc::new(Semaphore::new(self.config.max_ws_connections.max(1))),
            config: self.config,
            upstreams,
            tracker: self.tracker,
            watch_queue,
            metrics: self.metrics,
            registry: Arc::new(self.registry),
            shutdown: self.stopped.clone(),
        });
        let app = build_router(shared);
        let _ = ready.send(Ok(()));
        let listener = listener.tap_io(|stream| {
            // Small JSON answers should not wait for Nagle.
            let _ = stream.set_nodelay(true);
        });
        let mut stopped = self.stopped;
        let mut signal = stopped.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = signal.wait_for(|stop| *stop).await;
        });
        let mut server = tokio::spawn(server.into_future());
        tokio::select! {
            result = &mut server => report(result),
            _ = stopped.wait_for(|stop| *stop) => {
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => report(result),
                    Err(_) => {
                        tracing::warn!("gateway shutdown grace expired with requests in flight");
                        server.abort();
                    }
                }
            }
        }
    }
}

fn report(result: Result<io::Result<()>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => tracing::info!("gateway stopped"),
        Ok(Err(error)) => tracing::error!(%error, "gateway failed"),
        Err(error) => tracing::error!(%error, "gateway task failed"),
    }
}
