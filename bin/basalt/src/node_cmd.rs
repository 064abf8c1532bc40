//! `basalt node --home DIR`: run one validator until Ctrl-C or SIGTERM.

use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `basalt node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// The node's home directory (from `basalt init`).
    #[arg(long)]
    pub home: PathBuf,
}

/// Wait for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Run `basalt node`.
pub fn run(args: NodeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("network")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let node = basalt_node::start(&args.home).await?;
        println!("rpc http://{} peer {}", node.rpc_addr, node.peer_id);
        shutdown_signal().await;
        tracing::info!("shutting down");
        node.shutdown();
        Ok(())
    })
}
