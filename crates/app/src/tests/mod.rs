//! Tests of the app: one module per area, sharing the fixtures below.

mod batches;
mod books;
mod proofs;
mod props;
mod rules;
mod tasks;

use crate::{App, BlockOutcome};
use basalt_types::{
    AccountGenesis, AssetId, BatchItem, BatchMode, BoundedString, BoundedVec, Genesis, Hash,
    ItemResult, MarketGenesis, MarketId, Payload, PublicKey, Receipt, ReceiptStatus, Side,
    Signature, SignedTx, TxBody,
};

pub(crate) const CHAIN: &str = "basalt-test";
pub(crate) const BASE: AssetId = 1;
pub(crate) const QUOTE: AssetId = 2;
pub(crate) const OTHER: AssetId = 3;
/// BASE / QUOTE.
pub(crate) const MARKET: MarketId = 7;
/// OTHER / QUOTE.
pub(crate) const OTHER_MARKET: MarketId = 8;
pub(crate) const FUNDED_BASE: u64 = 1_000;
pub(crate) const FUNDED_QUOTE: u64 = 100_000;
pub(crate) const FUNDED_OTHER: u64 = 500;

/// A test address. Signatures are not checked by the app, so any 32 bytes will do.
pub(crate) fn user(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

pub(crate) fn alice() -> PublicKey {
    user(1)
}
pub(crate) fn bob() -> PublicKey {
    user(2)
}
pub(crate) fn carol() -> PublicKey {
    user(3)
}
/// The only task generator.
pub(crate) fn generator() -> PublicKey {
    user(9)
}
/// Never funded.
pub(crate) fn stranger() -> PublicKey {
    user(42)
}

pub(crate) fn genesis() -> Genesis {
    let funded = |address| AccountGenesis {
        address,
        balances: vec![
            (BASE, FUNDED_BASE),
            (QUOTE, FUNDED_QUOTE),
            (OTHER, FUNDED_OTHER),
        ],
    };
    Genesis {
        chain_id: CHAIN.to_owned(),
        genesis_time_ms: 0,
        validators: Vec::new(),
        assets: vec![BASE, QUOTE, OTHER],
        accounts: vec![funded(alice()), funded(bob()), funded(carol())],
        markets: vec![
            MarketGenesis {
                id: MARKET,
                base: BASE,
                quote: QUOTE,
            },
            MarketGenesis {
                id: OTHER_MARKET,
                base: OTHER,
                quote: QUOTE,
            },
        ],
        task_generators: vec![generator()],
    }
}

pub(crate) fn app() -> App {
    App::from_genesis(&genesis()).expect("test genesis is valid")
}

pub(crate) fn tx_on(chain: &str, sender: PublicKey, nonce: u64, payload: Payload) -> SignedTx {
    SignedTx {
        body: TxBody {
            chain_id: BoundedString::new(chain).expect("short chain id"),
            sender,
            nonce,
            payload,
        },
        signature: Signature::default(),
    }
}

pub(crate) fn tx(sender: PublicKey, nonce: u64, payload: Payload) -> SignedTx {
    tx_on(CHAIN, sender, nonce, payload)
}

pub(crate) fn batch(mode: BatchMode, items: Vec<BatchItem>) -> Payload {
    Payload::Batch {
        mode,
        items: BoundedVec::new(items).expect("small batch"),
    }
}

pub(crate) fn transfer(to: PublicKey, asset: AssetId, amount: u64) -> BatchItem {
    BatchItem::Transfer { to, asset, amount }
}

pub(crate) fn place(side: Side, price_ticks: u64, quantity: u64) -> BatchItem {
    place_on(MARKET, side, price_ticks, quantity)
}

pub(crate) fn place_on(market: MarketId, side: Side, price_ticks: u64, quantity: u64) -> BatchItem {
    BatchItem::PlaceOrder {
        market,
        side,
        price_ticks,
        quantity,
    }
}

pub(crate) fn cancel(order_id: u64) -> BatchItem {
    BatchItem::CancelOrder {
        market: MARKET,
        order_id,
    }
}

pub(crate) fn hash(n: u8) -> Hash {
    Hash([n; 32])
}

/// Execute `txs` as the next block, checking the app's invariants afterwards.
pub(crate) fn run_block(app: &mut App, txs: Vec<SignedTx>) -> BlockOutcome {
    let height = app.height() + 1;
    let outcome = app.execute_block(height, &txs).expect("block executes");
    assert_eq!(outcome.receipts.len(), txs.len());
    assert_eq!(outcome.state_root, app.state_root());
    app.state.assert_invariants();
    outcome
}

/// Execute one item from `sender` with its next nonce, as a block of its own.
pub(crate) fn run(app: &mut App, sender: PublicKey, item: BatchItem) -> Receipt {
    run_payload(app, sender, Payload::Single(item))
}

/// Execute one payload from `sender` with its next nonce, as a block of its own.
pub(crate) fn run_payload(app: &mut App, sender: PublicKey, payload: Payload) -> Receipt {
    let nonce = app.account(&sender).nonce;
    let mut outcome = run_block(app, vec![tx(sender, nonce, payload)]);
    outcome.receipts.remove(0)
}

/// The item results of a receipt.
pub(crate) fn results(receipt: &Receipt) -> Vec<ItemResult> {
    receipt.items.as_slice().to_vec()
}

pub(crate) fn applied(order_id: Option<u64>) -> ItemResult {
    ItemResult::Applied { order_id }
}

pub(crate) fn failed(error: basalt_types::TxError) -> ReceiptStatus {
    ReceiptStatus::Failed(error)
}

pub(crate) fn balance(app: &App, owner: PublicKey, asset: AssetId) -> u64 {
    app.account(&owner).balance(asset)
}
