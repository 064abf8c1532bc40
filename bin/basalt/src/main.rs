//! `basalt`: the Basalt command line.

mod bench;
mod devnet;
mod gateway;
mod init;
mod node_cmd;
mod sim;
mod tx;

use clap::{Parser, Subcommand};

/// Basalt: a BFT layer-1 chain that stays at idle speed under load.
#[derive(Parser)]
#[command(name = "basalt", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a genesis and one home directory per validator.
    Init(init::InitArgs),
    /// Run one validator.
    Node(node_cmd::NodeArgs),
    /// Start a local network of validator processes on loopback, with a gateway.
    Devnet(devnet::DevnetArgs),
    /// One endpoint with the node API in front of every validator: health checks,
    /// balancing, failover, receipt tracking.
    Gateway(gateway::GatewayArgs),
    /// Sign and send a transaction.
    #[command(subcommand)]
    Tx(tx::TxCommand),
    /// Run a load against a network and report idle vs. loaded block time, precommit
    /// latency, completion, latency percentiles, errors and CPU per transaction.
    Bench(bench::BenchArgs),
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the deterministic simulator: n validators of the real consensus core and
    /// application over a seeded faulty network, with safety/liveness/root/double-sign
    /// checkers.
    Sim(sim::SimArgs),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new ed25519 key file.
    Generate,
}

/// gossipsub warns once per message it cannot queue for a slow peer, with the whole
/// message in the line: under a gossip flood that was 143 MB of log from the flooded
/// validator in 60 s, written from its swarm task. `basalt_p2p_gossip_slow_peer_dropped`
/// counts those drops instead, so gossipsub logs errors only unless `RUST_LOG` names it.
const GOSSIPSUB_LOG: &str = "libp2p_gossipsub=error";

/// The log filter: `RUST_LOG` (default `info,libp2p=warn`), plus [`GOSSIPSUB_LOG`] unless
/// `RUST_LOG` sets gossipsub's level itself.
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let base = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("info,libp2p=warn");
    let directives = if base.contains("libp2p_gossipsub") {
        base.to_owned()
    } else {
        format!("{base},{GOSSIPSUB_LOG}")
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{GOSSIPSUB_LOG}")))
}

/// jemalloc, not glibc's malloc: under gossip-flood the flooded validator's network thread
/// spent ~64 % of its CPU in glibc's `_int_malloc`/`free`/`malloc_consolidate` (messages are
/// allocated on one thread and freed on another, so its per-thread caches never hit).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file (the lab's node.log) stays greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init(args) => {
            let homes = init::init(&args)?;
            for home in homes {
                println!("{}", home.display());
            }
            Ok(())
        }
        Command::Node(args) => node_cmd::run(args),
        Command::Devnet(args) => devnet::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Tx(command) => tx::run(command),
        Command::Keys(KeysCommand::Generate) => init::generate_key(),
        Command::Sim(args) => sim::run(args),
        Command::Bench(args) => bench::run_bench(args),
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn gossipsub_warnings_stay_off_unless_asked_for() {
        let directives = |rust_log: Option<&str>| {
            let mut d: Vec<String> = log_filter(rust_log)
                .to_string()
                .split(',')
                .map(str::to_owned)
                .collect();
            d.sort();
            d
        };
        assert_eq!(directives(Some("warn")), ["libp2p_gossipsub=error", "warn"]);
        assert_eq!(
            directives(None),
            ["info", "libp2p=warn", "libp2p_gossipsub=error"]
        );
        assert_eq!(
            directives(Some("debug,libp2p_gossipsub=debug")),
            ["debug", "libp2p_gossipsub=debug"]
        );
    }
}
