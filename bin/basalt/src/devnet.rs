//! `basalt devnet`: initialise if needed, start N `basalt node` processes on loopback and a
//! gateway in front of them (in this process, on its own threads), print their endpoints,
//! and stop them all on Ctrl-C / SIGTERM.
//!
//! With the gateway, a validator that exits is reported and the devnet keeps running: the
//! gateway routes around it (kill one with `kill -9` to watch clients not notice). Without
//! it (`--no-gateway`), the devnet stops when any validator exits.

use crate::gateway::GatewayArgs;
use crate::init::{init, ports, InitArgs};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `basalt devnet`.
#[derive(clap::Args, Debug)]
pub struct DevnetArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Where the node homes live (created and initialised if empty).
    #[arg(long, default_value = "devnet-home")]
    pub home: PathBuf,
    /// First port (node i: RPC base+10i, p2p base+10i+1).
    #[arg(long, default_value_t = 26650)]
    pub base_port: u16,
    /// Commit wait in ms (only used when initialising).
    #[arg(long, default_value_t = 0)]
    pub commit_wait_ms: u64,
    /// Port of the gateway (default: the first port after the nodes', base + 10 × N).
    #[arg(long)]
    pub gateway_port: Option<u16>,
    /// Start no gateway.
    #[arg(long, conflicts_with = "gateway_port")]
    pub no_gateway: bool,
}

/// The gateway's port: asked, or the first after the nodes' ports.
fn gateway_port(args: &DevnetArgs) -> Result<u16> {
    match args.gateway_port {
        Some(port) => Ok(port),
        None => Ok(ports(args.base_port, args.validators)?.0),
    }
}

fn stop(children: &mut [Child]) {
    for child in children.iter_mut() {
        if matches!(child.try_wait(), Ok(Some(_))) {
            continue; // Already exited (and reaped).
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for child in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
}

/// Run `basalt devnet`.
pub fn run(args: DevnetArgs) -> Result<()> {
    if !args.home.join("node0/config/genesis.json").exists() {
        init(&InitArgs {
            validators: args.validators,
            out: args.home.clone(),
            hosts: Vec::new(),
            base_port: args.base_port,
            chain_id: "basalt-devnet".into(),
            commit_wait_ms: args.commit_wait_ms,
        })?;
        println!(
            "initialised {} validators under {}",
            args.validators,
            args.home.display()
        );
    }
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let mut rpc_urls = Vec::new();
    for i in 0..args.validators {
        let home = args.home.join(format!("node{i}"));
        let log = std::fs::File::create(home.join("node.log"))
            .with_context(|| format!("creating {}/node.log", home.display()))?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--home")
            .arg(&home)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting a node")?;
        let (rpc, _) = ports(args.base_port, i)?;
        rpc_urls.push(format!("http://127.0.0.1:{rpc}"));
        println!(
            "node{i}: rpc http://127.0.0.1:{rpc}/v1/status  metrics http://127.0.0.1:{rpc}/metrics  log {}",
            home.join("node.log").display()
        );
        children.push(child);
    }
    let gateway = if args.no_gateway {
        None
    } else {
        let listen = SocketAddr::from(([127, 0, 0, 1], gateway_port(&args)?));
        match crate::gateway::start(&GatewayArgs::new(rpc_urls, listen)) {
            Ok(gateway) => {
                println!(
                    "gateway: {0}  (metrics {0}/metrics; balances over every validator)",
                    gateway.url()
                );
                Some(gateway)
            }
            Err(error) => {
                stop(&mut children);
                return Err(error);
            }
        }
    };
    println!("devnet running; Ctrl-C stops it");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let keep_going = gateway.is_some();
    runtime.block_on(async {
        tokio::select! {
            _ = crate::node_cmd::shutdown_signal() => {}
            _ = watch_nodes(&mut children, keep_going) => {}
        }
    });
    if let Some(gateway) = gateway {
        gateway.shutdown();
    }
    stop(&mut children);
    println!("devnet stopped");
    Ok(())
}

/// Returns when the devnet should stop because of its nodes: when one exits, or with
/// `keep_going` (a gateway routes around dead nodes) when all have exited.
async fn watch_nodes(children: &mut [Child], keep_going: bool) {
    let mut exited = vec![false; children.len()];
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, child) in children.iter_mut().enumerate() {
            let Some(done) = exited.get_mut(i) else {
                continue;
            };
            if *done {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                *done = true;
                if !keep_going {
                    eprintln!("node{i} exited ({status}); stopping the devnet");
                    return;
                }
                eprintln!("node{i} exited ({status}); the gateway routes around it");
            }
        }
        if exited.iter().all(|done| *done) {
            eprintln!("every node exited; stopping the devnet");
            return;
        }
    }
}
