//! Building the initial state from a genesis file, refusing anything ambiguous.

use crate::state::{Config, Market, State, StateKey};
use crate::AppError;
use basalt_types::limits::CHAIN_ID_BYTES_MAX;
use basalt_types::{AccountGenesis, AssetId, Genesis, MarketGenesis, PublicKey};
use std::collections::{BTreeMap, BTreeSet};

/// The state genesis describes, with every key marked dirty so that the first tree commit
/// (version 0) writes all of it.
pub(crate) fn state_from_genesis(genesis: &Genesis) -> Result<State, AppError> {
    let config = config_from_genesis(genesis)?;
    let mut state = State::new(config);
    state.mark_dirty(StateKey::Config);
    state.mark_dirty(StateKey::NextOrderId);
    for market in &genesis.markets {
        add_market(&mut state, market)?;
    }
    let mut supply: BTreeMap<AssetId, u64> = BTreeMap::new();
    for account in &genesis.accounts {
        add_account(&mut state, account, &mut supply)?;
    }
    Ok(state)
}

fn config_from_genesis(genesis: &Genesis) -> Result<Config, AppError> {
    if genesis.chain_id.is_empty() {
        return Err(AppError::EmptyChainId);
    }
    if genesis.chain_id.len() > CHAIN_ID_BYTES_MAX {
        return Err(AppError::ChainIdTooLong {
            len: genesis.chain_id.len(),
            max: CHAIN_ID_BYTES_MAX,
        });
    }
    let mut assets = BTreeSet::new();
    for asset in &genesis.assets {
        if !assets.insert(*asset) {
            return Err(AppError::DuplicateAsset(*asset));
        }
    }
    let mut task_generators = BTreeSet::new();
    for generator in &genesis.task_generators {
        if !task_generators.insert(*generator) {
            return Err(AppError::DuplicateTaskGenerator(*generator));
        }
    }
    Ok(Config {
        chain_id: genesis.chain_id.clone(),
        assets,
        task_generators,
    })
}

fn add_market(state: &mut State, market: &MarketGenesis) -> Result<(), AppError> {
    for asset in [market.base, market.quote] {
        if !state.config.assets.contains(&asset) {
            return Err(AppError::UnknownMarketAsset {
                market: market.id,
                asset,
            });
        }
    }
    if market.base == market.quote {
        return Err(AppError::MarketSameAsset(market.id));
    }
    if state.markets.contains_key(&market.id) {
        return Err(AppError::DuplicateMarket(market.id));
    }
    state
        .markets
        .insert(market.id, Market::new(market.base, market.quote));
    state.mark_dirty(StateKey::Market(market.id));
    Ok(())
}

/// Fund one account. `supply` accumulates each asset's total, which must fit in a `u64`: supply
/// is conserved, so no balance can then ever overflow.
fn add_account(
    state: &mut State,
    account: &AccountGenesis,
    supply: &mut BTreeMap<AssetId, u64>,
) -> Result<(), AppError> {
    let address: PublicKey = account.address;
    if state.accounts.contains_key(&address) {
        return Err(AppError::DuplicateAccount(address));
    }
    state.accounts.insert(address, Default::default());
    let mut seen = BTreeSet::new();
    for (asset, amount) in &account.balances {
        if !state.config.assets.contains(asset) {
            return Err(AppError::UnknownAccountAsset {
                account: address,
                asset: *asset,
            });
        }
        if !seen.insert(*asset) {
            return Err(AppError::DuplicateBalance {
                account: address,
                asset: *asset,
            });
        }
        let total = supply.entry(*asset).or_insert(0);
        *total = total
            .checked_add(*amount)
            .ok_or(AppError::SupplyOverflow(*asset))?;
        state
            .credit(address, *asset, *amount)
            .map_err(|_| AppError::SupplyOverflow(*asset))?;
    }
    state.commit_tx();
    state.mark_dirty(StateKey::Account(address));
    Ok(())
}
