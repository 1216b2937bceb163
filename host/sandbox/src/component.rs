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
use crate::compiled::{CompileSource, CompiledCache};
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

pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<StepState>,
    cache: Option<&CompiledCache>,
    name: String,
    bytes: &[u8],
) -> Result<StepComponent, LoadError> {
    check_header(&name, bytes)?;
    let digest = Digest::of(bytes);
    let compile_error = |message: String| LoadError::Compile { what: name.clone(), message };
    let (component, compile_source, compile_time) = match cache {
        Some(cache) => {
            let compiled = cache.get_or_compile(engine, &digest, bytes).map_err(|e| compile_error(e.to_string()))?;
            (compiled.component, compiled.source, compiled.elapsed)
        }
        None => {
            let started = Instant::now();
            let component = Component::new(engine, bytes).map_err(|e| compile_error(format!("{e:?}")))?;
            (component, CompileSource::Compiled, started.elapsed())
        }
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
