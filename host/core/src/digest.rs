//! `sha256:` content digests: every artifact weir runs is named by one.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// A `sha256:` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("`{0}` is not a digest: expected `sha256:` followed by 64 lowercase hex characters")]
    Malformed(String),
    #[error("content does not match its digest: expected {expected}{}, got {actual} ({actual_size} bytes)", expected_size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    Mismatch { expected: Digest, expected_size: Option<u64>, actual: Digest, actual_size: u64 },
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest { hex: hex::encode(Sha256::digest(bytes)) }
    }

    /// The 64 hex characters, without the algorithm prefix (for file names).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Check that `bytes` are the content this digest names (and, when given,
    /// have the declared size).
    pub fn verify(&self, bytes: &[u8], size: Option<u64>) -> Result<(), DigestError> {
        let actual = Digest::of(bytes);
        let actual_size = bytes.len() as u64;
        if actual != *self || size.is_some_and(|s| s != actual_size) {
            return Err(DigestError::Mismatch { expected: self.clone(), expected_size: size, actual, actual_size });
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| DigestError::Malformed(text.into()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Malformed(text.into()));
        }
        Ok(Digest { hex: hex.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_content() {
        // sha256 of the empty string.
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::of(b"").to_string(), empty);
        assert_eq!(empty.parse::<Digest>().unwrap(), Digest::of(b""));
    }

    #[test]
    fn malformed_digests_are_rejected() {
        for bad in ["", "sha256:", "md5:abc", "sha256:XYZ", &format!("sha256:{}", "A".repeat(64))] {
            assert!(matches!(bad.parse::<Digest>(), Err(DigestError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn verify_checks_content_and_size() {
        let digest = Digest::of(b"component");
        assert!(digest.verify(b"component", Some(9)).is_ok());
        assert!(matches!(digest.verify(b"tampered!", None), Err(DigestError::Mismatch { .. })));
        assert!(matches!(digest.verify(b"component", Some(10)), Err(DigestError::Mismatch { .. })));
    }
}
