//! The `weir.toml` schema as it is written, with source spans kept for
//! error messages. Unknown keys are errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub components: BTreeMap<String, RawComponent>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, RawPipeline>,
    #[serde(default)]
    pub triggers: RawTriggers,
    #[serde(default)]
    pub accounting: RawAccounting,
    pub provenance: Option<RawProvenance>,
}

/// `[provenance]`: where invocation records go and how long they stay.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvenance {
    pub path: Spanned<String>,
    pub retention: Option<Spanned<String>>,
    #[serde(default)]
    pub keep_tensors: bool,
}

/// Prices for receipts; every field optional (defaults in `accounting::Pricing`).
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
    pub source: Spanned<String>,
    /// `sha256:…` the artifact must have (content or OCI manifest digest).
    pub digest: Option<Spanned<String>>,
    #[serde(default)]
    pub device: Option<Spanned<String>>,
    #[serde(default)]
    pub threads: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    pub source: Spanned<String>,
    pub digest: Option<Spanned<String>>,
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
    pub steps: Vec<RawStep>,
    /// A NATS JetStream consumer that feeds this pipeline.
    pub nats: Option<RawNatsConsumer>,
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
    pub shape: Vec<i64>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub fuel: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTriggers {
    pub http: Option<RawHttp>,
    pub jobs: Option<RawJobs>,
    pub nats: Option<RawNats>,
}

/// `[triggers.jobs]`: asynchronous invocations kept in an embedded store.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJobs {
    pub path: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
    pub max_queued: Option<Spanned<usize>>,
    pub workers: Option<Spanned<usize>>,
}

/// `[triggers.nats]`: the NATS server; each pipeline's consumer is
/// `[pipelines.NAME.nats]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    pub url: Spanned<String>,
}

/// `[pipelines.NAME.nats]`: a JetStream durable consumer feeding the pipeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNatsConsumer {
    pub stream: Spanned<String>,
    pub subject: Spanned<String>,
    pub durable: Spanned<String>,
    /// Where results go; without it, to each message's reply subject.
    pub results: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<usize>>,
    pub ack_wait: Option<Spanned<String>>,
    pub max_deliver: Option<Spanned<i64>>,
    pub dead_letter: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub max_concurrency: Option<Spanned<usize>>,
    pub timeout: Option<Spanned<String>>,
}
