//! One test per rule of Algorithm 1 (line numbers as in the paper), driven through
//! `Core::step` with hand-made inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use basalt_consensus::*;
use basalt_types::{
    Hash, Height, Proposal, Round, Signature, SignedProposal, SignedVote, ValidatorInfo, Vote,
    VoteKind,
};

const A: Hash = Hash([0xAA; 32]);
const B: Hash = Hash([0xBB; 32]);

fn validators(powers: &[u64]) -> ValidatorSet {
    ValidatorSet::new(
        powers
            .iter()
            .enumerate()
            .map(|(i, power)| ValidatorInfo {
                public_key: basalt_types::PublicKey([i as u8; 32]),
                power: *power,
            })
            .collect(),
    )
    .unwrap()
}

fn config(commit_wait_ms: u64) -> Config {
    Config {
        commit_wait_ms,
        ..Config::default()
    }
}

/// Validator 0 of four equal validators, started at height 1 (proposer of h1/r0 is 1).
fn started(me: u16) -> (Core, Vec<Output>) {
    let mut core = Core::new(config(0), validators(&[1, 1, 1, 1]), Some(me));
    let out = core.step(Input::StartHeight(1));
    (core, out)
}

fn vote(kind: VoteKind, height: Height, round: Round, id: Option<Hash>, v: u16) -> Input {
    Input::Vote(SignedVote {
        vote: Vote {
            kind,
            height,
            round,
            block_id: id,
            validator: v,
        },
        signature: Signature([v as u8; 64]),
    })
}

fn proposal(height: Height, round: Round, pol: Option<Round>, id: Hash, by: u16) -> Input {
    Input::Proposal(SignedProposal {
        proposal: Proposal {
            height,
            round,
            pol_round: pol,
            block_id: id,
            proposer: by,
        },
        signature: Signature([by as u8; 64]),
    })
}

fn timeout(kind: TimeoutKind, height: Height, round: Round) -> Input {
    Input::Timeout(Timeout {
        kind,
        height,
        round,
    })
}

fn valid(height: Height, id: Hash, ok: bool) -> Input {
    Input::BlockValidity {
        height,
        block_id: id,
        valid: ok,
    }
}

fn votes_cast(out: &[Output]) -> Vec<(VoteKind, Option<Hash>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Vote(v) => Some((v.kind, v.block_id)),
            _ => None,
        })
        .collect()
}

fn timeouts(out: &[Output]) -> Vec<(TimeoutKind, Round, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::ScheduleTimeout {
                timeout,
                duration_ms,
            } => Some((timeout.kind, timeout.round, *duration_ms)),
            _ => None,
        })
        .collect()
}

fn decided(out: &[Output]) -> Option<basalt_types::CommitCertificate> {
    out.iter().find_map(|o| match o {
        Output::Decide(c) => Some(c.clone()),
        _ => None,
    })
}

/// Feed several inputs, collecting every output.
fn feed(core: &mut Core, inputs: Vec<Input>) -> Vec<Output> {
    inputs.into_iter().flat_map(|i| core.step(i)).collect()
}

/// Drive validator 0 into round `round` of height 1 with a polka for `id` there and a
/// lock on it (lines 36-41).
fn lock_on(core: &mut Core, round: Round, id: Hash) {
    let proposer = core.validators().proposer(1, round);
    feed(
        core,
        vec![proposal(1, round, None, id, proposer), valid(1, id, true)],
    );
    let out = feed(
        core,
        (1..4)
            .map(|v| vote(VoteKind::Prevote, 1, round, Some(id), v))
            .collect(),
    );
    assert!(votes_cast(&out).contains(&(VoteKind::Precommit, Some(id))));
    assert_eq!(core.locked(), Some((round, id)));
}

#[test]
fn line_10_start_schedules_propose_timeout_for_non_proposer() {
    let (core, out) = started(0);
    assert_eq!(core.height(), 1);
    assert_eq!(core.current_step(), Step::Propose);
    assert!(!out.iter().any(|o| matches!(o, Output::GetValue { .. })));
    assert_eq!(timeouts(&out), vec![(TimeoutKind::Propose, 0, 1000)]);
}

#[test]
fn lines_14_19_proposer_asks_for_a_value_and_proposes_it() {
    let (mut core, out) = started(1);
    assert!(out.contains(&Output::GetValue {
        height: 1,
        round: 0
    }));
    let out = core.step(Input::ProposeValue {
        height: 1,
        round: 0,
        block_id: A,
    });
    assert!(out.contains(&Output::Propose(Proposal {
        height: 1,
        round: 0,
        pol_round: None,
        block_id: A,
        proposer: 1
    })));
    // A value for a round it was not asked for is refused.
    let out = core.step(Input::ProposeValue {
        height: 1,
        round: 0,
        block_id: B,
    });
    assert_eq!(out, vec![Output::Dropped(DropReason::Stale)]);
}

#[test]
fn lines_22_24_valid_proposal_gets_a_prevote_after_the_validity_verdict() {
    let (mut core, _) = started(0);
    let out = core.step(proposal(1, 0, None, A, 1));
    assert!(out.contains(&Output::ValidateBlock {
        height: 1,
        round: 0,
        block_id: A
    }));
    assert!(
        votes_cast(&out).is_empty(),
        "no vote before valid(v) is known"
    );
    let out = core.step(valid(1, A, true));
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, Some(A))]);
    assert_eq!(core.current_step(), Step::Prevote);
}

#[test]
fn lines_25_26_invalid_proposal_gets_a_nil_prevote() {
    let (mut core, _) = started(0);
    let out = feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, false)],
    );
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, None)]);
}

#[test]
fn line_23_locked_validator_prevotes_nil_for_another_fresh_value() {
    let (mut core, _) = started(0);
    lock_on(&mut core, 0, A);
    // Round 0 ends without decision; round 1's proposer (2) proposes B fresh.
    core.step(timeout(TimeoutKind::Precommit, 1, 0));
    assert_eq!(core.round(), 1);
    let out = feed(
        &mut core,
        vec![proposal(1, 1, None, B, 2), valid(1, B, true)],
    );
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, None)]);
}

#[test]
fn line_23_switch_off_makes_a_locked_validator_prevote_another_value() {
    let mut core = Core::new(
        Config {
            test_disable_locking: true,
            ..config(0)
        },
        validators(&[1, 1, 1, 1]),
        Some(0),
    );
    core.step(Input::StartHeight(1));
    lock_on(&mut core, 0, A);
    core.step(timeout(TimeoutKind::Precommit, 1, 0));
    let out = feed(
        &mut core,
        vec![proposal(1, 1, None, B, 2), valid(1, B, true)],
    );
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, Some(B))]);
}

#[test]
fn lines_28_30_reproposal_with_a_later_polka_unlocks() {
    let (mut core, _) = started(0);
    lock_on(&mut core, 0, A);
    // Round 1: B gets a polka that validator 0 sees, but no precommit quorum.
    core.step(timeout(TimeoutKind::Precommit, 1, 0));
    feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Prevote, 1, 1, Some(B), v))
            .collect(),
    );
    core.step(timeout(TimeoutKind::Precommit, 1, 1));
    assert_eq!(core.round(), 2);
    // Round 2's proposer (3) re-proposes B with vr = 1 ≥ lockedRound 0: prevote B.
    let out = feed(
        &mut core,
        vec![proposal(1, 2, Some(1), B, 3), valid(1, B, true)],
    );
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, Some(B))]);
}

#[test]
fn lines_29_32_reproposal_older_than_the_lock_gets_nil() {
    let (mut core, _) = started(0);
    // Polka for B in round 0 (validator 0 sees it but had prevoted already: not locked on B).
    feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Prevote, 1, 0, Some(B), v))
            .collect(),
    );
    core.step(timeout(TimeoutKind::Precommit, 1, 0));
    // Round 1: lock on A.
    lock_on(&mut core, 1, A);
    core.step(timeout(TimeoutKind::Precommit, 1, 1));
    // Round 2: B re-proposed with vr = 0 < lockedRound 1: nil.
    let out = feed(
        &mut core,
        vec![proposal(1, 2, Some(0), B, 3), valid(1, B, true)],
    );
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, None)]);
}

#[test]
fn line_28_reproposal_waits_for_the_polka_it_claims() {
    let (mut core, _) = started(0);
    core.step(timeout(TimeoutKind::Precommit, 1, 0));
    let out = feed(
        &mut core,
        vec![proposal(1, 1, Some(0), B, 2), valid(1, B, true)],
    );
    assert!(votes_cast(&out).is_empty(), "no polka in round 0 seen yet");
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Prevote, 1, 0, Some(B), v))
            .collect(),
    );
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, Some(B))]);
}

#[test]
fn lines_34_35_prevote_timeout_scheduled_once_on_mixed_quorum() {
    let (mut core, _) = started(0);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    let out = feed(
        &mut core,
        vec![
            vote(VoteKind::Prevote, 1, 0, Some(A), 0),
            vote(VoteKind::Prevote, 1, 0, None, 1),
            vote(VoteKind::Prevote, 1, 0, Some(B), 2),
        ],
    );
    assert_eq!(timeouts(&out), vec![(TimeoutKind::Prevote, 0, 200)]);
    let out = core.step(vote(VoteKind::Prevote, 1, 0, None, 3));
    assert!(timeouts(&out).is_empty(), "only the first time");
}

#[test]
fn lines_36_43_polka_locks_precommits_and_sets_valid_value() {
    let (mut core, _) = started(0);
    lock_on(&mut core, 0, A);
    assert_eq!(core.valid(), Some((0, A)));
    assert_eq!(core.current_step(), Step::Precommit);
}

#[test]
fn lines_42_43_polka_seen_after_precommit_updates_valid_only() {
    let (mut core, _) = started(0);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    core.step(timeout(TimeoutKind::Prevote, 1, 0));
    assert_eq!(
        core.current_step(),
        Step::Precommit,
        "precommitted nil on timeout"
    );
    feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Prevote, 1, 0, Some(A), v))
            .collect(),
    );
    assert_eq!(core.locked(), None);
    assert_eq!(core.valid(), Some((0, A)));
}

#[test]
fn lines_44_46_nil_polka_precommits_nil() {
    let (mut core, _) = started(0);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, false)],
    );
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Prevote, 1, 0, None, v))
            .collect(),
    );
    assert!(votes_cast(&out).contains(&(VoteKind::Precommit, None)));
}

#[test]
fn lines_47_48_precommit_timeout_on_mixed_precommits() {
    let (mut core, _) = started(0);
    let out = feed(
        &mut core,
        vec![
            vote(VoteKind::Precommit, 1, 0, Some(A), 1),
            vote(VoteKind::Precommit, 1, 0, None, 2),
            vote(VoteKind::Precommit, 1, 0, Some(B), 3),
        ],
    );
    assert_eq!(timeouts(&out), vec![(TimeoutKind::Precommit, 0, 200)]);
    assert!(out.contains(&Output::PrecommitQuorum {
        height: 1,
        round: 0
    }));
}

#[test]
fn lines_49_54_decide_builds_a_certificate_and_starts_the_next_height() {
    let (mut core, _) = started(0);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Precommit, 1, 0, Some(A), v))
            .collect(),
    );
    let certificate = decided(&out).expect("decided");
    assert_eq!(
        (certificate.height, certificate.round, certificate.block_id),
        (1, 0, A)
    );
    let signers: Vec<u16> = certificate.signatures.iter().map(|s| s.validator).collect();
    assert_eq!(signers, vec![1, 2, 3]);
    assert_eq!(core.height(), 2, "commit wait 0: next height at once");
    assert_eq!(core.round(), 0);
}

#[test]
fn line_49_decides_without_a_valid_proposal_only_once_validity_is_known() {
    let (mut core, _) = started(0);
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Precommit, 1, 0, Some(A), v))
            .collect(),
    );
    assert!(decided(&out).is_none(), "no proposal, no decision");
    let out = core.step(proposal(1, 0, None, A, 1));
    assert!(decided(&out).is_none(), "validity unknown");
    let out = core.step(valid(1, A, true));
    assert!(decided(&out).is_some());
}

#[test]
fn a_quorum_of_precommits_for_an_unproposed_block_asks_for_one_fetch() {
    let (mut core, _) = started(0);
    // Two precommits are not a quorum; votes alone never ask for anything.
    feed(
        &mut core,
        (1..3)
            .map(|v| vote(VoteKind::Precommit, 1, 0, Some(A), v))
            .collect(),
    );
    assert_eq!(core.decided_without_proposal(), None);
    core.step(vote(VoteKind::Precommit, 1, 0, Some(A), 3));
    assert_eq!(core.decided_without_proposal(), Some((0, A)));
    // Once the proposal is here the block is known: nothing to fetch, and it decides.
    core.step(proposal(1, 0, None, A, 1));
    assert_eq!(core.decided_without_proposal(), None);
    let out = core.step(valid(1, A, true));
    assert!(decided(&out).is_some());
    assert_eq!(
        core.decided_without_proposal(),
        None,
        "next height: nothing"
    );
}

#[test]
fn line_49_decides_for_an_earlier_round() {
    let (mut core, _) = started(0);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    core.step(timeout(TimeoutKind::Precommit, 1, 0));
    assert_eq!(core.round(), 1);
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Precommit, 1, 0, Some(A), v))
            .collect(),
    );
    assert_eq!(decided(&out).map(|c| c.round), Some(0));
}

#[test]
fn commit_wait_delays_the_next_height() {
    let mut core = Core::new(config(50), validators(&[1, 1, 1, 1]), Some(0));
    core.step(Input::StartHeight(1));
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Precommit, 1, 0, Some(A), v))
            .collect(),
    );
    assert!(decided(&out).is_some());
    assert_eq!(timeouts(&out), vec![(TimeoutKind::Commit, 0, 50)]);
    assert_eq!(core.current_step(), Step::Commit);
    assert_eq!(core.height(), 1);
    core.step(timeout(TimeoutKind::Commit, 1, 0));
    assert_eq!(core.height(), 2);
}

#[test]
fn line_55_f_plus_one_in_a_higher_round_skips_to_it() {
    let (mut core, _) = started(0);
    let out = core.step(vote(VoteKind::Prevote, 1, 3, None, 1));
    assert_eq!(core.round(), 0, "one validator is not f+1");
    assert!(!out.iter().any(|o| matches!(o, Output::NewRound { .. })));
    let out = core.step(vote(VoteKind::Precommit, 1, 3, None, 2));
    assert_eq!(core.round(), 3);
    assert!(out.contains(&Output::NewRound {
        height: 1,
        round: 3
    }));
}

#[test]
fn lines_57_67_timeouts_move_the_round_on_and_grow_with_it() {
    let (mut core, _) = started(0);
    let out = core.step(timeout(TimeoutKind::Propose, 1, 0));
    assert_eq!(votes_cast(&out), vec![(VoteKind::Prevote, None)]);
    let out = core.step(timeout(TimeoutKind::Prevote, 1, 0));
    assert_eq!(votes_cast(&out), vec![(VoteKind::Precommit, None)]);
    let out = core.step(timeout(TimeoutKind::Precommit, 1, 0));
    assert_eq!(core.round(), 1);
    assert_eq!(timeouts(&out), vec![(TimeoutKind::Propose, 1, 1500)]);
    // A stale timeout does nothing.
    let out = core.step(timeout(TimeoutKind::Propose, 1, 0));
    assert_eq!(out, vec![Output::Dropped(DropReason::Stale)]);
}

#[test]
fn proposer_reproposes_its_valid_value_with_pol_round() {
    // Validator 2 proposes round 1 of height 1.
    let (mut core, _) = started(2);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    feed(
        &mut core,
        [0, 1, 3]
            .map(|v| vote(VoteKind::Prevote, 1, 0, Some(A), v))
            .to_vec(),
    );
    assert_eq!(core.valid(), Some((0, A)));
    let out = core.step(timeout(TimeoutKind::Precommit, 1, 0));
    assert!(out.contains(&Output::Propose(Proposal {
        height: 1,
        round: 1,
        pol_round: Some(0),
        block_id: A,
        proposer: 2
    })));
}

#[test]
fn equivocation_produces_evidence_and_is_not_counted() {
    let (mut core, _) = started(0);
    core.step(vote(VoteKind::Prevote, 1, 0, Some(A), 1));
    let out = core.step(vote(VoteKind::Prevote, 1, 0, Some(B), 1));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Evidence(e) if e.offender() == 1)));
    assert!(out.contains(&Output::Dropped(DropReason::Equivocation)));
    let out = core.step(proposal(1, 0, None, A, 1));
    assert!(!out.iter().any(|o| matches!(o, Output::Evidence(_))));
    let out = core.step(proposal(1, 0, None, B, 1));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Evidence(basalt_types::Evidence::DuplicateProposal { .. })
    )));
}

#[test]
fn future_height_messages_are_buffered_and_replayed() {
    let (mut core, _) = started(0);
    // Height 2 proposal and votes arrive before height 1 is decided.
    let early = feed(
        &mut core,
        vec![
            proposal(2, 0, None, B, 2),
            vote(VoteKind::Precommit, 2, 0, Some(B), 1),
            vote(VoteKind::Precommit, 2, 0, Some(B), 2),
            vote(VoteKind::Precommit, 2, 0, Some(B), 3),
        ],
    );
    assert!(decided(&early).is_none());
    assert_eq!(core.future_buffered(), 4);
    feed(
        &mut core,
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
    );
    let out = feed(
        &mut core,
        (1..4)
            .map(|v| vote(VoteKind::Precommit, 1, 0, Some(A), v))
            .collect(),
    );
    assert!(out.contains(&Output::ValidateBlock {
        height: 2,
        round: 0,
        block_id: B
    }));
    let out = core.step(valid(2, B, true));
    assert_eq!(decided(&out).map(|c| c.height), Some(2));
    assert_eq!(core.height(), 3);
}

#[test]
fn inputs_outside_the_window_or_the_set_are_dropped() {
    let (mut core, _) = started(0);
    assert_eq!(
        core.step(vote(VoteKind::Prevote, 1, 0, None, 9)),
        vec![Output::Dropped(DropReason::UnknownValidator)]
    );
    assert_eq!(
        core.step(vote(VoteKind::Prevote, 9, 0, None, 1)),
        vec![Output::Dropped(DropReason::TooFarFuture)]
    );
    assert_eq!(
        core.step(vote(VoteKind::Prevote, 1, ROUNDS_AHEAD_MAX + 1, None, 1)),
        vec![Output::Dropped(DropReason::TooFarRound)]
    );
    assert_eq!(
        core.step(proposal(1, 0, None, A, 3)),
        vec![Output::Dropped(DropReason::WrongProposer)]
    );
    assert_eq!(
        core.step(vote(VoteKind::Prevote, 0, 0, None, 1)),
        vec![Output::Dropped(DropReason::PastHeight)]
    );
}

#[test]
fn future_buffer_is_bounded_fifo() {
    let (mut core, _) = started(0);
    let mut evicted = 0;
    for i in 0..(FUTURE_MESSAGES_MAX + 10) {
        let round = (i % 16) as Round;
        let v = (i / 16 % 4) as u16;
        let kind = if i / 64 % 2 == 0 {
            VoteKind::Prevote
        } else {
            VoteKind::Precommit
        };
        let out = core.step(vote(kind, 2, round, Some(Hash([i as u8; 32])), v));
        evicted += out
            .iter()
            .filter(|o| **o == Output::Dropped(DropReason::FutureBufferEvicted))
            .count();
    }
    assert_eq!(core.future_buffered(), FUTURE_MESSAGES_MAX);
    assert_eq!(evicted, 10);
}

#[test]
fn single_validator_decides_alone() {
    let mut core = Core::new(config(0), validators(&[5]), Some(0));
    let mut pending = core.step(Input::StartHeight(1));
    let mut heights = 0;
    for _ in 0..100 {
        let Some(output) = pending.first().cloned() else {
            break;
        };
        pending.remove(0);
        let next = match output {
            Output::GetValue { height, round } => Some(Input::ProposeValue {
                height,
                round,
                block_id: Hash([height as u8; 32]),
            }),
            Output::Propose(p) => Some(Input::Proposal(SignedProposal {
                proposal: p,
                signature: Signature::default(),
            })),
            Output::Vote(v) => Some(Input::Vote(SignedVote {
                vote: v,
                signature: Signature::default(),
            })),
            Output::Decide(_) => {
                heights += 1;
                None
            }
            _ => None,
        };
        if let Some(input) = next {
            pending.extend(core.step(input));
        }
    }
    assert!(heights >= 5, "decided {heights} heights");
}

#[test]
fn proposer_rotation_is_weighted_by_power() {
    let equal = validators(&[7, 7, 7, 7]);
    let order: Vec<u16> = (0..8).map(|h| equal.proposer(h, 0)).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 0, 1, 2, 3]);
    assert_eq!(
        equal.proposer(1, 1),
        equal.proposer(2, 0),
        "a round moves one slot"
    );
    let weighted = validators(&[2, 1, 1]);
    let mut counts = [0; 3];
    for h in 0..400 {
        counts[usize::from(weighted.proposer(h, 0))] += 1;
    }
    assert_eq!(counts, [200, 100, 100]);
}

#[test]
fn quorum_arithmetic() {
    let set = validators(&[1, 1, 1, 1]);
    assert!(!set.is_quorum(2));
    assert!(set.is_quorum(3));
    assert!(!set.is_one_third(1));
    assert!(set.is_one_third(2));
    assert!(ValidatorSet::new(vec![]).is_err());
    let big = validators(&[u64::MAX / 2, u64::MAX / 2]);
    assert!(big.is_quorum(u64::MAX - 1));
}

#[test]
fn timeout_takes_effect_agrees_with_step_and_round_view_shows_the_round() {
    // Every timeout kind at the current, a past and a future round, in each step the
    // core passes through: the host's check must predict exactly whether step acts.
    let kinds = [
        TimeoutKind::Propose,
        TimeoutKind::Prevote,
        TimeoutKind::Precommit,
        TimeoutKind::Commit,
    ];
    let stages: Vec<Vec<Input>> = vec![
        vec![],
        vec![proposal(1, 0, None, A, 1), valid(1, A, true)],
        vec![
            proposal(1, 0, None, A, 1),
            valid(1, A, true),
            vote(VoteKind::Prevote, 1, 0, Some(A), 1),
            vote(VoteKind::Prevote, 1, 0, Some(A), 2),
        ],
        vec![
            proposal(1, 0, None, A, 1),
            valid(1, A, true),
            vote(VoteKind::Prevote, 1, 0, Some(A), 1),
            vote(VoteKind::Prevote, 1, 0, Some(A), 2),
            vote(VoteKind::Precommit, 1, 0, Some(A), 1),
            vote(VoteKind::Precommit, 1, 0, Some(A), 2),
        ],
    ];
    let mut acted = 0;
    for stage in &stages {
        for kind in kinds {
            for (height, round) in [(1, 0), (1, 1), (0, 0), (2, 0)] {
                let (mut core, _) = started(0);
                feed(&mut core, stage.clone());
                let t = Timeout {
                    kind,
                    height,
                    round,
                };
                let predicted = core.timeout_takes_effect(&t);
                let out = core.step(Input::Timeout(t));
                let stale = out
                    .iter()
                    .any(|o| matches!(o, Output::Dropped(DropReason::Stale)));
                assert_eq!(predicted, !stale, "{kind:?} at ({height}, {round})");
                acted += usize::from(predicted);
            }
        }
    }
    assert!(acted >= 4, "some timeouts act ({acted})");

    let (mut core, _) = started(0);
    feed(
        &mut core,
        vec![
            proposal(1, 0, None, A, 1),
            vote(VoteKind::Prevote, 1, 0, Some(A), 1),
            vote(VoteKind::Prevote, 1, 0, None, 2),
            vote(VoteKind::Prevote, 1, 0, Some(A), 2),
        ],
    );
    let view = core.round_view(0);
    assert_eq!(view.proposal, Some((1, A)));
    assert_eq!(
        view.prevotes,
        vec![(1, vec![Some(A)]), (2, vec![None, Some(A)])]
    );
    assert!(view.precommits.is_empty());
    let line = view.to_string();
    assert!(line.starts_with("proposal v1:aaaa"), "{line}");
    assert!(line.contains("v2:nil,aaaa"), "{line}");
    assert_eq!(core.round_view(5), RoundView::default());
}
