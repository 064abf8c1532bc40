//! Canonical encoding (borsh) with bounded collections and typed decode errors.

use borsh::{BorshDeserialize, BorshSerialize};
use std::io::{self, Read, Write};

/// Why bytes could not be decoded into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value was complete.
    #[error("input truncated")]
    Truncated,
    /// The value decoded but bytes were left over.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    /// A length or count is above its named maximum.
    #[error("{what}: length {len} exceeds maximum {max}")]
    TooLong {
        /// Which bounded field.
        what: &'static str,
        /// The length found on the wire.
        len: usize,
        /// The named maximum.
        max: usize,
    },
    /// The whole input is larger than the maximum for this type.
    #[error("input of {len} bytes exceeds maximum {max}")]
    InputTooLarge {
        /// Input length.
        len: usize,
        /// Maximum for the type.
        max: usize,
    },
    /// An enum tag that names no variant.
    #[error("unknown variant: {0}")]
    UnknownVariant(String),
    /// Anything else that is not a valid encoding (bad UTF-8, bad bool, ...).
    #[error("malformed: {0}")]
    Malformed(String),
}

impl DecodeError {
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    fn from_io(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            return DecodeError::Truncated;
        }
        let text = error.to_string();
        if let Some(inner) = error.into_inner() {
            if let Ok(typed) = inner.downcast::<DecodeError>() {
                return *typed;
            }
        }
        if text.contains("Unexpected length of input") {
            DecodeError::Truncated
        } else if text.contains("variant") {
            DecodeError::UnknownVariant(text)
        } else {
            DecodeError::Malformed(text)
        }
    }
}

/// Canonical bytes of a value.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = value.serialize(&mut out);
    out
}

/// Decode a value from exactly `bytes`, refusing inputs larger than `max_bytes`.
pub fn decode<T: BorshDeserialize>(bytes: &[u8], max_bytes: usize) -> Result<T, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::InputTooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    let mut rest = bytes;
    let value = T::deserialize(&mut rest).map_err(DecodeError::from_io)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

fn read_len<R: Read>(reader: &mut R, what: &'static str, max: usize) -> io::Result<usize> {
    let len = u32::deserialize_reader(reader)? as usize;
    if len > max {
        return Err(DecodeError::TooLong { what, len, max }.into_io());
    }
    Ok(len)
}

/// A vector whose length is at most `MAX`, checked before any item is decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// Wrap `items`, or give them back if there are more than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, Vec<T>> {
        if items.len() > MAX {
            Err(items)
        } else {
            Ok(Self(items))
        }
    }
    /// An empty vector.
    pub fn empty() -> Self {
        Self(Vec::new())
    }
    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The items, unwrapped.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
    /// Iterate over the items.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T: BorshSerialize, const MAX: usize> BorshSerialize for BoundedVec<T, MAX> {
    fn serialize<W: Write>(&self, writer: &mut W) -> io::Result<()> {
        self.0.serialize(writer)
    }
}

impl<T: BorshDeserialize, const MAX: usize> BorshDeserialize for BoundedVec<T, MAX> {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        let len = read_len(reader, "vector", MAX)?;
        let mut items = Vec::with_capacity(len.min(1024));
        for _ in 0..len {
            items.push(T::deserialize_reader(reader)?);
        }
        Ok(Self(items))
    }
}

/// A UTF-8 string of at most `MAX` bytes.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// Wrap `text`, truncating at a character boundary to at most `MAX` bytes.
    pub fn truncating(text: &str) -> Self {
        let mut end = text.len().min(MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self(text.get(..end).unwrap_or_default().to_owned())
    }
    /// Wrap `text`, or refuse it if it is longer than `MAX` bytes.
    pub fn new(text: &str) -> Option<Self> {
        (text.len() <= MAX).then(|| Self(text.to_owned()))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> std::fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> BorshSerialize for BoundedString<MAX> {
    fn serialize<W: Write>(&self, writer: &mut W) -> io::Result<()> {
        self.0.serialize(writer)
    }
}

impl<const MAX: usize> BorshDeserialize for BoundedString<MAX> {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        let len = read_len(reader, "string", MAX)?;
        let mut bytes = vec![0u8; len];
        reader.read_exact(&mut bytes)?;
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|e| DecodeError::Malformed(format!("utf-8: {e}")).into_io())
    }
}

/// Opaque bytes of at most `MAX` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BoundedBytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> BoundedBytes<MAX> {
    /// Wrap `bytes`, or refuse them if there are more than `MAX`.
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() <= MAX).then_some(Self(bytes))
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> BorshSerialize for BoundedBytes<MAX> {
    fn serialize<W: Write>(&self, writer: &mut W) -> io::Result<()> {
        self.0.serialize(writer)
    }
}

impl<const MAX: usize> BorshDeserialize for BoundedBytes<MAX> {
    fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Self> {
        let len = read_len(reader, "bytes", MAX)?;
        let mut bytes = vec![0u8; len];
        reader.read_exact(&mut bytes)?;
        Ok(Self(bytes))
    }
}
