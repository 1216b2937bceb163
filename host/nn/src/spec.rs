//! What a model is before it is loaded ([`ModelSpec`]), the signature a
//! backend reports for it ([`TensorSpec`]), and where one inference's time
//! went ([`RunTiming`]). A model's external data is checked here, before
//! any backend sees it ([`external_data`]).

pub mod external_data;

use std::path::{Path, PathBuf};
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
    /// Which of the model's declared variants this is, when it has any.
    pub variant: Option<String>,
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
        ModelSpec { name, source, device: DeviceChoice::Cpu, threads: 1, variant: None }
    }

    /// Size and digest of the model bytes, once its external data has
    /// passed [`ModelSpec::check_external_data`].
    pub(crate) fn size_and_digest(&self) -> Result<(u64, String), NnError> {
        let of = |bytes: &[u8]| (bytes.len() as u64, weir_core::Digest::of(bytes).to_string());
        match &self.source {
            ModelSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    NnError::new(
                        NnErrorCode::NotFound,
                        format!("model `{}`: cannot read {}: {e}", self.name, path.display()),
                    )
                })?;
                self.check_external_data(&bytes)?;
                Ok(of(&bytes))
            }
            ModelSource::Bytes(bytes) => {
                self.check_external_data(bytes)?;
                Ok(of(bytes))
            }
        }
    }

    /// Refuse external data that leaves the model's folder (a file model)
    /// or any external data at all (a model given as bytes); see
    /// [`external_data`]. `bytes` are the model's ONNX bytes. Bytes that are
    /// not a well-formed protobuf are a runtime error, as ONNX Runtime's own.
    pub fn check_external_data(&self, bytes: &[u8]) -> Result<(), NnError> {
        let folder = match &self.source {
            ModelSource::File(path) => Some(match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            }),
            ModelSource::Bytes(_) => None,
        };
        external_data::check(bytes, folder).map_err(|error| match error {
            external_data::ExternalDataError::Malformed(why) => NnError::runtime(format!(
                "loading model `{}` from {}: not a well-formed ONNX protobuf: {why}",
                self.name, self.source
            )),
            external_data::ExternalDataError::Refused(why) => {
                NnError::new(NnErrorCode::Security, format!("model `{}` ({}): {why}", self.name, self.source))
            }
        })
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
