//! The double-sign guard: the rule that decides whether the validator may sign.
//!
//! Every signed (height, round, step, value) is stored durably before the signature leaves
//! the process. A new message may be signed only if it comes strictly after the last one
//! signed, or is exactly a message signed before (re-sent after a restart, when the
//! write-ahead log replays the height). Anything else — a different value for a (height,
//! round, step) already signed, or a new message before the last one — is refused.

use basalt_storage::SigningState;

/// What the guard says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A new message after everything signed: record it durably, then sign.
    Sign,
    /// Exactly what was signed last: sign again (same bytes), nothing to record.
    SameAgain,
    /// Conflicts with or precedes what was signed: refuse.
    Refuse,
}

/// Decide whether `next` may be signed, given the last signed message and what was signed
/// before for the same (height, round, step), if anything.
pub fn decide(
    last: Option<SigningState>,
    same_slot: Option<basalt_types::Hash>,
    next: SigningState,
) -> Decision {
    if let Some(value) = same_slot {
        return if value == next.value {
            Decision::SameAgain
        } else {
            Decision::Refuse
        };
    }
    let Some(last) = last else {
        return Decision::Sign;
    };
    match (next.height, next.round, next.step).cmp(&(last.height, last.round, last.step)) {
        std::cmp::Ordering::Greater => Decision::Sign,
        std::cmp::Ordering::Equal if next.value == last.value => Decision::SameAgain,
        _ => Decision::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_storage::Store;
    use basalt_types::sha256;

    fn state(height: u64, round: u32, step: u8, value: &[u8]) -> SigningState {
        SigningState {
            height,
            round,
            step,
            value: sha256(value),
        }
    }

    #[test]
    fn a_restarted_validator_refuses_a_conflicting_vote() {
        let dir = std::env::temp_dir().join(format!("basalt-signer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.redb");
        let prevote_a = state(5, 1, 1, b"a");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(
                decide(store.signing_state().unwrap(), None, prevote_a),
                Decision::Sign
            );
            store.record_signing(&[], &prevote_a).unwrap();
            let precommit_a = state(5, 1, 2, b"a");
            store.record_signing(&[], &precommit_a).unwrap();
        }
        // "Restart": a new process opens the same store.
        let store = Store::open(&path).unwrap();
        let last = store.signing_state().unwrap();
        assert_eq!(last, Some(state(5, 1, 2, b"a")));
        let signed: std::collections::HashMap<(u32, u8), basalt_types::Hash> =
            store.signed_at(5).unwrap().into_iter().collect();
        let check =
            |next: SigningState| decide(last, signed.get(&(next.round, next.step)).copied(), next);
        assert_eq!(
            check(state(5, 1, 1, b"b")),
            Decision::Refuse,
            "conflicting prevote"
        );
        assert_eq!(
            check(state(5, 1, 2, b"b")),
            Decision::Refuse,
            "conflicting precommit"
        );
        assert_eq!(
            check(prevote_a),
            Decision::SameAgain,
            "the same prevote again (replay)"
        );
        assert_eq!(
            check(state(5, 1, 2, b"a")),
            Decision::SameAgain,
            "the same precommit again"
        );
        assert_eq!(
            check(state(5, 0, 2, b"a")),
            Decision::Refuse,
            "an earlier round"
        );
        assert_eq!(
            check(state(4, 9, 2, b"a")),
            Decision::Refuse,
            "an earlier height"
        );
        assert_eq!(check(state(5, 2, 0, b"c")), Decision::Sign, "a later round");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
