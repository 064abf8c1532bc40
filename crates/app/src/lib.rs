//! Basalt's deterministic application: accounts, order books, tasks, batches and the
//! authenticated state tree.
//!
//! # What it guarantees
//!
//! - **Determinism.** [`App::execute_block`] is a pure function of the genesis and the blocks
//!   executed before: no I/O, clock, randomness, floats or hash-map iteration reaches the
//!   state, the receipts or the state root. Two apps fed the same blocks have the same root.
//! - **Receipt contract.** A wrong chain id, an oversize transaction or a nonce other than the
//!   sender's next one fails the transaction and leaves the state untouched (the nonce is not
//!   consumed, there are no item results). Otherwise the nonce is consumed whatever the payload
//!   does. An atomic batch applies all its items or none and names every failing item; an
//!   independent batch reports each item on its own.
//! - **Conservation.** No operation creates or destroys an asset: for every asset, free balances
//!   plus amounts locked in resting orders stay at their genesis total ([`App::total_supply`]).
//!   That total fits in a `u64` (checked at genesis), and all arithmetic is checked.
//! - **Books never cross.** After every operation the best bid is strictly below the best ask.
//!   Matching is price-time priority at the resting order's price; a self-trade is allowed and
//!   simply moves assets from the account to itself.
//! - **Authenticated state.** [`App::state_root`] is the root of a Jellyfish Merkle tree
//!   (sha256) over all state: accounts, resting orders, markets, tasks, the order counter and the
//!   genesis configuration. [`App::account_with_proof`] proves an account's value or absence.
//!
//! # What it does not do
//!
//! - Check signatures: the caller verifies them (batched, off the consensus path) before
//!   handing a decided block to [`App::execute_block`].
//! - Charge fees or meter work: a transaction's cost is bounded by its size, except matching,
//!   whose cost is amortized (each resting order is filled away at most once).
//! - Keep history or persist anything: only the latest state and tree version are in memory.
//!   Storage, snapshots and pruning of history belong to the node.
//!
//! # Cost
//!
//! Executing a transaction takes a few µs; writing the block's changed keys to the tree
//! dominates (jmt's batch insertion, roughly 8–10 µs per changed key with 100k accounts, so
//! ~25 µs per transfer all told on the reference machine; see `src/tests/perf.rs`, run by
//! hand). A block with deletions (filled or cancelled orders) writes them through jmt's slower
//! one-key-at-a-time path. [`App::simulate`] copies only the accounts, tasks and books the
//! transaction names; [`App::total_supply`] walks the whole state.

mod book;
mod exec;
mod genesis;
mod state;
mod tree;

#[cfg(test)]
mod tests;

pub use state::{Account, Order, TaskState};
pub use tree::{verify_account_proof, AccountProof};

use basalt_types::{
    AssetId, Genesis, Hash, MarketId, Payload, PublicKey, Receipt, SignedTx, TxError,
};
use state::State;
use tree::StateTree;

/// What executing a block produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// State root after the block.
    pub state_root: Hash,
}

/// A market's resting orders, best first on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookView {
    /// Market id.
    pub market: MarketId,
    /// Asset bought and sold.
    pub base: AssetId,
    /// Asset prices are quoted in.
    pub quote: AssetId,
    /// Buy orders: highest price first, then earliest (lowest id) first.
    pub bids: Vec<Order>,
    /// Sell orders: lowest price first, then earliest (lowest id) first.
    pub asks: Vec<Order>,
}

/// Why the app refused a genesis or a block, or could not serve a proof.
#[derive(thiserror::Error, Debug)]
pub enum AppError {
    /// The genesis chain id is empty.
    #[error("genesis chain id is empty")]
    EmptyChainId,
    /// The genesis chain id is longer than transactions can carry.
    #[error("genesis chain id has {len} bytes, more than {max}")]
    ChainIdTooLong {
        /// Its length in bytes.
        len: usize,
        /// [`basalt_types::limits::CHAIN_ID_BYTES_MAX`].
        max: usize,
    },
    /// An asset is listed twice.
    #[error("asset {0} listed twice in genesis")]
    DuplicateAsset(AssetId),
    /// An account is listed twice.
    #[error("account {0} listed twice in genesis")]
    DuplicateAccount(PublicKey),
    /// An account lists the same asset twice.
    #[error("account {account} lists asset {asset} twice in genesis")]
    DuplicateBalance {
        /// The account.
        account: PublicKey,
        /// The asset.
        asset: AssetId,
    },
    /// An account holds an asset that genesis does not define.
    #[error("account {account} holds unknown asset {asset}")]
    UnknownAccountAsset {
        /// The account.
        account: PublicKey,
        /// The asset.
        asset: AssetId,
    },
    /// A market id is listed twice.
    #[error("market {0} listed twice in genesis")]
    DuplicateMarket(MarketId),
    /// A market trades an asset that genesis does not define.
    #[error("market {market} trades unknown asset {asset}")]
    UnknownMarketAsset {
        /// The market.
        market: MarketId,
        /// The asset.
        asset: AssetId,
    },
    /// A market whose base and quote are the same asset.
    #[error("market {0} has the same base and quote asset")]
    MarketSameAsset(MarketId),
    /// A task generator is listed twice.
    #[error("task generator {0} listed twice in genesis")]
    DuplicateTaskGenerator(PublicKey),
    /// The genesis balances of an asset add up to more than a `u64`.
    #[error("total genesis supply of asset {0} overflows u64")]
    SupplyOverflow(AssetId),
    /// A block at a height other than the next one.
    #[error("block at height {got} does not follow the last executed height {last}")]
    WrongHeight {
        /// The last executed height.
        last: u64,
        /// The height asked for.
        got: u64,
    },
    /// The state tree failed (an internal inconsistency, not a property of the input).
    #[error("state tree: {0:#}")]
    Tree(anyhow::Error),
    /// An earlier tree failure left this app's state ahead of its tree; it must be rebuilt.
    #[error("app poisoned by an earlier state tree failure")]
    Poisoned,
}

/// The application: the state after the last executed block, and its tree.
#[derive(Clone)]
pub struct App {
    state: State,
    tree: StateTree,
    height: u64,
    poisoned: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("chain_id", &self.chain_id())
            .field("height", &self.height)
            .field("state_root", &self.state_root())
            .field("accounts", &self.state.accounts.len())
            .finish()
    }
}

impl App {
    /// The state `genesis` describes, at height 0, with its root as tree version 0.
    pub fn from_genesis(genesis: &Genesis) -> Result<App, AppError> {
        let mut state = genesis::state_from_genesis(genesis)?;
        let mut tree = StateTree::default();
        tree.commit(state.take_tree_changes())
            .map_err(AppError::Tree)?;
        Ok(App {
            state,
            tree,
            height: 0,
            poisoned: false,
        })
    }

    /// The chain id from genesis.
    pub fn chain_id(&self) -> &str {
        &self.state.config.chain_id
    }

    /// The last executed height (0 at genesis).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The state root after the last executed block (the genesis root at height 0).
    pub fn state_root(&self) -> Hash {
        self.tree.root()
    }

    /// Execute a decided block's transactions at `height`, which must be `height() + 1`.
    ///
    /// Signatures are not checked here: the caller verified them. Every transaction gets a
    /// receipt; a failing transaction never fails the block. An `Err` means the block was not
    /// executed (wrong height) or that the app must be discarded ([`AppError::Tree`]).
    pub fn execute_block(
        &mut self,
        height: u64,
        txs: &[SignedTx],
    ) -> Result<BlockOutcome, AppError> {
        if self.poisoned {
            return Err(AppError::Poisoned);
        }
        if self.height.checked_add(1) != Some(height) {
            return Err(AppError::WrongHeight {
                last: self.height,
                got: height,
            });
        }
        let receipts: Vec<Receipt> = txs.iter().map(|tx| self.state.execute_tx(tx)).collect();
        let changes = self.state.take_tree_changes();
        match self.tree.commit(changes) {
            Ok(state_root) => {
                self.height = height;
                Ok(BlockOutcome {
                    receipts,
                    state_root,
                })
            }
            Err(error) => {
                self.poisoned = true;
                Err(AppError::Tree(error))
            }
        }
    }

    /// Stateful admission check for the mempool and proposal validity, in the order execution
    /// checks them: chain id, size at most [`basalt_types::limits::TX_BYTES_MAX`], nonce not
    /// below the sender's next one (a future nonce is admitted: the mempool may hold a
    /// pipelined sequence), batch not empty. Does not execute.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<(), TxError> {
        let encoded_len = borsh::object_length(tx).unwrap_or(usize::MAX);
        self.state.check_envelope(tx, encoded_len)?;
        let expected = self.state.nonce(&tx.body.sender);
        if tx.body.nonce < expected {
            return Err(TxError::StaleNonce {
                expected,
                got: tx.body.nonce,
            });
        }
        if let Payload::Batch { items, .. } = &tx.body.payload {
            if items.is_empty() {
                return Err(TxError::EmptyBatch);
            }
        }
        Ok(())
    }

    /// The receipt `tx` would get if executed now, as the next transaction; the state is not
    /// changed. Costs a copy of the accounts, tasks and books the transaction names.
    pub fn simulate(&self, tx: &SignedTx) -> Receipt {
        self.state.scratch_for(tx).execute_tx(tx)
    }

    /// The account at `address` (the default, zero account if absent).
    pub fn account(&self, address: &PublicKey) -> Account {
        self.state
            .accounts
            .get(address)
            .cloned()
            .unwrap_or_default()
    }

    /// The account at `address` (`None` if absent) with a proof of that against
    /// [`App::state_root`]; check it with [`verify_account_proof`].
    pub fn account_with_proof(
        &self,
        address: &PublicKey,
    ) -> Result<(Option<Account>, AccountProof), AppError> {
        let account = self.state.accounts.get(address).cloned();
        let proof = self
            .tree
            .prove_account(address, account.as_ref())
            .map_err(AppError::Tree)?;
        Ok((account, proof))
    }

    /// A market's resting orders, or `None` if the market does not exist.
    pub fn book(&self, market: MarketId) -> Option<BookView> {
        let book = self.state.markets.get(&market)?;
        let (bids, asks) = book.sorted_orders();
        Some(BookView {
            market,
            base: book.base,
            quote: book.quote,
            bids,
            asks,
        })
    }

    /// Free balances plus amounts locked in resting orders, for `asset`. Walks the whole
    /// state: an audit, not a hot-path query.
    pub fn total_supply(&self, asset: AssetId) -> u128 {
        self.state.total_supply(asset)
    }

    /// A task by id.
    pub fn task(&self, task_id: &Hash) -> Option<TaskState> {
        self.state.tasks.get(task_id).cloned()
    }
}
