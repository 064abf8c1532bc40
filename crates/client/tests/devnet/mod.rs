//! A 4-validator devnet started in this test process on loopback (one per test binary,
//! shared by its tests, each test using its own accounts), and a TCP proxy that can drop
//! its connections, stop, or refuse WebSocket upgrades.

use basalt_client::Client;
use basalt_node::config::{
    ConsensusConfig, HomeLayout, KeyFile, NodeConfig, P2pSection, RpcSection,
};
use basalt_types::{
    AccountGenesis, BatchItem, Genesis, Keypair, MarketGenesis, Payload, SignedTx, ValidatorInfo,
};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

pub const VALIDATORS: usize = 4;
pub const CHAIN_ID: &str = "basalt-client-test";
/// Funded accounts (assets 0 and 1); the first [`TASK_GENERATORS`] are task generators.
pub const ACCOUNTS: usize = 128;
pub const TASK_GENERATORS: usize = 32;
pub const BALANCE: u64 = 1_000_000_000_000;
/// Pause after a commit before the next height: keeps four validators in one process from
/// spinning empty blocks on a 2-core machine, and still gives ~10 blocks per second.
pub const COMMIT_WAIT_MS: u64 = 50;

pub fn account(i: usize) -> Keypair {
    basalt_client::keys::devnet_account(i)
}

pub struct Devnet {
    pub urls: Vec<String>,
}

static DEVNET: OnceLock<Devnet> = OnceLock::new();

/// The shared devnet, started on first use on its own runtime (which lives as long as the
/// test process).
pub fn devnet() -> &'static Devnet {
    DEVNET.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("devnet".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let parent = std::env::temp_dir().join("basalt-client-devnet");
                    remove_dead_runs(&parent);
                    let dir = parent.join(std::process::id().to_string());
                    let _ = std::fs::remove_dir_all(&dir);
                    let homes = write_homes(&dir);
                    let mut nodes = Vec::new();
                    for home in &homes {
                        nodes.push(basalt_node::start(home).await.unwrap());
                    }
                    let urls: Vec<String> = nodes
                        .iter()
                        .map(|node| format!("http://{}", node.rpc_addr))
                        .collect();
                    wait_for_heights(&urls, 2).await;
                    sender.send(urls).unwrap();
                    // Keep the nodes (and their network tasks) alive for the whole process.
                    let _nodes = nodes;
                    std::future::pending::<()>().await;
                });
            })
            .unwrap();
        let urls = receiver
            .recv_timeout(Duration::from_secs(90))
            .expect("the devnet did not start within 90 s");
        Devnet { urls }
    })
}

/// Account whose never-executable transactions nudge a stalled network (see
/// [`wait_for_heights`]).
const NUDGE_ACCOUNT: usize = ACCOUNTS - 1;

/// Remove the homes of earlier test processes that are gone (where `/proc` tells).
fn remove_dead_runs(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_ok() && !Path::new("/proc").join(&name).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn wait_for_heights(urls: &[String], height: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let clients: Vec<Client> = urls.iter().map(|url| Client::new(url).unwrap()).collect();
    let mut best = 0;
    let mut progress_at = Instant::now();
    let mut nudges = 0u64;
    loop {
        let mut heights = Vec::new();
        for client in &clients {
            heights.push(
                client
                    .status()
                    .await
                    .map(|status| status.height)
                    .unwrap_or(0),
            );
        }
        if heights.iter().all(|at| *at >= height) {
            if nudges > 0 {
                eprintln!("devnet: started after {nudges} gossip nudge(s)");
            }
            return;
        }
        let top = heights.iter().copied().max().unwrap_or(0);
        if top > best {
            best = top;
            progress_at = Instant::now();
        } else if progress_at.elapsed() > Duration::from_secs(3) {
            // Work around a node liveness bug seen at startup: consensus messages lost while
            // the gossip mesh forms are re-broadcast, but libp2p-gossipsub refuses to publish
            // an id still in its duplicate cache, whose entries only expire when a new id is
            // inserted. In a network where nothing new is published, that is never. Any new
            // gossip (here a transaction that can never execute) prunes the cache.
            nudges += 1;
            let tx = SignedTx::sign(
                &account(NUDGE_ACCOUNT),
                CHAIN_ID,
                1_000_000_000 + nudges,
                Payload::Single(BatchItem::Transfer {
                    to: account(NUDGE_ACCOUNT).public(),
                    asset: 0,
                    amount: 1,
                }),
            );
            let _ = clients[0].submit(&[tx]).await;
            progress_at = Instant::now();
        }
        if Instant::now() >= deadline {
            for client in &clients {
                eprintln!("{}: {:?}", client.base_url(), client.status().await);
            }
            panic!("devnet nodes did not reach height {height} in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Genesis, configs and keys for [`VALIDATORS`] nodes under `dir` (what `basalt init`
/// writes, with RPC on free ports and a short commit wait).
fn write_homes(dir: &Path) -> Vec<PathBuf> {
    let validator_keys: Vec<Keypair> = (0..VALIDATORS)
        .map(|i| Keypair::from_label(&format!("client-test-validator-{i}")))
        .collect();
    let node_keys: Vec<Keypair> = (0..VALIDATORS)
        .map(|i| Keypair::from_label(&format!("client-test-node-{i}")))
        .collect();
    let genesis = Genesis {
        chain_id: CHAIN_ID.into(),
        genesis_time_ms: 0,
        validators: validator_keys
            .iter()
            .map(|key| ValidatorInfo {
                public_key: key.public(),
                power: 10,
            })
            .collect(),
        assets: vec![0, 1],
        accounts: (0..ACCOUNTS)
            .map(|i| AccountGenesis {
                address: account(i).public(),
                balances: vec![(0, BALANCE), (1, BALANCE)],
            })
            .collect(),
        markets: vec![MarketGenesis {
            id: 0,
            base: 0,
            quote: 1,
        }],
        task_generators: (0..TASK_GENERATORS).map(|i| account(i).public()).collect(),
    };
    let genesis_json = serde_json::to_string_pretty(&genesis).unwrap();
    let p2p_ports: Vec<u16> = (0..VALIDATORS).map(|_| free_port()).collect();
    let peers: Vec<String> = node_keys
        .iter()
        .zip(&p2p_ports)
        .map(|(key, port)| {
            let peer_id = basalt_p2p::peer_id_from_seed(key.seed());
            format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}")
        })
        .collect();
    let mut homes = Vec::new();
    for i in 0..VALIDATORS {
        let home = dir.join(format!("node{i}"));
        let layout = HomeLayout::new(&home);
        let config = NodeConfig {
            moniker: format!("node{i}"),
            p2p: P2pSection {
                listen_addr: format!("/ip4/127.0.0.1/tcp/{}", p2p_ports[i]),
                persistent_peers: peers
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, peer)| peer.clone())
                    .collect(),
            },
            rpc: RpcSection {
                listen_addr: "127.0.0.1:0".into(),
                ..RpcSection::default()
            },
            consensus: ConsensusConfig {
                commit_wait_ms: COMMIT_WAIT_MS,
                ..ConsensusConfig::default()
            },
            ..NodeConfig::default()
        };
        write(&layout.config(), &config.to_documented_toml());
        write(&layout.genesis(), &genesis_json);
        write(
            &layout.validator_key(),
            &serde_json::to_string_pretty(&KeyFile::new(&validator_keys[i])).unwrap(),
        );
        write(
            &layout.node_key(),
            &serde_json::to_string_pretty(&KeyFile::new(&node_keys[i])).unwrap(),
        );
        std::fs::create_dir_all(home.join("data")).unwrap();
        homes.push(home);
    }
    homes
}

/// A URL where nothing listens.
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A TCP proxy in front of one node, on the current runtime.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Bumped to drop every open connection.
    generation: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forward `127.0.0.1:<port>` to `target` (a node URL). With `refuse_websocket`, a
    /// request for `/v1/subscribe` is answered by closing the connection, so WebSockets
    /// cannot be opened while plain HTTP works.
    pub async fn start(target: &str, refuse_websocket: bool) -> Proxy {
        let target: SocketAddr = target.trim_start_matches("http://").parse().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (generation, watcher) = watch::channel(0u64);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut watcher = watcher.clone();
                tokio::spawn(async move {
                    let _ = watcher.borrow_and_update();
                    tokio::select! {
                        _ = forward(inbound, target, refuse_websocket) => {}
                        _ = watcher.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            generation,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Close every open connection (new ones are still accepted).
    pub fn drop_connections(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Stop listening and close every connection: the endpoint is dead from now on.
    pub fn stop(&self) {
        self.accept.abort();
        self.drop_connections();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn forward(mut inbound: tokio::net::TcpStream, target: SocketAddr, refuse_websocket: bool) {
    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    if refuse_websocket {
        let mut head = Vec::new();
        let mut buffer = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
            match inbound.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => head.extend_from_slice(&buffer[..read]),
            }
        }
        if String::from_utf8_lossy(&head).contains("/v1/subscribe") {
            return;
        }
        if outbound.write_all(&head).await.is_err() {
            return;
        }
    }
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}
