//! Named maxima for everything that has a length or a count on the wire.
//!
//! Each bound is checked while decoding, before anything is allocated for it.

/// Longest chain id, in bytes. Chain ids are short human names such as `basalt-devnet`.
pub const CHAIN_ID_BYTES_MAX: usize = 64;
/// Most items in one batch transaction. Large enough that a gateway can fold a block
/// interval's worth of one client's operations into one transaction, small enough that a
/// poison item costs at most this many dry runs to find.
pub const BATCH_ITEMS_MAX: usize = 256;
/// Largest encoded signed transaction, in bytes (a full batch of the largest items fits).
pub const TX_BYTES_MAX: usize = 64 * 1024;
/// Most transactions in one block. Sized with the propose timeout: at 15k tx/s and
/// ~10 blocks/s a block carries ~1.5k transactions; this leaves headroom for bursts.
pub const BLOCK_TXS_MAX: usize = 10_000;
/// Largest encoded block, in bytes.
pub const BLOCK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most validators in a validator set (and so most signatures in a commit certificate).
pub const VALIDATORS_MAX: usize = 256;
/// Largest consensus message (vote or proposal without block), in bytes.
pub const CONSENSUS_MESSAGE_BYTES_MAX: usize = 1024;
/// Largest free-form message inside a receipt error, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 256;
