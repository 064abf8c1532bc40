//! Basalt's durable stores on redb.
//!
//! One file holds blocks, the certificates that committed them, receipts, the transaction
//! index, the post-state root of every height, the validator's signing state and the
//! consensus write-ahead log (WAL) of the current height.
//!
//! Guarantees:
//! - [`Store::commit_block`] writes a decided block with everything derived from it in one
//!   write transaction, fsynced before it returns: after `kill -9`, a block is either wholly
//!   there or wholly absent.
//! - [`Store::record_signing`] is fsynced before it returns, and it also makes durable every
//!   WAL entry appended before it; the node calls it *before* a vote or proposal leaves
//!   the process, so a restart can never sign something conflicting.
//! - Readers ([`Store::reader`]) see a consistent snapshot and never wait for the writer
//!   (redb MVCC), so RPC reads cannot delay the chain worker.
//!
//! Not done here: state (the application rebuilds it by replaying blocks; see the node).

use basalt_types::{
    codec::{decode, encode},
    limits::BLOCK_BYTES_MAX,
    Block, CommitCertificate, Hash, Receipt, SignedTx,
};
use borsh::{BorshDeserialize, BorshSerialize};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_IDS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_ids");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const ROOTS: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("state_roots");
/// Where each committed transaction is: hash → (height, index in its block). The
/// transaction itself is read from its block: a transaction is stored once.
const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("tx_index");
/// Receipts by (height, index): appended in key order, so a block's receipts dirty only the
/// right edge of the tree (hash-keyed records dirtied one random page per transaction).
const RECEIPTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("receipts");
const SIGNING: TableDefinition<&str, &[u8]> = TableDefinition::new("signing");
const WAL: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("wal");
/// Every message signed, by (height, round, step): the signed value. Kept for the current
/// and previous height so that a restart may re-send exactly what it signed before.
const SIGNED: TableDefinition<(u64, u32, u8), &[u8; 32]> = TableDefinition::new("signed");

/// Largest stored record (a block with its certificate), used as the decode bound.
const RECORD_BYTES_MAX: usize = BLOCK_BYTES_MAX * 2;

/// A storage failure. Every variant means the node cannot trust its disk and must stop.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("database: {0}")]
    Database(String),
    /// Stored bytes do not decode: the file is corrupt or from another version.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt {
        /// Which table.
        table: &'static str,
        /// Decode error.
        reason: String,
    },
    /// A block was committed out of order.
    #[error("block {got} committed after {last}")]
    OutOfOrder {
        /// Last stored height.
        last: u64,
        /// Height offered.
        got: u64,
    },
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Database(error.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

fn corrupt(table: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.to_string(),
    }
}

fn decode_record<T: BorshDeserialize>(table: &'static str, bytes: &[u8]) -> Result<T> {
    decode(bytes, RECORD_BYTES_MAX).map_err(|e| corrupt(table, e))
}

/// A committed transaction: where it is and what it did.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxRecord {
    /// Height of its block.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// The transaction.
    pub tx: SignedTx,
    /// Its receipt.
    pub receipt: Receipt,
}

/// The last thing this validator signed: the guard against double signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SigningState {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// 0 proposal, 1 prevote, 2 precommit (the order in which a round signs).
    pub step: u8,
    /// What was signed: the block id, or zero for nil.
    pub value: Hash,
}

/// Page cache of the database.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The durable store of one node.
pub struct Store {
    db: Database,
    /// Next WAL sequence number (global across heights, so append order is kept).
    wal_sequence: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (or create) the store at `path`, creating every table.
    pub fn open(path: &Path) -> Result<Store> {
        // redb's default page cache is 1 GiB: a node would look like it leaks until it
        // reached it. Bound it (reads of recent blocks and the WAL are what it serves).
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?;
        txn.open_table(BLOCK_IDS)?;
        txn.open_table(CERTIFICATES)?;
        txn.open_table(ROOTS)?;
        txn.open_table(TX_INDEX)?;
        txn.open_table(RECEIPTS)?;
        txn.open_table(SIGNING)?;
        txn.open_table(WAL)?;
        txn.open_table(SIGNED)?;
        txn.commit()?;
        let mut next = 0;
        {
            let txn = db.begin_read()?;
            let wal = txn.open_table(WAL)?;
            for entry in wal.iter()? {
                let (key, _) = entry?;
                next = next.max(key.value().1 + 1);
            }
        }
        Ok(Store {
            db,
            wal_sequence: std::sync::atomic::AtomicU64::new(next),
        })
    }

    /// Persist a decided block, its certificate, receipts (indexing every transaction) and
    /// the state root after it, and clear the WAL, in one fsynced transaction.
    pub fn commit_block(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        receipts: &[Receipt],
        state_root_after: Hash,
    ) -> Result<()> {
        let height = block.header.height;
        let last = self.last_height()?;
        if height != last + 1 {
            return Err(StoreError::OutOfOrder { last, got: height });
        }
        let txn = self.db.begin_write()?;
        {
            txn.open_table(BLOCKS)?
                .insert(height, encode(block).as_slice())?;
            txn.open_table(BLOCK_IDS)?.insert(&block.id().0, height)?;
            txn.open_table(CERTIFICATES)?
                .insert(height, encode(certificate).as_slice())?;
            txn.open_table(ROOTS)?.insert(height, &state_root_after.0)?;
            if receipts.len() != block.txs.len() {
                return Err(corrupt("receipts", "one receipt per transaction expected"));
            }
            let mut index_table = txn.open_table(TX_INDEX)?;
            let mut receipts_table = txn.open_table(RECEIPTS)?;
            for (index, receipt) in receipts.iter().enumerate() {
                let index =
                    u32::try_from(index).map_err(|_| corrupt("receipts", "index beyond u32"))?;
                index_table.insert(&receipt.tx_hash.0, (height, index))?;
                receipts_table.insert((height, index), encode(receipt).as_slice())?;
            }
            txn.open_table(WAL)?
                .retain(|(entry_height, _), _| entry_height > height)?;
            txn.open_table(SIGNED)?
                .retain(|(signed_height, _, _), _| signed_height >= height)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Append consensus inputs (opaque bytes) of `height` to the WAL without fsync: they
    /// become durable with the next [`Store::record_signing`] or [`Store::commit_block`].
    /// Losing them in a crash is safe, because nothing was signed on their account yet.
    /// Committing the block at a height clears that height's entries (and older ones).
    pub fn wal_append(&self, height: u64, entries: &[Vec<u8>]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut wal = txn.open_table(WAL)?;
            for entry in entries {
                let sequence = self
                    .wal_sequence
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                wal.insert((height, sequence), entry.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The WAL entries of `height`, in append order.
    pub fn wal(&self, height: u64) -> Result<Vec<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let wal = txn.open_table(WAL)?;
        let mut entries = Vec::new();
        for entry in wal.range((height, 0)..=(height, u64::MAX))? {
            let (_, value) = entry?;
            entries.push(value.value().to_vec());
        }
        Ok(entries)
    }

    /// Durably record what is about to be signed (and every WAL entry before it). Call
    /// before the signature leaves the process.
    pub fn record_signing(&self, state: &SigningState) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(SIGNING)?
            .insert("last", encode(state).as_slice())?;
        txn.open_table(SIGNED)?
            .insert((state.height, state.round, state.step), &state.value.0)?;
        txn.commit()?;
        Ok(())
    }

    /// Everything signed at `height`: (round, step) → value.
    pub fn signed_at(&self, height: u64) -> Result<Vec<((u32, u8), Hash)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SIGNED)?;
        let mut out = Vec::new();
        for entry in table.range((height, 0, 0)..=(height, u32::MAX, u8::MAX))? {
            let (key, value) = entry?;
            let (_, round, step) = key.value();
            out.push(((round, step), Hash(*value.value())));
        }
        Ok(out)
    }

    /// The last signing state, if this validator ever signed.
    pub fn signing_state(&self) -> Result<Option<SigningState>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SIGNING)?;
        let value = table.get("last")?;
        value
            .map(|v| decode_record("signing", v.value()))
            .transpose()
    }

    /// Highest stored height (0 when empty).
    pub fn last_height(&self) -> Result<u64> {
        self.reader()?.last_height()
    }

    /// A consistent read-only snapshot.
    pub fn reader(&self) -> Result<StoreReader> {
        Ok(StoreReader {
            txn: self.db.begin_read()?,
        })
    }
}

/// A read-only snapshot of the store. Cheap to open; hold it only for one request.
pub struct StoreReader {
    txn: redb::ReadTransaction,
}

impl StoreReader {
    /// Highest stored height (0 when empty).
    pub fn last_height(&self) -> Result<u64> {
        let table = self.txn.open_table(BLOCKS)?;
        let last = table.last()?.map_or(0, |(k, _)| k.value());
        Ok(last)
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>> {
        let table = self.txn.open_table(BLOCKS)?;
        let value = table.get(height)?;
        value
            .map(|v| decode_record("blocks", v.value()))
            .transpose()
    }

    /// The height of the block with id `block_id`.
    pub fn height_of(&self, block_id: &Hash) -> Result<Option<u64>> {
        let table = self.txn.open_table(BLOCK_IDS)?;
        let value = table.get(&block_id.0)?;
        Ok(value.map(|v| v.value()))
    }

    /// The certificate that committed the block at `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>> {
        let table = self.txn.open_table(CERTIFICATES)?;
        let value = table.get(height)?;
        value
            .map(|v| decode_record("certificates", v.value()))
            .transpose()
    }

    /// The state root after executing the block at `height`.
    pub fn state_root_after(&self, height: u64) -> Result<Option<Hash>> {
        let table = self.txn.open_table(ROOTS)?;
        let value = table.get(height)?;
        Ok(value.map(|v| Hash(*v.value())))
    }

    /// A committed transaction by hash: its place, read from the index, and the
    /// transaction and receipt at that place.
    pub fn tx(&self, hash: &Hash) -> Result<Option<TxRecord>> {
        let place = self
            .txn
            .open_table(TX_INDEX)?
            .get(&hash.0)?
            .map(|v| v.value());
        let Some((height, index)) = place else {
            return Ok(None);
        };
        let receipt: Receipt = match self.txn.open_table(RECEIPTS)?.get((height, index))? {
            Some(v) => decode_record("receipts", v.value())?,
            None => return Err(corrupt("receipts", "indexed transaction without receipt")),
        };
        let tx = self
            .block(height)?
            .and_then(|block| block.txs.as_slice().get(index as usize).cloned())
            .ok_or_else(|| corrupt("tx_index", "indexed transaction not in its block"))?;
        Ok(Some(TxRecord {
            height,
            index,
            tx,
            receipt,
        }))
    }

    /// Blocks with their certificates from `from` on, at most `count` of them and at most
    /// `bytes_max` encoded bytes (at least one block is returned if any exists).
    pub fn blocks_from(
        &self,
        from: u64,
        count: usize,
        bytes_max: usize,
    ) -> Result<Vec<(Block, CommitCertificate)>> {
        let blocks = self.txn.open_table(BLOCKS)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in blocks.range(from..)?.take(count) {
            let (height, value) = entry?;
            bytes += value.value().len();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            let block: Block = decode_record("blocks", value.value())?;
            let certificate = self
                .certificate(height.value())?
                .ok_or_else(|| corrupt("certificates", "missing certificate"))?;
            out.push((block, certificate));
        }
        Ok(out)
    }
}
