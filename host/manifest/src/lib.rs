//! weir-manifest: `weir.toml`, from text to a checked model.
//!
//! Reading a manifest has two passes. [`parse`] turns the text into a
//! [`Manifest`]: the spanned schema (module `schema`) is checked (names, routes,
//! cycles, units, references) with every error naming the file, line and
//! column, the key, and what was expected; it reads nothing else: no
//! environment, no file system. [`Manifest::check_files`] is the second
//! pass: local sources must exist. [`Manifest::load`] does both.
//!
//! Triggers own their sections: `[triggers.NAME]` and
//! `[pipelines.P.triggers.NAME]` are opaque here and read by each trigger
//! into its own settings ([`sections`]). The manifest depends on no
//! runtime crate: what it produces is plain data from `weir-core`.

mod artifact;
pub mod experiments;
mod grants;
pub mod limits;
pub mod models;
pub mod offpath;
mod parse;
pub mod place;
mod resolve;
mod schema;
pub mod sections;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use artifact::{ArtifactDecl, ArtifactSource};
pub use experiments::{Experiment, ExperimentMode, StickyKey, Variant};
pub use parse::parse;
pub use place::{Location, Place};
use weir_core::{Datatype, DeviceChoice, Objective, Pricing, StepGrants, StepLimits, Tensor};

/// The manifest format this weir reads (`manifest_version`, default 1).
pub const MANIFEST_VERSION: i64 = 1;

/// A manifest error at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no place (e.g. unreadable file).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ManifestError {
    pub fn at(file: &Path, location: Location, message: impl Into<String>) -> Self {
        ManifestError {
            file: file.to_path_buf(),
            line: location.line,
            column: location.column,
            message: message.into(),
        }
    }
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

impl weir_core::Classify for ManifestError {
    fn kind(&self) -> weir_core::ErrorKind {
        weir_core::ErrorKind::InvalidInput
    }
}

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

impl Route {
    /// `tensor`, or `tensor as name` when the reader sees it under another name.
    pub fn label(&self) -> String {
        let tensor = match &self.source {
            Source::Input(name) => name,
            Source::Step { tensor, .. } => tensor,
        };
        if *tensor == self.name {
            tensor.clone()
        } else {
            format!("{tensor} as {}", self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
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
    pub datatype: Datatype,
    pub shape: Vec<i64>,
}

impl TensorDecl {
    /// Whether `tensor` has this datatype and a shape this one allows.
    pub fn admits(&self, tensor: &Tensor) -> bool {
        tensor.datatype == self.datatype
            && tensor.shape.len() == self.shape.len()
            && tensor.shape.iter().zip(&self.shape).all(|(&got, &want)| want < 0 || want as u64 == got)
    }
}

/// A pipeline: its declared tensors, steps in dependency order, outputs and policies.
#[derive(Debug, Clone, PartialEq)]
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
    /// Tensors whose data provenance never keeps, only their keyed hashes,
    /// and that `trace` and `until` answers never show.
    pub sensitive: Vec<Source>,
    /// Whether callers may ask for `trace` and `until` (by default: only
    /// when nothing is sensitive or protected).
    pub taps: bool,
    /// What each protected output may reveal, applied by the host.
    pub protect: BTreeMap<String, weir_core::policy::OutputPolicy>,
    /// Explainer components for its steps, run on demand.
    pub explainers: Vec<offpath::Explainer>,
    /// Monitor components fed its edges off the critical path.
    pub monitors: Vec<offpath::Monitor>,
}

impl Pipeline {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Request inputs named anywhere in the pipeline, declared ones first.
    pub fn request_inputs(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inputs.iter().map(|d| d.name.as_str()).collect();
        for route in self.steps.iter().flat_map(|s| &s.inputs).chain(&self.outputs) {
            if let Source::Input(name) = &route.source {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDecl {
    pub name: String,
    pub artifact: ArtifactDecl,
    /// Code made ahead of time by `weir compile`, one file per target
    /// (local paths, resolved against the manifest's folder); a host takes
    /// the one for itself and compiles when none is.
    pub precompiled: Vec<PathBuf>,
}

/// A declared model: where it comes from and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDecl {
    pub name: String,
    /// The model's file; with variants, the most accurate variant's (what
    /// tools that see one file per model, such as retraining, work on).
    pub artifact: ArtifactDecl,
    pub device: DeviceChoice,
    /// ONNX Runtime intra-op threads per call.
    pub threads: usize,
    /// Measured accuracy of a model without variants, when declared.
    pub accuracy: Option<f64>,
    /// Forms of the model a host chooses from (empty: just `artifact`).
    pub variants: Vec<ModelVariantDecl>,
    pub choice: VariantChoice,
}

impl ModelDecl {
    /// Every file the model may be served from.
    pub fn artifacts(&self) -> impl Iterator<Item = &ArtifactDecl> {
        let plain = self.variants.is_empty().then_some(&self.artifact);
        plain.into_iter().chain(self.variants.iter().map(|v| &v.artifact))
    }
}

/// One form of a model (`[models.NAME.variants.VARIANT]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVariantDecl {
    pub name: String,
    pub artifact: ArtifactDecl,
    /// Measured accuracy, 0..=1.
    pub accuracy: f64,
    /// Architectures it may serve on (`x86_64`, `aarch64`); empty: any.
    pub targets: Vec<String>,
}

/// How a host picks among a model's variants.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VariantChoice {
    pub objective: Objective,
    /// No variant below it serves.
    pub min_accuracy: Option<f64>,
}

/// `[provenance]`: where invocation records go and how long they stay.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvenanceSettings {
    pub path: PathBuf,
    pub retention: Duration,
    /// Keep the data of tensors not marked sensitive (hashes are always kept).
    pub keep_tensors: bool,
    /// The key of sensitive tensors' keyed hashes (default: made next to the store).
    pub hash_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub path: PathBuf,
    pub models: BTreeMap<String, ModelDecl>,
    pub components: BTreeMap<String, ComponentDecl>,
    pub pipelines: BTreeMap<String, Pipeline>,
    /// Prices and factors for receipts (`[accounting]`).
    pub accounting: Pricing,
    /// The provenance store, when `[provenance]` is set.
    pub provenance: Option<ProvenanceSettings>,
    /// Experiments on pipelines' traffic, by name.
    pub experiments: BTreeMap<String, Experiment>,
    /// The text, kept for the triggers to read their own sections from.
    text: Arc<str>,
    trigger_names: Vec<(String, Location)>,
}

impl Manifest {
    /// Read, parse and check a manifest file, local sources included.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the manifest: {e}"),
        })?;
        let manifest = parse(path, &text)?;
        manifest.check_files()?;
        Ok(manifest)
    }

    /// Whether any step asks for a fuel limit (the engine must count fuel).
    pub fn needs_fuel(&self) -> bool {
        self.runnable_pipelines().flat_map(|p| &p.steps).any(|s| s.limits.fuel.is_some())
    }

    /// Every pipeline that may run: the declared ones and the experiments'
    /// challengers made by swapping steps or models.
    pub fn runnable_pipelines(&self) -> impl Iterator<Item = &Pipeline> {
        let variants = self.experiments.values().flat_map(|e| &e.variants).map(|v| &v.pipeline);
        self.pipelines.values().chain(variants)
    }

    /// The experiment taking `pipeline`'s traffic, if any.
    pub fn experiment_on(&self, pipeline: &str) -> Option<&Experiment> {
        self.experiments.values().find(|e| e.pipeline == pipeline)
    }

    /// Whether `other` differs from this manifest only in what a running
    /// server can swap: models, components, pipelines, experiments and
    /// prices (not triggers, access or provenance, which need a restart).
    pub fn same_sections(&self, other: &Manifest) -> Result<(), String> {
        let (ours, theirs) = (restart_sections(self), restart_sections(other));
        if let Some(key) = ours.keys().chain(theirs.keys()).find(|k| ours.get(*k) != theirs.get(*k)) {
            return Err(format!("[{key}] changed; restart weir serve to apply it"));
        }
        if self.provenance != other.provenance {
            return Err("[provenance] changed; restart weir serve to apply it".into());
        }
        Ok(())
    }
}

/// The sections a running server cannot swap, as plain TOML by their
/// path: `triggers`, `access`, and each `pipelines.P.triggers` (or the
/// older `pipelines.P.nats`).
fn restart_sections(manifest: &Manifest) -> BTreeMap<String, toml::Value> {
    let table: toml::Table = toml::from_str(&manifest.text).unwrap_or_default();
    let mut found = BTreeMap::new();
    for key in ["triggers", "access"] {
        if let Some(value) = table.get(key) {
            found.insert(key.to_string(), value.clone());
        }
    }
    let pipelines = table.get("pipelines").and_then(toml::Value::as_table);
    for (name, pipeline) in pipelines.into_iter().flatten() {
        for key in ["triggers", "nats"] {
            if let Some(value) = pipeline.get(key) {
                found.insert(format!("pipelines.{name}.{key}"), value.clone());
            }
        }
    }
    found
}
