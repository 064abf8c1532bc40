//! Basalt's durable stores on redb.
//!
//! Two files (seed 000's lock split): the chain database holds blocks, the certificates that
//! committed them, receipts, the transaction index and the post-state root of every height;
//! the consensus database (`<name>-consensus.redb` beside it) holds the validator's signing
//! state and the consensus write-ahead log (WAL) of the current height. redb allows one
//! writer per database: with one file, every vote's durable record waited for the block
//! commit under way (16 ms at the median under 1,200 tx/s), and so did the vote.
//!
//! Guarantees:
//! - [`Store::commit_block`] writes a decided block with everything derived from it in one
//!   write transaction, fsynced before it returns: after `kill -9`, a block is either wholly
//!   there or wholly absent.
//! - [`Store::record_signing`] writes the WAL entries it is given and the signing state in
//!   one transaction, fsynced before it returns, which also makes durable every WAL entry
//!   appended before it; the node calls it *before* a vote or proposal leaves the process,
//!   so a restart can never sign something conflicting.
//! - Neither waits for the other: they are different databases.
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

/// Page cache of the chain database.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// Page cache of the consensus database (the WAL of one height and the signing state).
pub const CONSENSUS_CACHE_BYTES: usize = 1024 * 1024;

/// One WAL entry to append: (height, opaque bytes).
pub type WalEntry = (u64, Vec<u8>);

/// One decided block for [`Store::commit_blocks`].
#[derive(Debug, Clone, Copy)]
pub struct BlockRecord<'a> {
    /// The block.
    pub block: &'a Block,
    /// The certificate that committed it.
    pub certificate: &'a CommitCertificate,
    /// One receipt per transaction, in block order.
    pub receipts: &'a [Receipt],
    /// The state root after executing it.
    pub state_root_after: Hash,
}

/// The durable store of one node.
pub struct Store {
    /// Blocks, certificates, receipts, the transaction index, state roots.
    db: Database,
    /// Signing state, signed messages, the WAL: written on the consensus path.
    consensus: Database,
    /// Next WAL sequence number (global across heights, so append order is kept).
    wal_sequence: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (or create) the store at `path` (the chain database) and its consensus database
    /// beside it ([`consensus_path`]), creating every table. A store written before the
    /// split has its signing state and WAL moved over first.
    pub fn open(path: &Path) -> Result<Store> {
        // redb's default page cache is 1 GiB: a node would look like it leaks until it
        // reached it. Bound it (reads of recent blocks are what it serves).
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let consensus = Database::builder()
            .set_cache_size(CONSENSUS_CACHE_BYTES)
            .create(consensus_path(path))?;
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?;
        txn.open_table(BLOCK_IDS)?;
        txn.open_table(CERTIFICATES)?;
        txn.open_table(ROOTS)?;
        txn.open_table(TX_INDEX)?;
        txn.open_table(RECEIPTS)?;
        txn.commit()?;
        let txn = consensus.begin_write()?;
        txn.open_table(SIGNING)?;
        txn.open_table(WAL)?;
        txn.open_table(SIGNED)?;
        txn.commit()?;
        migrate_consensus_tables(&db, &consensus)?;
        let mut next = 0;
        {
            let txn = consensus.begin_read()?;
            let wal = txn.open_table(WAL)?;
            let last = wal.last()?.map(|(key, _)| key.value().1);
            if let Some(last) = last {
                next = last.saturating_add(1);
            }
        }
        Ok(Store {
            db,
            consensus,
            wal_sequence: std::sync::atomic::AtomicU64::new(next),
        })
    }

    /// Persist a decided block, its certificate, receipts (indexing every transaction) and
    /// the state root after it, in one fsynced transaction.
    pub fn commit_block(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        receipts: &[Receipt],
        state_root_after: Hash,
    ) -> Result<()> {
        self.commit_blocks(&[BlockRecord {
            block,
            certificate,
            receipts,
            state_root_after,
        }])
    }

    /// Persist consecutive decided blocks in one fsynced transaction (a group commit: a
    /// node that fell behind pays one fsync for the blocks that queued up, not one each).
    /// All or nothing: a block out of order fails the whole batch and stores none of it.
    pub fn commit_blocks(&self, records: &[BlockRecord<'_>]) -> Result<()> {
        let mut last = self.last_height()?;
        for record in records {
            let height = record.block.header.height;
            if Some(height) != last.checked_add(1) {
                return Err(StoreError::OutOfOrder { last, got: height });
            }
            if record.receipts.len() != record.block.txs.len() {
                return Err(corrupt("receipts", "one receipt per transaction expected"));
            }
            last = height;
        }
        if records.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut block_ids = txn.open_table(BLOCK_IDS)?;
            let mut certificates = txn.open_table(CERTIFICATES)?;
            let mut roots = txn.open_table(ROOTS)?;
            let mut index_table = txn.open_table(TX_INDEX)?;
            let mut receipts_table = txn.open_table(RECEIPTS)?;
            for record in records {
                let block = record.block;
                let height = block.header.height;
                blocks.insert(height, encode(block).as_slice())?;
                block_ids.insert(&block.id().0, height)?;
                certificates.insert(height, encode(record.certificate).as_slice())?;
                roots.insert(height, &record.state_root_after.0)?;
                for (index, receipt) in record.receipts.iter().enumerate() {
                    let index = u32::try_from(index)
                        .map_err(|_| corrupt("receipts", "index beyond u32"))?;
                    index_table.insert(&receipt.tx_hash.0, (height, index))?;
                    receipts_table.insert((height, index), encode(receipt).as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Forget the WAL of heights up to `committed` and signed messages below it (the
    /// previous height's are kept, so a restart may re-send exactly what it signed). Not
    /// fsynced: it becomes durable with the next [`Store::record_signing`]; entries that
    /// come back after a crash are of committed heights, which nothing reads.
    pub fn prune_consensus(&self, committed: u64) -> Result<()> {
        let mut txn = self.consensus.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            txn.open_table(WAL)?
                .retain_in(..=(committed, u64::MAX), |_, _| false)?;
            txn.open_table(SIGNED)?
                .retain_in(..(committed, 0, 0), |_, _| false)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Append consensus inputs (opaque bytes, each with its height) to the WAL without
    /// fsync: they become durable with the next [`Store::record_signing`]. Losing them in a
    /// crash is safe, because nothing was signed on their account yet.
    pub fn wal_append(&self, entries: &[WalEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut txn = self.consensus.begin_write()?;
        txn.set_durability(Durability::None)?;
        self.insert_wal(&txn, entries)?;
        txn.commit()?;
        Ok(())
    }

    fn insert_wal(&self, txn: &redb::WriteTransaction, entries: &[WalEntry]) -> Result<()> {
        let mut wal = txn.open_table(WAL)?;
        for (height, entry) in entries {
            let sequence = self
                .wal_sequence
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            wal.insert((*height, sequence), entry.as_slice())?;
        }
        Ok(())
    }

    /// The WAL entries of `height`, in append order.
    pub fn wal(&self, height: u64) -> Result<Vec<Vec<u8>>> {
        let txn = self.consensus.begin_read()?;
        let wal = txn.open_table(WAL)?;
        let mut entries = Vec::new();
        for entry in wal.range((height, 0)..=(height, u64::MAX))? {
            let (_, value) = entry?;
            entries.push(value.value().to_vec());
        }
        Ok(entries)
    }

    /// Durably record `wal` (the consensus inputs not yet appended) and what is about to be
    /// signed, in one fsynced transaction that also makes every WAL entry appended before
    /// durable. Call before the signature leaves the process.
    pub fn record_signing(&self, wal: &[WalEntry], state: &SigningState) -> Result<()> {
        let txn = self.consensus.begin_write()?;
        self.insert_wal(&txn, wal)?;
        txn.open_table(SIGNING)?
            .insert("last", encode(state).as_slice())?;
        txn.open_table(SIGNED)?
            .insert((state.height, state.round, state.step), &state.value.0)?;
        txn.commit()?;
        Ok(())
    }

    /// Everything signed at `height`: (round, step) → value.
    pub fn signed_at(&self, height: u64) -> Result<Vec<((u32, u8), Hash)>> {
        let txn = self.consensus.begin_read()?;
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
        let txn = self.consensus.begin_read()?;
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

/// Where the consensus database of the store at `path` lives: `<stem>-consensus.redb` in the
/// same directory.
pub fn consensus_path(path: &Path) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "basalt".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-consensus.redb"))
}

/// Move the signing state, signed messages and WAL of a store written before the split
/// from the chain database into the consensus database: copied durably first, then removed,
/// so a crash in between leaves both copies (the next open copies again, the same data).
/// Without this, an upgraded validator would forget what it signed.
fn migrate_consensus_tables(db: &Database, consensus: &Database) -> Result<()> {
    let read = db.begin_read()?;
    match read.open_table(SIGNING) {
        Ok(_) => {}
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let txn = consensus.begin_write()?;
    copy_table(&read, &txn, SIGNING)?;
    copy_table(&read, &txn, SIGNED)?;
    copy_table(&read, &txn, WAL)?;
    txn.commit()?;
    drop(read);
    let txn = db.begin_write()?;
    txn.delete_table(SIGNING)?;
    txn.delete_table(SIGNED)?;
    txn.delete_table(WAL)?;
    txn.commit()?;
    Ok(())
}

/// Copy every entry of `table` from `from` into the same table in `to`.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<()> {
    let source = from.open_table(table)?;
    let mut target = to.open_table(table)?;
    for entry in source.iter()? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("basalt-store-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("basalt.redb")
    }

    fn state(height: u64) -> SigningState {
        SigningState {
            height,
            round: 0,
            step: 1,
            value: Hash([height as u8; 32]),
        }
    }

    /// The lock split: a signature is recorded while the chain database's one writer is
    /// held (as by a block commit under way). With one database this waits forever.
    #[test]
    fn signing_does_not_wait_for_the_chain_writer() {
        let store = std::sync::Arc::new(Store::open(&temp_path("split")).unwrap());
        let held = store.db.begin_write().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        {
            let store = store.clone();
            std::thread::spawn(move || {
                let _ = done.send(store.record_signing(&[(7, vec![1])], &state(7)).is_ok());
            });
        }
        let recorded = finished.recv_timeout(Duration::from_secs(20));
        drop(held);
        assert_eq!(
            recorded,
            Ok(true),
            "record_signing waited for the chain writer"
        );
    }

    /// A store from before the split keeps what it signed (and its WAL) after an upgrade,
    /// and the old tables are gone from the chain database.
    #[test]
    fn signing_state_of_an_older_store_moves_to_the_consensus_database() {
        let path = temp_path("migrate");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(SIGNING)
                .unwrap()
                .insert("last", encode(&state(9)).as_slice())
                .unwrap();
            txn.open_table(SIGNED)
                .unwrap()
                .insert((9, 0, 1), &[9; 32])
                .unwrap();
            txn.open_table(WAL)
                .unwrap()
                .insert((9, 41), [1u8, 2].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.signing_state().unwrap(), Some(state(9)));
        assert_eq!(store.signed_at(9).unwrap(), vec![((0, 1), Hash([9; 32]))]);
        assert_eq!(store.wal(9).unwrap(), vec![vec![1, 2]]);
        // WAL sequence numbers continue after the moved entries.
        store.wal_append(&[(9, vec![3])]).unwrap();
        assert_eq!(store.wal(9).unwrap(), vec![vec![1, 2], vec![3]]);
        let read = store.db.begin_read().unwrap();
        assert!(matches!(
            read.open_table(SIGNING),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        drop(read);
        drop(store);
        // Opening again finds nothing to move and keeps the state.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.signing_state().unwrap(), Some(state(9)));
    }
}
