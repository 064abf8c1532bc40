//! A real 4-process devnet on loopback: transfers committed with receipts, a validator
//! killed and restarted (catches up by sync to the same state), the whole network killed
//! and restarted (nothing committed lost), and bad requests answered with typed errors
//! while the chain keeps committing. Waits are on conditions with generous deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_types::{BatchItem, Keypair, Payload, SignedTx};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const CHAIN_ID: &str = "basalt-devnet";

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_basalt"))
}

/// Devnet tests run one at a time: two 4-node networks on a 2-core machine would only
/// measure the machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
static NEXT_ATTEMPT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A base port whose RPC and p2p ports for every node are free right now.
fn free_base_port() -> u16 {
    for _ in 0..200u32 {
        let attempt = NEXT_ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = 20_000 + ((std::process::id() * 7 + attempt * 97) % 40_000) as u16;
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

struct Devnet {
    dir: PathBuf,
    base: u16,
    nodes: Vec<Option<Child>>,
    client: reqwest::blocking::Client,
}

impl Devnet {
    fn new(name: &str) -> Devnet {
        let dir = std::env::temp_dir().join(format!("basalt-devnet-{}-{name}", std::process::id()));
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
            .env("RUST_LOG", "info,basalt_node=debug,libp2p_gossipsub=error")
            .arg("node")
            .arg("--home")
            .arg(self.home(i))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            child.kill().unwrap(); // SIGKILL: no chance to clean up.
            child.wait().unwrap();
        }
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base + (i as u16) * 10)
    }

    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let response = self.client.get(self.url(i, path)).send().ok()?;
        response.json().ok()
    }

    fn status(&self, i: usize) -> Option<Value> {
        self.get(i, "/v1/status")
    }

    fn height(&self, i: usize) -> Option<u64> {
        self.status(i)?.get("height")?.as_u64()
    }

    fn wait_until(&self, what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if start.elapsed() > deadline {
                self.dump_logs();
                panic!("timed out after {deadline:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_heights(&self, nodes: &[usize], at_least: u64) {
        self.wait_until(
            &format!("nodes {nodes:?} at height {at_least}"),
            Duration::from_secs(180),
            || {
                nodes
                    .iter()
                    .all(|i| self.height(*i).is_some_and(|h| h >= at_least))
            },
        );
    }

    fn block_id(&self, i: usize, height: u64) -> Option<String> {
        Some(
            self.get(i, &format!("/v1/blocks/{height}"))?
                .get("id")?
                .as_str()?
                .to_owned(),
        )
    }

    fn submit(&self, i: usize, txs: &[SignedTx]) -> Value {
        let body =
            json!({ "txs": txs.iter().map(|t| hex::encode(t.to_bytes())).collect::<Vec<_>>() });
        self.client
            .post(self.url(i, "/v1/txs"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn dump_logs(&self) {
        for i in 0..VALIDATORS {
            eprintln!("node{i} status: {:?}", self.status(i));
            let metrics = self
                .client
                .get(self.url(i, "/metrics"))
                .send()
                .ok()
                .and_then(|r| r.text().ok())
                .unwrap_or_default();
            for line in metrics.lines().filter(|l| {
                !l.starts_with('#')
                    && (l.contains("dropped")
                        || l.contains("refusals")
                        || l.contains("peers")
                        || l.contains("sync_")
                        || l.contains("rounds"))
            }) {
                eprintln!("node{i} {line}");
            }
        }
        for i in 0..VALIDATORS {
            let log = std::fs::read_to_string(self.home(i).join("node.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- node{i} log (last lines) ----");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for i in 0..VALIDATORS {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn account(i: usize) -> Keypair {
    Keypair::from_label(&format!("basalt-devnet-account-{i}"))
}

fn transfer(from: usize, nonce: u64, to: usize) -> SignedTx {
    SignedTx::sign(
        &account(from),
        CHAIN_ID,
        nonce,
        Payload::Single(BatchItem::Transfer {
            to: account(to).public(),
            asset: 0,
            amount: 1,
        }),
    )
}

fn wait_committed(net: &Devnet, hashes: &[String]) {
    let mut pending: Vec<String> = hashes.to_vec();
    let mut round = 0usize;
    net.wait_until(
        "every transaction committed",
        Duration::from_secs(240),
        || {
            round += 1;
            let node = round % VALIDATORS;
            pending.retain(|hash| {
                let status = net.get(node, &format!("/v1/txs/{hash}"));
                let committed = status
                    .as_ref()
                    .and_then(|s| s.get("status"))
                    .and_then(Value::as_str)
                    == Some("committed");
                if committed {
                    let receipt = &status.as_ref().unwrap()["receipt"];
                    assert_eq!(receipt["status"], "success", "receipt of {hash}: {receipt}");
                }
                !committed
            });
            pending.is_empty()
        },
    );
}

fn with_log(dir: &Path, text: &str) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("test.log"))
        .and_then(|mut f| writeln!(f, "{text}"));
}

#[test]
fn devnet_commits_survives_crashes_and_restarts() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut net = Devnet::new("main");
    net.wait_heights(&[0, 1, 2, 3], 2);

    // 1,000 transfers spread over all nodes, in batches of 50, every one committed.
    let mut hashes = Vec::new();
    for sender in 0..100usize {
        let txs: Vec<SignedTx> = (0..10u64)
            .map(|n| transfer(sender, n, sender + 100))
            .collect();
        hashes.extend(txs.iter().map(|t| t.hash().to_hex()));
        let result = net.submit(sender % VALIDATORS, &txs);
        let results = result["results"].as_array().expect("results");
        assert!(results.iter().all(|r| r["accepted"] == true), "{result}");
    }
    wait_committed(&net, &hashes);
    with_log(&net.dir, "1000 transfers committed");

    // kill -9 one validator: the other three keep committing.
    net.kill(3);
    let before = net.height(0).unwrap();
    net.wait_heights(&[0, 1, 2], before + 3);

    // Restart it: it catches up through sync to the same chain and state.
    net.start(3);
    let target = net.height(0).unwrap() + 2;
    net.wait_heights(&[0, 1, 2, 3], target);
    let ids: Vec<Option<String>> = (0..VALIDATORS).map(|i| net.block_id(i, target)).collect();
    assert!(
        ids.iter().all(|id| id.is_some() && *id == ids[0]),
        "{ids:?}"
    );
    let roots: Vec<Value> = (0..VALIDATORS)
        .map(|i| {
            net.get(i, &format!("/v1/blocks/{}", target + 1))
                .map(|b| b["header"]["state_root"].clone())
                .unwrap_or(Value::Null)
        })
        .collect();
    net.wait_heights(&[0, 1, 2, 3], target + 1);
    let roots_again: Vec<Value> = (0..VALIDATORS)
        .map(|i| {
            net.get(i, &format!("/v1/blocks/{}", target + 1)).unwrap()["header"]["state_root"]
                .clone()
        })
        .collect();
    assert!(
        roots_again.iter().all(|r| *r == roots_again[0]),
        "{roots:?} {roots_again:?}"
    );

    // Stop all four and restart them: nothing committed is lost.
    let recorded: Vec<(u64, String)> = (0..VALIDATORS)
        .map(|i| {
            let h = net.height(i).unwrap();
            (h, net.block_id(i, h).unwrap())
        })
        .collect();
    for i in 0..VALIDATORS {
        net.kill(i);
    }
    for i in 0..VALIDATORS {
        net.start(i);
    }
    for (i, (height, id)) in recorded.iter().enumerate() {
        net.wait_until("restarted node serving", Duration::from_secs(60), || {
            net.height(i).is_some()
        });
        assert!(net.height(i).unwrap() >= *height, "node {i} lost blocks");
        assert_eq!(
            net.block_id(i, *height).as_ref(),
            Some(id),
            "node {i} block {height}"
        );
    }
    let top = recorded.iter().map(|(h, _)| *h).max().unwrap();
    net.wait_heights(&[0, 1, 2, 3], top + 2);
    // Balances agree everywhere after the restart.
    let balances: Vec<Value> = (0..VALIDATORS)
        .map(|i| {
            net.get(
                i,
                &format!("/v1/accounts/{}", account(150).public().to_hex()),
            )
            .unwrap()["balances"]
                .clone()
        })
        .collect();
    assert!(balances.iter().all(|b| *b == balances[0]), "{balances:?}");
}

#[test]
fn bad_requests_get_typed_rejections_and_the_chain_keeps_committing() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let net = Devnet::new("bad");
    net.wait_heights(&[0, 1, 2, 3], 2);
    let client = &net.client;
    let error_code = |response: reqwest::blocking::Response| -> (u16, String) {
        let status = response.status().as_u16();
        let body: Value = response.json().unwrap_or(Value::Null);
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    // Malformed JSON.
    let r = client
        .post(net.url(0, "/v1/txs"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    let (status, code) = error_code(r);
    assert_eq!(status, 400);
    assert!(!code.is_empty());
    // Unknown route.
    let (status, code) = error_code(client.get(net.url(0, "/v1/nope")).send().unwrap());
    assert_eq!((status, code.as_str()), (404, "not_found"));
    // Oversized body.
    let big = vec![b'a'; 5 * 1024 * 1024];
    // A separate client: the server closes the connection after refusing the body.
    let r = reqwest::blocking::Client::new()
        .post(net.url(0, "/v1/txs"))
        .header("content-type", "application/json")
        .body(big)
        .send();
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    // Bad signature, other chain id, replayed nonce: per-transaction typed rejections.
    let mut bad_signature = transfer(1, 0, 2);
    bad_signature.signature.0[0] ^= 1;
    let other_chain = SignedTx::sign(
        &account(2),
        "another-chain",
        0,
        Payload::Single(BatchItem::Transfer {
            to: account(3).public(),
            asset: 0,
            amount: 1,
        }),
    );
    let good = transfer(3, 0, 4);
    let result = net.submit(0, &[bad_signature, other_chain, good.clone()]);
    let codes: Vec<String> = result["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or("accepted").to_owned())
        .collect();
    assert_eq!(codes, vec!["bad_signature", "wrong_chain_id", "accepted"]);
    wait_committed(&net, &[good.hash().to_hex()]);
    let replay = net.submit(1, std::slice::from_ref(&good));
    let code = replay["results"][0]["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(code == "stale_nonce" || code == "duplicate", "{replay}");
    // Garbage on the p2p port.
    if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", net.base + 1)) {
        let _ = stream.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(4096));
    }
    // The chain keeps committing.
    let now = net.height(0).unwrap();
    net.wait_heights(&[0, 1, 2, 3], now + 3);
}
