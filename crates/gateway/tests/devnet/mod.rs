//! A 4-validator devnet on loopback, each validator its own OS process (so a test can
//! `kill -9` one), plus helpers to read the gateway's metrics.
//!
//! A node process is this test binary run again with [`NODE_HOME_ENV`] set: its
//! [`node_process`] test then runs `basalt_node::start` on that home until its stdin closes
//! (the parent holds the other end, so a node never outlives its test process, however the
//! test process ends). No `basalt` binary has to be built first.

use basalt_client::Client;
use basalt_node::config::{
    ConsensusConfig, HomeLayout, KeyFile, NodeConfig, P2pSection, RpcSection,
};
use basalt_types::{
    AccountGenesis, BatchItem, Genesis, Keypair, MarketGenesis, Payload, SignedTx, ValidatorInfo,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub const VALIDATORS: usize = 4;
pub const CHAIN_ID: &str = "basalt-gateway-test";
/// Funded accounts (assets 0 and 1); the first [`TASK_GENERATORS`] are task generators.
pub const ACCOUNTS: usize = 64;
pub const TASK_GENERATORS: usize = 32;
pub const BALANCE: u64 = 1_000_000_000_000;
/// Pause after a commit: keeps four validators on a 2-core machine from spinning empty
/// blocks, and still gives ~10 blocks per second.
pub const COMMIT_WAIT_MS: u64 = 50;
/// Set in a child process: the home of the node it runs.
pub const NODE_HOME_ENV: &str = "BASALT_GATEWAY_TEST_NODE_HOME";
/// Name of the test that runs a node in a child process.
pub const NODE_TEST: &str = "node_process";

/// Account `i` (the same keys `basalt init` funds).
pub fn account(i: usize) -> Keypair {
    basalt_client::keys::devnet_account(i)
}

/// The body of the [`NODE_TEST`] test: nothing, unless this process was started as a node.
pub fn node_process() {
    let Some(home) = std::env::var_os(NODE_HOME_ENV) else {
        return;
    };
    std::thread::spawn(|| {
        // The parent holds our stdin open while it wants us; EOF means it is gone.
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,libp2p=warn".into()),
        ))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("network")
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let node = basalt_node::start(Path::new(&home)).await.unwrap();
        eprintln!("node up: rpc http://{}", node.rpc_addr);
        std::future::pending::<()>().await;
    });
}

struct NodeProcess {
    child: Child,
    _stdin: ChildStdin,
}

/// A running devnet. Dropping it kills every node.
pub struct Devnet {
    pub dir: PathBuf,
    pub urls: Vec<String>,
    nodes: Vec<Option<NodeProcess>>,
}

impl Devnet {
    /// Write homes under a fresh temp dir and start every node; returns once every node
    /// has committed height 2.
    pub async fn start(name: &str) -> Devnet {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = std::env::temp_dir().join(format!(
            "basalt-gateway-devnet-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (homes, urls) = write_homes(&dir);
        let mut devnet = Devnet {
            dir,
            urls,
            nodes: Vec::new(),
        };
        for home in &homes {
            devnet.nodes.push(Some(start_node(home)));
        }
        devnet.wait_for_heights(2).await;
        devnet
    }

    fn home(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}"))
    }

    /// `kill -9` node `i`: no chance to clean up.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.child.kill().unwrap();
            node.child.wait().unwrap();
        }
    }

    async fn wait_for_heights(&self, height: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let clients: Vec<Client> = self.urls.iter().map(|u| Client::new(u).unwrap()).collect();
        let mut best = 0;
        let mut progress_at = Instant::now();
        let mut nudges = 0u64;
        loop {
            let mut heights = Vec::new();
            for client in &clients {
                heights.push(client.status().await.map(|s| s.height).unwrap_or(0));
            }
            if heights.iter().all(|at| *at >= height) {
                return;
            }
            let top = heights.iter().copied().max().unwrap_or(0);
            if top > best {
                best = top;
                progress_at = Instant::now();
            } else if progress_at.elapsed() > Duration::from_secs(3) {
                // As the client tests do: a network that formed its gossip mesh after the
                // first consensus messages went out may need any new gossip to move on; a
                // transaction that can never execute is one.
                nudges += 1;
                let nudger = account(ACCOUNTS - 1);
                let tx = SignedTx::sign(
                    &nudger,
                    CHAIN_ID,
                    1_000_000_000 + nudges,
                    Payload::Single(BatchItem::Transfer {
                        to: nudger.public(),
                        asset: 0,
                        amount: 1,
                    }),
                );
                let _ = clients[0].submit(&[tx]).await;
                progress_at = Instant::now();
            }
            if Instant::now() >= deadline {
                self.dump_logs();
                panic!("devnet nodes did not reach height {height}: {heights:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Print the tail of every node's log.
    pub fn dump_logs(&self) {
        for i in 0..self.urls.len() {
            let log = std::fs::read_to_string(self.home(i).join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- node{i} log (last lines) ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn start_node(home: &Path) -> NodeProcess {
    let log = std::fs::File::create(home.join("node.log")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([NODE_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(NODE_HOME_ENV, home)
        .env(
            "RUST_LOG",
            "info,libp2p=warn,libp2p_gossipsub=error,basalt_rpc=warn",
        )
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    NodeProcess {
        child,
        _stdin: stdin,
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
/// writes, on free ports, with a short commit wait). Returns the homes and RPC URLs.
fn write_homes(dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let validator_keys: Vec<Keypair> = (0..VALIDATORS)
        .map(|i| Keypair::from_label(&format!("gateway-test-validator-{i}")))
        .collect();
    let node_keys: Vec<Keypair> = (0..VALIDATORS)
        .map(|i| Keypair::from_label(&format!("gateway-test-node-{i}")))
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
    let rpc_ports: Vec<u16> = (0..VALIDATORS).map(|_| free_port()).collect();
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
                listen_addr: format!("127.0.0.1:{}", rpc_ports[i]),
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
    let urls = rpc_ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    (homes, urls)
}

/// Values of one metric family in Prometheus text, by the value of `label`, for series
/// whose labels contain every `(name, value)` of `filter`.
pub fn metric_by_label(
    text: &str,
    metric: &str,
    label: &str,
    filter: &[(&str, &str)],
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let pairs: Vec<(&str, &str)> = labels
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name, value.trim_matches('"')))
            .collect();
        if !filter.iter().all(|wanted| pairs.contains(wanted)) {
            continue;
        }
        let Some((_, key)) = pairs.iter().find(|(name, _)| *name == label) else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *out.entry((*key).to_owned()).or_default() += value;
    }
    out
}
