//! Property tests: random blocks of transfers, orders, cancels, tasks and batches.
//!
//! After every block: supply of every asset conserved, books consistent and never crossed,
//! the incremental root equal to a root rebuilt from scratch (and the tree holding no stale
//! node), receipts well formed; twin apps
//! agree; a different block gives a different root; simulate predicts execution, and its
//! scratch copy ends up exactly as the real state does.

use super::*;
use basalt_types::TxError;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Senders: three funded accounts, one unfunded, the task generator.
const SENDERS: [u8; 5] = [1, 2, 3, 4, 9];

#[derive(Debug, Clone)]
struct TxSpec {
    sender: u8,
    /// 0 for the right nonce; otherwise a stale (-) or future (+) one.
    nonce_skew: i8,
    /// None: single item (the first); Some: a batch.
    mode: Option<BatchMode>,
    items: Vec<BatchItem>,
}

fn item() -> impl Strategy<Value = BatchItem> {
    let address = prop::sample::select(vec![1u8, 2, 3, 4, 9]).prop_map(user);
    let asset = prop::sample::select(vec![BASE, QUOTE, OTHER, 4]);
    let market = prop::sample::select(vec![MARKET, MARKET, MARKET, OTHER_MARKET, 99]);
    let price = prop_oneof![20 => 1u64..12, 1 => Just(0u64)];
    let quantity = prop_oneof![20 => 1u64..60, 1 => Just(0u64)];
    let side = prop::sample::select(vec![Side::Buy, Side::Sell]);
    prop_oneof![
        2 => (address, asset, 0u64..400).prop_map(|(to, asset, amount)| transfer(to, asset, amount)),
        6 => (market.clone(), side, price, quantity).prop_map(|(m, side, price, quantity)| {
            place_on(m, side, price, quantity)
        }),
        2 => (market, 0u64..40).prop_map(|(market, order_id)| BatchItem::CancelOrder {
            market,
            order_id
        }),
        1 => (0u8..3, 0u8..3).prop_map(|(task, payload)| BatchItem::CreateTask {
            task_id: hash(task),
            payload_hash: hash(payload),
        }),
        1 => (0u8..3, 0u8..3).prop_map(|(task, result)| BatchItem::RespondTask {
            task_id: hash(task),
            result_hash: hash(result),
        }),
    ]
}

fn tx_spec() -> impl Strategy<Value = TxSpec> {
    let skew = prop_oneof![12 => Just(0i8), 1 => Just(-1i8), 1 => Just(2i8)];
    let mode = prop_oneof![
        3 => Just(None),
        1 => Just(Some(BatchMode::Atomic)),
        1 => Just(Some(BatchMode::Independent)),
    ];
    (
        prop::sample::select(SENDERS.to_vec()),
        skew,
        mode,
        prop::collection::vec(item(), 1..5),
    )
        .prop_map(|(sender, nonce_skew, mode, items)| TxSpec {
            sender,
            nonce_skew,
            mode,
            items,
        })
}

fn blocks() -> impl Strategy<Value = Vec<Vec<TxSpec>>> {
    prop::collection::vec(prop::collection::vec(tx_spec(), 0..16), 1..8)
}

/// Sign-free transactions for `specs`, with nonces following `app`'s state and each other.
fn build_block(app: &App, specs: &[TxSpec]) -> Vec<SignedTx> {
    let mut next: BTreeMap<PublicKey, u64> = BTreeMap::new();
    specs
        .iter()
        .map(|spec| {
            let sender = user(spec.sender);
            let expected = *next
                .entry(sender)
                .or_insert_with(|| app.account(&sender).nonce);
            let nonce = expected.saturating_add_signed(i64::from(spec.nonce_skew));
            if nonce == expected {
                next.insert(sender, expected + 1);
            }
            let payload = match spec.mode {
                None => Payload::Single(spec.items[0].clone()),
                Some(mode) => batch(mode, spec.items.clone()),
            };
            tx(sender, nonce, payload)
        })
        .collect()
}

fn assert_well_formed(tx: &SignedTx, receipt: &Receipt) {
    assert_eq!(receipt.tx_hash, tx.hash());
    let results = receipt.items.as_slice();
    match &receipt.status {
        ReceiptStatus::Failed(
            TxError::StaleNonce { .. } | TxError::FutureNonce { .. } | TxError::EmptyBatch,
        ) => assert!(results.is_empty()),
        ReceiptStatus::Failed(TxError::BatchFailed) => {
            assert_eq!(results.len(), tx.items().len());
            assert!(results.iter().any(|r| matches!(r, ItemResult::Failed(_))));
            assert!(results
                .iter()
                .all(|r| matches!(r, ItemResult::Failed(_) | ItemResult::RolledBack)));
        }
        ReceiptStatus::Failed(error) => {
            assert_eq!(results, [ItemResult::Failed(error.clone())]);
        }
        ReceiptStatus::Success => {
            assert_eq!(results.len(), tx.items().len());
            assert!(!results.contains(&ItemResult::RolledBack));
        }
    }
}

fn assert_supply_conserved(app: &App) {
    assert_eq!(app.total_supply(BASE), 3 * u128::from(FUNDED_BASE));
    assert_eq!(app.total_supply(QUOTE), 3 * u128::from(FUNDED_QUOTE));
    assert_eq!(app.total_supply(OTHER), 3 * u128::from(FUNDED_OTHER));
    assert_eq!(app.total_supply(4), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_blocks_keep_every_invariant(blocks in blocks()) {
        let mut app = app();
        let mut twin = app.clone();
        for specs in &blocks {
            let txs = build_block(&app, specs);
            let before = app.clone();
            let outcome = run_block(&mut app, txs.clone());
            for (tx, receipt) in txs.iter().zip(&outcome.receipts) {
                assert_well_formed(tx, receipt);
            }
            assert_supply_conserved(&app);
            prop_assert_eq!(app.state.root_from_scratch(), app.state_root());
            prop_assert_eq!(app.state.node_count_from_scratch(), app.tree.node_count());

            let twin_outcome = run_block(&mut twin, txs.clone());
            prop_assert_eq!(&twin_outcome, &outcome);

            // The same block plus one transaction that must change state (a new account's
            // consumed nonce) gives a different root.
            let mut other = before;
            let mut changed = txs;
            changed.push(tx(user(77), 0, Payload::Single(transfer(alice(), BASE, 1))));
            let other_outcome = run_block(&mut other, changed);
            prop_assert_ne!(other_outcome.state_root, outcome.state_root);
        }
    }

    #[test]
    fn simulate_predicts_execution(specs in prop::collection::vec(tx_spec(), 1..30)) {
        let mut app = app();
        for spec in &specs {
            let tx = build_block(&app, std::slice::from_ref(spec)).remove(0);
            let root = app.state_root();
            let simulated = app.simulate(&tx);
            prop_assert_eq!(app.state_root(), root);
            let mut scratch = app.state.scratch_for(&tx);
            prop_assert_eq!(&scratch.execute_tx(&tx), &simulated);
            let executed = run_block(&mut app, vec![tx]).receipts.remove(0);
            prop_assert_eq!(simulated, executed);
            // Everything the scratch copy holds ends up as the real state does.
            for (address, account) in &scratch.accounts {
                prop_assert_eq!(Some(account), app.state.accounts.get(address));
            }
            for (id, market) in &scratch.markets {
                prop_assert_eq!(Some(market), app.state.markets.get(id));
            }
            for (id, task) in &scratch.tasks {
                prop_assert_eq!(Some(task), app.state.tasks.get(id));
            }
            prop_assert_eq!(scratch.next_order_id, app.state.next_order_id);
        }
        assert_supply_conserved(&app);
    }
}
