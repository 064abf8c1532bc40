//! Queue-full paths return what they allocated (seed 001's review found a leak exactly
//! there). Every byte allocated in this test binary is counted; a burst of large consensus
//! messages is pushed at full queues — the verification queue, the driver's queue and the
//! pending buffer — and the live allocation afterwards must be what it was before the burst
//! (plus the queues' own fixed contents).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_node::driver::DriverInput;
use basalt_node::messages::ConsensusMessage;
use basalt_node::pending::{PendingBuffer, PENDING_MAX};
use basalt_types::{
    BatchItem, Block, BlockHeader, BoundedVec, Hash, Keypair, Payload, Proposal, SignedTx,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A proposal whose block carries `txs` transactions (a few hundred KB with 1,000).
fn big_proposal(round: u32, txs: usize) -> ConsensusMessage {
    let key = Keypair::from_seed([3; 32]);
    let txs: Vec<SignedTx> = (0..txs)
        .map(|i| {
            let transfer = BatchItem::Transfer {
                to: key.public(),
                asset: 0,
                amount: 1,
            };
            SignedTx::sign(&key, "flood", i as u64, Payload::Single(transfer))
        })
        .collect();
    let block = Block {
        header: BlockHeader {
            height: 7,
            round,
            proposer: 0,
            parent_hash: Hash::ZERO,
            state_root: Hash::ZERO,
            txs_root: basalt_types::block::txs_root(&txs),
            time_ms: 1,
            last_commit_hash: Hash::ZERO,
        },
        txs: BoundedVec::new(txs).unwrap(),
        last_commit: None,
    };
    let proposal = Proposal {
        height: 7,
        round,
        pol_round: None,
        block_id: block.id(),
        proposer: 0,
    }
    .sign(&key);
    ConsensusMessage::Proposal {
        proposal,
        block: Box::new(block),
    }
}

fn live_bytes(region: &Region<'_, System>) -> isize {
    let stats = region.change();
    // stats_alloc counts a reallocation's growth in bytes_allocated (and its shrinkage in
    // bytes_deallocated) as well as in bytes_reallocated: the first two suffice.
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

#[test]
fn full_queues_and_a_full_pending_buffer_free_what_was_pushed_at_them() {
    let template = big_proposal(0, 1_000);
    let message_bytes = basalt_types::encode(&template).len();
    assert!(message_bytes > 100_000, "{message_bytes}");

    // Queues as the node builds them, filled to capacity.
    let (verify, _verify_rx) = crossbeam_channel::bounded::<ConsensusMessage>(4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (driver, _driver_rx) = tokio::sync::mpsc::channel::<DriverInput>(4);
    let peer = basalt_p2p::PeerId::random();
    let mut pending = PendingBuffer::new(PENDING_MAX);
    for _ in 0..4 {
        verify.try_send(template.clone()).unwrap();
        driver
            .try_send(DriverInput::Consensus(template.clone(), peer))
            .unwrap();
    }
    for _ in 0..PENDING_MAX {
        pending.push(ConsensusMessage::Vote(
            basalt_types::Vote {
                kind: basalt_types::VoteKind::Prevote,
                height: 9,
                round: 0,
                block_id: None,
                validator: 0,
            }
            .sign(&Keypair::from_seed([1; 32])),
        ));
    }

    let region = Region::new(GLOBAL);
    let before = live_bytes(&region);
    let mut refused = 0;
    let mut evicted = 0;
    for i in 0..200 {
        // Each message is a fresh allocation of > 100 KB.
        if verify.try_send(big_proposal(i, 1_000)).is_err() {
            refused += 1;
        }
        if driver
            .try_send(DriverInput::Consensus(big_proposal(i, 1_000), peer))
            .is_err()
        {
            refused += 1;
        }
        // A full pending buffer evicts the oldest: the buffer stays at its bound, and what
        // it evicts is freed (dropped here).
        if pending.push(big_proposal(i, 10)).is_some() {
            evicted += 1;
        }
    }
    let after = live_bytes(&region);
    assert_eq!(refused, 400, "full queues refuse");
    assert_eq!(evicted, 200);
    assert_eq!(pending.len(), PENDING_MAX);
    // The pending buffer now holds 200 small proposals instead of 200 votes; nothing else
    // may remain: 400 refused messages of > 100 KB would be > 40 MB.
    let growth = after - before;
    assert!(
        growth < 2 * 1024 * 1024,
        "{growth} bytes still allocated after the burst (message {message_bytes} bytes)"
    );
    drop(runtime);
}
