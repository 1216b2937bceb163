//! Precompiled components: native code `weir compile` made ahead of time
//! for a target, so that a host — an edge device, or a build without a
//! compiler — loads it instead of compiling.
//!
//! A file is `MAGIC ‖ header length (u32 LE) ‖ header (JSON) ‖ code`, the
//! code being wasmtime's serialized component. The header names the
//! component it was compiled from (its digest), the target triple, the
//! wasmtime version and the engine settings that change code. A host
//! considers a file only when component and target are its own, and
//! wasmtime checks the code's own header again on load: code compiled with
//! other settings (fuel metering, memory reservations, CPU features the
//! host lacks) is refused, never run.
//!
//! Native code is not checked the way a component is, so a precompiled
//! file is trusted as the manifest that names it is: weir loads only files
//! the operator lists (`precompiled = [...]`), never code from a registry.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;
#[cfg(feature = "compiler")]
use wasmtime::Engine;
use weir_core::Digest;

#[cfg(feature = "compiler")]
use crate::engine::EngineOptions;

/// First bytes of every precompiled file (the format's version is in it).
pub const MAGIC: &[u8; 8] = b"weirpc1\n";
/// The largest header a file may declare: read before anything is allocated from it.
const MAX_HEADER: usize = 4096;

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
pub enum PrecompiledError {
    #[error("{what}: not a weir precompiled file (made by `weir compile`)")]
    NotPrecompiled { what: String },
    #[error("{what}: its header is {len} bytes (at most {MAX_HEADER}): not a file `weir compile` made")]
    HeaderTooLarge { what: String, len: usize },
    #[error("{what}: its header does not parse: {message}")]
    BadHeader { what: String, message: String },
    #[error("{what}: cannot compile for `{target}`: {message}")]
    Compile { what: String, target: String, message: String },
}

/// The target triple of this build (what a host's precompiled code must be for).
pub fn host_target() -> String {
    target_lexicon::HOST.to_string()
}

/// The wasmtime version this weir links (`wasmtime` in a header).
pub fn wasmtime_version() -> &'static str {
    // Code carries wasmtime's own version check too; this one is for messages.
    "48"
}

/// Compile `bytes` (the component `what`) with `engine`, an engine made by
/// [`crate::engine::for_target`] with `options` for `target`.
#[cfg(feature = "compiler")]
pub fn compile(
    engine: &Engine,
    options: &EngineOptions,
    target: &str,
    what: &str,
    bytes: &[u8],
) -> Result<Vec<u8>, PrecompiledError> {
    let fail = |message: String| PrecompiledError::Compile { what: what.into(), target: target.into(), message };
    // A compiler bug must fail this component, not the process.
    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.precompile_component(bytes)));
    let code = compiled
        .map_err(|_| fail("the compiler failed (a bug in Cranelift for this target)".into()))?
        .map_err(|e| fail(format!("{e:#}")))?;
    let header = Header {
        component: Digest::of(bytes).to_string(),
        target: target.to_string(),
        wasmtime: wasmtime_version().to_string(),
        fuel: options.fuel,
        max_memory_bytes: options.max_memory_bytes,
        pooling: options.max_instances > 0,
    };
    let header = serde_json::to_vec(&header).map_err(|e| fail(e.to_string()))?;
    let mut file = Vec::with_capacity(MAGIC.len() + 4 + header.len() + code.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&(header.len() as u32).to_le_bytes());
    file.extend_from_slice(&header);
    file.extend_from_slice(&code);
    Ok(file)
}

/// The header and the code of a precompiled file's bytes.
pub fn parse<'a>(what: &str, bytes: &'a [u8]) -> Result<(Header, &'a [u8]), PrecompiledError> {
    let rest =
        bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| PrecompiledError::NotPrecompiled { what: what.into() })?;
    let (len, rest) =
        rest.split_first_chunk::<4>().ok_or_else(|| PrecompiledError::NotPrecompiled { what: what.into() })?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_HEADER || len > rest.len() {
        return Err(PrecompiledError::HeaderTooLarge { what: what.into(), len });
    }
    let (header, code) = rest.split_at(len);
    let header = serde_json::from_slice(header)
        .map_err(|e| PrecompiledError::BadHeader { what: what.into(), message: e.to_string() })?;
    Ok((header, code))
}

/// Why a precompiled file is not for this component on this host, if it is not.
pub fn mismatch(header: &Header, component: &Digest) -> Option<String> {
    if header.component != component.to_string() {
        return Some(format!("compiled from {}, not from this component ({component})", header.component));
    }
    let host = host_target();
    if header.target != host {
        return Some(format!("compiled for {}, and this host is {host}", header.target));
    }
    None
}

/// Where `weir compile` writes the code of `component` for `target`.
pub fn file_name(component: &Path, target: &str) -> String {
    let stem = component.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "component".into());
    format!("{stem}.{target}.cwasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            component: Digest::of(b"x").to_string(),
            target: host_target(),
            wasmtime: "48".into(),
            fuel: false,
            max_memory_bytes: 1 << 30,
            pooling: true,
        }
    }

    fn file(header: &[u8], code: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(code);
        bytes
    }

    #[test]
    fn a_header_round_trips_and_bad_files_are_named() {
        let bytes = file(&serde_json::to_vec(&header()).unwrap(), b"CODE");
        let (parsed, code) = parse("f", &bytes).unwrap();
        assert_eq!((parsed, code), (header(), b"CODE".as_slice()));
        assert!(matches!(parse("f", b"\0asm\x0d\0\x01\0"), Err(PrecompiledError::NotPrecompiled { .. })));
        assert!(matches!(parse("f", MAGIC), Err(PrecompiledError::NotPrecompiled { .. })));
        // A length past the end or past the limit is refused before any allocation.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse("f", &huge), Err(PrecompiledError::HeaderTooLarge { .. })));
        let error = parse("f", &file(b"{\"component\": 1}", b"")).unwrap_err().to_string();
        assert!(error.contains("f: its header does not parse"), "{error}");
    }

    #[test]
    fn only_this_components_code_for_this_host_matches() {
        assert_eq!(mismatch(&header(), &Digest::of(b"x")), None);
        let other = mismatch(&header(), &Digest::of(b"y")).unwrap();
        assert!(other.contains("not from this component"), "{other}");
        let elsewhere =
            if host_target().starts_with("x86_64") { "aarch64-unknown-linux-gnu" } else { "x86_64-unknown-linux-gnu" };
        let why = mismatch(&Header { target: elsewhere.into(), ..header() }, &Digest::of(b"x")).unwrap();
        assert!(why.contains(&format!("compiled for {elsewhere}, and this host is")), "{why}");
    }
}
