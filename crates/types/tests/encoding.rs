//! Canonical encoding: round trips, total decoding (typed rejections, never a panic), and
//! a conformance hash that pins the bytes of fixed values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_types::limits::{BATCH_ITEMS_MAX, TX_BYTES_MAX};
use basalt_types::*;
use proptest::prelude::*;

fn key(label: &str) -> Keypair {
    Keypair::from_label(label)
}

fn fixed_tx() -> SignedTx {
    let alice = key("alice");
    let bob = key("bob");
    SignedTx::sign(
        &alice,
        "basalt-test",
        7,
        Payload::Batch {
            mode: BatchMode::Atomic,
            items: BoundedVec::new(vec![
                BatchItem::Transfer {
                    to: bob.public(),
                    asset: 1,
                    amount: 1_000,
                },
                BatchItem::PlaceOrder {
                    market: 2,
                    side: Side::Sell,
                    price_ticks: 105,
                    quantity: 3,
                },
                BatchItem::CancelOrder {
                    market: 2,
                    order_id: 9,
                },
                BatchItem::CreateTask {
                    task_id: sha256(b"task"),
                    payload_hash: sha256(b"payload"),
                },
                BatchItem::RespondTask {
                    task_id: sha256(b"task"),
                    result_hash: sha256(b"result"),
                },
            ])
            .unwrap(),
        },
    )
}

fn fixed_block() -> Block {
    let validator = key("validator-0");
    let txs = vec![fixed_tx()];
    let vote = Vote {
        kind: VoteKind::Precommit,
        height: 41,
        round: 0,
        block_id: Some(sha256(b"parent")),
        validator: 0,
    }
    .sign(&validator);
    let certificate = CommitCertificate {
        height: 41,
        round: 0,
        block_id: sha256(b"parent"),
        signatures: BoundedVec::new(vec![CommitSignature {
            validator: 0,
            signature: vote.signature,
        }])
        .unwrap(),
    };
    Block {
        header: BlockHeader {
            height: 42,
            round: 1,
            proposer: 3,
            parent_hash: sha256(b"parent"),
            state_root: sha256(b"root"),
            txs_root: block::txs_root(&txs),
            time_ms: 1_700_000_000_000,
            last_commit_hash: certificate.hash(),
        },
        txs: BoundedVec::new(txs).unwrap(),
        last_commit: Some(certificate),
    }
}

/// If this test fails, the bytes that are signed, hashed or stored changed: every existing
/// signature, block id and stored block is invalidated. Change the constants only on purpose.
#[test]
fn conformance_hashes_pin_the_encoding() {
    let tx = fixed_tx();
    let block = fixed_block();
    let proposal = Proposal {
        height: 42,
        round: 1,
        pol_round: Some(0),
        block_id: block.id(),
        proposer: 3,
    };
    let receipt = Receipt {
        tx_hash: tx.hash(),
        status: ReceiptStatus::Failed(TxError::BatchFailed),
        items: BoundedVec::new(vec![
            ItemResult::Applied { order_id: Some(4) },
            ItemResult::Failed(TxError::InsufficientBalance {
                asset: 1,
                needed: 10,
                available: 3,
            }),
            ItemResult::RolledBack,
        ])
        .unwrap(),
    };
    let digest = sha256(
        &[
            tx.to_bytes(),
            block.to_bytes(),
            encode(&proposal),
            encode(&receipt),
        ]
        .concat(),
    );
    assert_eq!(
        tx.hash().to_hex(),
        "0a220e43b91a808b6024a97704e62ae5a6510876edc24ad2249e406f70569b80",
        "transaction encoding changed"
    );
    assert_eq!(
        digest.to_hex(),
        "b162127185a61597182add7e0d948fcda86c54688a783fc71ecc1839f209d307",
        "wire encoding changed"
    );
}

#[test]
fn signatures_verify_and_detect_tampering() {
    let mut tx = fixed_tx();
    assert!(tx.verify_signature());
    tx.body.nonce += 1;
    assert!(!tx.verify_signature());
}

#[test]
fn batch_verification_reports_each_bad_item() {
    let txs: Vec<SignedTx> = (0..8)
        .map(|i| {
            SignedTx::sign(
                &key(&format!("k{i}")),
                "c",
                i,
                Payload::Single(BatchItem::CancelOrder {
                    market: 0,
                    order_id: i,
                }),
            )
        })
        .collect();
    let bodies: Vec<Vec<u8>> = txs.iter().map(|t| encode(&t.body)).collect();
    let mut signatures: Vec<Signature> = txs.iter().map(|t| t.signature).collect();
    signatures[5].0[0] ^= 1;
    let items: Vec<crypto::VerifyItem<'_>> = txs
        .iter()
        .zip(&bodies)
        .zip(&signatures)
        .map(|((t, body), signature)| crypto::VerifyItem {
            public_key: &t.body.sender,
            domain: tx::TX_SIGN_DOMAIN,
            message: body,
            signature,
        })
        .collect();
    let results = crypto::verify_batch(&items);
    assert_eq!(results, (0..8).map(|i| i != 5).collect::<Vec<_>>());
}

#[test]
fn decoding_rejects_trailing_bytes_truncation_and_unknown_variants() {
    let bytes = fixed_tx().to_bytes();
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        SignedTx::from_bytes(&longer),
        Err(DecodeError::TrailingBytes(1))
    );
    assert_eq!(
        SignedTx::from_bytes(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Truncated)
    );
    // The payload tag follows chain id (4 + 11), sender (32) and nonce (8).
    let mut unknown = bytes.clone();
    unknown[4 + 11 + 32 + 8] = 9;
    assert!(matches!(
        SignedTx::from_bytes(&unknown),
        Err(DecodeError::UnknownVariant(_))
    ));
    assert!(matches!(
        SignedTx::from_bytes(&vec![0u8; TX_BYTES_MAX + 1]),
        Err(DecodeError::InputTooLarge { .. })
    ));
}

#[test]
fn decoding_rejects_oversize_counts_before_allocating() {
    let bytes = fixed_tx().to_bytes();
    // Batch item count sits right after the payload tag and the mode byte.
    let count_at = 4 + 11 + 32 + 8 + 1 + 1;
    let mut oversize = bytes.clone();
    oversize[count_at..count_at + 4].copy_from_slice(&((BATCH_ITEMS_MAX as u32) + 1).to_le_bytes());
    assert_eq!(
        SignedTx::from_bytes(&oversize),
        Err(DecodeError::TooLong {
            what: "vector",
            len: BATCH_ITEMS_MAX + 1,
            max: BATCH_ITEMS_MAX
        })
    );
    let mut chain_id = bytes;
    chain_id[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        SignedTx::from_bytes(&chain_id),
        Err(DecodeError::TooLong { what: "string", .. })
    ));
}

#[test]
fn block_round_trips_and_roots_match() {
    let block = fixed_block();
    let decoded = Block::from_bytes(&block.to_bytes()).unwrap();
    assert_eq!(decoded, block);
    assert!(decoded.body_matches_header());
    let mut tampered = decoded;
    tampered.txs = BoundedVec::empty();
    assert!(!tampered.body_matches_header());
}

#[test]
fn commit_certificate_verification() {
    let keys: Vec<Keypair> = (0..4).map(|i| key(&format!("validator-{i}"))).collect();
    let validators: Vec<ValidatorInfo> = keys
        .iter()
        .map(|k| ValidatorInfo {
            public_key: k.public(),
            power: 1,
        })
        .collect();
    let block_id = sha256(b"b");
    let sign = |i: usize| CommitSignature {
        validator: i as u16,
        signature: Vote {
            kind: VoteKind::Precommit,
            height: 5,
            round: 2,
            block_id: Some(block_id),
            validator: i as u16,
        }
        .sign(&keys[i])
        .signature,
    };
    let certificate = |signers: Vec<CommitSignature>| CommitCertificate {
        height: 5,
        round: 2,
        block_id,
        signatures: BoundedVec::new(signers).unwrap(),
    };
    assert_eq!(
        certificate(vec![sign(0), sign(1), sign(3)]).verify(&validators, true),
        Ok(())
    );
    assert_eq!(
        certificate(vec![sign(0), sign(1)]).verify(&validators, true),
        Err(consensus::CertificateError::NotEnoughPower)
    );
    assert_eq!(
        certificate(vec![sign(0), sign(1), sign(1)]).verify(&validators, true),
        Err(consensus::CertificateError::Duplicate(1))
    );
    let mut forged = sign(2);
    forged.signature = sign(3).signature;
    assert_eq!(
        certificate(vec![sign(0), sign(1), forged]).verify(&validators, true),
        Err(consensus::CertificateError::BadSignature(2))
    );
}

fn arb_item() -> impl Strategy<Value = BatchItem> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<u32>(), any::<u64>()).prop_map(|(to, asset, amount)| {
            BatchItem::Transfer {
                to: PublicKey(to),
                asset,
                amount,
            }
        }),
        (any::<u32>(), any::<bool>(), any::<u64>(), any::<u64>()).prop_map(
            |(market, buy, price_ticks, quantity)| BatchItem::PlaceOrder {
                market,
                side: if buy { Side::Buy } else { Side::Sell },
                price_ticks,
                quantity,
            }
        ),
        (any::<u32>(), any::<u64>())
            .prop_map(|(market, order_id)| BatchItem::CancelOrder { market, order_id }),
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(t, p)| BatchItem::CreateTask {
            task_id: Hash(t),
            payload_hash: Hash(p)
        }),
        (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(t, r)| BatchItem::RespondTask {
            task_id: Hash(t),
            result_hash: Hash(r)
        }),
    ]
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        arb_item().prop_map(Payload::Single),
        (any::<bool>(), prop::collection::vec(arb_item(), 0..20)).prop_map(|(atomic, items)| {
            Payload::Batch {
                mode: if atomic {
                    BatchMode::Atomic
                } else {
                    BatchMode::Independent
                },
                items: BoundedVec::new(items).unwrap(),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transactions_round_trip(seed in any::<[u8; 32]>(), nonce in any::<u64>(),
                               chain in "[a-z-]{0,64}", payload in arb_payload()) {
        let tx = SignedTx::sign(&Keypair::from_seed(seed), &chain, nonce, payload);
        let bytes = tx.to_bytes();
        let decoded = SignedTx::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&decoded, &tx);
        prop_assert!(decoded.verify_signature());
        prop_assert_eq!(decoded.to_bytes(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignedTx::from_bytes(&bytes);
        let _ = Block::from_bytes(&bytes);
        let _ = decode::<SignedVote>(&bytes, 1024);
        let _ = decode::<SignedProposal>(&bytes, 1024);
        let _ = decode::<Evidence>(&bytes, 1024);
        let _ = decode::<Receipt>(&bytes, 1024);
    }

    #[test]
    fn mutated_transactions_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = fixed_tx().to_bytes();
        let at = index.index(bytes.len());
        bytes[at] = byte;
        if let Ok(tx) = SignedTx::from_bytes(&bytes) {
            // Anything that decodes re-encodes to exactly the same bytes (canonical).
            prop_assert_eq!(tx.to_bytes(), bytes);
        }
    }
}
