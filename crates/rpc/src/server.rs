//! Running the router on the RPC's own runtime, on its own OS threads.

use crate::api::NodeApi;
use crate::config::{RpcConfig, RpcLimits, BLOCKING_THREADS_MAX, SHUTDOWN_GRACE_MS};
use crate::metrics::RpcMetrics;
use crate::routes::build_router;
use axum::serve::ListenerExt;
use prometheus_client::registry::Registry;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Thread name of the RPC runtime's threads (visible in `top -H`, profilers, panics).
pub const THREAD_NAME: &str = "rpc";

/// A running RPC server. Dropping it asks the server to stop without waiting; use
/// [`RpcHandle::shutdown`] to wait.
#[derive(Debug)]
pub struct RpcHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl RpcHandle {
    /// The address the server listens on (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting, let in-flight requests finish (each is bounded by the request
    /// deadline, plus a short grace), close WebSocket sessions, and join the RPC threads.
    ///
    /// Blocks the calling thread until done; from async code call it in `spawn_blocking`.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("rpc server thread panicked");
            }
        }
    }
}

impl Drop for RpcHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Start the RPC server on its own multi-thread tokio runtime (`config.worker_threads`
/// workers named [`THREAD_NAME`]), on dedicated OS threads: no amount of HTTP traffic takes
/// a turn on the caller's (the node's) runtime.
///
/// Binds `config.listen` before returning, so bind errors come back here. Registers the
/// RPC metrics into `registry` (see [`RpcMetrics::register`]). May be called from inside
/// another tokio runtime.
pub fn spawn<S: NodeApi>(
    config: RpcConfig,
    api: S,
    registry: &mut Registry,
) -> io::Result<RpcHandle> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let niceness = config.thread_niceness;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads.max(1))
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .thread_name(THREAD_NAME)
        .on_thread_start(move || lower_priority(niceness))
        .enable_all()
        .build()?;
    let limits = RpcLimits::from(&config);
    let metrics = RpcMetrics::registered(registry);
    let (stop, stopped) = watch::channel(false);
    let sessions = Sessions {
        slots: Arc::new(Semaphore::new(limits.max_ws_connections)),
        max: limits.max_ws_connections,
    };
    let app = build_router(
        api,
        limits.clone(),
        metrics,
        stopped.clone(),
        sessions.slots.clone(),
    );
    let grace = limits.request_timeout() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                serve(listener, app, stopped, grace, ready_tx).await;
                sessions.closed().await;
            });
            // Stragglers (a node call stuck in storage, say) get a moment, then are dropped.
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
            return Err(io::Error::other("rpc server thread exited before serving"));
        }
    }
    tracing::info!(%local_addr, "rpc listening");
    Ok(RpcHandle {
        local_addr,
        stop,
        thread: Some(thread),
    })
}

/// The WebSocket sessions' slots. Upgraded connections are not hyper's any more, so its
/// graceful shutdown does not wait for them; this does.
struct Sessions {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Sessions {
    /// Wait (at most [`SHUTDOWN_GRACE_MS`]) until every session has said goodbye to its
    /// client and let go of its slot, so that stopping the runtime does not cut them off.
    async fn closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let grace = Duration::from_millis(SHUTDOWN_GRACE_MS);
        if tokio::time::timeout(grace, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("rpc shutdown grace expired with WebSocket sessions open");
        }
    }
}

/// Give the calling thread the OS niceness `niceness` (0..=19; 0 leaves it alone), so that
/// when the machine is short of CPU the node's consensus, verification and execution
/// threads run first and the RPC gets what is left: an HTTP flood then slows the RPC, not
/// the chain (seed 000). Failure (a system that refuses) is logged, not fatal.
pub fn lower_priority(niceness: u8) {
    if niceness == 0 {
        return;
    }
    let niceness = f32::from(niceness.min(19));
    // thread-priority maps 0..=99 linearly onto niceness 19..=-20, truncating: the floor of
    // the inverse lands on the niceness asked for.
    let value = (99.0 * (1.0 - (niceness + 20.0) / 39.0))
        .floor()
        .clamp(0.0, 99.0) as u8;
    let result = thread_priority::ThreadPriorityValue::try_from(value)
        .map_err(|e| format!("{e:?}"))
        .and_then(|value| {
            thread_priority::set_current_thread_priority(
                thread_priority::ThreadPriority::Crossplatform(value),
            )
            .map_err(|e| format!("{e:?}"))
        });
    if let Err(error) = result {
        tracing::warn!(%error, "could not lower this thread's priority");
    }
}

/// Serve until `stopped` turns true, then drain for at most `grace`.
async fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
    ready: mpsc::SyncSender<io::Result<()>>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => {
            let _ = ready.send(Ok(()));
            listener
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let listener = listener.tap_io(|stream| {
        // Small JSON answers should not wait for Nagle.
        let _ = stream.set_nodelay(true);
    });
    let mut signal = stopped.clone();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
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
                    tracing::warn!("rpc shutdown grace expired with requests in flight");
                    server.abort();
                }
            }
        }
    }
}

fn report(result: Result<io::Result<()>, tokio::task::JoinError>) {
    match result {
        Ok(Ok(())) => tracing::info!("rpc server stopped"),
        Ok(Err(error)) => tracing::error!(%error, "rpc server failed"),
        Err(error) => tracing::error!(%error, "rpc server task failed"),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// Field 19 of /proc/thread-self/stat: the thread's niceness.
    fn own_niceness() -> Option<i32> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let after_name = stat.rsplit_once(')')?.1;
        after_name.split_whitespace().nth(16)?.parse().ok()
    }

    #[test]
    fn rpc_threads_run_at_the_configured_niceness() {
        let before = std::thread::spawn(own_niceness).join().unwrap_or_default();
        let after = std::thread::spawn(|| {
            super::lower_priority(10);
            own_niceness()
        })
        .join()
        .unwrap_or_default();
        let unchanged = std::thread::spawn(|| {
            super::lower_priority(0);
            own_niceness()
        })
        .join()
        .unwrap_or_default();
        assert_eq!(before, Some(0));
        assert_eq!(after, Some(10));
        assert_eq!(unchanged, Some(0));
    }
}
