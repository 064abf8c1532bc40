//! Acceptance test of the CometBFT JSON-RPC subset with a real CometBFT client library: a
//! 4-process devnet on loopback, and `clients/cosmjs/check.mjs` (@cosmjs/tendermint-rpc)
//! run against one node: status, blocks, broadcastTxSync of a signed transfer, a NewBlock
//! event over the WebSocket, and the committed transaction. Installs its own npm
//! dependencies (`npm ci`); fails with a clear message when node or npm is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_types::{sha256, BatchItem, Keypair, Payload, SignedTx};
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const CHAIN_ID: &str = "basalt-devnet";
/// How long the cosmjs check may run in all (each of its waits is bounded by
/// `CHECK_TIMEOUT_MS`, below this).
const CHECK_DEADLINE: Duration = Duration::from_secs(300);
/// How long `npm ci` may take.
const NPM_DEADLINE: Duration = Duration::from_secs(300);

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cosmjs_dir() -> PathBuf {
    workspace().join("clients").join("cosmjs")
}

/// A base port whose RPC and p2p ports for every node are free right now.
fn free_base_port() -> u16 {
    for attempt in 0..200u32 {
        let base = 20_000 + ((std::process::id() * 13 + attempt * 101) % 40_000) as u16;
        let free = (0..VALIDATORS).all(|i| {
            let rpc = base + (i as u16) * 10;
            TcpListener::bind(("127.0.0.1", rpc)).is_ok()
                && TcpListener::bind(("127.0.0.1", rpc + 1)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free ports");
}

/// Run `command` to completion within `deadline`, or kill it and fail.
fn run(mut command: Command, what: &str, deadline: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("could not start {what}: {error}"));
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within {deadline:?}\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `node` and `npm` must be installed; say so plainly when they are not.
fn require_tool(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{tool}` is not installed: this test runs the cosmjs client under Node.js \
         (install nodejs and npm, e.g. `apt-get install nodejs npm`)"
    );
}

/// `npm ci` in clients/cosmjs: the exact versions of package-lock.json.
fn install_cosmjs() {
    require_tool("node");
    require_tool("npm");
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(cosmjs_dir());
    let output = run(npm, "npm ci", NPM_DEADLINE);
    assert!(
        output.status.success(),
        "npm ci --prefix clients/cosmjs failed\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Devnet {
    dir: PathBuf,
    base: u16,
    nodes: Vec<Option<Child>>,
    client: reqwest::blocking::Client,
}

impl Devnet {
    fn new(name: &str) -> Devnet {
        let dir = std::env::temp_dir().join(format!("basalt-comet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let base = free_base_port();
        let status = Command::new(exe())
            .args([
                "init",
                "--validators",
                "4",
                "--base-port",
                &base.to_string(),
                "--out",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let mut devnet = Devnet {
            dir,
            base,
            nodes: (0..VALIDATORS).map(|_| None).collect(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        for i in 0..VALIDATORS {
            devnet.start(i);
        }
        devnet
    }

    fn home(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{i}"))
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home(i).join("node.log"))
            .unwrap();
        let child = Command::new(exe())
            .env("RUST_LOG", "info,libp2p_gossipsub=error")
            .arg("node")
            .arg("--home")
            .arg(self.home(i))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base + (i as u16) * 10)
    }

    fn height(&self, i: usize) -> Option<u64> {
        let status: Value = self
            .client
            .get(self.url(i, "/v1/status"))
            .send()
            .ok()?
            .json()
            .ok()?;
        status.get("height")?.as_u64()
    }

    fn wait_heights(&self, at_least: u64) {
        let started = Instant::now();
        while !(0..VALIDATORS).all(|i| self.height(i).is_some_and(|h| h >= at_least)) {
            if started.elapsed() > Duration::from_secs(180) {
                self.dump_logs();
                panic!("timed out waiting for every node at height {at_least}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn dump_logs(&self) {
        for i in 0..VALIDATORS {
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
        for node in self.nodes.iter_mut() {
            if let Some(mut child) = node.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn account(i: usize) -> Keypair {
    Keypair::from_label(&format!("basalt-devnet-account-{i}"))
}

#[test]
fn cosmjs_talks_to_a_devnet_node() {
    install_cosmjs();
    let net = Devnet::new("cosmjs");
    net.wait_heights(2);

    // A transfer from a genesis account, signed here, submitted by cosmjs.
    let tx = SignedTx::sign(
        &account(0),
        CHAIN_ID,
        0,
        Payload::Single(BatchItem::Transfer {
            to: account(1).public(),
            asset: 0,
            amount: 7,
        }),
    );
    let bytes = tx.to_bytes();
    assert_eq!(sha256(&bytes), tx.hash(), "CometBFT's tx hash is Basalt's");

    let mut node = Command::new("node");
    node.arg(cosmjs_dir().join("check.mjs"))
        .arg(net.url(1, ""))
        .arg(hex::encode(&bytes))
        .env("CHECK_TIMEOUT_MS", "120000");
    let output = run(node, "node clients/cosmjs/check.mjs", CHECK_DEADLINE);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !output.status.success() {
        net.dump_logs();
        panic!(
            "the cosmjs check failed ({})\n{stdout}\n{stderr}",
            output.status
        );
    }
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");

    // And the transfer is committed as far as Basalt's own API is concerned, on another node.
    let path = format!("/v1/txs/{}", tx.hash().to_hex());
    let started = Instant::now();
    loop {
        let status: Option<Value> = net
            .client
            .get(net.url(2, &path))
            .send()
            .ok()
            .and_then(|response| response.json().ok());
        let status = status.unwrap_or(Value::Null);
        if status["status"] == "committed" {
            assert_eq!(status["receipt"]["status"], "success", "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node 2 never reported the transfer committed: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
