//! `cargo bench -p basalt-app`: cost of executing a block (state tree included).
//!
//! Signatures are not part of execution (the node verifies them once, in batches, before),
//! so transactions here carry an empty signature.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use basalt_app::App;
use basalt_types::{
    AccountGenesis, BatchItem, BoundedString, Genesis, MarketGenesis, Payload, PublicKey, Side,
    Signature, SignedTx, TxBody,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const ACCOUNTS: u32 = 20_000;
const BLOCK_TXS: u32 = 1_500;

fn address(n: u32) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[31] = 0xAA;
    PublicKey(bytes)
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: "bench".into(),
        genesis_time_ms: 0,
        validators: Vec::new(),
        assets: vec![0, 1],
        accounts: (0..ACCOUNTS)
            .map(|n| AccountGenesis {
                address: address(n),
                balances: vec![(0, 1_000_000), (1, 1_000_000)],
            })
            .collect(),
        markets: vec![MarketGenesis {
            id: 0,
            base: 0,
            quote: 1,
        }],
        task_generators: Vec::new(),
    }
}

fn tx(sender: u32, item: BatchItem) -> SignedTx {
    SignedTx {
        body: TxBody {
            chain_id: BoundedString::truncating("bench"),
            sender: address(sender),
            nonce: 0,
            payload: Payload::Single(item),
        },
        signature: Signature::default(),
    }
}

/// One block: every sender distinct, so every transaction succeeds at nonce 0.
fn block(order_every: u32) -> Vec<SignedTx> {
    (0..BLOCK_TXS)
        .map(|i| {
            let sender = (i * 7919) % ACCOUNTS;
            let item = if order_every > 0 && i % order_every == 0 {
                BatchItem::PlaceOrder {
                    market: 0,
                    side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
                    price_ticks: 95 + u64::from(i % 10),
                    quantity: 1 + u64::from(i % 5),
                }
            } else {
                BatchItem::Transfer {
                    to: address((sender + 1) % ACCOUNTS),
                    asset: 0,
                    amount: 1,
                }
            };
            tx(sender, item)
        })
        .collect()
}

fn execute(c: &mut Criterion) {
    let app = App::from_genesis(&genesis()).unwrap();
    let mut group = c.benchmark_group("app::execute_block");
    group.throughput(Throughput::Elements(u64::from(BLOCK_TXS)));
    group.sample_size(10);
    for (name, order_every) in [("transfers", 0), ("orders=25%", 4)] {
        let txs = block(order_every);
        group.bench_function(format!("txs={BLOCK_TXS},accounts={ACCOUNTS},{name}"), |b| {
            b.iter_batched(
                || app.clone(),
                |mut app| {
                    let outcome = app.execute_block(1, &txs).unwrap();
                    assert!(outcome.receipts.iter().all(|r| r.is_success()));
                    outcome.state_root
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// The node publishes a snapshot of the application to its RPC after every block: the cost
/// of taking one.
fn snapshot(c: &mut Criterion) {
    let app = App::from_genesis(&genesis()).unwrap();
    c.bench_function(&format!("app::clone,accounts={ACCOUNTS}"), |b| {
        b.iter(|| app.clone())
    });
}

criterion_group!(benches, execute, snapshot);
criterion_main!(benches);
