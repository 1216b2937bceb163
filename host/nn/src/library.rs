//! Finding and checking the ONNX Runtime shared library before `ort` touches
//! it: `ort` panics on a missing or mismatched library, so weir looks first
//! and says exactly what is missing.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use thiserror::Error;

/// The ONNX Runtime API level `ort` 2.0.0-rc.10 is built against.
pub const REQUIRED_MINOR: u32 = 22;

#[derive(Debug, Clone, Error)]
pub enum LibraryError {
    #[error(
        "ONNX Runtime library not found (looked in: {}). Run `scripts/setup.sh`, or set \
         WEIR_ORT_DYLIB to the path of libonnxruntime.so {REQUIRED_MINOR}.x",
        searched.join(", ")
    )]
    NotFound { searched: Vec<String> },
    #[error("`{path}` could not be loaded as ONNX Runtime: {reason}")]
    Unloadable { path: String, reason: String },
    #[error(
        "`{path}` is ONNX Runtime {version}, but weir needs 1.{REQUIRED_MINOR} or newer \
         (run `scripts/setup.sh` or set WEIR_ORT_DYLIB)"
    )]
    TooOld { path: String, version: String },
}

/// The library weir uses, after it was checked and handed to `ort`.
#[derive(Debug, Clone)]
pub struct OrtLibrary {
    pub path: PathBuf,
    pub version: String,
}

/// Where to look, in order: `$WEIR_ORT_DYLIB`, `$ORT_DYLIB_PATH`, the set-up
/// script's install (`$WEIR_DATA_DIR`, `$XDG_DATA_HOME/weir`,
/// `~/.local/share/weir`), and next to the running executable.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for var in ["WEIR_ORT_DYLIB", "ORT_DYLIB_PATH"] {
        if let Some(path) = std::env::var_os(var) {
            out.push(PathBuf::from(path));
        }
    }
    out.push(weir_core::paths::data_dir().join("onnxruntime").join("libonnxruntime.so"));
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        out.push(dir.join("libonnxruntime.so"));
    }
    out
}

/// `OrtApiBase` from onnxruntime_c_api.h: the two entry points every
/// ONNX Runtime version exports.
#[repr(C)]
struct OrtApiBase {
    get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
    get_version_string: unsafe extern "C" fn() -> *const c_char,
}

/// Load the library at `path` and read its version, without `ort`.
pub fn probe(path: &Path) -> Result<String, LibraryError> {
    let unloadable = |reason: String| LibraryError::Unloadable { path: path.display().to_string(), reason };
    // SAFETY: loading ONNX Runtime runs its (well-behaved) initialisers; the
    // handle is kept for the life of the process, as `ort` will load it too.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| unloadable(e.to_string()))?;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
    let get_api_base: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> =
        unsafe { library.get(b"OrtGetApiBase\0") }.map_err(|e| unloadable(format!("no OrtGetApiBase symbol: {e}")))?;
    // SAFETY: the base and its version string are static data of the library.
    let version = unsafe {
        let base = get_api_base();
        if base.is_null() {
            return Err(unloadable("OrtGetApiBase returned null".into()));
        }
        CStr::from_ptr(((*base).get_version_string)()).to_string_lossy().into_owned()
    };
    std::mem::forget(library);
    if !supported(&version) {
        return Err(LibraryError::TooOld { path: path.display().to_string(), version });
    }
    Ok(version)
}

/// Whether `ort` can drive a library that reports `version`: 1.x from
/// `REQUIRED_MINOR` on (its C API is versioned within major 1).
fn supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    major == Some(1) && minor.is_some_and(|m| m >= REQUIRED_MINOR)
}

static LIBRARY: OnceLock<Result<OrtLibrary, LibraryError>> = OnceLock::new();

/// Find, check and initialise ONNX Runtime once per process. Every later call
/// returns the same answer.
pub fn init() -> Result<&'static OrtLibrary, LibraryError> {
    LIBRARY
        .get_or_init(|| {
            // A path the user set explicitly is used or reported, never skipped.
            for var in ["WEIR_ORT_DYLIB", "ORT_DYLIB_PATH"] {
                if let Some(path) = std::env::var_os(var).map(PathBuf::from) {
                    if !path.is_file() {
                        return Err(LibraryError::NotFound {
                            searched: vec![format!("{} (from {var})", path.display())],
                        });
                    }
                }
            }
            let searched = candidates();
            let path = searched.iter().find(|p| p.is_file()).cloned().ok_or_else(|| LibraryError::NotFound {
                searched: searched.iter().map(|p| p.display().to_string()).collect(),
            })?;
            let version = probe(&path)?;
            // The library is known good: only now may `ort` load it.
            let _ = ort::init_from(path.display().to_string()).with_name("weir").commit();
            tracing::debug!(path = %path.display(), %version, "ONNX Runtime ready");
            Ok(OrtLibrary { path, version })
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_versions_ort_can_drive_are_accepted() {
        for yes in ["1.22.0", "1.22.1", "1.23.2", "1.30.0-dev"] {
            assert!(supported(yes), "{yes}");
        }
        for no in ["1.21.0", "1.16.3", "2.0.0", "0.22.0", "x", "", "1", "1.x.0"] {
            assert!(!supported(no), "{no}");
        }
        assert_eq!(REQUIRED_MINOR, 22, "the README and docs/setup.md name 1.22");
    }

    #[test]
    fn a_file_that_is_not_onnx_runtime_is_refused_cleanly() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"not a library").unwrap();
        assert!(matches!(probe(file.path()), Err(LibraryError::Unloadable { .. })));
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if libc.exists() {
            let err = probe(libc).unwrap_err();
            assert!(err.to_string().contains("no OrtGetApiBase symbol"), "{err}");
        }
    }

    #[test]
    fn not_found_lists_where_it_looked() {
        let err = LibraryError::NotFound { searched: vec!["/a/libonnxruntime.so".into()] };
        let msg = err.to_string();
        assert!(msg.contains("/a/libonnxruntime.so") && msg.contains("scripts/setup.sh"), "{msg}");
    }
}
