//! Loading a step component: read, check it is a component that exports the
//! step interface, compile (or take the compiled cache), link, and keep the
//! resulting `InstancePre` for cheap per-invocation instantiation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;
use weir_core::wasm::WasmKind;
use weir_core::Digest;

use crate::bindings::PlainStepPre;
use crate::compiled::{CompileOrCacheError, CompileSource, CompiledCache};
use crate::precompiled;
use crate::state::StepState;

/// The interface every step exports.
pub const STEP_EXPORT: &str = "weir:pipeline/step@0.1.0";

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read component `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("`{what}` is not WebAssembly (it does not start with the `\\0asm` magic bytes)")]
    NotWasm { what: String },
    #[error(
        "`{what}` is a core WebAssembly module, not a component: build it as a component with \
         `cargo component build` or `cargo build --target wasm32-wasip2`"
    )]
    CoreModule { what: String },
    #[error("`{what}` could not be compiled: {message}")]
    Compile { what: String, message: String },
    #[error(
        "`{what}` does not export `{STEP_EXPORT}` (its exports: {}); a weir step must implement \
         the step interface (with weir-sdk: `export_step!(YourStep);`)",
        if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
    )]
    MissingExport { what: String, exports: Vec<String> },
    #[error(
        "`{what}` imports something weir does not provide: {message}. Steps may import wasi:cli, \
         wasi:io, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets and wasi:http (denied unless \
         granted), wasi:config/store and wasi:nn"
    )]
    UnsatisfiedImport { what: String, message: String },
    #[error(
        "`{what}` needs compiling and this weir was built without a compiler (the `compiler` feature is off); \
         give it precompiled code for this host ({}) with `weir compile COMPONENT --target {}` and \
         `precompiled = [...]` in the manifest{}",
        precompiled::host_target(),
        precompiled::host_target(),
        if skipped.is_empty() { String::new() } else { format!(" (passed over: {})", skipped.join("; ")) }
    )]
    NoCompiler { what: String, skipped: Vec<String> },
}

impl weir_core::Classify for LoadError {
    fn kind(&self) -> weir_core::ErrorKind {
        weir_core::ErrorKind::BadComponent
    }
}

/// How a component got ready, for cold-start accounting.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    pub compile_source: CompileSource,
    pub compile_time: Duration,
    pub link_time: Duration,
}

/// A component ready to instantiate: compiled, linked, type-checked.
pub struct StepComponent {
    /// A human name for messages and logs (file name or reference).
    pub name: String,
    /// Digest of the component bytes.
    pub digest: Digest,
    pub load: LoadReport,
    pub(crate) pre: PlainStepPre<StepState>,
}

impl std::fmt::Debug for StepComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepComponent").field("name", &self.name).field("digest", &self.digest).finish()
    }
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })
}

/// Check the header before handing bytes to the compiler, so the common
/// mistakes get a message a person understands.
fn check_header(what: &str, bytes: &[u8]) -> Result<(), LoadError> {
    match WasmKind::of(bytes) {
        WasmKind::NotWasm => Err(LoadError::NotWasm { what: what.into() }),
        WasmKind::CoreModule => Err(LoadError::CoreModule { what: what.into() }),
        WasmKind::Component => Ok(()),
    }
}

/// A precompiled file offered for a component: its name (for messages) and bytes.
pub struct Offered {
    pub name: String,
    pub bytes: Vec<u8>,
}

pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<StepState>,
    cache: Option<&CompiledCache>,
    name: String,
    bytes: &[u8],
    precompiled: &[Offered],
) -> Result<StepComponent, LoadError> {
    check_header(&name, bytes)?;
    let digest = Digest::of(bytes);
    let started = Instant::now();
    let (component, compile_source, compile_time) = match take_precompiled(engine, &name, &digest, precompiled) {
        Ok(component) => (component, CompileSource::Precompiled, started.elapsed()),
        Err(skipped) => compile(engine, cache, &name, &digest, bytes, skipped)?,
    };

    let started = Instant::now();
    check_exports(engine, &component, &name)?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::UnsatisfiedImport { what: name.clone(), message: format!("{e:#}") })?;
    let pre = PlainStepPre::new(instance_pre).map_err(|e| LoadError::MissingExport {
        what: format!("{name} ({e:#})"),
        exports: export_names(engine, &component),
    })?;
    let load = LoadReport { compile_source, compile_time, link_time: started.elapsed() };
    Ok(StepComponent { name, digest, load, pre })
}

/// The first offered precompiled file that is this component's code for
/// this host and that wasmtime accepts; else why each was passed over.
fn take_precompiled(
    engine: &Engine,
    name: &str,
    digest: &Digest,
    offered: &[Offered],
) -> Result<Component, Vec<String>> {
    let mut skipped = Vec::new();
    for file in offered {
        let (header, code) = match precompiled::parse(&file.name, &file.bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                skipped.push(error.to_string());
                continue;
            }
        };
        if let Some(why) = precompiled::mismatch(&header, digest) {
            skipped.push(format!("{}: {why}", file.name));
            continue;
        }
        // SAFETY: the file comes from where the operator's trust reaches
        // (see `precompiled`): a file the manifest lists that only its
        // owner can change, or registry code signed as its component must
        // be. Its header claims these bytes and this target (checked
        // above), and wasmtime checks its own header (version, settings,
        // CPU features) before mapping the code.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(component) => {
                tracing::debug!(component = %name, file = %file.name, "loaded precompiled code");
                return Ok(component);
            }
            Err(error) => skipped.push(format!("{}: wasmtime refused it: {error}", file.name)),
        }
    }
    Err(skipped)
}

/// Compile (or take from the cache) a component no precompiled file was fit for.
fn compile(
    engine: &Engine,
    cache: Option<&CompiledCache>,
    name: &str,
    digest: &Digest,
    bytes: &[u8],
    skipped: Vec<String>,
) -> Result<(Component, CompileSource, Duration), LoadError> {
    if !skipped.is_empty() {
        tracing::warn!(component = %name, skipped = %skipped.join("; "), "no precompiled file fits this host; compiling");
    }
    let compile_error = |message: String| LoadError::Compile { what: name.into(), message };
    match cache {
        Some(cache) => {
            let compiled = cache.get_or_compile(engine, digest, bytes).map_err(|e| match e {
                CompileOrCacheError::NoCompiler => {
                    LoadError::NoCompiler { what: name.into(), skipped: skipped.clone() }
                }
                other => compile_error(other.to_string()),
            })?;
            Ok((compiled.component, compiled.source, compiled.elapsed))
        }
        None => {
            let started = Instant::now();
            let component = crate::compiled::compile(engine, bytes).map_err(|e| match e {
                CompileOrCacheError::NoCompiler => {
                    LoadError::NoCompiler { what: name.into(), skipped: skipped.clone() }
                }
                other => compile_error(other.to_string()),
            })?;
            Ok((component, CompileSource::Compiled, started.elapsed()))
        }
    }
}

fn export_names(engine: &Engine, component: &Component) -> Vec<String> {
    component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect()
}

fn check_exports(engine: &Engine, component: &Component, name: &str) -> Result<(), LoadError> {
    let exports = export_names(engine, component);
    if exports.iter().any(|e| e == STEP_EXPORT) {
        return Ok(());
    }
    Err(LoadError::MissingExport { what: name.into(), exports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_names_the_mistake() {
        assert!(matches!(check_header("x", b"hello world"), Err(LoadError::NotWasm { .. })));
        assert!(matches!(check_header("x", b"\0asm\x01\0\0\0"), Err(LoadError::CoreModule { .. })));
        assert!(check_header("x", b"\0asm\x0d\0\x01\0").is_ok());
        let msg = LoadError::CoreModule { what: "a.wasm".into() }.to_string();
        assert!(msg.contains("cargo component build"), "{msg}");
    }
}
