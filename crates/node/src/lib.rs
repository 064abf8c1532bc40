//! Basalt's validator runtime.
//!
//! Shape (see DESIGN.md): a network task that only decodes, checks and dispatches; a
//! signature-verification pool; the consensus driver on its own thread (timers first,
//! bounded work per turn); the chain worker on its own thread (execute, persist in one
//! storage transaction, announce); the mempool; and the RPC server on its own runtime. Every
//! arrow between them is a bounded queue with a name, a depth gauge and a drop counter.

pub mod admission;
pub mod api;
pub mod chain;
pub mod config;
pub mod driver;
pub mod fetch;
pub mod mempool;
pub mod messages;
pub mod metrics;
pub mod network;
pub mod pending;
pub mod signer;
pub mod slots;
pub mod state;
pub mod tips;
pub mod verify;

use crate::chain::{Executed, CHAIN_QUEUE_MAX};
use crate::config::{HomeLayout, KeyFile, NodeConfig};
use crate::driver::{Driver, DriverChannels, DRIVER_QUEUE_MAX};
use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::network::{NetworkTask, TX_GOSSIP_QUEUE_MAX};
use crate::state::{Latest, Rejected, Shared, SyncState};
use crate::verify::PoolOutlets;
use anyhow::Context;
use arc_swap::ArcSwap;
use basalt_app::App;
use basalt_consensus::ValidatorSet;
use basalt_p2p::P2pConfig;
use basalt_storage::Store;
use basalt_types::{Genesis, Hash};
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex};

/// Events kept for slow RPC subscribers before they lag.
pub const EVENTS_QUEUE_MAX: usize = 1024;
/// Threads of the verification pool that check transactions (one more checks consensus
/// messages, so a vote never waits behind a transaction batch).
pub const VERIFY_TX_THREADS: usize = 1;

/// A running node.
pub struct NodeHandle {
    /// Where the RPC listens.
    pub rpc_addr: std::net::SocketAddr,
    /// The libp2p peer id.
    pub peer_id: String,
    rpc: basalt_rpc::RpcHandle,
    _network: basalt_p2p::NetworkHandle,
}

impl NodeHandle {
    /// Stop the RPC server (the rest stops with the process).
    pub fn shutdown(self) {
        self.rpc.shutdown();
    }
}

/// Load the genesis file.
pub fn load_genesis(path: &Path) -> anyhow::Result<Genesis> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Start a node from its home directory, on the current tokio runtime (network tasks);
/// the driver, chain worker, verification pool and RPC get their own threads.
pub async fn start(home: &Path) -> anyhow::Result<NodeHandle> {
    let layout = HomeLayout::new(home);
    let config = NodeConfig::load(&layout.config())?;
    let genesis = load_genesis(&layout.genesis())?;
    let keypair = KeyFile::read(&layout.validator_key())?.keypair()?;
    let node_key = KeyFile::read(&layout.node_key())?.keypair()?;
    let validators = ValidatorSet::new(genesis.validators.clone())
        .map_err(|e| anyhow::anyhow!("genesis validator set: {e}"))?;
    let validator_index = genesis
        .validators
        .iter()
        .position(|v| v.public_key == keypair.public())
        .and_then(|i| u16::try_from(i).ok());

    std::fs::create_dir_all(home.join("data"))?;
    let store = Arc::new(Store::open(&layout.database())?);
    let genesis_app = App::from_genesis(&genesis).map_err(|e| anyhow::anyhow!("genesis: {e}"))?;
    let app = chain::recover(&store, genesis_app)?;
    let reader = store.reader()?;
    let last_height = reader.last_height()?;
    let executed = match reader.block(last_height)? {
        Some(block) => Executed {
            height: last_height,
            block_id: block.id(),
            time_ms: block.header.time_ms,
            state_root: app.state_root(),
            certificate: reader.certificate(last_height)?,
        },
        None => Executed {
            height: 0,
            block_id: Hash::ZERO,
            time_ms: genesis.genesis_time_ms,
            state_root: app.state_root(),
            certificate: None,
        },
    };
    drop(reader);
    tracing::info!(height = last_height, root = %app.state_root(), "recovered");

    let mut registry = Registry::with_prefix("basalt");
    let metrics = Metrics::register(&mut registry);
    metrics.height.set(last_height as i64);
    let p2p_config = P2pConfig::new(
        node_key.seed(),
        config.p2p.listen_addr.parse().context("p2p.listen_addr")?,
    );
    let mut p2p_config = p2p_config;
    if !config.protections.peer_gossip_rate {
        p2p_config.consensus_messages_per_peer_per_sec = 0;
        p2p_config.consensus_messages_from_unlisted_per_sec = 0;
    }
    for peer in &config.p2p.persistent_peers {
        p2p_config
            .peers
            .push(peer.parse().with_context(|| format!("p2p peer {peer}"))?);
    }
    let (network, events) = basalt_p2p::spawn(p2p_config)?;
    registry.register_collector(Box::new(metrics::P2pCollector {
        handle: network.clone(),
    }));
    registry.register_collector(Box::new(metrics::ProcessCollector));
    let (event_sender, _) = tokio::sync::broadcast::channel(EVENTS_QUEUE_MAX);
    let shared = Arc::new(Shared {
        chain_id: genesis.chain_id.clone(),
        validators,
        validator_index,
        keypair,
        node_id: network.peer_id().to_string(),
        store: store.clone(),
        app: ArcSwap::from_pointee(app.clone()),
        mempool: Mutex::new(Mempool::new(config.mempool.clone())),
        rejected: Mutex::new(Rejected::default()),
        metrics: metrics.clone(),
        latest: ArcSwap::from_pointee(Latest {
            height: executed.height,
            block_id: executed.block_id,
            state_root: executed.state_root,
            time_ms: executed.time_ms,
        }),
        consensus_height: AtomicU64::new(executed.height + 1),
        consensus_round: AtomicU32::new(0),
        sync: AtomicU8::new(SyncState::Idle as u8),
        peers: AtomicUsize::new(0),
        events: event_sender,
        tips: Mutex::new(tips::Tips::default()),
        slots: Mutex::new(slots::SlotGuard::default()),
        commit_times: Mutex::new(state::CommitTimes::default()),
        admission: admission::Admission::new(config.admission(), &mut registry),
    });

    let (driver_sender, driver_inputs) = tokio::sync::mpsc::channel(DRIVER_QUEUE_MAX);
    let (verify_sender, verify_jobs) = verify::queue();
    let (gossip_sender, gossip_receiver) = tokio::sync::mpsc::channel(TX_GOSSIP_QUEUE_MAX);
    let (chain_sender, chain_receiver) = crossbeam_channel::bounded(CHAIN_QUEUE_MAX);
    let (executed_sender, executed_receiver) = tokio::sync::mpsc::unbounded_channel();
    let commands = network.commands().clone();

    // Verification pool: one thread for consensus messages, the rest for transactions.
    let lanes = std::iter::once(verify::Lane::Consensus)
        .chain(std::iter::repeat_n(verify::Lane::Txs, VERIFY_TX_THREADS));
    for (i, lane) in lanes.enumerate() {
        let shared = shared.clone();
        let jobs = verify_jobs.clone();
        let outlets = PoolOutlets {
            driver: driver_sender.clone(),
            network: commands.clone(),
            gossip: gossip_sender.clone(),
        };
        let niceness = match lane {
            verify::Lane::Consensus => 0,
            verify::Lane::Txs => config.mempool.verify_niceness,
        };
        std::thread::Builder::new()
            .name(format!("{}-{i}", lane.name()))
            .spawn(move || {
                basalt_rpc::lower_priority(niceness);
                verify::run(shared, jobs, lane, outlets)
            })?;
    }
    // Chain worker.
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("chain".into())
            .spawn(move || chain::run(shared, app, chain_receiver, executed_sender))?;
    }
    // Consensus driver, on its own thread and runtime.
    {
        let mut driver = Driver::new(
            shared.clone(),
            &config,
            executed,
            DriverChannels {
                inputs: driver_inputs,
                executed: executed_receiver,
                chain: chain_sender,
                network: commands.clone(),
            },
        )?;
        std::thread::Builder::new()
            .name("consensus".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "consensus runtime");
                        return;
                    }
                };
                let result = runtime.block_on(async move {
                    driver.start()?;
                    driver.run().await
                });
                if let Err(error) = result {
                    tracing::error!(%error, "consensus driver stopped");
                }
            })?;
    }
    // Network task and transaction batcher.
    tokio::spawn(
        NetworkTask {
            shared: shared.clone(),
            handle: network.clone(),
            commands: commands.clone(),
            verify: verify_sender.clone(),
            driver: driver_sender,
            protections: config.protections.clone(),
        }
        .run(events),
    );
    tokio::spawn(network::run_tx_batcher(
        gossip_receiver,
        network.clone(),
        network::validators_to_reach(shared.validators.len(), shared.validator_index.is_some()),
        metrics.clone(),
    ));

    // RPC on its own runtime.
    let registry_cell = Arc::new(std::sync::OnceLock::new());
    let api = api::Api {
        shared: shared.clone(),
        verify: verify_sender,
        registry: registry_cell.clone(),
    };
    let rpc_config = basalt_rpc::RpcConfig {
        listen: config.rpc.listen_addr.parse().context("rpc.listen_addr")?,
        worker_threads: config.rpc.worker_threads,
        max_concurrent_requests: config.rpc.max_concurrent_requests,
        max_body_bytes: config.rpc.max_body_bytes,
        request_timeout_ms: config.rpc.request_timeout_ms,
        max_requests_per_client_per_sec: config.rpc.max_requests_per_client_per_sec,
        thread_niceness: config.rpc.thread_niceness,
        ..basalt_rpc::RpcConfig::default()
    };
    let rpc = basalt_rpc::spawn(rpc_config, api, &mut registry)?;
    let _ = registry_cell.set(registry);
    let rpc_addr = rpc.local_addr();
    tracing::info!(%rpc_addr, peer_id = %network.peer_id(), "node started");
    Ok(NodeHandle {
        rpc_addr,
        peer_id: network.peer_id().to_string(),
        rpc,
        _network: network,
    })
}
