//! `basalt tx`: sign a transaction with a key and send it to a node.

use anyhow::{bail, Context, Result};
use basalt_node::config::KeyFile;
use basalt_types::{BatchItem, Hash, Keypair, Payload, PublicKey, Side, SignedTx};
use std::path::PathBuf;

/// Who signs.
#[derive(clap::Args, Debug)]
pub struct Signer {
    /// A key file (`basalt keys generate`).
    #[arg(long, conflicts_with = "account")]
    key: Option<PathBuf>,
    /// A devnet test account number instead of a key file.
    #[arg(long)]
    account: Option<usize>,
    /// Node RPC base URL.
    #[arg(long, default_value = "http://127.0.0.1:26650")]
    node: String,
    /// Chain id.
    #[arg(long, default_value = "basalt-devnet")]
    chain_id: String,
}

/// What to send.
#[derive(clap::Subcommand, Debug)]
pub enum TxCommand {
    /// Transfer an asset.
    Transfer {
        #[command(flatten)]
        signer: Signer,
        /// Recipient address (hex public key).
        #[arg(long)]
        to: String,
        /// Asset id.
        #[arg(long, default_value_t = 0)]
        asset: u32,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Place a limit order.
    Order {
        #[command(flatten)]
        signer: Signer,
        /// Market id.
        #[arg(long, default_value_t = 0)]
        market: u32,
        /// buy or sell.
        #[arg(long)]
        side: String,
        /// Limit price in ticks.
        #[arg(long)]
        price: u64,
        /// Quantity.
        #[arg(long)]
        quantity: u64,
    },
    /// Cancel an order.
    Cancel {
        #[command(flatten)]
        signer: Signer,
        /// Market id.
        #[arg(long, default_value_t = 0)]
        market: u32,
        /// Order id.
        #[arg(long)]
        order: u64,
    },
    /// Create a task (task generators only).
    TaskCreate {
        #[command(flatten)]
        signer: Signer,
        /// Task id (64 hex digits).
        #[arg(long)]
        task: String,
        /// Payload hash (64 hex digits).
        #[arg(long)]
        payload_hash: String,
    },
    /// Respond to a task.
    TaskRespond {
        #[command(flatten)]
        signer: Signer,
        /// Task id (64 hex digits).
        #[arg(long)]
        task: String,
        /// Result hash (64 hex digits).
        #[arg(long)]
        result_hash: String,
    },
}

fn hash(text: &str) -> Result<Hash> {
    Hash::from_hex(text).context("expected 64 hex digits")
}

fn keypair(signer: &Signer) -> Result<Keypair> {
    match (&signer.key, signer.account) {
        (Some(path), _) => KeyFile::read(path)?.keypair(),
        (None, Some(i)) => Ok(crate::init::devnet_account(i)),
        (None, None) => bail!("give --key FILE or --account N"),
    }
}

/// Run `basalt tx ...`.
pub fn run(command: TxCommand) -> Result<()> {
    let (signer, item) = match command {
        TxCommand::Transfer {
            signer,
            to,
            asset,
            amount,
        } => (
            signer,
            BatchItem::Transfer {
                to: PublicKey::from_hex(&to).context("--to: expected 64 hex digits")?,
                asset,
                amount,
            },
        ),
        TxCommand::Order {
            signer,
            market,
            side,
            price,
            quantity,
        } => (
            signer,
            BatchItem::PlaceOrder {
                market,
                side: match side.as_str() {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    _ => bail!("--side must be buy or sell"),
                },
                price_ticks: price,
                quantity,
            },
        ),
        TxCommand::Cancel {
            signer,
            market,
            order,
        } => (
            signer,
            BatchItem::CancelOrder {
                market,
                order_id: order,
            },
        ),
        TxCommand::TaskCreate {
            signer,
            task,
            payload_hash,
        } => (
            signer,
            BatchItem::CreateTask {
                task_id: hash(&task)?,
                payload_hash: hash(&payload_hash)?,
            },
        ),
        TxCommand::TaskRespond {
            signer,
            task,
            result_hash,
        } => (
            signer,
            BatchItem::RespondTask {
                task_id: hash(&task)?,
                result_hash: hash(&result_hash)?,
            },
        ),
    };
    let key = keypair(&signer)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = reqwest::Client::new();
        let account: serde_json::Value = client
            .get(format!(
                "{}/v1/accounts/{}",
                signer.node,
                key.public().to_hex()
            ))
            .send()
            .await?
            .json()
            .await?;
        let nonce = account
            .get("nonce")
            .and_then(serde_json::Value::as_u64)
            .context("account response has no nonce")?;
        let tx = SignedTx::sign(&key, &signer.chain_id, nonce, Payload::Single(item));
        let response: serde_json::Value = client
            .post(format!("{}/v1/txs", signer.node))
            .json(&serde_json::json!({ "txs": [hex::encode(tx.to_bytes())] }))
            .send()
            .await?
            .json()
            .await?;
        println!("{}", serde_json::to_string_pretty(&response)?);
        Ok(())
    })
}
