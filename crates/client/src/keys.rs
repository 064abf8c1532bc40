//! Key loading: the key files `basalt init` and `basalt keys generate` write
//! (`{"public_key": "<hex>", "secret_seed": "<hex>"}`), and devnet test keys.

use basalt_types::Keypair;
use serde::Deserialize;
use std::path::Path;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a key file.
    #[error("parsing the key file: {0}")]
    Parse(String),
    /// The seed is not 64 hex digits.
    #[error("the secret seed is not 64 hex digits")]
    BadSeed,
    /// The public key in the file is not the seed's.
    #[error("the public key does not match the secret seed")]
    Mismatch,
}

#[derive(Deserialize)]
struct KeyFileJson {
    public_key: String,
    secret_seed: String,
}

/// The key in a key file's text, checking that its public key matches its seed.
pub fn keypair_from_json(text: &str) -> Result<Keypair, KeyError> {
    let file: KeyFileJson =
        serde_json::from_str(text).map_err(|error| KeyError::Parse(error.to_string()))?;
    let keypair = keypair_from_seed_hex(&file.secret_seed)?;
    if !keypair
        .public()
        .to_hex()
        .eq_ignore_ascii_case(file.public_key.trim())
    {
        return Err(KeyError::Mismatch);
    }
    Ok(keypair)
}

/// The key in the key file at `path`.
pub fn read_key_file(path: &Path) -> Result<Keypair, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    keypair_from_json(&text)
}

/// The key with this secret seed (64 hex digits).
pub fn keypair_from_seed_hex(seed: &str) -> Result<Keypair, KeyError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(seed.trim(), &mut bytes).map_err(|_| KeyError::BadSeed)?;
    Ok(Keypair::from_seed(bytes))
}

/// The key of devnet test account `index` (`basalt devnet` funds accounts 0..1000 in
/// assets 0 and 1; accounts 0..32 are task generators).
pub fn devnet_account(index: usize) -> Keypair {
    Keypair::from_label(&format!("basalt-devnet-account-{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_are_checked() {
        let key = devnet_account(3);
        let text = format!(
            r#"{{"public_key":"{}","secret_seed":"{}"}}"#,
            key.public().to_hex(),
            hex::encode(key.seed())
        );
        assert_eq!(keypair_from_json(&text).unwrap().public(), key.public());
        let wrong = format!(
            r#"{{"public_key":"{}","secret_seed":"{}"}}"#,
            devnet_account(4).public().to_hex(),
            hex::encode(key.seed())
        );
        assert!(matches!(keypair_from_json(&wrong), Err(KeyError::Mismatch)));
        assert!(matches!(
            keypair_from_seed_hex("zz"),
            Err(KeyError::BadSeed)
        ));
    }
}
