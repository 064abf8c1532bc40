//! The authenticated state tree: a Jellyfish Merkle tree (sha256) over every state key.
//!
//! Keys are `sha256(namespace ‖ id)`; values are the borsh encoding of the record. Only the
//! latest version is kept: nodes made stale by a version are dropped as soon as it is written,
//! so memory is proportional to the live state, not to history. Values live in the app's own
//! maps, not in the node store.

use crate::state::{Account, State, StateKey};
use basalt_types::{encode, Hash, PublicKey};
use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version};
use sha2::{Digest, Sha256};

/// Namespace of account keys: `sha256("account" ‖ address)`.
const ACCOUNT_NAMESPACE: &[u8] = b"account";
/// Namespace of resting order keys: `sha256("order" ‖ market as 4 big-endian bytes ‖ id as 8
/// big-endian bytes)`. The market is part of the key because the dirty set names orders by
/// (market, id): an id given back by a rolled-back batch can be reused in another market within
/// the same block, and both entries must then name distinct tree keys.
const ORDER_NAMESPACE: &[u8] = b"order";
/// Namespace of task keys: `sha256("task" ‖ task id)`.
const TASK_NAMESPACE: &[u8] = b"task";
/// Namespace of market metadata keys: `sha256("market" ‖ id as 4 big-endian bytes)`.
const MARKET_NAMESPACE: &[u8] = b"market";
/// Key of the global order id counter.
const NEXT_ORDER_ID_KEY: &[u8] = b"next_order_id";
/// Key of the genesis configuration (chain id, assets, task generators).
const CONFIG_KEY: &[u8] = b"config";

type Jmt<'a, R> = JellyfishMerkleTree<'a, R, Sha256>;

fn key_hash(parts: &[&[u8]]) -> KeyHash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    KeyHash(hasher.finalize().into())
}

/// The tree key of an account.
pub(crate) fn account_key(address: &PublicKey) -> KeyHash {
    key_hash(&[ACCOUNT_NAMESPACE, &address.0])
}

fn state_key_hash(key: &StateKey) -> KeyHash {
    match key {
        StateKey::Config => key_hash(&[CONFIG_KEY]),
        StateKey::Market(id) => key_hash(&[MARKET_NAMESPACE, &id.to_be_bytes()]),
        StateKey::NextOrderId => key_hash(&[NEXT_ORDER_ID_KEY]),
        StateKey::Account(address) => account_key(address),
        StateKey::Order { market, id } => {
            key_hash(&[ORDER_NAMESPACE, &market.to_be_bytes(), &id.to_be_bytes()])
        }
        StateKey::Task(id) => key_hash(&[TASK_NAMESPACE, &id.0]),
    }
}

impl State {
    /// The tree value under `key` now (`None`: absent, to be deleted).
    fn tree_value(&self, key: &StateKey) -> Option<OwnedValue> {
        match key {
            StateKey::Config => Some(encode(&*self.config)),
            StateKey::Market(id) => self
                .markets
                .get(id)
                .map(|market| encode(&(market.base, market.quote))),
            StateKey::NextOrderId => Some(encode(&self.next_order_id)),
            StateKey::Account(address) => self.accounts.get(address).map(encode),
            StateKey::Order { market, id } => self
                .markets
                .get(market)
                .and_then(|book| book.orders.get(id))
                .map(encode),
            StateKey::Task(id) => self.tasks.get(id).map(encode),
        }
    }

    /// The tree writes for every key touched since the last call.
    pub(crate) fn take_tree_changes(&mut self) -> Vec<(KeyHash, Option<OwnedValue>)> {
        self.take_dirty()
            .iter()
            .map(|key| (state_key_hash(key), self.tree_value(key)))
            .collect()
    }
}

/// Tree nodes of the latest version, in memory.
#[derive(Debug, Clone, Default)]
struct NodeStore {
    /// Looked up by key only; never iterated for anything that reaches the state.
    /// A persistent map: the chain worker publishes a copy of the app after every block,
    /// and a std `HashMap` made that copy O(tree size) (3.4 % of an idle validator's CPU,
    /// plus the allocations of every node it cloned).
    nodes: imbl::HashMap<NodeKey, Node>,
    /// The latest version's root node.
    root_key: Option<NodeKey>,
}

impl NodeStore {
    /// Add a version's new nodes and drop those it made stale.
    fn apply(&mut self, version: Version, batch: &TreeUpdateBatch) {
        for (key, node) in batch.node_batch.nodes() {
            if key.nibble_path().is_empty() && key.version() == version {
                if let Some(old_root) = self.root_key.replace(key.clone()) {
                    // An unchanged tree gets a copy of its root at the new version without
                    // marking the old root stale; it is unreachable from the new root.
                    if old_root.version() < version {
                        self.nodes.remove(&old_root);
                    }
                }
            }
            self.nodes.insert(key.clone(), node.clone());
        }
        for stale in &batch.stale_node_index_batch {
            if stale.node_key.version() < version {
                self.nodes.remove(&stale.node_key);
            }
        }
    }
}

impl TreeReader for NodeStore {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        _key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        anyhow::bail!("the node store keeps no values; they live in the app state")
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        let rightmost = self
            .nodes
            .iter()
            .filter_map(|(key, node)| match node {
                Node::Leaf(leaf) => Some((key, leaf)),
                _ => None,
            })
            .max_by_key(|(_, leaf)| leaf.key_hash());
        Ok(rightmost.map(|(key, leaf)| (key.clone(), leaf.clone())))
    }
}

/// The node store with the one value a proof needs.
struct ProofReader<'a> {
    store: &'a NodeStore,
    key: KeyHash,
    value: Option<&'a [u8]>,
}

impl TreeReader for ProofReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        self.store.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self
            .value
            .filter(|_| key_hash == self.key)
            .map(<[u8]>::to_vec))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        self.store.get_rightmost_leaf()
    }
}

/// The state tree at its latest version.
///
/// Tree versions are internal: a commit writes its deletions and its upserts as two versions
/// when it has both (jmt's sorted batch insertion, about twice as fast as one-key-at-a-time
/// insertion, cannot delete). The root depends only on the set of keys and values.
#[derive(Debug, Clone, Default)]
pub(crate) struct StateTree {
    store: NodeStore,
    root: Hash,
    /// The latest written version; `None` before the first commit.
    version: Option<Version>,
}

impl StateTree {
    /// Root hash of the latest version.
    pub(crate) fn root(&self) -> Hash {
        self.root
    }

    /// Write `changes` (each key at most once; `None` deletes). On error the tree may hold part
    /// of the changes and must be discarded.
    pub(crate) fn commit(
        &mut self,
        changes: Vec<(KeyHash, Option<OwnedValue>)>,
    ) -> anyhow::Result<Hash> {
        let (deletes, upserts): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(|(_, value)| value.is_none());
        if !deletes.is_empty() {
            let version = self.next_version()?;
            let (root, batch) = Jmt::new(&self.store).put_value_set(deletes, version)?;
            self.store.apply(version, &batch);
            self.advance(version, root);
        }
        let upserts: Vec<(KeyHash, OwnedValue)> = upserts
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| (key, value)))
            .collect();
        if !upserts.is_empty() {
            let version = self.next_version()?;
            let (roots, batch) =
                Jmt::new(&self.store).batch_put_value_sets(vec![upserts], None, version)?;
            let root = roots
                .last()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("jmt returned no root"))?;
            self.store.apply(version, &batch);
            self.advance(version, root);
        }
        Ok(self.root)
    }

    fn next_version(&self) -> anyhow::Result<Version> {
        match self.version {
            None => Ok(0),
            Some(version) => version
                .checked_add(1)
                .ok_or_else(|| anyhow::anyhow!("tree version overflow")),
        }
    }

    fn advance(&mut self, version: Version, root: RootHash) {
        self.version = Some(version);
        self.root = Hash(root.0);
    }

    /// Inclusion proof of `value` (or exclusion proof if `None`) under `key` at the latest
    /// version, where `value` must be the current value of `key`.
    fn prove(
        &self,
        key: KeyHash,
        value: Option<&[u8]>,
    ) -> anyhow::Result<SparseMerkleProof<Sha256>> {
        let version = self
            .version
            .ok_or_else(|| anyhow::anyhow!("empty state tree"))?;
        let reader = ProofReader {
            store: &self.store,
            key,
            value,
        };
        let (found, proof) = Jmt::new(&reader).get_with_proof(key, version)?;
        anyhow::ensure!(
            found.as_deref() == value,
            "state tree and app state disagree on a key"
        );
        Ok(proof)
    }

    /// Proof for `account` (its current value, or `None` if absent) at `address`.
    pub(crate) fn prove_account(
        &self,
        address: &PublicKey,
        account: Option<&Account>,
    ) -> anyhow::Result<AccountProof> {
        let value = account.map(encode);
        let proof = self.prove(account_key(address), value.as_deref())?;
        Ok(AccountProof(proof))
    }
}

/// A Merkle proof that an account has a given value, or is absent, under a state root.
///
/// Its encoding (borsh) is jmt's sparse Merkle proof: the leaf met on the path, if any, and
/// the sibling hashes from the bottom up.
#[derive(Debug, Clone, PartialEq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct AccountProof(SparseMerkleProof<Sha256>);

/// True when `proof` shows that, under state root `root`, the account at `address` is
/// `account` (or, for `None`, that no account exists there).
pub fn verify_account_proof(
    root: Hash,
    address: &PublicKey,
    account: Option<&Account>,
    proof: &AccountProof,
) -> bool {
    let value = account.map(encode);
    proof
        .0
        .verify(RootHash(root.0), account_key(address), value)
        .is_ok()
}

#[cfg(test)]
impl State {
    /// Every key of the state, for rebuilding the tree from scratch.
    pub(crate) fn all_keys(&self) -> Vec<StateKey> {
        let mut keys = vec![StateKey::Config, StateKey::NextOrderId];
        keys.extend(self.markets.keys().map(|id| StateKey::Market(*id)));
        keys.extend(
            self.accounts
                .keys()
                .map(|address| StateKey::Account(*address)),
        );
        for (market, book) in &self.markets {
            keys.extend(book.orders.keys().map(|id| StateKey::Order {
                market: *market,
                id: *id,
            }));
        }
        keys.extend(self.tasks.keys().map(|id| StateKey::Task(*id)));
        keys
    }

    /// The root and node count of a fresh tree holding the whole state, built with jmt's
    /// one-key-at-a-time insertion (the reference path).
    fn tree_from_scratch(&self) -> (Hash, usize) {
        let changes: Vec<_> = self
            .all_keys()
            .iter()
            .map(|key| (state_key_hash(key), self.tree_value(key)))
            .collect();
        let store = NodeStore::default();
        match Jmt::new(&store).put_value_set(changes, 0) {
            Ok((root, batch)) => (Hash(root.0), batch.node_batch.nodes().len()),
            Err(error) => panic!("fresh tree: {error:#}"),
        }
    }

    /// Must equal the incremental root.
    pub(crate) fn root_from_scratch(&self) -> Hash {
        self.tree_from_scratch().0
    }

    /// Must equal the number of nodes the incremental tree keeps: it holds the live tree and
    /// nothing else.
    pub(crate) fn node_count_from_scratch(&self) -> usize {
        self.tree_from_scratch().1
    }
}

#[cfg(test)]
impl StateTree {
    pub(crate) fn node_count(&self) -> usize {
        self.store.nodes.len()
    }
}
