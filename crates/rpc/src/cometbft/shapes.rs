//! CometBFT 0.38 result shapes, rendered from Basalt's records.
//!
//! Conventions (as CometBFT marshals): hashes and addresses upper-case hex, transaction bytes
//! and signatures base64, int64/uint64 as decimal strings, int32/uint32 as numbers, times
//! RFC 3339 with nanoseconds. Where Basalt has no counterpart the field is there with an
//! empty value (`""` for a hash), so strict decoders such as cosmjs's accept it.

use crate::api::{BlockRecord, NodeStatus, Rejection, SyncStatus};
use crate::json::{ErrorBody, ReceiptJson};
use basalt_types::{
    sha256, Block, CommitCertificate, Hash, PublicKey, Receipt, ReceiptStatus, ValidatorInfo,
};
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

/// The CometBFT version `status` reports. cosmjs's `connectComet` picks its client by this
/// prefix ("0.38." → `Comet38Client`), whose shapes are the ones served here.
pub(crate) const COMETBFT_VERSION: &str = "0.38.17";
/// CometBFT 0.38's block protocol version.
const BLOCK_PROTOCOL: &str = "11";
/// CometBFT 0.38's p2p protocol version.
const P2P_PROTOCOL: &str = "8";
/// Codespace of every non-zero result code Basalt sets.
pub(crate) const CODESPACE: &str = "basalt";
/// Result code of a rejection or failure whose snake-case code has no number of its own.
pub(crate) const CODE_OTHER: u32 = 1;
/// The zero time, as CometBFT writes it for an absent vote.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// CometBFT's `BlockIDFlagAbsent`: the validator did not sign.
const FLAG_ABSENT: u8 = 1;
/// CometBFT's `BlockIDFlagCommit`: the validator signed for the block.
const FLAG_COMMIT: u8 = 2;

/// Stable result codes for Basalt's snake-case rejection and failure codes. Append only:
/// clients may match on the numbers.
const RESULT_CODES: [(&str, u32); 23] = [
    ("decode", 2),
    ("wrong_chain_id", 3),
    ("bad_signature", 4),
    ("stale_nonce", 5),
    ("future_nonce", 6),
    ("duplicate", 7),
    ("mempool_full", 8),
    ("too_large", 9),
    ("overloaded", 10),
    ("insufficient_balance", 11),
    ("zero_amount", 12),
    ("overflow", 13),
    ("unknown_asset", 14),
    ("unknown_market", 15),
    ("unknown_order", 16),
    ("not_order_owner", 17),
    ("not_task_generator", 18),
    ("task_exists", 19),
    ("unknown_task", 20),
    ("task_already_answered", 21),
    ("empty_batch", 22),
    ("batch_failed", 23),
    ("congested", 24),
];

/// The result code for a snake-case code ([`CODE_OTHER`] for one not in the table).
pub(crate) fn result_code(code: &str) -> u32 {
    RESULT_CODES
        .iter()
        .find(|(name, _)| *name == code)
        .map_or(CODE_OTHER, |(_, number)| *number)
}

/// Upper-case hex, as CometBFT writes hashes.
pub(crate) fn hash_hex(hash: &Hash) -> String {
    hex::encode_upper(hash.0)
}

/// Upper-case hex, or `""` for Basalt's zero hash (its "none": no parent, no commit).
fn optional_hash_hex(hash: &Hash) -> String {
    if *hash == Hash::ZERO {
        String::new()
    } else {
        hash_hex(hash)
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A validator's CometBFT address: the first 20 bytes of sha256 of its ed25519 key.
pub(crate) fn validator_address(key: &PublicKey) -> String {
    let digest = sha256(&key.0);
    hex::encode_upper(digest.0.get(..20).unwrap_or_default())
}

/// RFC 3339 in UTC with nanoseconds, from ms since the Unix epoch.
pub(crate) fn rfc3339(time_ms: u64) -> String {
    let seconds = time_ms / 1000;
    let millis = time_ms % 1000;
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}000000Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What a block needs from outside itself: the chain id and the validator set.
pub(crate) struct ChainContext<'a> {
    pub(crate) chain_id: &'a str,
    pub(crate) validators: &'a [ValidatorInfo],
}

/// `{hash, parts: {total, hash}}`. Basalt has no part sets: a block is one part whose
/// part-set hash is the block id. The zero hash (no block) is CometBFT's empty id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BlockIdJson {
    hash: String,
    parts: PartsJson,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PartsJson {
    total: u32,
    hash: String,
}

impl BlockIdJson {
    pub(crate) fn new(id: &Hash) -> Self {
        let hash = optional_hash_hex(id);
        let total = u32::from(!hash.is_empty());
        BlockIdJson {
            hash: hash.clone(),
            parts: PartsJson { total, hash },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct VersionJson {
    block: &'static str,
    app: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct HeaderJson {
    version: VersionJson,
    chain_id: String,
    height: String,
    time: String,
    last_block_id: BlockIdJson,
    last_commit_hash: String,
    data_hash: String,
    validators_hash: String,
    next_validators_hash: String,
    consensus_hash: String,
    app_hash: String,
    last_results_hash: String,
    evidence_hash: String,
    proposer_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct CommitSignatureJson {
    block_id_flag: u8,
    validator_address: String,
    timestamp: String,
    signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct CommitJson {
    height: String,
    round: u32,
    block_id: BlockIdJson,
    signatures: Vec<CommitSignatureJson>,
}

impl CommitJson {
    /// CometBFT's empty commit (the last commit of block 1).
    fn empty() -> Self {
        CommitJson {
            height: "0".to_owned(),
            round: 0,
            block_id: BlockIdJson::new(&Hash::ZERO),
            signatures: Vec::new(),
        }
    }

    /// One entry per validator in set order: signers `COMMIT`, the others `ABSENT`. Basalt's
    /// precommits carry no time: a signature's timestamp is the time of the block carrying
    /// the commit.
    fn new(certificate: &CommitCertificate, validators: &[ValidatorInfo], time_ms: u64) -> Self {
        let timestamp = rfc3339(time_ms);
        let signatures = validators
            .iter()
            .enumerate()
            .map(|(index, validator)| {
                let signed = certificate
                    .signatures
                    .iter()
                    .find(|commit| usize::from(commit.validator) == index);
                match signed {
                    Some(commit) => CommitSignatureJson {
                        block_id_flag: FLAG_COMMIT,
                        validator_address: validator_address(&validator.public_key),
                        timestamp: timestamp.clone(),
                        signature: Some(base64(&commit.signature.0)),
                    },
                    None => CommitSignatureJson {
                        block_id_flag: FLAG_ABSENT,
                        validator_address: String::new(),
                        timestamp: ZERO_TIME.to_owned(),
                        signature: None,
                    },
                }
            })
            .collect();
        CommitJson {
            height: certificate.height.to_string(),
            round: certificate.round,
            block_id: BlockIdJson::new(&certificate.block_id),
            signatures,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct DataJson {
    txs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct EvidenceJson {
    evidence: Vec<Value>,
}

/// A CometBFT block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BlockJson {
    header: HeaderJson,
    data: DataJson,
    evidence: EvidenceJson,
    last_commit: CommitJson,
}

impl BlockJson {
    /// Basalt's header fields map to CometBFT's: `parent_hash` → `last_block_id`,
    /// `txs_root` → `data_hash`, `state_root` (the state after the parent) → `app_hash`,
    /// `proposer` (an index) → the proposer's address. Basalt has no validators, consensus,
    /// results or evidence hashes: those are `""`.
    pub(crate) fn new(block: &Block, chain: &ChainContext<'_>) -> Self {
        let header = &block.header;
        let proposer_address = chain
            .validators
            .get(usize::from(header.proposer))
            .map_or_else(
                || hex::encode_upper([0u8; 20]),
                |validator| validator_address(&validator.public_key),
            );
        let last_commit = block
            .last_commit
            .as_ref()
            .map_or_else(CommitJson::empty, |c| {
                CommitJson::new(c, chain.validators, header.time_ms)
            });
        BlockJson {
            header: HeaderJson {
                version: VersionJson {
                    block: BLOCK_PROTOCOL,
                    app: "0",
                },
                chain_id: chain.chain_id.to_owned(),
                height: header.height.to_string(),
                time: rfc3339(header.time_ms),
                last_block_id: BlockIdJson::new(&header.parent_hash),
                last_commit_hash: optional_hash_hex(&header.last_commit_hash),
                data_hash: optional_hash_hex(&header.txs_root),
                validators_hash: String::new(),
                next_validators_hash: String::new(),
                consensus_hash: String::new(),
                app_hash: optional_hash_hex(&header.state_root),
                last_results_hash: String::new(),
                evidence_hash: String::new(),
                proposer_address,
            },
            data: DataJson {
                txs: block.txs.iter().map(|tx| base64(&tx.to_bytes())).collect(),
            },
            evidence: EvidenceJson {
                evidence: Vec::new(),
            },
            last_commit,
        }
    }
}

/// `block` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BlockResult {
    block_id: BlockIdJson,
    block: BlockJson,
}

impl BlockResult {
    pub(crate) fn new(record: &BlockRecord, chain: &ChainContext<'_>) -> Self {
        BlockResult {
            block_id: BlockIdJson::new(&record.block.id()),
            block: BlockJson::new(&record.block, chain),
        }
    }
}

/// ABCI `ExecTxResult` / `CheckTx` response. Every field is always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TxResultJson {
    code: u32,
    data: String,
    log: String,
    info: String,
    gas_wanted: String,
    gas_used: String,
    events: Vec<Value>,
    codespace: String,
}

impl TxResultJson {
    fn with(code: u32, data: String, log: String) -> Self {
        TxResultJson {
            code,
            codespace: if code == 0 {
                String::new()
            } else {
                CODESPACE.to_owned()
            },
            data,
            log,
            info: String::new(),
            gas_wanted: "0".to_owned(),
            gas_used: "0".to_owned(),
            events: Vec::new(),
        }
    }

    /// Admitted (or an empty result).
    pub(crate) fn ok() -> Self {
        Self::with(0, String::new(), String::new())
    }

    /// Refused: the number of its code, and `code: message` in `log`.
    pub(crate) fn refused(error: &ErrorBody) -> Self {
        let log = format!("{}: {}", error.code, error.message);
        Self::with(result_code(&error.code), String::new(), log)
    }

    /// A rejection by the node.
    pub(crate) fn rejected(rejection: &Rejection) -> Self {
        Self::refused(&ErrorBody::from(rejection))
    }

    /// An executed transaction: code 0 when it took effect, else the number of its error;
    /// `data` the receipt's canonical (borsh) bytes, base64; `log` the receipt as Basalt's
    /// JSON (item results included).
    pub(crate) fn executed(receipt: &Receipt) -> Self {
        let code = match &receipt.status {
            ReceiptStatus::Success => 0,
            ReceiptStatus::Failed(error) => result_code(error.code()),
        };
        let log = serde_json::to_string(&ReceiptJson::from(receipt)).unwrap_or_default();
        Self::with(code, base64(&basalt_types::encode(receipt)), log)
    }

    pub(crate) fn code(&self) -> u32 {
        self.code
    }
}

/// `broadcast_tx_sync` / `broadcast_tx_async` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BroadcastResult {
    code: u32,
    data: String,
    log: String,
    codespace: String,
    hash: String,
}

impl BroadcastResult {
    pub(crate) fn new(check: TxResultJson, hash: &Hash) -> Self {
        BroadcastResult {
            code: check.code,
            data: check.data,
            log: check.log,
            codespace: check.codespace,
            hash: hash_hex(hash),
        }
    }
}

/// `broadcast_tx_commit` result. A refused transaction has `check_tx.code` non-zero, an
/// empty `tx_result` and height `"0"`, as in CometBFT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BroadcastCommitResult {
    check_tx: TxResultJson,
    tx_result: TxResultJson,
    hash: String,
    height: String,
}

impl BroadcastCommitResult {
    pub(crate) fn refused(check: TxResultJson, hash: &Hash) -> Self {
        BroadcastCommitResult {
            check_tx: check,
            tx_result: TxResultJson::ok(),
            hash: hash_hex(hash),
            height: "0".to_owned(),
        }
    }

    pub(crate) fn committed(hash: &Hash, height: u64, receipt: &Receipt) -> Self {
        BroadcastCommitResult {
            check_tx: TxResultJson::ok(),
            tx_result: TxResultJson::executed(receipt),
            hash: hash_hex(hash),
            height: height.to_string(),
        }
    }
}

/// `tx` result (`proof` is never included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TxResult {
    hash: String,
    height: String,
    index: u32,
    tx_result: TxResultJson,
    tx: String,
}

impl TxResult {
    pub(crate) fn new(
        hash: &Hash,
        height: u64,
        index: u32,
        receipt: &Receipt,
        tx_bytes: &[u8],
    ) -> Self {
        TxResult {
            hash: hash_hex(hash),
            height: height.to_string(),
            index,
            tx_result: TxResultJson::executed(receipt),
            tx: base64(tx_bytes),
        }
    }
}

/// What `status` reports about block 1 (the earliest block: Basalt keeps every block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Earliest {
    block_id: Hash,
    app_hash: Hash,
    time_ms: u64,
}

impl Earliest {
    pub(crate) fn of(block: &Block) -> Self {
        Earliest {
            block_id: block.id(),
            app_hash: block.header.state_root,
            time_ms: block.header.time_ms,
        }
    }
}

/// `status` result.
pub(crate) fn status_result(status: &NodeStatus, earliest: Option<&Earliest>) -> Value {
    let own = status
        .validator_index
        .and_then(|index| status.validators.get(usize::from(index)));
    // A node outside the validator set reports a zero key with no power.
    let (key, power) = own.map_or((PublicKey([0; 32]), 0), |validator| {
        (validator.public_key, validator.power)
    });
    let (earliest_hash, earliest_app_hash, earliest_height, earliest_time) = match earliest {
        Some(earliest) => (
            hash_hex(&earliest.block_id),
            hash_hex(&earliest.app_hash),
            "1",
            rfc3339(earliest.time_ms),
        ),
        None => (String::new(), String::new(), "0", rfc3339(0)),
    };
    json!({
        "node_info": {
            "protocol_version": { "p2p": P2P_PROTOCOL, "block": BLOCK_PROTOCOL, "app": "0" },
            // CometBFT ids are 20 bytes of lower-case hex; Basalt's node id is a libp2p peer
            // id, so this is derived from it, and the peer id itself is the moniker.
            "id": hex::encode(sha256(status.node_id.as_bytes()).0.get(..20).unwrap_or_default()),
            // Basalt nodes talk libp2p; there is no CometBFT p2p listener to name.
            "listen_addr": "tcp://0.0.0.0:0",
            "network": status.chain_id,
            "version": COMETBFT_VERSION,
            "channels": "",
            "moniker": if status.node_id.is_empty() { "basalt" } else { status.node_id.as_str() },
            "other": { "tx_index": "on", "basalt_round": status.round.to_string() },
        },
        "sync_info": {
            "latest_block_hash": hash_hex(&status.latest_block_id),
            "latest_app_hash": hash_hex(&status.latest_state_root),
            "latest_block_height": status.height.to_string(),
            "latest_block_time": rfc3339(status.latest_time_ms),
            "earliest_block_hash": earliest_hash,
            "earliest_app_hash": earliest_app_hash,
            "earliest_block_height": earliest_height,
            "earliest_block_time": earliest_time,
            "catching_up": status.sync == SyncStatus::Syncing,
        },
        "validator_info": {
            "address": validator_address(&key),
            "pub_key": { "type": "tendermint/PubKeyEd25519", "value": base64(&key.0) },
            "voting_power": power.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn times_are_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123000000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999000000Z");
        // Far past any real clock, and still no panic.
        assert!(rfc3339(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn result_codes_are_distinct_and_non_zero() {
        let mut numbers: Vec<u32> = RESULT_CODES.iter().map(|(_, number)| *number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), RESULT_CODES.len());
        assert!(numbers.iter().all(|number| *number > CODE_OTHER));
        assert_eq!(result_code("bad_signature"), 4);
        assert_eq!(result_code("something_new"), CODE_OTHER);
        assert_eq!(result_code(basalt_types::TxError::BatchFailed.code()), 23);
    }

    #[test]
    fn addresses_are_20_bytes_of_sha256() {
        let key = PublicKey([1; 32]);
        let address = validator_address(&key);
        assert_eq!(address.len(), 40);
        assert_eq!(address, hex::encode_upper(&sha256(&[1; 32]).0[..20]));
    }

    #[test]
    fn empty_block_id_is_cometbfts() {
        assert_eq!(
            serde_json::to_value(BlockIdJson::new(&Hash::ZERO)).unwrap(),
            json!({"hash": "", "parts": {"total": 0, "hash": ""}})
        );
        let id = Hash([0xcd; 32]);
        assert_eq!(
            serde_json::to_value(BlockIdJson::new(&id)).unwrap(),
            json!({"hash": "CD".repeat(32), "parts": {"total": 1, "hash": "CD".repeat(32)}})
        );
    }
}
