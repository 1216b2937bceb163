//! What a model is before it is loaded ([`ModelSpec`]), the signature a
//! backend reports for it ([`TensorSpec`]), and where one inference's time
//! went ([`RunTiming`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::device::DeviceChoice;
use crate::error::{NnError, NnErrorCode};
use crate::tensor::NnType;

/// A model as declared once (manifest or `--model`), shared by every step and
/// pipeline that is granted it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub source: ModelSource,
    pub device: DeviceChoice,
    /// ONNX Runtime intra-op threads per call (1 = the calling thread only,
    /// which scales best with concurrent invocations).
    pub threads: usize,
}

/// Where a model's ONNX bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    File(PathBuf),
    /// Handed over by a step that was granted raw model loading.
    Bytes(Arc<Vec<u8>>),
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::File(path) => write!(f, "{}", path.display()),
            ModelSource::Bytes(bytes) => write!(f, "{} bytes from the step", bytes.len()),
        }
    }
}

impl ModelSpec {
    /// A CPU model from a file, one intra-op thread.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::with_source(name.into(), ModelSource::File(path.into()))
    }

    /// A CPU model from bytes.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self::with_source(name.into(), ModelSource::Bytes(Arc::new(bytes)))
    }

    fn with_source(name: String, source: ModelSource) -> Self {
        ModelSpec { name, source, device: DeviceChoice::Cpu, threads: 1 }
    }

    /// Size and digest of the model bytes.
    pub(crate) fn size_and_digest(&self) -> Result<(u64, String), NnError> {
        let of = |bytes: &[u8]| (bytes.len() as u64, weir_core::Digest::of(bytes).to_string());
        match &self.source {
            ModelSource::File(path) => std::fs::read(path).map(|b| of(&b)).map_err(|e| {
                NnError::new(
                    NnErrorCode::NotFound,
                    format!("model `{}`: cannot read {}: {e}", self.name, path.display()),
                )
            }),
            ModelSource::Bytes(bytes) => Ok(of(bytes)),
        }
    }
}

/// One declared input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    /// `None` when wasi-nn cannot carry the element type (e.g. strings).
    pub ty: Option<NnType>,
    pub type_name: String,
    /// `-1` for a dimension of any size.
    pub shape: Vec<i64>,
}

impl std::fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {:?})", self.name, self.type_name, self.shape)
    }
}

/// Where one inference's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTiming {
    /// Wall time inside ONNX Runtime.
    pub inference: Duration,
    /// CPU time ONNX Runtime's own pool threads spent on this call (the
    /// calling thread's share is on the caller's clock).
    pub pool_cpu: Duration,
}
