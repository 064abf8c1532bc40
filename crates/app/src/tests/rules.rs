//! Genesis, heights, admission (chain id, nonce), transfers, check_tx and simulate.

use super::*;
use crate::AppError;
use basalt_types::TxError::*;

#[test]
fn genesis_state_matches_the_file() {
    let app = app();
    assert_eq!(app.chain_id(), CHAIN);
    assert_eq!(app.height(), 0);
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    assert_eq!(app.account(&alice()).nonce, 0);
    assert_eq!(app.account(&stranger()), Default::default());
    assert_eq!(app.total_supply(BASE), 3 * u128::from(FUNDED_BASE));
    assert_eq!(app.total_supply(99), 0);
    let book = app.book(MARKET).expect("market exists");
    assert!(book.bids.is_empty() && book.asks.is_empty());
    assert_eq!((book.base, book.quote), (BASE, QUOTE));
    assert!(app.book(99).is_none());
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

/// The genesis root pins the tree layout and the encoding of every record: if this changes,
/// every deployed chain's state root changes with it.
#[test]
fn genesis_root_is_pinned() {
    assert_eq!(
        app().state_root().to_hex(),
        "9c6d4fa109ac1aebd8356f1cade32f53ab52e4f31a8de4d61ee6a619b139e02b"
    );
}

#[test]
fn genesis_errors() {
    let check = |edit: &dyn Fn(&mut Genesis), expect: &dyn Fn(&AppError) -> bool| {
        let mut genesis = genesis();
        edit(&mut genesis);
        match App::from_genesis(&genesis) {
            Err(error) => assert!(expect(&error), "unexpected error {error}"),
            Ok(_) => panic!("genesis should be refused"),
        }
    };
    check(&|g| g.chain_id.clear(), &|e| {
        matches!(e, AppError::EmptyChainId)
    });
    check(&|g| g.chain_id = "x".repeat(65), &|e| {
        matches!(e, AppError::ChainIdTooLong { len: 65, max: 64 })
    });
    check(&|g| g.assets.push(BASE), &|e| {
        matches!(e, AppError::DuplicateAsset(BASE))
    });
    check(
        &|g| g.accounts.push(g.accounts[0].clone()),
        &|e| matches!(e, AppError::DuplicateAccount(a) if *a == alice()),
    );
    check(
        &|g| g.accounts[1].balances.push((BASE, 1)),
        &|e| matches!(e, AppError::DuplicateBalance { account, asset: BASE } if *account == bob()),
    );
    check(&|g| g.accounts[0].balances.push((77, 1)), &|e| {
        matches!(e, AppError::UnknownAccountAsset { asset: 77, .. })
    });
    check(&|g| g.markets[0].quote = 77, &|e| {
        matches!(
            e,
            AppError::UnknownMarketAsset {
                market: MARKET,
                asset: 77
            }
        )
    });
    check(&|g| g.markets[0].quote = BASE, &|e| {
        matches!(e, AppError::MarketSameAsset(MARKET))
    });
    check(&|g| g.markets[1].id = MARKET, &|e| {
        matches!(e, AppError::DuplicateMarket(MARKET))
    });
    check(&|g| g.task_generators.push(generator()), &|e| {
        matches!(e, AppError::DuplicateTaskGenerator(_))
    });
    check(&|g| g.accounts[2].balances[0].1 = u64::MAX, &|e| {
        matches!(e, AppError::SupplyOverflow(BASE))
    });
}

#[test]
fn genesis_zero_balances_are_not_stored() {
    let mut genesis = genesis();
    genesis.accounts.push(AccountGenesis {
        address: stranger(),
        balances: vec![(BASE, 0)],
    });
    let app = App::from_genesis(&genesis).expect("valid");
    assert!(app.account(&stranger()).balances.is_empty());
    let (account, _) = app.account_with_proof(&stranger()).expect("proof");
    assert_eq!(account, Some(Default::default()));
}

#[test]
fn blocks_must_come_in_height_order() {
    let mut app = app();
    assert!(matches!(
        app.execute_block(2, &[]),
        Err(AppError::WrongHeight { last: 0, got: 2 })
    ));
    assert!(matches!(
        app.execute_block(0, &[]),
        Err(AppError::WrongHeight { last: 0, got: 0 })
    ));
    let genesis_root = app.state_root();
    let outcome = app.execute_block(1, &[]).expect("empty block");
    assert!(outcome.receipts.is_empty());
    assert_eq!(app.height(), 1);
    // An empty block changes nothing, so the root stays; so does the next.
    assert_eq!(outcome.state_root, genesis_root);
    run_block(&mut app, vec![]);
    assert_eq!(app.state_root(), genesis_root);
    assert_eq!(app.state.node_count_from_scratch(), app.tree.node_count());
    assert!(matches!(
        app.execute_block(2, &[]),
        Err(AppError::WrongHeight { last: 2, got: 2 })
    ));
}

#[test]
fn wrong_chain_id_fails_without_consuming_the_nonce() {
    let mut app = app();
    let root = app.state_root();
    let foreign = tx_on(
        "other-chain",
        alice(),
        0,
        Payload::Single(transfer(bob(), BASE, 1)),
    );
    let outcome = run_block(&mut app, vec![foreign.clone()]);
    let receipt = &outcome.receipts[0];
    assert_eq!(receipt.status, failed(WrongChainId));
    assert!(receipt.items.is_empty());
    assert_eq!(receipt.tx_hash, foreign.hash());
    assert_eq!(app.account(&alice()).nonce, 0);
    assert_eq!(app.state_root(), root);
}

#[test]
fn stale_and_future_nonces_fail_without_consuming() {
    let mut app = app();
    let receipt = run(&mut app, alice(), transfer(bob(), BASE, 1));
    assert!(receipt.is_success());
    assert_eq!(app.account(&alice()).nonce, 1);
    let root = app.state_root();
    let stale = tx(alice(), 0, Payload::Single(transfer(bob(), BASE, 1)));
    let future = tx(alice(), 5, Payload::Single(transfer(bob(), BASE, 1)));
    let outcome = run_block(&mut app, vec![stale, future]);
    assert_eq!(
        outcome.receipts[0].status,
        failed(StaleNonce {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        outcome.receipts[1].status,
        failed(FutureNonce {
            expected: 1,
            got: 5
        })
    );
    assert!(outcome.receipts.iter().all(|r| r.items.is_empty()));
    assert_eq!(app.account(&alice()).nonce, 1);
    assert_eq!(balance(&app, bob(), BASE), FUNDED_BASE + 1);
    assert_eq!(app.state_root(), root);
}

#[test]
fn nonce_is_consumed_when_the_payload_fails() {
    let mut app = app();
    let root = app.state_root();
    let receipt = run(&mut app, alice(), transfer(bob(), BASE, FUNDED_BASE + 1));
    let error = InsufficientBalance {
        asset: BASE,
        needed: FUNDED_BASE + 1,
        available: FUNDED_BASE,
    };
    assert_eq!(receipt.status, failed(error.clone()));
    assert_eq!(results(&receipt), vec![ItemResult::Failed(error)]);
    assert_eq!(app.account(&alice()).nonce, 1);
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    assert_ne!(app.state_root(), root, "the nonce is part of the state");
}

#[test]
fn pipelined_nonces_survive_a_failed_transaction() {
    let mut app = app();
    let txs = vec![
        tx(alice(), 0, Payload::Single(transfer(bob(), BASE, 1))),
        tx(alice(), 1, Payload::Single(transfer(bob(), 99, 1))),
        tx(alice(), 2, Payload::Single(transfer(bob(), BASE, 2))),
    ];
    let outcome = run_block(&mut app, txs);
    let statuses: Vec<_> = outcome.receipts.iter().map(|r| r.status.clone()).collect();
    assert_eq!(
        statuses,
        vec![
            ReceiptStatus::Success,
            failed(UnknownAsset(99)),
            ReceiptStatus::Success
        ]
    );
    assert_eq!(app.account(&alice()).nonce, 3);
    assert_eq!(balance(&app, bob(), BASE), FUNDED_BASE + 3);
}

#[test]
fn transfers() {
    let mut app = app();
    let receipt = run(&mut app, alice(), transfer(bob(), QUOTE, 250));
    assert!(receipt.is_success());
    assert_eq!(results(&receipt), vec![applied(None)]);
    assert_eq!(balance(&app, alice(), QUOTE), FUNDED_QUOTE - 250);
    assert_eq!(balance(&app, bob(), QUOTE), FUNDED_QUOTE + 250);

    let receipt = run(&mut app, alice(), transfer(bob(), QUOTE, 0));
    assert_eq!(receipt.status, failed(ZeroAmount));
    let receipt = run(&mut app, alice(), transfer(bob(), 99, 1));
    assert_eq!(receipt.status, failed(UnknownAsset(99)));

    // To oneself: allowed, changes no balance, still needs the funds.
    let receipt = run(&mut app, alice(), transfer(alice(), BASE, FUNDED_BASE));
    assert!(receipt.is_success());
    assert_eq!(balance(&app, alice(), BASE), FUNDED_BASE);
    let receipt = run(&mut app, alice(), transfer(alice(), BASE, FUNDED_BASE + 1));
    assert!(matches!(
        receipt.status,
        ReceiptStatus::Failed(InsufficientBalance { .. })
    ));

    // To a new account: it is created; emptying an account removes the zero balance.
    let receipt = run(&mut app, bob(), transfer(stranger(), OTHER, FUNDED_OTHER));
    assert!(receipt.is_success());
    assert_eq!(balance(&app, stranger(), OTHER), FUNDED_OTHER);
    assert!(!app.account(&bob()).balances.contains_key(&OTHER));
    for asset in [BASE, QUOTE, OTHER] {
        assert_eq!(app.state.total_supply(asset), app.total_supply(asset));
    }
    assert_eq!(app.total_supply(OTHER), 3 * u128::from(FUNDED_OTHER));
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn an_unfunded_sender_consumes_its_nonce() {
    let mut app = app();
    let receipt = run(&mut app, stranger(), transfer(bob(), BASE, 1));
    assert!(matches!(
        receipt.status,
        ReceiptStatus::Failed(InsufficientBalance { .. })
    ));
    assert_eq!(app.account(&stranger()).nonce, 1);
    assert_eq!(app.state.root_from_scratch(), app.state_root());
}

#[test]
fn check_tx_paths() {
    let mut app = app();
    run(&mut app, alice(), transfer(bob(), BASE, 1));
    let payload = Payload::Single(transfer(bob(), BASE, 1));
    assert_eq!(app.check_tx(&tx(alice(), 1, payload.clone())), Ok(()));
    assert_eq!(app.check_tx(&tx(alice(), 9, payload.clone())), Ok(()));
    assert_eq!(
        app.check_tx(&tx(alice(), 0, payload.clone())),
        Err(StaleNonce {
            expected: 1,
            got: 0
        })
    );
    assert_eq!(
        app.check_tx(&tx_on("elsewhere", alice(), 1, payload.clone())),
        Err(WrongChainId)
    );
    let empty = batch(BatchMode::Independent, vec![]);
    assert_eq!(app.check_tx(&tx(alice(), 1, empty)), Err(EmptyBatch));
    // Payload validity is execution's business, not admission's.
    let broke = Payload::Single(transfer(bob(), BASE, u64::MAX));
    assert_eq!(app.check_tx(&tx(alice(), 1, broke)), Ok(()));
}

#[test]
fn largest_possible_transaction_is_admitted() {
    // Bounded collections cap a transaction well under TX_BYTES_MAX, so `TooLarge` cannot be
    // produced through the typed API; check that the largest one passes.
    let items: Vec<_> = (0..basalt_types::limits::BATCH_ITEMS_MAX)
        .map(|n| BatchItem::CreateTask {
            task_id: hash(n as u8),
            payload_hash: hash(0),
        })
        .collect();
    let big = tx(generator(), 0, batch(BatchMode::Independent, items));
    assert!(big.to_bytes().len() <= basalt_types::limits::TX_BYTES_MAX);
    assert_eq!(app().check_tx(&big), Ok(()));
}

#[test]
fn empty_batch_fails_and_consumes_the_nonce() {
    let mut app = app();
    for mode in [BatchMode::Atomic, BatchMode::Independent] {
        let nonce = app.account(&alice()).nonce;
        let receipt = run_payload(&mut app, alice(), batch(mode, vec![]));
        assert_eq!(receipt.status, failed(EmptyBatch));
        assert!(receipt.items.is_empty());
        assert_eq!(app.account(&alice()).nonce, nonce + 1);
    }
}

#[test]
fn simulate_matches_execution_and_changes_nothing() {
    let mut app = app();
    run(&mut app, bob(), place(Side::Sell, 100, 10));
    let root = app.state_root();
    let cases: Vec<SignedTx> = vec![
        tx(alice(), 0, Payload::Single(transfer(bob(), BASE, 5))),
        tx(
            alice(),
            0,
            Payload::Single(transfer(bob(), BASE, FUNDED_BASE * 2)),
        ),
        tx(alice(), 0, Payload::Single(place(Side::Buy, 120, 4))),
        tx(alice(), 1, Payload::Single(transfer(bob(), BASE, 5))),
        tx(alice(), 0, Payload::Single(cancel(0))),
        tx(stranger(), 0, Payload::Single(transfer(bob(), BASE, 5))),
        tx(
            alice(),
            0,
            batch(
                BatchMode::Atomic,
                vec![
                    place(Side::Buy, 100, 3),
                    cancel(1),
                    transfer(carol(), QUOTE, 7),
                ],
            ),
        ),
    ];
    for case in cases {
        let simulated = app.simulate(&case);
        assert_eq!(app.state_root(), root);
        let mut copy = app.clone();
        let executed = run_block(&mut copy, vec![case]).receipts.remove(0);
        assert_eq!(simulated, executed);
    }
    assert_eq!(app.account(&alice()).nonce, 0);
}
