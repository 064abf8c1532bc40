//! Atomic and independent batches.

use super::*;
use basalt_types::TxError::*;

#[test]
fn atomic_batch_with_one_poison_item_applies_nothing() {
    let mut app = app();
    let root_before = app.state_root();
    let items = vec![
        transfer(bob(), BASE, 10),
        transfer(bob(), 99, 1),
        place(Side::Sell, 100, 5),
    ];
    let receipt = run_payload(&mut app, alice(), batch(BatchMode::Atomic, items));
    assert_eq!(receipt.status, failed(BatchFailed));
    assert_eq!(
        results(&receipt),
        vec![
            ItemResult::RolledBack,
            ItemResult::Failed(UnknownAsset(99)),
            ItemResult::RolledBack
        ]
    );
    assert_eq!(app.account(&alice()).nonce, 1, "nonce consumed");
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    assert_eq!(balance(&app, bob(), BASE), FUNDED_BASE);
    assert!(app.book(MARKET).expect("market").asks.is_empty());
    assert_eq!(app.state.next_order_id, 0, "the order id is given back");
    assert_ne!(app.state_root(), root_before);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
    // The next order gets id 0, as if the batch never ran.
    let receipt = run(&mut app, alice(), place(Side::Sell, 100, 5));
    assert_eq!(results(&receipt), vec![applied(Some(0))]);
}

#[test]
fn atomic_batch_reports_every_failing_index_against_the_scratch_state() {
    let mut app = app();
    let items = vec![
        transfer(bob(), BASE, 600),
        transfer(bob(), BASE, 600), // only 400 left after item 0
        transfer(bob(), QUOTE, 1),
        place(Side::Buy, 0, 1),
    ];
    let receipt = run_payload(&mut app, alice(), batch(BatchMode::Atomic, items));
    assert_eq!(receipt.status, failed(BatchFailed));
    assert_eq!(
        results(&receipt),
        vec![
            ItemResult::RolledBack,
            ItemResult::Failed(InsufficientBalance {
                asset: BASE,
                needed: 600,
                available: 400
            }),
            ItemResult::RolledBack,
            ItemResult::Failed(ZeroAmount),
        ]
    );
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    assert_eq!(balance(&app, bob(), QUOTE), FUNDED_QUOTE);
}

#[test]
fn atomic_batch_items_see_earlier_items() {
    let mut app = app();
    // Place an order, then cancel it by the id it will get, then spend the refund.
    let items = vec![
        place(Side::Sell, 100, FUNDED_BASE),
        cancel(0),
        transfer(bob(), BASE, FUNDED_BASE),
    ];
    let receipt = run_payload(&mut app, alice(), batch(BatchMode::Atomic, items));
    assert!(receipt.is_success());
    assert_eq!(
        results(&receipt),
        vec![applied(Some(0)), applied(None), applied(None)]
    );
    assert_eq!(balance(&app, alice(), BASE), 0);
    assert_eq!(balance(&app, bob(), BASE), 2 * FUNDED_BASE);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn atomic_rollback_restores_filled_orders() {
    let mut app = app();
    run(&mut app, bob(), place(Side::Sell, 100, 5)); // id 0
    let items = vec![place(Side::Buy, 100, 3), transfer(carol(), 99, 1)];
    let receipt = run_payload(&mut app, alice(), batch(BatchMode::Atomic, items));
    assert_eq!(receipt.status, failed(BatchFailed));
    let book = app.book(MARKET).expect("market");
    assert_eq!(book.asks.len(), 1);
    assert_eq!(book.asks[0].quantity, 5, "the partial fill was undone");
    assert_eq!(balance(&app, bob(), QUOTE), FUNDED_QUOTE);
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn independent_batch_reports_each_item() {
    let mut app = app();
    let items = vec![
        transfer(bob(), BASE, 10),
        transfer(bob(), BASE, FUNDED_BASE),
        place(Side::Sell, 100, 5),
        cancel(42),
    ];
    let receipt = run_payload(&mut app, alice(), batch(BatchMode::Independent, items));
    assert_eq!(receipt.status, ReceiptStatus::Success);
    assert_eq!(
        results(&receipt),
        vec![
            applied(None),
            ItemResult::Failed(InsufficientBalance {
                asset: BASE,
                needed: FUNDED_BASE,
                available: FUNDED_BASE - 10
            }),
            applied(Some(0)),
            ItemResult::Failed(UnknownOrder(42)),
        ]
    );
    assert_eq!(balance(&app, bob(), BASE), FUNDED_BASE + 10);
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE - 15);
    assert_eq!(app.book(MARKET).expect("market").asks.len(), 1);
    assert_eq!(app.account(&alice()).nonce, 1);
}

#[test]
fn atomic_batch_that_succeeds_applies_everything() {
    let mut app = app();
    let items = vec![
        place(Side::Buy, 10, 1),
        place(Side::Buy, 11, 1),
        transfer(carol(), OTHER, 5),
    ];
    let receipt = run_payload(&mut app, alice(), batch(BatchMode::Atomic, items));
    assert_eq!(receipt.status, ReceiptStatus::Success);
    assert_eq!(
        results(&receipt),
        vec![applied(Some(0)), applied(Some(1)), applied(None)]
    );
    assert_eq!(app.book(MARKET).expect("market").bids.len(), 2);
    assert_eq!(balance(&app, carol(), OTHER), FUNDED_OTHER + 5);
}

/// Regression (found by the property test): an order id given back by a rolled-back batch is
/// reused in another market in the same block; both markets' entries for that id are dirty and
/// must name distinct tree keys.
#[test]
fn an_order_id_given_back_by_a_rollback_can_be_reused_in_another_market() {
    let mut app = app();
    let poisoned = batch(
        BatchMode::Atomic,
        vec![place_on(OTHER_MARKET, Side::Buy, 1, 1), cancel(0)],
    );
    let txs = vec![
        tx(alice(), 0, poisoned),
        tx(alice(), 1, Payload::Single(place(Side::Buy, 1, 1))),
    ];
    let outcome = run_block(&mut app, txs);
    assert_eq!(outcome.receipts[0].status, failed(BatchFailed));
    assert_eq!(results(&outcome.receipts[1]), vec![applied(Some(0))]);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}
