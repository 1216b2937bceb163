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
//! Native code is not checked the way a component is, so it comes only
//! from where the operator's trust already reaches: files the manifest
//! lists (`precompiled = [...]`), or code pushed with a registry component
//! (`weir push --precompile`) and signed as that component must be.

use std::path::Path;

use thiserror::Error;
#[cfg(feature = "compiler")]
use wasmtime::Engine;
use weir_core::Digest;

#[cfg(feature = "compiler")]
use crate::engine::EngineOptions;
pub use weir_core::precompiled::{parse, FormatError, Header, MAGIC};

#[derive(Debug, Error)]
pub enum PrecompiledError {
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
    Ok(weir_core::precompiled::encode(&header, &code))
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

/// Where `weir compile` writes the code of the component `name` for
/// `target`; `None` when the name is not fit for a file name (it may hold
/// only letters, digits, `_`, `-` and `.`, and not start with `.`).
pub fn file_name(name: &str, target: &str) -> Option<String> {
    let fit = |s: &str| {
        !s.is_empty() && !s.starts_with('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    (fit(name) && fit(target)).then(|| format!("{name}.{target}.cwasm"))
}

/// A precompiled file the manifest lists, read only if no one but its
/// owner — this user or root — can change it or its folder: it is native
/// code, run outside the sandbox.
pub fn read_listed(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        for (what, at) in [("it", path), ("its folder", folder)] {
            let meta = std::fs::metadata(at).map_err(|e| format!("{shown}: {e}"))?;
            if meta.uid() != me && meta.uid() != 0 {
                return Err(format!("{shown}: {what} is owned by uid {}, neither this user nor root", meta.uid()));
            }
            // A sticky folder (like /tmp) still lets others add files, not replace ours.
            let sticky = meta.mode() & 0o1000 != 0;
            if meta.mode() & 0o022 != 0 && !(sticky && at == folder) {
                return Err(format!(
                    "{shown}: others can write {what} (mode {:o}); `chmod go-w` it",
                    meta.mode() & 0o7777
                ));
            }
        }
    }
    std::fs::read(path).map_err(|e| format!("{shown}: {e}"))
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
