//! Account proofs against the state root.

use super::*;
use crate::verify_account_proof;

#[test]
fn proofs_verify_for_present_and_absent_accounts() {
    let mut app = app();
    run(&mut app, alice(), transfer(bob(), BASE, 5));
    run(&mut app, alice(), place(Side::Buy, 10, 3));
    let root = app.state_root();

    let (account, proof) = app.account_with_proof(&alice()).expect("proof");
    let account = account.expect("alice exists");
    assert_eq!(account, app.account(&alice()));
    assert!(verify_account_proof(root, &alice(), Some(&account), &proof));
    assert!(!verify_account_proof(root, &alice(), None, &proof));
    assert!(!verify_account_proof(root, &bob(), Some(&account), &proof));

    let mut tampered = account.clone();
    *tampered.balances.entry(BASE).or_insert(0) += 1;
    assert!(!verify_account_proof(
        root,
        &alice(),
        Some(&tampered),
        &proof
    ));
    let mut tampered = account.clone();
    tampered.nonce += 1;
    assert!(!verify_account_proof(
        root,
        &alice(),
        Some(&tampered),
        &proof
    ));

    let (absent, proof) = app.account_with_proof(&stranger()).expect("proof");
    assert_eq!(absent, None);
    assert!(verify_account_proof(root, &stranger(), None, &proof));
    let fake = crate::Account::default();
    assert!(!verify_account_proof(
        root,
        &stranger(),
        Some(&fake),
        &proof
    ));
}

#[test]
fn proofs_are_bound_to_their_root() {
    let mut app = app();
    let (account, proof) = app.account_with_proof(&alice()).expect("proof");
    let old_root = app.state_root();
    run(&mut app, alice(), transfer(bob(), BASE, 5));
    let new_root = app.state_root();
    assert!(verify_account_proof(
        old_root,
        &alice(),
        account.as_ref(),
        &proof
    ));
    assert!(!verify_account_proof(
        new_root,
        &alice(),
        account.as_ref(),
        &proof
    ));
    let (account, proof) = app.account_with_proof(&alice()).expect("proof");
    assert!(verify_account_proof(
        new_root,
        &alice(),
        account.as_ref(),
        &proof
    ));
}

#[test]
fn proofs_survive_many_versions_and_encode() {
    let mut app = app();
    for n in 0..20u8 {
        run(&mut app, alice(), transfer(user(100 + n), QUOTE, 1));
    }
    let root = app.state_root();
    for n in 0..25u8 {
        let address = user(100 + n);
        let (account, proof) = app.account_with_proof(&address).expect("proof");
        assert_eq!(account.is_some(), n < 20);
        let bytes = borsh::to_vec(&proof).expect("encode");
        let decoded: crate::AccountProof = borsh::from_slice(&bytes).expect("decode");
        assert!(verify_account_proof(
            root,
            &address,
            account.as_ref(),
            &decoded
        ));
    }
}
