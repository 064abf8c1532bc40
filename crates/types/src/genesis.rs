//! Genesis: the chain's starting validators, accounts, assets, markets and task generators.

use crate::crypto::PublicKey;
use crate::tx::{AssetId, MarketId};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A validator: its key and its voting power.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, BorshSerialize, BorshDeserialize,
)]
pub struct ValidatorInfo {
    /// Consensus public key.
    pub public_key: PublicKey,
    /// Voting power (weight in quorums and in proposer rotation); at least 1.
    pub power: u64,
}

/// An account funded at genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountGenesis {
    /// Address (public key).
    pub address: PublicKey,
    /// Starting balances, per asset.
    pub balances: Vec<(AssetId, u64)>,
}

/// A market trading `base` against `quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketGenesis {
    /// Market id.
    pub id: MarketId,
    /// Asset bought and sold.
    pub base: AssetId,
    /// Asset prices are quoted in.
    pub quote: AssetId,
}

/// Everything a chain starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Chain id (at most [`crate::limits::CHAIN_ID_BYTES_MAX`] bytes).
    pub chain_id: String,
    /// Genesis time in ms since the Unix epoch; block 1's time must be above it.
    pub genesis_time_ms: u64,
    /// The validator set (static for now).
    pub validators: Vec<ValidatorInfo>,
    /// Assets that exist, by id.
    pub assets: Vec<AssetId>,
    /// Funded accounts.
    pub accounts: Vec<AccountGenesis>,
    /// Markets.
    pub markets: Vec<MarketGenesis>,
    /// Accounts allowed to create tasks.
    pub task_generators: Vec<PublicKey>,
}
