//! `basalt devnet`: initialise if needed, start N `basalt node` processes on loopback,
//! print their endpoints, and stop them all on Ctrl-C / SIGTERM.

use crate::init::{init, ports, InitArgs};
use anyhow::{Context, Result};
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
}

fn stop(children: &mut [Child]) {
    for child in children.iter() {
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
        println!(
            "node{i}: rpc http://127.0.0.1:{rpc}/v1/status  metrics http://127.0.0.1:{rpc}/metrics  log {}",
            home.join("node.log").display()
        );
        children.push(child);
    }
    println!("devnet running; Ctrl-C stops it");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let watch = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if children
                    .iter_mut()
                    .any(|c| matches!(c.try_wait(), Ok(Some(_))))
                {
                    return;
                }
            }
        };
        tokio::select! {
            _ = crate::node_cmd::shutdown_signal() => {}
            _ = watch => eprintln!("a node exited; stopping the devnet"),
        }
    });
    stop(&mut children);
    println!("devnet stopped");
    Ok(())
}
