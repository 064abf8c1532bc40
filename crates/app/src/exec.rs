//! Executing one transaction: admission (chain id, size, nonce), then its payload.
//!
//! Order of checks, as in the receipt contract: a wrong chain id, an oversize transaction or a
//! nonce other than the account's next one fails the transaction without consuming the nonce
//! (and with no item results: nothing was evaluated). Otherwise the nonce is consumed whatever
//! the payload does, so a client pipelining nonces is not stalled by one failed transaction.

use crate::state::{State, TaskState};
use basalt_types::limits::{BATCH_ITEMS_MAX, TX_BYTES_MAX};
use basalt_types::{
    sha256, AssetId, BatchItem, BatchMode, BoundedVec, Hash, ItemResult, MarketId, Payload,
    PublicKey, Receipt, ReceiptStatus, SignedTx, TxError,
};

/// What an applied item returns: the id of the order it placed, if any.
type ItemOutcome = Result<Option<u64>, TxError>;

impl State {
    /// Execute `tx` against this state and return its receipt.
    pub(crate) fn execute_tx(&mut self, tx: &SignedTx) -> Receipt {
        let bytes = tx.to_bytes();
        let tx_hash = sha256(&bytes);
        let (status, items) = match self.admit(tx, bytes.len()) {
            Err(error) => (ReceiptStatus::Failed(error), Vec::new()),
            Ok(()) => self.run_payload(tx.body.sender, &tx.body.payload),
        };
        self.commit_tx();
        Receipt {
            tx_hash,
            status,
            items: bounded(items),
        }
    }

    /// The checks that do not consume the nonce; then consume it.
    fn admit(&mut self, tx: &SignedTx, encoded_len: usize) -> Result<(), TxError> {
        self.check_envelope(tx, encoded_len)?;
        let sender = tx.body.sender;
        let expected = self.nonce(&sender);
        match tx.body.nonce.cmp(&expected) {
            std::cmp::Ordering::Less => Err(TxError::StaleNonce {
                expected,
                got: tx.body.nonce,
            }),
            std::cmp::Ordering::Greater => Err(TxError::FutureNonce {
                expected,
                got: tx.body.nonce,
            }),
            std::cmp::Ordering::Equal => self.consume_nonce(sender),
        }
    }

    /// Chain id and encoded size.
    pub(crate) fn check_envelope(&self, tx: &SignedTx, encoded_len: usize) -> Result<(), TxError> {
        if tx.body.chain_id.as_str() != self.config.chain_id {
            return Err(TxError::WrongChainId);
        }
        if encoded_len > TX_BYTES_MAX {
            return Err(TxError::TooLarge);
        }
        Ok(())
    }

    fn run_payload(
        &mut self,
        sender: PublicKey,
        payload: &Payload,
    ) -> (ReceiptStatus, Vec<ItemResult>) {
        match payload {
            Payload::Single(item) => match self.apply_item_or_undo(sender, item) {
                Ok(order_id) => (
                    ReceiptStatus::Success,
                    vec![ItemResult::Applied { order_id }],
                ),
                Err(error) => (
                    ReceiptStatus::Failed(error.clone()),
                    vec![ItemResult::Failed(error)],
                ),
            },
            Payload::Batch { items, .. } if items.is_empty() => {
                (ReceiptStatus::Failed(TxError::EmptyBatch), Vec::new())
            }
            Payload::Batch {
                mode: BatchMode::Atomic,
                items,
            } => self.run_atomic(sender, items.as_slice()),
            Payload::Batch {
                mode: BatchMode::Independent,
                items,
            } => {
                let results = items
                    .iter()
                    .map(|item| match self.apply_item_or_undo(sender, item) {
                        Ok(order_id) => ItemResult::Applied { order_id },
                        Err(error) => ItemResult::Failed(error),
                    })
                    .collect();
                (ReceiptStatus::Success, results)
            }
        }
    }

    /// All items or none. Every item is evaluated (a failed one leaves no trace) so that the
    /// receipt names every failing index, then everything is rolled back if any failed.
    fn run_atomic(
        &mut self,
        sender: PublicKey,
        items: &[BatchItem],
    ) -> (ReceiptStatus, Vec<ItemResult>) {
        let start = self.savepoint();
        let outcomes: Vec<ItemOutcome> = items
            .iter()
            .map(|item| self.apply_item_or_undo(sender, item))
            .collect();
        if outcomes.iter().all(Result::is_ok) {
            let results = outcomes
                .into_iter()
                .map(|outcome| ItemResult::Applied {
                    order_id: outcome.ok().flatten(),
                })
                .collect();
            return (ReceiptStatus::Success, results);
        }
        self.rollback_to(start);
        let results = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(_) => ItemResult::RolledBack,
                Err(error) => ItemResult::Failed(error),
            })
            .collect();
        (ReceiptStatus::Failed(TxError::BatchFailed), results)
    }

    /// Apply one item; if it fails, undo whatever it did before failing.
    fn apply_item_or_undo(&mut self, sender: PublicKey, item: &BatchItem) -> ItemOutcome {
        let savepoint = self.savepoint();
        let outcome = self.apply_item(sender, item);
        if outcome.is_err() {
            self.rollback_to(savepoint);
        }
        outcome
    }

    fn apply_item(&mut self, sender: PublicKey, item: &BatchItem) -> ItemOutcome {
        match *item {
            BatchItem::Transfer { to, asset, amount } => {
                self.transfer(sender, to, asset, amount).map(|()| None)
            }
            BatchItem::PlaceOrder {
                market,
                side,
                price_ticks,
                quantity,
            } => self
                .place_order(sender, market, side, price_ticks, quantity)
                .map(Some),
            BatchItem::CancelOrder { market, order_id } => {
                self.cancel_order(sender, market, order_id).map(|()| None)
            }
            BatchItem::CreateTask {
                task_id,
                payload_hash,
            } => self
                .create_task(sender, task_id, payload_hash)
                .map(|()| None),
            BatchItem::RespondTask {
                task_id,
                result_hash,
            } => self
                .respond_task(sender, task_id, result_hash)
                .map(|()| None),
        }
    }

    /// Move `amount` of `asset` from `from` to `to`. To oneself it changes nothing, but still
    /// needs the balance.
    fn transfer(
        &mut self,
        from: PublicKey,
        to: PublicKey,
        asset: AssetId,
        amount: u64,
    ) -> Result<(), TxError> {
        if amount == 0 {
            return Err(TxError::ZeroAmount);
        }
        if !self.config.assets.contains(&asset) {
            return Err(TxError::UnknownAsset(asset));
        }
        self.debit(from, asset, amount)?;
        self.credit(to, asset, amount)
    }

    fn create_task(
        &mut self,
        creator: PublicKey,
        task_id: Hash,
        payload_hash: Hash,
    ) -> Result<(), TxError> {
        if !self.config.task_generators.contains(&creator) {
            return Err(TxError::NotTaskGenerator);
        }
        if self.tasks.contains_key(&task_id) {
            return Err(TxError::TaskExists);
        }
        let task = TaskState {
            creator,
            payload_hash,
            response: None,
        };
        self.put_task(task_id, task);
        Ok(())
    }

    fn respond_task(
        &mut self,
        responder: PublicKey,
        task_id: Hash,
        result_hash: Hash,
    ) -> Result<(), TxError> {
        let task = self.tasks.get(&task_id).ok_or(TxError::UnknownTask)?;
        if task.response.is_some() {
            return Err(TxError::TaskAlreadyAnswered);
        }
        let answered = TaskState {
            response: Some((responder, result_hash)),
            ..task.clone()
        };
        self.put_task(task_id, answered);
        Ok(())
    }

    /// A copy of exactly the part of this state that `tx` can read or write: the sender, the
    /// recipients, the markets it names with their orders' owners, the tasks it names. Executing
    /// `tx` on it gives the receipt executing it here would, at the cost of the touched books
    /// rather than of the whole state.
    pub(crate) fn scratch_for(&self, tx: &SignedTx) -> State {
        let mut scratch = self.empty_scratch();
        scratch.copy_account_from(self, &tx.body.sender);
        for item in tx.items() {
            match item {
                BatchItem::Transfer { to, .. } => scratch.copy_account_from(self, to),
                BatchItem::PlaceOrder { market, .. } | BatchItem::CancelOrder { market, .. } => {
                    scratch.copy_market_from(self, *market);
                }
                BatchItem::CreateTask { task_id, .. } | BatchItem::RespondTask { task_id, .. } => {
                    if let Some(task) = self.tasks.get(task_id) {
                        scratch.tasks.insert(*task_id, task.clone());
                    }
                }
            }
        }
        scratch
    }

    fn copy_account_from(&mut self, source: &State, owner: &PublicKey) {
        if let Some(account) = source.accounts.get(owner) {
            self.accounts
                .entry(*owner)
                .or_insert_with(|| account.clone());
        }
    }

    fn copy_market_from(&mut self, source: &State, market_id: MarketId) {
        if self.markets.contains_key(&market_id) {
            return;
        }
        let Some(market) = source.markets.get(&market_id) else {
            return;
        };
        for order in market.orders.values() {
            self.copy_account_from(source, &order.owner);
        }
        self.markets.insert(market_id, market.clone());
    }
}

/// Item results as a receipt field. Payloads hold at most [`BATCH_ITEMS_MAX`] items, so this
/// never truncates.
fn bounded(mut items: Vec<ItemResult>) -> BoundedVec<ItemResult, BATCH_ITEMS_MAX> {
    debug_assert!(items.len() <= BATCH_ITEMS_MAX);
    items.truncate(BATCH_ITEMS_MAX);
    BoundedVec::new(items).unwrap_or_default()
}
