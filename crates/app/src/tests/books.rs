//! Order placement, matching, refunds and cancellation.

use super::*;
use crate::Order;
use basalt_types::TxError::*;

fn order_ids(orders: &[Order]) -> Vec<(u64, u64, u64)> {
    orders
        .iter()
        .map(|o| (o.id, o.price_ticks, o.quantity))
        .collect()
}

fn assert_supply_conserved(app: &App) {
    assert_eq!(app.total_supply(BASE), 3 * u128::from(FUNDED_BASE));
    assert_eq!(app.total_supply(QUOTE), 3 * u128::from(FUNDED_QUOTE));
    assert_eq!(app.total_supply(OTHER), 3 * u128::from(FUNDED_OTHER));
}

#[test]
fn placement_errors() {
    let mut app = app();
    let cases = [
        (place_on(99, Side::Buy, 1, 1), UnknownMarket(99)),
        (place(Side::Buy, 0, 1), ZeroAmount),
        (place(Side::Sell, 1, 0), ZeroAmount),
        (place(Side::Buy, u64::MAX, 2), Overflow),
        (
            place(Side::Buy, 1_001, 100),
            InsufficientBalance {
                asset: QUOTE,
                needed: 100_100,
                available: FUNDED_QUOTE,
            },
        ),
        (
            place(Side::Sell, 1, FUNDED_BASE + 1),
            InsufficientBalance {
                asset: BASE,
                needed: FUNDED_BASE + 1,
                available: FUNDED_BASE,
            },
        ),
    ];
    for (item, error) in cases {
        let receipt = run(&mut app, alice(), item);
        assert_eq!(receipt.status, failed(error.clone()));
        assert_eq!(results(&receipt), vec![ItemResult::Failed(error)]);
    }
    assert_eq!(app.state.next_order_id, 0, "failed placements take no id");
    assert_eq!(app.account(&alice()).nonce, 6);
    assert_supply_conserved(&app);
}

#[test]
fn resting_orders_lock_and_cancel_refunds() {
    let mut app = app();
    let receipt = run(&mut app, alice(), place(Side::Buy, 50, 10));
    assert_eq!(results(&receipt), vec![applied(Some(0))]);
    let receipt = run(&mut app, alice(), place(Side::Sell, 60, 7));
    assert_eq!(results(&receipt), vec![applied(Some(1))]);
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE - 500);
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE - 7);
    assert_supply_conserved(&app);
    let book = app.book(MARKET).expect("market");
    assert_eq!(order_ids(&book.bids), vec![(0, 50, 10)]);
    assert_eq!(order_ids(&book.asks), vec![(1, 60, 7)]);
    assert_eq!(book.bids[0].owner, alice());

    assert!(run(&mut app, alice(), cancel(0)).is_success());
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE);
    assert!(run(&mut app, alice(), cancel(1)).is_success());
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    assert!(app.book(MARKET).expect("market").asks.is_empty());
    assert_supply_conserved(&app);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn cancel_errors() {
    let mut app = app();
    run(&mut app, alice(), place(Side::Sell, 60, 7));
    let receipt = run(&mut app, bob(), cancel(0));
    assert_eq!(receipt.status, failed(NotOrderOwner));
    let receipt = run(&mut app, alice(), cancel(5));
    assert_eq!(receipt.status, failed(UnknownOrder(5)));
    let wrong_market = BatchItem::CancelOrder {
        market: OTHER_MARKET,
        order_id: 0,
    };
    assert_eq!(
        run(&mut app, alice(), wrong_market).status,
        failed(UnknownOrder(0))
    );
    let no_market = BatchItem::CancelOrder {
        market: 99,
        order_id: 0,
    };
    assert_eq!(
        run(&mut app, alice(), no_market).status,
        failed(UnknownMarket(99))
    );
    assert!(run(&mut app, alice(), cancel(0)).is_success());
    assert_eq!(
        run(&mut app, alice(), cancel(0)).status,
        failed(UnknownOrder(0))
    );
    assert_supply_conserved(&app);
}

#[test]
fn buy_sweeps_asks_at_their_prices_and_gets_the_difference_back() {
    let mut app = app();
    run(&mut app, alice(), place(Side::Sell, 100, 10)); // id 0
    run(&mut app, bob(), place(Side::Sell, 90, 5)); // id 1, better price
    let receipt = run(&mut app, carol(), place(Side::Buy, 110, 12)); // id 2
    assert_eq!(results(&receipt), vec![applied(Some(2))]);

    // 5 @ 90 from bob, then 7 @ 100 from alice: 1150 paid out of 1320 reserved.
    assert_eq!(balance(&app, carol(), BASE), FUNDED_BASE + 12);
    assert_eq!(balance(&app, carol(), QUOTE), FUNDED_QUOTE - 1_150);
    assert_eq!(balance(&app, bob(), QUOTE), FUNDED_QUOTE + 450);
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE + 700);
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE - 10);
    let book = app.book(MARKET).expect("market");
    assert!(book.bids.is_empty(), "fully filled, nothing rests");
    assert_eq!(order_ids(&book.asks), vec![(0, 100, 3)]);
    assert_supply_conserved(&app);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn buy_remainder_rests_at_its_limit() {
    let mut app = app();
    run(&mut app, alice(), place(Side::Sell, 100, 4)); // id 0
    run(&mut app, carol(), place(Side::Buy, 105, 10)); // id 1: 4 @ 100, 6 rest @ 105
    assert_eq!(balance(&app, carol(), QUOTE), FUNDED_QUOTE - 400 - 6 * 105);
    let book = app.book(MARKET).expect("market");
    assert_eq!(order_ids(&book.bids), vec![(1, 105, 6)]);
    assert!(book.asks.is_empty());
    assert_supply_conserved(&app);
    // Cancelling the rest returns exactly what it holds.
    run(&mut app, carol(), cancel(1));
    assert_eq!(balance(&app, carol(), QUOTE), FUNDED_QUOTE - 400);
    assert_supply_conserved(&app);
}

#[test]
fn sell_hits_the_best_bids_at_their_prices() {
    let mut app = app();
    run(&mut app, alice(), place(Side::Buy, 100, 5)); // id 0
    run(&mut app, bob(), place(Side::Buy, 105, 5)); // id 1, best
    run(&mut app, carol(), place(Side::Sell, 95, 8)); // id 2: 5 @ 105, 3 @ 100
    assert_eq!(balance(&app, carol(), QUOTE), FUNDED_QUOTE + 525 + 300);
    assert_eq!(balance(&app, carol(), BASE), FUNDED_BASE - 8);
    assert_eq!(balance(&app, bob(), BASE), FUNDED_BASE + 5);
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE + 3);
    let book = app.book(MARKET).expect("market");
    assert_eq!(order_ids(&book.bids), vec![(0, 100, 2)]);
    assert!(book.asks.is_empty());
    assert_supply_conserved(&app);
}

#[test]
fn equal_prices_fill_in_time_order() {
    let mut app = app();
    run(&mut app, bob(), place(Side::Sell, 100, 5)); // id 0, first
    run(&mut app, alice(), place(Side::Sell, 100, 5)); // id 1
    run(&mut app, carol(), place(Side::Sell, 99, 1)); // id 2, better price, later
    let book = app.book(MARKET).expect("market");
    assert_eq!(
        order_ids(&book.asks),
        vec![(2, 99, 1), (0, 100, 5), (1, 100, 5)]
    );
    run(&mut app, carol(), place(Side::Buy, 100, 4)); // 1 @ 99 (own order), 3 @ 100 from bob
    assert_eq!(balance(&app, bob(), QUOTE), FUNDED_QUOTE + 300);
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE);
    let book = app.book(MARKET).expect("market");
    assert_eq!(order_ids(&book.asks), vec![(0, 100, 2), (1, 100, 5)]);
    assert_supply_conserved(&app);
}

#[test]
fn non_crossing_orders_rest_on_both_sides() {
    let mut app = app();
    run(&mut app, alice(), place(Side::Buy, 99, 5));
    run(&mut app, bob(), place(Side::Sell, 100, 5));
    run(&mut app, carol(), place(Side::Buy, 98, 5));
    run(&mut app, carol(), place(Side::Sell, 101, 5));
    let book = app.book(MARKET).expect("market");
    assert_eq!(order_ids(&book.bids), vec![(0, 99, 5), (2, 98, 5)]);
    assert_eq!(order_ids(&book.asks), vec![(1, 100, 5), (3, 101, 5)]);
}

#[test]
fn self_trade_is_allowed_and_moves_nothing_net() {
    let mut app = app();
    run(&mut app, alice(), place(Side::Sell, 100, 5));
    let receipt = run(&mut app, alice(), place(Side::Buy, 100, 5));
    assert!(receipt.is_success());
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE);
    let book = app.book(MARKET).expect("market");
    assert!(book.bids.is_empty() && book.asks.is_empty());
}

#[test]
fn markets_are_separate() {
    let mut app = app();
    run(&mut app, alice(), place_on(OTHER_MARKET, Side::Sell, 10, 5)); // id 0
    run(&mut app, bob(), place(Side::Buy, 10, 5)); // id 1: BASE market, no match
    assert_eq!(app.book(OTHER_MARKET).expect("market").asks.len(), 1);
    assert_eq!(app.book(MARKET).expect("market").bids.len(), 1);
    run(&mut app, bob(), place_on(OTHER_MARKET, Side::Buy, 10, 5)); // id 2 fills id 0
    assert_eq!(balance(&app, bob(), OTHER), FUNDED_OTHER + 5);
    assert_supply_conserved(&app);
}

#[test]
fn an_order_placed_and_removed_within_one_block_leaves_no_key() {
    let mut app = app();
    let txs = vec![
        tx(alice(), 0, Payload::Single(place(Side::Sell, 100, 5))),
        tx(alice(), 1, Payload::Single(cancel(0))),
        tx(bob(), 0, Payload::Single(place(Side::Buy, 90, 5))),
        tx(carol(), 0, Payload::Single(place(Side::Sell, 90, 5))),
    ];
    let outcome = run_block(&mut app, txs);
    assert!(outcome.receipts.iter().all(|r| r.is_success()));
    let book = app.book(MARKET).expect("market");
    assert!(book.bids.is_empty() && book.asks.is_empty());
    assert_eq!(app.state.root_from_scratch(), app.state_root());
    assert_supply_conserved(&app);
}
