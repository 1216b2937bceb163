//! The file format of code compiled ahead of time (`weir compile`), shared
//! by the sandbox that makes and loads it and the registry that carries
//! it: `MAGIC ‖ header length (u32 LE) ‖ header (JSON) ‖ code`, the code
//! being wasmtime's serialized component.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// First bytes of every precompiled file (the format's version is in it).
pub const MAGIC: &[u8; 8] = b"weirpc1\n";
/// The largest header a file may declare: checked before anything is allocated from it.
pub const MAX_HEADER: usize = 4096;

/// What a precompiled file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// `sha256:…` of the component it was compiled from.
    pub component: String,
    /// The target triple it runs on.
    pub target: String,
    /// The wasmtime that compiled it (code loads only in the same version).
    pub wasmtime: String,
    /// Engine settings that change code.
    pub fuel: bool,
    pub max_memory_bytes: u64,
    pub pooling: bool,
}

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("{what}: not a weir precompiled file (made by `weir compile`)")]
    NotPrecompiled { what: String },
    #[error("{what}: its header is {len} bytes (at most {MAX_HEADER}): not a file `weir compile` made")]
    HeaderTooLarge { what: String, len: usize },
    #[error("{what}: it ends inside its header ({len} bytes declared): a truncated file")]
    Truncated { what: String, len: usize },
    #[error("{what}: its header does not parse: {message}")]
    BadHeader { what: String, message: String },
}

/// A precompiled file: the header, then the code.
pub fn encode(header: &Header, code: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("a header is plain data");
    let mut file = Vec::with_capacity(MAGIC.len() + 4 + header.len() + code.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&(header.len() as u32).to_le_bytes());
    file.extend_from_slice(&header);
    file.extend_from_slice(code);
    file
}

/// The header and the code of a precompiled file's bytes (`what` names it in errors).
pub fn parse<'a>(what: &str, bytes: &'a [u8]) -> Result<(Header, &'a [u8]), FormatError> {
    let not = || FormatError::NotPrecompiled { what: what.into() };
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(not)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(not)?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_HEADER {
        return Err(FormatError::HeaderTooLarge { what: what.into(), len });
    }
    if len > rest.len() {
        return Err(FormatError::Truncated { what: what.into(), len });
    }
    let (header, code) = rest.split_at(len);
    let header = serde_json::from_slice(header)
        .map_err(|e| FormatError::BadHeader { what: what.into(), message: e.to_string() })?;
    Ok((header, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            component: "sha256:00".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            wasmtime: "48".into(),
            fuel: false,
            max_memory_bytes: 1 << 30,
            pooling: true,
        }
    }

    #[test]
    fn a_header_round_trips_and_bad_files_are_named() {
        let bytes = encode(&header(), b"CODE");
        let (parsed, code) = parse("f", &bytes).unwrap();
        assert_eq!((parsed, code), (header(), b"CODE".as_slice()));
        assert!(matches!(parse("f", b"\0asm\x0d\0\x01\0"), Err(FormatError::NotPrecompiled { .. })));
        assert!(matches!(parse("f", MAGIC), Err(FormatError::NotPrecompiled { .. })));
        // A length past the end or past the limit is refused before any allocation.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse("f", &huge), Err(FormatError::HeaderTooLarge { .. })));
        let cut = &encode(&header(), b"")[..20];
        assert!(matches!(parse("f", cut), Err(FormatError::Truncated { .. })));
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&16u32.to_le_bytes());
        bad.extend_from_slice(b"{\"component\": 1}");
        let error = parse("f", &bad).unwrap_err().to_string();
        assert!(error.contains("f: its header does not parse"), "{error}");
    }
}
