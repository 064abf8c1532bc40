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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,libp2p=warn,libp2p_gossipsub=error")
            }),
        )
        .with_writer(std::io::stderr)
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
