//! `weir.toml`: models, components and pipelines declared once, checked
//! once. Every error names the file, line and column, the field, and what
//! was expected.

mod schema;
mod triggers;
mod validate;

pub use triggers::{NatsConsumer, NatsSettings};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::invoke::{StepGrants, StepLimits};
use weir_nn::{DeviceChoice, ModelSpec};

use crate::artifacts::ArtifactDecl;

pub use validate::parse;

/// A manifest error at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no place (e.g. unreadable file).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ManifestError {}

/// Where a step input or a pipeline output comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A tensor of the request: `input.<name>`.
    Input(String),
    /// A tensor another step produced: `<step>.<tensor>`.
    Step { step: String, tensor: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Input(name) => write!(f, "input.{name}"),
            Source::Step { step, tensor } => write!(f, "{step}.{tensor}"),
        }
    }
}

/// One tensor routed into a step, under the name the step sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub component: String,
    pub inputs: Vec<Route>,
    pub grants: StepGrants,
    pub limits: StepLimits,
}

/// A declared pipeline input or output (`-1` = any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDecl {
    pub name: String,
    pub datatype: crate::tensor::Datatype,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub inputs: Vec<TensorDecl>,
    /// In a topological order: every step after the steps it reads from.
    pub steps: Vec<Step>,
    pub outputs: Vec<Route>,
    /// Outputs declared with a datatype and shape (for metadata, and
    /// checked on every invocation).
    pub output_types: BTreeMap<String, TensorDecl>,
    /// Tensors whose data provenance never keeps, only their hashes.
    pub sensitive: Vec<Source>,
}

impl TensorDecl {
    /// Whether `tensor` has this datatype and a shape this one allows.
    pub fn admits(&self, tensor: &crate::tensor::Tensor) -> bool {
        tensor.datatype == self.datatype
            && tensor.shape.len() == self.shape.len()
            && tensor.shape.iter().zip(&self.shape).all(|(&got, &want)| want < 0 || want as u64 == got)
    }
}

impl Pipeline {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub name: String,
    pub artifact: ArtifactDecl,
}

/// A declared model: where it comes from and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDecl {
    pub name: String,
    pub artifact: ArtifactDecl,
    pub device: DeviceChoice,
    pub threads: usize,
}

impl ModelDecl {
    /// The runtime's spec, once the model's bytes are at `path`.
    pub fn spec(&self, path: PathBuf) -> ModelSpec {
        let mut spec = ModelSpec::new(self.name.clone(), path);
        spec.device = self.device;
        spec.threads = self.threads;
        spec
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    pub listen: String,
    pub max_body_bytes: u64,
    pub max_concurrency: usize,
    pub timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 8 << 20,
            max_concurrency: 64,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub models: BTreeMap<String, ModelDecl>,
    pub components: BTreeMap<String, ComponentDecl>,
    pub pipelines: BTreeMap<String, Pipeline>,
    pub http: HttpSettings,
    /// Asynchronous invocations (`Prefer: respond-async`).
    pub jobs: crate::jobs::JobSettings,
    /// NATS JetStream consumers, when `[triggers.nats]` is set.
    pub nats: Option<NatsSettings>,
    /// Prices and factors for receipts (`[accounting]`).
    pub accounting: crate::accounting::Pricing,
    /// The provenance store, when `[provenance]` is set.
    pub provenance: Option<ProvenanceSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceSettings {
    pub path: PathBuf,
    pub retention: Duration,
    /// Keep the data of tensors not marked sensitive (hashes are always kept).
    pub keep_tensors: bool,
}

impl Manifest {
    /// Read and check a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the manifest: {e}"),
        })?;
        parse(path, &text)
    }
}
