//! The validator set: quorum arithmetic and proposer rotation weighted by power.

use basalt_types::limits::VALIDATORS_MAX;
use basalt_types::{Height, Round, ValidatorIndex, ValidatorInfo};

/// Why a validator list is not a usable validator set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidatorSetError {
    /// No validators.
    Empty,
    /// More than [`VALIDATORS_MAX`].
    TooMany,
    /// A validator with zero power.
    ZeroPower,
    /// Total power does not fit in a u64.
    PowerOverflow,
}

impl std::error::Error for ValidatorSetError {}

impl std::fmt::Display for ValidatorSetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A validator set with its total power and a rotation schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<ValidatorInfo>,
    total_power: u64,
    /// Powers divided by their greatest common divisor: the rotation's slot counts.
    slots: Vec<u64>,
    slots_total: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl ValidatorSet {
    /// Check and wrap a validator list.
    pub fn new(validators: Vec<ValidatorInfo>) -> Result<ValidatorSet, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > VALIDATORS_MAX {
            return Err(ValidatorSetError::TooMany);
        }
        let mut total: u64 = 0;
        let mut divisor = 0;
        for validator in &validators {
            if validator.power == 0 {
                return Err(ValidatorSetError::ZeroPower);
            }
            total = total
                .checked_add(validator.power)
                .ok_or(ValidatorSetError::PowerOverflow)?;
            divisor = gcd(divisor, validator.power);
        }
        let slots: Vec<u64> = validators.iter().map(|v| v.power / divisor).collect();
        Ok(ValidatorSet {
            slots_total: total / divisor,
            validators,
            total_power: total,
            slots,
        })
    }

    /// The validators, by index.
    pub fn validators(&self) -> &[ValidatorInfo] {
        &self.validators
    }

    /// Number of validators.
    pub fn len(&self) -> usize {
        self.validators.len()
    }

    /// Always false: a validator set is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Power of one validator (0 if the index is unknown).
    pub fn power(&self, index: ValidatorIndex) -> u64 {
        self.validators
            .get(usize::from(index))
            .map_or(0, |v| v.power)
    }

    /// Sum of all powers.
    pub fn total_power(&self) -> u64 {
        self.total_power
    }

    /// More than 2/3 of the total power (2f+1).
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power) * 2
    }

    /// More than 1/3 of the total power (f+1): at least one honest validator.
    pub fn is_one_third(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power)
    }

    /// The proposer of (height, round): a weighted round robin over slots in which each
    /// validator holds power/gcd consecutive slots, advancing one slot per height and per
    /// round. Equal powers give plain round robin; every validator proposes in proportion
    /// to its power.
    pub fn proposer(&self, height: Height, round: Round) -> ValidatorIndex {
        let position = height.wrapping_add(u64::from(round)) % self.slots_total;
        let mut cumulative = 0u64;
        for (index, slots) in self.slots.iter().enumerate() {
            cumulative += slots;
            if position < cumulative {
                return index as ValidatorIndex;
            }
        }
        0
    }
}
