//! `basalt init` and `basalt keys`: genesis and node homes laid out as CometBFT operators
//! expect (`config/config.toml`, `config/genesis.json`, keys under `config/`, state under
//! `data/`).

use anyhow::{ensure, Context, Result};
use basalt_node::config::{HomeLayout, KeyFile, NodeConfig, P2pSection, RpcSection};
use basalt_types::{AccountGenesis, Genesis, Keypair, MarketGenesis, ValidatorInfo};
use rand::TryRngCore;
use std::path::{Path, PathBuf};

/// Funded test accounts in a devnet genesis; their keys are `Keypair::from_label(
/// "basalt-devnet-account-{i}")` so load generators and tests can sign for them.
pub const DEVNET_ACCOUNTS: usize = 1000;
/// The first this many test accounts are task generators.
pub const DEVNET_TASK_GENERATORS: usize = 32;
/// Starting balance of each test account in each asset.
pub const DEVNET_BALANCE: u64 = 1_000_000_000_000;

/// The key of devnet test account `i`.
pub fn devnet_account(i: usize) -> Keypair {
    Keypair::from_label(&format!("basalt-devnet-account-{i}"))
}

/// Arguments of `basalt init`.
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Number of validators.
    #[arg(long, default_value_t = 4)]
    pub validators: usize,
    /// Output directory: one home per node (`node0`, `node1`, ...).
    #[arg(long)]
    pub out: PathBuf,
    /// Host of each node (one per validator, or one for all); default 127.0.0.1.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// First port: node i serves RPC on base+10i and p2p on base+10i+1.
    #[arg(long, default_value_t = 26650)]
    pub base_port: u16,
    /// Chain id.
    #[arg(long, default_value = "basalt-devnet")]
    pub chain_id: String,
    /// Commit wait in ms written to every config.
    #[arg(long, default_value_t = 0)]
    pub commit_wait_ms: u64,
}

fn random_key() -> Result<Keypair> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .context("the operating system's random number generator failed")?;
    Ok(Keypair::from_seed(seed))
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Where node `i`'s services listen.
pub fn ports(base_port: u16, i: usize) -> Result<(u16, u16)> {
    let offset = u16::try_from(i * 10).context("too many validators for the port range")?;
    let rpc = base_port.checked_add(offset).context("port out of range")?;
    Ok((rpc, rpc.checked_add(1).context("port out of range")?))
}

/// Write a genesis and one home per validator. Returns the homes.
pub fn init(args: &InitArgs) -> Result<Vec<PathBuf>> {
    ensure!(args.validators >= 1, "need at least one validator");
    ensure!(
        args.hosts.len() <= 1 || args.hosts.len() == args.validators,
        "--hosts needs one host, or one per validator"
    );
    let host = |i: usize| -> String {
        args.hosts
            .get(i)
            .or(args.hosts.first())
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into())
    };
    let validator_keys = (0..args.validators)
        .map(|_| random_key())
        .collect::<Result<Vec<_>>>()?;
    let node_keys = (0..args.validators)
        .map(|_| random_key())
        .collect::<Result<Vec<_>>>()?;
    let genesis = Genesis {
        chain_id: args.chain_id.clone(),
        genesis_time_ms: 0,
        validators: validator_keys
            .iter()
            .map(|k| ValidatorInfo {
                public_key: k.public(),
                power: 10,
            })
            .collect(),
        assets: vec![0, 1],
        accounts: (0..DEVNET_ACCOUNTS)
            .map(|i| AccountGenesis {
                address: devnet_account(i).public(),
                balances: vec![(0, DEVNET_BALANCE), (1, DEVNET_BALANCE)],
            })
            .collect(),
        markets: vec![MarketGenesis {
            id: 0,
            base: 0,
            quote: 1,
        }],
        task_generators: (0..DEVNET_TASK_GENERATORS)
            .map(|i| devnet_account(i).public())
            .collect(),
    };
    let genesis_json = serde_json::to_string_pretty(&genesis)?;
    let mut peers = Vec::new();
    for (i, key) in node_keys.iter().enumerate() {
        let (_, p2p) = ports(args.base_port, i)?;
        let peer_id = basalt_p2p::peer_id_from_seed(key.seed());
        peers.push(format!("/ip4/{}/tcp/{p2p}/p2p/{peer_id}", host(i)));
    }
    let mut homes = Vec::new();
    for i in 0..args.validators {
        let home = args.out.join(format!("node{i}"));
        let layout = HomeLayout::new(&home);
        let (rpc, p2p) = ports(args.base_port, i)?;
        let config = NodeConfig {
            moniker: format!("node{i}"),
            p2p: P2pSection {
                listen_addr: format!("/ip4/{}/tcp/{p2p}", host(i)),
                persistent_peers: peers
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| p.clone())
                    .collect(),
            },
            rpc: RpcSection {
                listen_addr: format!("{}:{rpc}", host(i)),
                ..RpcSection::default()
            },
            consensus: basalt_node::config::ConsensusConfig {
                commit_wait_ms: args.commit_wait_ms,
                ..Default::default()
            },
            ..NodeConfig::default()
        };
        write(&layout.config(), &config.to_documented_toml())?;
        write(&layout.genesis(), &genesis_json)?;
        if let (Some(validator), Some(node)) = (validator_keys.get(i), node_keys.get(i)) {
            write(
                &layout.validator_key(),
                &serde_json::to_string_pretty(&KeyFile::new(validator))?,
            )?;
            write(
                &layout.node_key(),
                &serde_json::to_string_pretty(&KeyFile::new(node))?,
            )?;
        }
        std::fs::create_dir_all(home.join("data"))?;
        homes.push(home);
    }
    Ok(homes)
}

/// `basalt keys generate`: print a new key file.
pub fn generate_key() -> Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&KeyFile::new(&random_key()?))?
    );
    Ok(())
}
