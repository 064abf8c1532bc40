//! `basalt`: the Basalt command line.

mod sim;

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
    /// Run the deterministic simulator: n validators of the real consensus core and
    /// application over a seeded faulty network, with safety/liveness/root/double-sign
    /// checkers.
    Sim(sim::SimArgs),
    /// Start a local 4-validator network (arrives with the node).
    Devnet,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Devnet => {
            anyhow::bail!("`basalt devnet` arrives with the node (issue: Node); try `basalt sim`")
        }
    }
}
