//! sha256 hashes and ed25519 keys and signatures, with domain-separated signing.

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, Verifier};
use sha2::{Digest, Sha256};
use std::fmt;

/// A sha256 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used for "no parent" and "no certificate".
    pub const ZERO: Hash = Hash([0u8; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// sha256 over several parts, fed in order.
pub fn sha256_parts(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    Hash(hasher.finalize().into())
}

/// An ed25519 public key. It is also the account address.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parse 64 hex digits.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        Hash::from_hex(text).map(|h| PublicKey(h.0))
    }

    /// Check `signature` over `domain ‖ message`.
    pub fn verify(&self, domain: &[u8], message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify(&signing_bytes(domain, message), &signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pk:{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl Default for Signature {
    fn default() -> Self {
        Signature([0u8; 64])
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}", hex::encode(&self.0[..6]))
    }
}

fn signing_bytes(domain: &[u8], message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(domain.len() + message.len());
    bytes.extend_from_slice(domain);
    bytes.extend_from_slice(message);
    bytes
}

/// An ed25519 signing key with its public key.
#[derive(Clone)]
pub struct Keypair {
    signing: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.public())
    }
}

impl Keypair {
    /// A key from its 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            signing: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// A deterministic key for tests, devnets and the simulator: seed = sha256(label).
    pub fn from_label(label: &str) -> Keypair {
        Keypair::from_seed(sha256(label.as_bytes()).0)
    }

    /// The secret seed (handle with care: whoever has it can sign).
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Sign `domain ‖ message`.
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> Signature {
        Signature(
            self.signing
                .sign(&signing_bytes(domain, message))
                .to_bytes(),
        )
    }
}

/// One item for batch verification: who, under which domain, what, and the signature.
pub struct VerifyItem<'a> {
    /// Signer.
    pub public_key: &'a PublicKey,
    /// Domain separation prefix.
    pub domain: &'a [u8],
    /// Message.
    pub message: &'a [u8],
    /// Signature to check.
    pub signature: &'a Signature,
}

/// Decompressed public keys kept per thread: decompressing a key costs about a quarter of a
/// verification, and the same senders sign again and again. Cleared when full.
pub const VERIFYING_KEYS_CACHED_MAX: usize = 8192;

thread_local! {
    static VERIFYING_KEYS: std::cell::RefCell<std::collections::HashMap<[u8; 32], ed25519_dalek::VerifyingKey>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The decompressed key, from the per-thread cache when possible.
fn verifying_key(public_key: &PublicKey) -> Option<ed25519_dalek::VerifyingKey> {
    VERIFYING_KEYS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(key) = cache.get(&public_key.0) {
            return Some(*key);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public_key.0).ok()?;
        if cache.len() >= VERIFYING_KEYS_CACHED_MAX {
            cache.clear();
        }
        cache.insert(public_key.0, key);
        Some(key)
    })
}

/// Verify many signatures at once (about twice as fast per signature as one by one).
///
/// Returns one boolean per item. When the batch as a whole fails, items are re-checked one
/// by one so that each gets its own answer.
pub fn verify_batch(items: &[VerifyItem<'_>]) -> Vec<bool> {
    if items.is_empty() {
        return Vec::new();
    }
    let mut keys = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for item in items {
        let Some(key) = verifying_key(item.public_key) else {
            return verify_each(items);
        };
        keys.push(key);
        signatures.push(ed25519_dalek::Signature::from_bytes(&item.signature.0));
        messages.push(signing_bytes(item.domain, item.message));
    }
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    if ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok() {
        vec![true; items.len()]
    } else {
        verify_each(items)
    }
}

fn verify_each(items: &[VerifyItem<'_>]) -> Vec<bool> {
    items
        .iter()
        .map(|item| {
            item.public_key
                .verify(item.domain, item.message, item.signature)
        })
        .collect()
}

macro_rules! serde_hex {
    ($type:ident, $parse:expr) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                $parse(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
            }
        }
    };
}
serde_hex!(Hash, Hash::from_hex);
serde_hex!(PublicKey, PublicKey::from_hex);
