//! The `weir.toml` schema as it is written, with source spans kept for
//! error messages. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// The format version; 1 (the only one) when absent.
    pub manifest_version: Option<Spanned<i64>>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, RawPipeline>,
    /// `[triggers.NAME]`: opaque here, read by each trigger.
    #[serde(default)]
    pub triggers: BTreeMap<Spanned<String>, IgnoredAny>,
    #[serde(default)]
    pub accounting: RawAccounting,
    pub provenance: Option<RawProvenance>,
    /// `[experiments.NAME]`: champion/challenger traffic on a pipeline.
    #[serde(default)]
    pub experiments: BTreeMap<String, crate::experiments::RawExperiment>,
    /// `[access]`: opaque here (see `Manifest::opaque_section`), read by
    /// whoever enforces access (the CLI).
    #[serde(rename = "access")]
    pub _access: Option<IgnoredAny>,
}

/// `[provenance]`: where invocation records go and how long they stay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvenance {
    pub path: Spanned<String>,
    pub retention: Option<Spanned<String>>,
    #[serde(default)]
    pub keep_tensors: bool,
    pub hash_key: Option<Spanned<String>>,
}

/// Prices for receipts; every field optional (defaults in `weir_core::Pricing`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounting {
    pub cpu_second: Option<Spanned<f64>>,
    pub gib_second: Option<Spanned<f64>>,
    pub kwh: Option<Spanned<f64>>,
    pub grid_gco2e_per_kwh: Option<Spanned<f64>>,
    pub watts_per_core: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Required unless the model has `variants`.
    pub source: Option<Spanned<String>>,
    /// `sha256:…` the artifact must have (content or OCI manifest digest).
    pub digest: Option<Spanned<String>>,
    /// Public key file(s) one of which must have signed the artifact.
    pub signed_by: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub device: Option<Spanned<String>>,
    #[serde(default)]
    pub threads: Option<Spanned<usize>>,
    /// Measured accuracy (0..1) of a model without variants.
    pub accuracy: Option<Spanned<f64>>,
    /// What the host picks a variant for: latency, cost or accuracy.
    pub objective: Option<Spanned<String>>,
    /// No variant below this accuracy serves.
    pub min_accuracy: Option<Spanned<f64>>,
    /// Forms of the same model (FP32, INT8, a smaller network), by name.
    pub variants: Option<BTreeMap<String, RawModelVariant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelVariant {
    pub source: Spanned<String>,
    pub digest: Option<Spanned<String>>,
    pub signed_by: Option<Spanned<OneOrMany>>,
    /// Measured accuracy (0..1), required: a floor is checked against it.
    pub accuracy: Option<Spanned<f64>>,
    /// Architectures it may serve on (default: any).
    pub targets: Option<Spanned<OneOrMany>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    pub source: Spanned<String>,
    pub digest: Option<Spanned<String>>,
    pub signed_by: Option<Spanned<OneOrMany>>,
    /// Local files of code `weir compile` made for one target each.
    pub precompiled: Option<Spanned<OneOrMany>>,
}

/// `"a"` or `["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    #[serde(default)]
    pub description: Option<String>,
    /// Declared pipeline inputs (for metadata and checks).
    #[serde(default)]
    pub inputs: Vec<RawTensorDecl>,
    /// Tensors (`input.x`, `step.tensor`) of which provenance keeps only hashes.
    #[serde(default)]
    pub sensitive: Vec<Spanned<String>>,
    /// Whether `trace` and `until` may be asked for.
    pub taps: Option<bool>,
    /// `[pipelines.NAME.protect.OUTPUT]`: what an output may reveal.
    #[serde(default)]
    pub protect: BTreeMap<String, Spanned<RawPolicy>>,
    pub steps: Vec<RawStep>,
    /// `[[pipelines.NAME.explainers]]`: explainer components for steps.
    #[serde(default)]
    pub explainers: Vec<crate::offpath::RawExplainer>,
    /// `[[pipelines.NAME.monitors]]`: monitor components fed edges off the critical path.
    #[serde(default)]
    pub monitors: Vec<crate::offpath::RawMonitor>,
    /// `[pipelines.NAME.triggers.TRIGGER]`: opaque here, read by each trigger.
    #[serde(default)]
    pub triggers: BTreeMap<Spanned<String>, IgnoredAny>,
    /// `[pipelines.NAME.nats]`: the older place of the NATS trigger's
    /// section, still accepted (read as `[pipelines.NAME.triggers.nats]`).
    pub nats: Option<Spanned<IgnoredAny>>,
    /// `name = "step.tensor"`, or `name = { from = "step.tensor", datatype = "INT64", shape = [-1] }`.
    /// (Read as plain TOML values: the two forms are told apart by hand,
    /// since untagged enums would lose the source spans.)
    pub outputs: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTensorDecl {
    pub name: Spanned<String>,
    pub datatype: Spanned<String>,
    pub shape: Spanned<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: Spanned<String>,
    pub component: Spanned<String>,
    /// `"input.x"`, `"step.tensor"`, or `"name=step.tensor"` to rename.
    #[serde(default)]
    pub inputs: Vec<Spanned<String>>,
    #[serde(default)]
    pub models: Vec<Spanned<String>>,
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Host directories the step may read: `[{ source = "vocab", destination = "/data" }]`.
    #[serde(default)]
    pub files: Vec<RawFileGrant>,
    /// Environment variables the step sees: `{ NAME = "value" }`.
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Hosts the step may call over `wasi:http`: `[{ host = "features.internal", port = 8080 }]`.
    #[serde(default)]
    pub http: Vec<Spanned<RawHttpGrant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub top_k: Option<usize>,
    pub noise: Option<f64>,
    pub decimals: Option<u32>,
    #[serde(default)]
    pub remove: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileGrant {
    pub source: Spanned<String>,
    pub destination: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpGrant {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub loopback: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub fuel: Option<Spanned<u64>>,
}
