//! The double-sign guard: the rule that decides whether the validator may sign.
//!
//! The last signed (height, round, step, value) is stored durably before any signature
//! leaves the process. A new message may be signed only if it comes strictly after it,
//! or is exactly the same message again (re-sending after a restart). Anything else —
//! an earlier step, or a different value at the same step — is refused.

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

/// Decide whether `next` may be signed after `last`.
pub fn decide(last: Option<SigningState>, next: SigningState) -> Decision {
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
            assert_eq!(decide(store.signing_state().unwrap(), prevote_a), Decision::Sign);
            store.record_signing(&prevote_a).unwrap();
        }
        // "Restart": a new process opens the same store.
        let store = Store::open(&path).unwrap();
        let last = store.signing_state().unwrap();
        assert_eq!(last, Some(prevote_a));
        assert_eq!(decide(last, state(5, 1, 1, b"b")), Decision::Refuse, "conflicting prevote");
        assert_eq!(decide(last, prevote_a), Decision::SameAgain, "the same prevote again");
        assert_eq!(decide(last, state(5, 0, 2, b"a")), Decision::Refuse, "an earlier round");
        assert_eq!(decide(last, state(4, 9, 2, b"a")), Decision::Refuse, "an earlier height");
        assert_eq!(decide(last, state(5, 1, 2, b"b")), Decision::Sign, "the precommit after");
        assert_eq!(decide(last, state(5, 2, 0, b"c")), Decision::Sign, "a later round");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
