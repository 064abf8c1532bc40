//! Store round trips, ordering, WAL and signing state durability across reopen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_storage::{BlockRecord, SigningState, Store, StoreError};
use basalt_types::*;

fn block(height: u64, parent: Hash, txs: Vec<SignedTx>) -> Block {
    Block {
        header: BlockHeader {
            height,
            round: 0,
            proposer: 0,
            parent_hash: parent,
            state_root: Hash::ZERO,
            txs_root: block::txs_root(&txs),
            time_ms: height,
            last_commit_hash: Hash::ZERO,
        },
        txs: BoundedVec::new(txs).unwrap(),
        last_commit: None,
    }
}

fn certificate(block: &Block) -> CommitCertificate {
    CommitCertificate {
        height: block.header.height,
        round: 0,
        block_id: block.id(),
        signatures: BoundedVec::empty(),
    }
}

fn receipt(tx: &SignedTx) -> Receipt {
    Receipt {
        tx_hash: tx.hash(),
        status: ReceiptStatus::Success,
        items: BoundedVec::new(vec![ItemResult::Applied { order_id: None }]).unwrap(),
    }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("basalt-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("basalt.redb")
}

#[test]
fn blocks_certificates_receipts_survive_reopen() {
    let path = temp_path("reopen");
    let key = Keypair::from_label("a");
    let tx = SignedTx::sign(
        &key,
        "c",
        0,
        Payload::Single(BatchItem::CancelOrder {
            market: 0,
            order_id: 1,
        }),
    );
    let first = block(1, Hash::ZERO, vec![tx.clone()]);
    let second = block(2, first.id(), vec![]);
    {
        let store = Store::open(&path).unwrap();
        store
            .commit_block(&first, &certificate(&first), &[receipt(&tx)], sha256(b"r1"))
            .unwrap();
        store
            .commit_block(&second, &certificate(&second), &[], sha256(b"r2"))
            .unwrap();
        assert!(matches!(
            store.commit_block(&second, &certificate(&second), &[], Hash::ZERO),
            Err(StoreError::OutOfOrder { last: 2, got: 2 })
        ));
    }
    let store = Store::open(&path).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.last_height().unwrap(), 2);
    assert_eq!(reader.block(1).unwrap(), Some(first.clone()));
    assert_eq!(reader.height_of(&second.id()).unwrap(), Some(2));
    assert_eq!(reader.certificate(2).unwrap(), Some(certificate(&second)));
    assert_eq!(reader.state_root_after(1).unwrap(), Some(sha256(b"r1")));
    let record = reader.tx(&tx.hash()).unwrap().unwrap();
    assert_eq!((record.height, record.index), (1, 0));
    assert_eq!(record.receipt, receipt(&tx));
    let range = reader.blocks_from(1, 10, usize::MAX).unwrap();
    assert_eq!(range.len(), 2);
    assert_eq!(reader.blocks_from(1, 10, 1).unwrap().len(), 1, "byte bound");
}

#[test]
fn wal_is_pruned_by_height_and_signing_state_persists() {
    let path = temp_path("wal");
    {
        let store = Store::open(&path).unwrap();
        store
            .wal_append(&[(1, vec![1]), (1, vec![2, 2]), (2, vec![9])])
            .unwrap();
        store
            .record_signing(
                &[(1, vec![4])],
                &SigningState {
                    height: 1,
                    round: 3,
                    step: 2,
                    value: sha256(b"b"),
                },
            )
            .unwrap();
        store.wal_append(&[(1, vec![3])]).unwrap();
        assert_eq!(
            store.wal(1).unwrap(),
            vec![vec![1], vec![2, 2], vec![4], vec![3]]
        );
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.signing_state().unwrap().unwrap().round, 3);
    assert!(
        store.wal(1).unwrap().len() >= 3,
        "entries up to the fsync survive"
    );
    store.prune_consensus(1).unwrap();
    assert!(store.wal(1).unwrap().is_empty());
    assert_eq!(
        store.wal(2).unwrap(),
        vec![vec![9]],
        "later heights are kept"
    );
    assert_eq!(
        store.signed_at(1).unwrap().len(),
        1,
        "the last height's kept"
    );
    store.prune_consensus(2).unwrap();
    assert!(store.signed_at(1).unwrap().is_empty());
    assert!(store.wal(2).unwrap().is_empty());
}

#[test]
fn a_group_commit_stores_every_block_or_none() {
    let path = temp_path("group");
    let store = Store::open(&path).unwrap();
    let blocks: Vec<Block> = (1..=4).fold(Vec::new(), |mut chain, height| {
        let parent = chain.last().map_or(Hash::ZERO, Block::id);
        chain.push(block(height, parent, vec![]));
        chain
    });
    let certificates: Vec<CommitCertificate> = blocks.iter().map(certificate).collect();
    let record = |i: usize| BlockRecord {
        block: &blocks[i],
        certificate: &certificates[i],
        receipts: &[],
        state_root_after: sha256(&[i as u8]),
    };
    store.commit_blocks(&[record(0), record(1)]).unwrap();
    assert_eq!(store.reader().unwrap().last_height().unwrap(), 2);
    // A gap inside the batch: nothing of it is stored, not even the block before the gap.
    assert!(matches!(
        store.commit_blocks(&[record(2), record(0)]),
        Err(StoreError::OutOfOrder { last: 3, got: 1 })
    ));
    assert_eq!(store.reader().unwrap().last_height().unwrap(), 2);
    assert_eq!(store.reader().unwrap().block(3).unwrap(), None);
    store.commit_blocks(&[]).unwrap();
    store.commit_blocks(&[record(2), record(3)]).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.last_height().unwrap(), 4);
    assert_eq!(reader.block(4).unwrap(), Some(blocks[3].clone()));
    assert_eq!(reader.state_root_after(3).unwrap(), Some(sha256(&[2])));
    assert_eq!(
        reader.certificate(4).unwrap(),
        Some(certificates[3].clone())
    );
}
