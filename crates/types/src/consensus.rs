//! Consensus messages: proposals, votes, commit certificates and equivocation evidence.

use crate::codec::{encode, BoundedVec};
use crate::crypto::{sha256, Hash, Keypair, Signature, VerifyItem};
use crate::genesis::ValidatorInfo;
use crate::limits::VALIDATORS_MAX;
use crate::tx::ValidatorIndex;
use crate::{Height, Round};
use borsh::{BorshDeserialize, BorshSerialize};

/// Domain separation prefix for vote signatures.
pub const VOTE_SIGN_DOMAIN: &[u8] = b"basalt/vote/v1\0";
/// Domain separation prefix for proposal signatures.
pub const PROPOSAL_SIGN_DOMAIN: &[u8] = b"basalt/proposal/v1\0";

/// Prevote or precommit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum VoteKind {
    /// First voting step.
    Prevote = 0,
    /// Second voting step; 2f+1 for one block commits it.
    Precommit = 1,
}

/// A vote, before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block voted for, or `None` for nil.
    pub block_id: Option<Hash>,
    /// The voter's index in the validator set.
    pub validator: ValidatorIndex,
}

impl Vote {
    /// Sign this vote.
    pub fn sign(self, keypair: &Keypair) -> SignedVote {
        let signature = keypair.sign(VOTE_SIGN_DOMAIN, &encode(&self));
        SignedVote {
            vote: self,
            signature,
        }
    }
}

/// A vote with its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    /// The vote.
    pub vote: Vote,
    /// ed25519 over `VOTE_SIGN_DOMAIN ‖ borsh(vote)`.
    pub signature: Signature,
}

impl SignedVote {
    /// Check the signature against the validator set.
    pub fn verify(&self, validators: &[ValidatorInfo]) -> bool {
        validators
            .get(usize::from(self.vote.validator))
            .is_some_and(|v| {
                v.public_key
                    .verify(VOTE_SIGN_DOMAIN, &encode(&self.vote), &self.signature)
            })
    }
}

/// A proposal for a block at (height, round). The block travels beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The round in which this block got 2f+1 prevotes, when re-proposed (Algorithm 1's vr).
    pub pol_round: Option<Round>,
    /// The proposed block's id.
    pub block_id: Hash,
    /// The proposer's index.
    pub proposer: ValidatorIndex,
}

impl Proposal {
    /// Sign this proposal.
    pub fn sign(self, keypair: &Keypair) -> SignedProposal {
        let signature = keypair.sign(PROPOSAL_SIGN_DOMAIN, &encode(&self));
        SignedProposal {
            proposal: self,
            signature,
        }
    }
}

/// A proposal with its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct SignedProposal {
    /// The proposal.
    pub proposal: Proposal,
    /// ed25519 over `PROPOSAL_SIGN_DOMAIN ‖ borsh(proposal)`.
    pub signature: Signature,
}

impl SignedProposal {
    /// Check the signature against the validator set.
    pub fn verify(&self, validators: &[ValidatorInfo]) -> bool {
        validators
            .get(usize::from(self.proposal.proposer))
            .is_some_and(|v| {
                v.public_key.verify(
                    PROPOSAL_SIGN_DOMAIN,
                    &encode(&self.proposal),
                    &self.signature,
                )
            })
    }
}

/// One precommit signature inside a commit certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct CommitSignature {
    /// Who signed.
    pub validator: ValidatorIndex,
    /// Their precommit signature for (height, round, block_id).
    pub signature: Signature,
}

/// Proof that a block was committed: precommits for it from more than 2/3 of the power.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct CommitCertificate {
    /// Height.
    pub height: Height,
    /// Round of the precommits.
    pub round: Round,
    /// The committed block.
    pub block_id: Hash,
    /// The precommit signatures, in validator order.
    pub signatures: BoundedVec<CommitSignature, VALIDATORS_MAX>,
}

/// Why a commit certificate does not prove a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// A signer is not in the validator set.
    #[error("unknown validator {0}")]
    UnknownValidator(ValidatorIndex),
    /// A validator appears twice.
    #[error("duplicate signature of validator {0}")]
    Duplicate(ValidatorIndex),
    /// A signature does not verify.
    #[error("bad signature of validator {0}")]
    BadSignature(ValidatorIndex),
    /// The signers hold at most 2/3 of the power.
    #[error("not enough voting power")]
    NotEnoughPower,
}

impl CommitCertificate {
    /// Hash of the canonical encoding.
    pub fn hash(&self) -> Hash {
        sha256(&encode(self))
    }

    /// The precommit vote that signer `validator` signed.
    pub fn vote_of(&self, validator: ValidatorIndex) -> Vote {
        Vote {
            kind: VoteKind::Precommit,
            height: self.height,
            round: self.round,
            block_id: Some(self.block_id),
            validator,
        }
    }

    /// Check signers, duplicates, power and (when `check_signatures`) every signature.
    pub fn verify(
        &self,
        validators: &[ValidatorInfo],
        check_signatures: bool,
    ) -> Result<(), CertificateError> {
        let total: u128 = validators.iter().map(|v| u128::from(v.power)).sum();
        let mut seen = vec![false; validators.len()];
        let mut power: u128 = 0;
        let mut messages = Vec::with_capacity(self.signatures.len());
        for commit in self.signatures.iter() {
            let index = usize::from(commit.validator);
            let (Some(validator), Some(seen_flag)) = (validators.get(index), seen.get_mut(index))
            else {
                return Err(CertificateError::UnknownValidator(commit.validator));
            };
            if *seen_flag {
                return Err(CertificateError::Duplicate(commit.validator));
            }
            *seen_flag = true;
            power += u128::from(validator.power);
            messages.push(encode(&self.vote_of(commit.validator)));
        }
        if power * 3 <= total * 2 {
            return Err(CertificateError::NotEnoughPower);
        }
        if check_signatures {
            let items: Vec<VerifyItem<'_>> = self
                .signatures
                .iter()
                .zip(&messages)
                .filter_map(|(commit, message)| {
                    let validator = validators.get(usize::from(commit.validator))?;
                    Some(VerifyItem {
                        public_key: &validator.public_key,
                        domain: VOTE_SIGN_DOMAIN,
                        message,
                        signature: &commit.signature,
                    })
                })
                .collect();
            let results = crate::crypto::verify_batch(&items);
            for (commit, ok) in self.signatures.iter().zip(results) {
                if !ok {
                    return Err(CertificateError::BadSignature(commit.validator));
                }
            }
        }
        Ok(())
    }
}

/// Proof that a validator signed two conflicting messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum Evidence {
    /// Two different votes of one kind for one (height, round) by one validator.
    DuplicateVote {
        /// First vote seen.
        first: SignedVote,
        /// Conflicting vote.
        second: SignedVote,
    },
    /// Two different proposals for one (height, round) by the proposer.
    DuplicateProposal {
        /// First proposal seen.
        first: SignedProposal,
        /// Conflicting proposal.
        second: SignedProposal,
    },
}

impl Evidence {
    /// The validator that equivocated.
    pub fn offender(&self) -> ValidatorIndex {
        match self {
            Evidence::DuplicateVote { first, .. } => first.vote.validator,
            Evidence::DuplicateProposal { first, .. } => first.proposal.proposer,
        }
    }
}
