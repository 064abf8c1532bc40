//! A throw-away devnet of `basalt node` processes for one bench run.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Running validator processes; killed when dropped.
pub struct Devnet {
    /// Each node's RPC base URL.
    pub endpoints: Vec<String>,
    children: Vec<Child>,
    /// The gateway, when started.
    others: Vec<Child>,
    dir: PathBuf,
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Wait until `url` answers `GET /v1/status` with a success, or `timeout` passes.
pub async fn wait_http(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/status")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "{url} did not answer /v1/status within {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_base_port(validators: usize) -> Result<u16> {
    for attempt in 0..500u32 {
        let base = 20_000 + ((std::process::id() * 13 + attempt * 101) % 40_000) as u16;
        let free = (0..validators).all(|i| {
            let rpc = base + (i as u16) * 10;
            TcpListener::bind(("127.0.0.1", rpc)).is_ok()
                && TcpListener::bind(("127.0.0.1", rpc + 1)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free port range for {validators} validators")
}

impl Devnet {
    /// Initialise `validators` homes under `dir` and start a node process for each.
    pub fn start(exe: &Path, validators: usize, dir: &Path, commit_wait_ms: u64) -> Result<Devnet> {
        let _ = std::fs::remove_dir_all(dir);
        let base = free_base_port(validators)?;
        let status = Command::new(exe)
            .args(["init", "--validators", &validators.to_string()])
            .args(["--base-port", &base.to_string()])
            .args(["--commit-wait-ms", &commit_wait_ms.to_string()])
            .arg("--out")
            .arg(dir)
            .stdout(Stdio::null())
            .status()
            .context("running basalt init")?;
        if !status.success() {
            bail!("basalt init failed");
        }
        let mut devnet = Devnet {
            endpoints: Vec::new(),
            children: Vec::new(),
            others: Vec::new(),
            dir: dir.to_path_buf(),
        };
        for i in 0..validators {
            let home = dir.join(format!("node{i}"));
            let log = std::fs::File::create(home.join("node.log"))?;
            let child = Command::new(exe)
                .env("RUST_LOG", node_log_filter())
                .arg("node")
                .arg("--home")
                .arg(&home)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting basalt node")?;
            devnet.children.push(child);
            devnet
                .endpoints
                .push(format!("http://127.0.0.1:{}", base + (i as u16) * 10));
        }
        Ok(devnet)
    }

    /// Process ids of the validators.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Stop validator `index` (kill its process). Returns whether it was running.
    pub fn stop(&mut self, index: usize) -> bool {
        let Some(child) = self.children.get_mut(index) else {
            return false;
        };
        let running = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let _ = child.wait();
        running
    }

    /// Start `basalt gateway` in front of every validator, as a child of this devnet.
    /// Returns its base URL.
    pub fn start_gateway(&mut self, exe: &Path) -> Result<String> {
        let help = Command::new(exe)
            .args(["gateway", "--help"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .context("running basalt gateway --help")?;
        if !help.status.success() {
            bail!(
                "--target gateway needs `basalt gateway`, which this build of basalt does \
                 not have yet; use --target all or single"
            );
        }
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(self.dir.join("gateway.log"))?;
        let child = Command::new(exe)
            .env("RUST_LOG", node_log_filter())
            .arg("gateway")
            .arg("--upstream")
            .arg(self.endpoints.join(","))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting basalt gateway")?;
        self.others.push(child);
        Ok(url)
    }

    /// Where the homes are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for child in self.others.iter_mut().chain(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time (user + system) of a process so far, in microseconds, from /proc.
pub fn cpu_time_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks_per_second = clock_ticks_per_second();
    Some((utime + stime) * 1_000_000 / ticks_per_second)
}

/// Clock ticks per second of `/proc` CPU times, asked once (a process spawn is too slow
/// to repeat while load is being offered).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(ask_clock_ticks)
}

fn ask_clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Resident memory of a process in bytes, from /proc.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Environment variable with the log filter of the lab's nodes and gateway (`RUST_LOG`
/// syntax, e.g. `warn,basalt_p2p=debug`); unset, [`NODE_LOG_DEFAULT`].
pub const NODE_LOG_ENV: &str = "BASALT_LAB_NODE_LOG";
/// The nodes' log filter when [`NODE_LOG_ENV`] is unset: warnings, and every consensus
/// timeout that moved a round with the round as that node saw it (rare, and the first
/// thing to read after an escalation).
pub const NODE_LOG_DEFAULT: &str = "warn,basalt_node::driver=info";

fn node_log_filter() -> String {
    std::env::var(NODE_LOG_ENV).unwrap_or_else(|_| NODE_LOG_DEFAULT.into())
}
