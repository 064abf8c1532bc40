//! `cargo bench -p basalt-types`: cost per signature of ed25519 verification, one by one
//! and in batches of several sizes (the node's verification lanes batch what is queued).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use basalt_types::crypto::{verify_batch, Keypair, Signature, VerifyItem};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const DOMAIN: &[u8] = b"basalt/bench/";

/// `count` signatures by distinct signers over distinct 120-byte messages (a transfer's size).
fn signed(count: usize) -> Vec<(basalt_types::crypto::PublicKey, Vec<u8>, Signature)> {
    (0..count)
        .map(|i| {
            let key = Keypair::from_label(&format!("bench-{i}"));
            let message: Vec<u8> = (0..120).map(|b| (b as u8) ^ (i as u8)).collect();
            let signature = key.sign(DOMAIN, &message);
            (key.public(), message, signature)
        })
        .collect()
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    let all = signed(256);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one", |b| {
        let (key, message, signature) = &all[0];
        b.iter(|| assert!(key.verify(DOMAIN, message, signature)))
    });
    for size in [1usize, 4, 8, 16, 32, 64, 128, 256] {
        let items: Vec<VerifyItem<'_>> = all[..size]
            .iter()
            .map(|(key, message, signature)| VerifyItem {
                public_key: key,
                domain: DOMAIN,
                message,
                signature,
            })
            .collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("batch={size}"), |b| {
            b.iter(|| assert!(verify_batch(&items).iter().all(|ok| *ok)))
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
