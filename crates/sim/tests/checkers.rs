//! The simulator's acceptance runs, and proof that each checker can fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_sim::{run_seed, run_seeds, SimConfig};

fn faulty(validators: usize, byzantine: usize) -> SimConfig {
    SimConfig {
        validators,
        byzantine,
        loss_permille: 200,
        partitions: true,
        crashes: true,
        ..SimConfig::default()
    }
}

fn assert_clean(config: &SimConfig, seeds: u64) {
    let summary = run_seeds(config, 0, seeds);
    assert_eq!(summary.seeds, seeds);
    assert_eq!(
        (
            summary.safety_violations,
            summary.liveness_failures,
            summary.root_mismatches,
            summary.double_signs
        ),
        (0, 0, 0, 0),
        "failing seeds: {:?}",
        summary.failing_seeds
    );
    assert!(
        summary.heights_committed >= seeds * 5,
        "only {} heights over {seeds} seeds",
        summary.heights_committed
    );
}

#[test]
fn four_validators_one_byzantine_200_seeds() {
    assert_clean(&faulty(4, 1), 200);
}

#[test]
fn seven_validators_two_byzantine_200_seeds() {
    assert_clean(&faulty(7, 2), 200);
}

#[test]
fn same_seed_same_trace() {
    let config = faulty(4, 1);
    let first = run_seeds(&config, 10, 6);
    let second = run_seeds(&config, 10, 6);
    assert_eq!(first.trace_hash, second.trace_hash);
    let one = run_seed(&config, 3);
    assert_eq!(one.trace_hash, run_seed(&config, 3).trace_hash);
    assert_ne!(one.trace_hash, run_seed(&config, 4).trace_hash);
}

#[test]
fn safety_checker_catches_a_core_without_the_locking_rule() {
    let mut config = faulty(4, 1);
    config.consensus.test_disable_locking = true;
    let summary = run_seeds(&config, 0, 400);
    assert!(
        summary.safety_violations > 0,
        "no safety violation found in 400 seeds with locking disabled"
    );
    // The same seeds with the rule in place are safe.
    config.consensus.test_disable_locking = false;
    for seed in summary.failing_seeds.iter().take(5) {
        assert_eq!(run_seed(&config, *seed).safety_violations, 0, "seed {seed}");
    }
}

#[test]
fn root_checker_catches_a_non_deterministic_app() {
    let config = SimConfig {
        test_planted_nondeterminism: true,
        ..SimConfig::default()
    };
    let outcome = run_seed(&config, 1);
    assert!(outcome.root_mismatches > 0, "{outcome:?}");
    let clean = run_seed(&SimConfig::default(), 1);
    assert_eq!(clean.root_mismatches, 0);
}

#[test]
fn double_sign_checker_catches_a_validator_that_forgets_what_it_signed() {
    let mut config = faulty(4, 0);
    config.test_planted_amnesia = true;
    let summary = run_seeds(&config, 0, 200);
    assert!(
        summary.double_signs > 0,
        "no double sign found in 200 seeds with amnesia planted"
    );
    config.test_planted_amnesia = false;
    assert_eq!(run_seeds(&config, 0, 200).double_signs, 0);
}
