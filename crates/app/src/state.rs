//! The application state and its journaled mutations.
//!
//! Every mutation made while executing a transaction goes through a method here that records
//! how to undo it (the journal) and which tree key it touched (the dirty set). A failing item
//! or atomic batch rolls back to a savepoint; at the end of a block the dirty keys, and only
//! those, are written to the state tree.

use basalt_types::{AssetId, Hash, MarketId, PublicKey, Side, TxError};
use borsh::{BorshDeserialize, BorshSerialize};
use imbl::ordmap::Entry;
use imbl::{OrdMap, OrdSet};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An account: its next nonce and its free balances.
///
/// Amounts locked in resting orders are not part of the balances; they are held by the orders.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct Account {
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    /// Free balance per asset. Assets with a zero balance are absent, so that one state has
    /// exactly one encoding.
    pub balances: BTreeMap<AssetId, u64>,
}

impl Account {
    /// Free balance of `asset` (zero if absent).
    pub fn balance(&self, asset: AssetId) -> u64 {
        self.balances.get(&asset).copied().unwrap_or(0)
    }
}

/// A limit order resting on a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Order {
    /// Order id, from the global order counter (lower ids arrived earlier).
    pub id: u64,
    /// Market.
    pub market: MarketId,
    /// Who placed it; only they may cancel it.
    pub owner: PublicKey,
    /// Buy or sell.
    pub side: Side,
    /// Limit price in quote units per base unit.
    pub price_ticks: u64,
    /// Quantity still open, in base units; always above zero while resting.
    pub quantity: u64,
}

impl Order {
    /// The amount this order holds locked: `price_ticks × quantity` of the quote asset for a
    /// buy, `quantity` of the base asset for a sell.
    pub fn locked_amount(&self) -> Result<u64, TxError> {
        match self.side {
            Side::Buy => self
                .price_ticks
                .checked_mul(self.quantity)
                .ok_or(TxError::Overflow),
            Side::Sell => Ok(self.quantity),
        }
    }

    /// Units of the locked asset per unit of quantity.
    fn price_units(&self) -> u64 {
        match self.side {
            Side::Buy => self.price_ticks,
            Side::Sell => 1,
        }
    }
}

/// A task created by a task generator, with its response once answered.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TaskState {
    /// The generator that created it.
    pub creator: PublicKey,
    /// Hash of the task's payload (kept off chain).
    pub payload_hash: Hash,
    /// The first response: who answered and the hash of their result.
    pub response: Option<(PublicKey, Hash)>,
}

/// What genesis fixed and no transaction changes.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize)]
pub(crate) struct Config {
    pub(crate) chain_id: String,
    pub(crate) assets: BTreeSet<AssetId>,
    pub(crate) task_generators: BTreeSet<PublicKey>,
}

/// One market: its assets and its book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Market {
    pub(crate) base: AssetId,
    pub(crate) quote: AssetId,
    /// Resting orders by id.
    pub(crate) orders: OrdMap<u64, Order>,
    /// Bid keys, best first: highest price, then lowest id (earliest).
    pub(crate) bids: OrdSet<(Reverse<u64>, u64)>,
    /// Ask keys, best first: lowest price, then lowest id (earliest).
    pub(crate) asks: OrdSet<(u64, u64)>,
}

impl Market {
    pub(crate) fn new(base: AssetId, quote: AssetId) -> Market {
        Market {
            base,
            quote,
            orders: OrdMap::new(),
            bids: OrdSet::new(),
            asks: OrdSet::new(),
        }
    }

    /// The asset an order on `side` locks.
    pub(crate) fn locked_asset(&self, side: Side) -> AssetId {
        match side {
            Side::Buy => self.quote,
            Side::Sell => self.base,
        }
    }

    fn insert(&mut self, order: Order) {
        match order.side {
            Side::Buy => {
                self.bids.insert((Reverse(order.price_ticks), order.id));
            }
            Side::Sell => {
                self.asks.insert((order.price_ticks, order.id));
            }
        }
        self.orders.insert(order.id, order);
    }

    fn remove(&mut self, id: u64) -> Option<Order> {
        let order = self.orders.remove(&id)?;
        match order.side {
            Side::Buy => {
                self.bids.remove(&(Reverse(order.price_ticks), order.id));
            }
            Side::Sell => {
                self.asks.remove(&(order.price_ticks, order.id));
            }
        }
        Some(order)
    }

    /// The best bid: highest price, earliest first.
    pub(crate) fn best_bid(&self) -> Option<&Order> {
        self.bids.get_min().and_then(|(_, id)| self.orders.get(id))
    }

    /// The best ask: lowest price, earliest first.
    pub(crate) fn best_ask(&self) -> Option<&Order> {
        self.asks.get_min().and_then(|(_, id)| self.orders.get(id))
    }

    /// True when the best bid is at or above the best ask (must never be observed).
    pub(crate) fn is_crossed(&self) -> bool {
        match (self.best_bid(), self.best_ask()) {
            (Some(bid), Some(ask)) => bid.price_ticks >= ask.price_ticks,
            _ => false,
        }
    }

    /// Bids best first, then asks best first.
    pub(crate) fn sorted_orders(&self) -> (Vec<Order>, Vec<Order>) {
        let bids = self
            .bids
            .iter()
            .filter_map(|(_, id)| self.orders.get(id).copied())
            .collect();
        let asks = self
            .asks
            .iter()
            .filter_map(|(_, id)| self.orders.get(id).copied())
            .collect();
        (bids, asks)
    }
}

/// A key of the state tree. The order of variants and fields fixes the (deterministic) order
/// in which dirty keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StateKey {
    Config,
    Market(MarketId),
    NextOrderId,
    Account(PublicKey),
    Order { market: MarketId, id: u64 },
    Task(Hash),
}

/// How to undo one mutation.
#[derive(Debug, Clone)]
enum Undo {
    AccountCreated(PublicKey),
    Balance {
        owner: PublicKey,
        asset: AssetId,
        previous: u64,
    },
    Order {
        market: MarketId,
        id: u64,
        previous: Option<Order>,
    },
    Task {
        id: Hash,
        previous: Option<TaskState>,
    },
    NextOrderId(u64),
}

/// Everything the application knows, plus the journal and the dirty set of the block being
/// executed.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// Shared between an `App` and its dry-run scratch copies.
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: OrdMap<PublicKey, Account>,
    pub(crate) markets: OrdMap<MarketId, Market>,
    pub(crate) tasks: OrdMap<Hash, TaskState>,
    pub(crate) next_order_id: u64,
    /// Undo records of the transaction being executed; empty between transactions.
    journal: Vec<Undo>,
    /// Tree keys touched since the last block was committed to the tree.
    dirty: BTreeSet<StateKey>,
}

/// A position in the journal to roll back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Savepoint(usize);

impl State {
    pub(crate) fn new(config: Config) -> State {
        State::new_shared(Arc::new(config))
    }

    /// An empty state sharing this one's configuration and order counter, for dry runs.
    pub(crate) fn empty_scratch(&self) -> State {
        State {
            next_order_id: self.next_order_id,
            ..State::new_shared(Arc::clone(&self.config))
        }
    }

    fn new_shared(config: Arc<Config>) -> State {
        State {
            config,
            accounts: OrdMap::new(),
            markets: OrdMap::new(),
            tasks: OrdMap::new(),
            next_order_id: 0,
            journal: Vec::new(),
            dirty: BTreeSet::new(),
        }
    }

    // ---- reads ----

    pub(crate) fn nonce(&self, owner: &PublicKey) -> u64 {
        self.accounts.get(owner).map_or(0, |account| account.nonce)
    }

    pub(crate) fn balance(&self, owner: &PublicKey, asset: AssetId) -> u64 {
        self.accounts
            .get(owner)
            .map_or(0, |account| account.balance(asset))
    }

    // ---- journal ----

    pub(crate) fn savepoint(&self) -> Savepoint {
        Savepoint(self.journal.len())
    }

    /// Undo every mutation recorded after `savepoint`, newest first.
    pub(crate) fn rollback_to(&mut self, savepoint: Savepoint) {
        while self.journal.len() > savepoint.0 {
            let Some(undo) = self.journal.pop() else {
                break;
            };
            self.undo(undo);
        }
    }

    /// Keep every mutation of the current transaction.
    pub(crate) fn commit_tx(&mut self) {
        self.journal.clear();
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::AccountCreated(owner) => {
                self.accounts.remove(&owner);
            }
            Undo::Balance {
                owner,
                asset,
                previous,
            } => {
                if let Some(account) = self.accounts.get_mut(&owner) {
                    write_balance(account, asset, previous);
                }
            }
            Undo::Order {
                market,
                id,
                previous,
            } => {
                if let Some(market) = self.markets.get_mut(&market) {
                    market.remove(id);
                    if let Some(order) = previous {
                        market.insert(order);
                    }
                }
            }
            Undo::Task { id, previous } => match previous {
                Some(task) => {
                    self.tasks.insert(id, task);
                }
                None => {
                    self.tasks.remove(&id);
                }
            },
            Undo::NextOrderId(previous) => self.next_order_id = previous,
        }
    }

    // ---- dirty set ----

    pub(crate) fn mark_dirty(&mut self, key: StateKey) {
        self.dirty.insert(key);
    }

    /// The keys touched since the last call, in key order.
    pub(crate) fn take_dirty(&mut self) -> BTreeSet<StateKey> {
        std::mem::take(&mut self.dirty)
    }

    // ---- journaled mutations ----

    /// Increment `owner`'s nonce, creating the account if needed. Not journaled: a consumed
    /// nonce stays consumed whatever the payload does.
    pub(crate) fn consume_nonce(&mut self, owner: PublicKey) -> Result<(), TxError> {
        let account = self.accounts.entry(owner).or_default();
        account.nonce = account.nonce.checked_add(1).ok_or(TxError::Overflow)?;
        self.dirty.insert(StateKey::Account(owner));
        Ok(())
    }

    /// Add `amount` of `asset` to `owner`'s free balance.
    pub(crate) fn credit(
        &mut self,
        owner: PublicKey,
        asset: AssetId,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Ok(());
        }
        let balance = self
            .balance(&owner, asset)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.set_balance(owner, asset, balance);
        Ok(())
    }

    /// Take `amount` of `asset` from `owner`'s free balance.
    pub(crate) fn debit(
        &mut self,
        owner: PublicKey,
        asset: AssetId,
        amount: u64,
    ) -> Result<(), TxError> {
        let available = self.balance(&owner, asset);
        let rest = available
            .checked_sub(amount)
            .ok_or(TxError::InsufficientBalance {
                asset,
                needed: amount,
                available,
            })?;
        self.set_balance(owner, asset, rest);
        Ok(())
    }

    fn set_balance(&mut self, owner: PublicKey, asset: AssetId, value: u64) {
        let account = match self.accounts.entry(owner) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.journal.push(Undo::AccountCreated(owner));
                entry.insert(Account::default())
            }
        };
        let previous = write_balance(account, asset, value);
        self.journal.push(Undo::Balance {
            owner,
            asset,
            previous,
        });
        self.dirty.insert(StateKey::Account(owner));
    }

    /// Put `next` (or nothing) where order `id` of `market` is. The market must exist.
    pub(crate) fn replace_order(&mut self, market: MarketId, id: u64, next: Option<Order>) {
        let Some(book) = self.markets.get_mut(&market) else {
            debug_assert!(false, "replace_order on unknown market {market}");
            return;
        };
        let previous = book.remove(id);
        if let Some(order) = next {
            debug_assert!(order.quantity > 0 && order.id == id && order.market == market);
            book.insert(order);
        }
        self.journal.push(Undo::Order {
            market,
            id,
            previous,
        });
        self.dirty.insert(StateKey::Order { market, id });
    }

    /// Take the next order id from the global counter.
    pub(crate) fn take_order_id(&mut self) -> Result<u64, TxError> {
        let id = self.next_order_id;
        self.next_order_id = id.checked_add(1).ok_or(TxError::Overflow)?;
        self.journal.push(Undo::NextOrderId(id));
        self.dirty.insert(StateKey::NextOrderId);
        Ok(id)
    }

    pub(crate) fn put_task(&mut self, id: Hash, task: TaskState) {
        let previous = self.tasks.insert(id, task);
        self.journal.push(Undo::Task { id, previous });
        self.dirty.insert(StateKey::Task(id));
    }

    // ---- audits ----

    /// Sum of free balances and amounts locked in resting orders, for `asset`.
    pub(crate) fn total_supply(&self, asset: AssetId) -> u128 {
        let free: u128 = self
            .accounts
            .values()
            .map(|account| u128::from(account.balance(asset)))
            .sum();
        let locked: u128 = self
            .markets
            .values()
            .flat_map(|market| {
                market
                    .orders
                    .values()
                    .filter(move |order| market.locked_asset(order.side) == asset)
            })
            .map(|order| u128::from(order.price_units()) * u128::from(order.quantity))
            .sum();
        free + locked
    }
}

/// Set a balance, keeping zero balances out of the map. Returns the previous balance.
fn write_balance(account: &mut Account, asset: AssetId, value: u64) -> u64 {
    let previous = if value == 0 {
        account.balances.remove(&asset)
    } else {
        account.balances.insert(asset, value)
    };
    previous.unwrap_or(0)
}

#[cfg(test)]
impl State {
    /// Structural invariants: books agree with order maps, nothing crossed, no zero entries.
    pub(crate) fn assert_invariants(&self) {
        for (id, market) in &self.markets {
            assert!(!market.is_crossed(), "market {id} crossed");
            assert_eq!(market.orders.len(), market.bids.len() + market.asks.len());
            for order in market.orders.values() {
                assert!(order.quantity > 0 && order.price_ticks > 0);
                assert_eq!(order.market, *id);
                assert!(order.id < self.next_order_id);
                assert!(order.locked_amount().is_ok());
                let in_book = match order.side {
                    Side::Buy => market
                        .bids
                        .contains(&(Reverse(order.price_ticks), order.id)),
                    Side::Sell => market.asks.contains(&(order.price_ticks, order.id)),
                };
                assert!(in_book, "order {} missing from its book", order.id);
            }
        }
        for account in self.accounts.values() {
            assert!(account.balances.values().all(|amount| *amount > 0));
        }
        assert!(self.journal.is_empty());
    }
}
