//! The HTTP API's bodies, typed: what each endpoint answers, so the shapes
//! are checked by the compiler and written down in one place.

use serde::{Deserialize, Serialize};
use weir_executor::residency::ComponentStatus;
use weir_executor::variants::VariantPick;

/// Every error: `{"error": "..."}` (the status says whose fault).
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Live {
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub ready: bool,
}

/// `GET /v2`: the server's metadata.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
    /// One model per pipeline.
    pub models: Vec<String>,
}

/// A declared input or output (`datatype` empty when typed at run time).
#[derive(Debug, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// One step, in a pipeline's metadata.
#[derive(Debug, Serialize, Deserialize)]
pub struct StepMetadata {
    pub name: String,
    pub component: String,
    pub models: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PipelineParameters {
    pub description: Option<String>,
    pub steps: Vec<StepMetadata>,
}

/// `GET /v2/models/{name}`: a pipeline as an OIP model.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    pub parameters: PipelineParameters,
}

/// `GET /v2/models/{name}/ready`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelReady {
    pub name: String,
    pub ready: bool,
}

/// `202 Accepted` for `Prefer: respond-async`.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobAccepted {
    pub id: String,
    pub status: crate::jobs::JobStatus,
    pub location: String,
}

/// `DELETE /v2/invocations/{id}` and `/v2/subjects/{subject}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Erased {
    /// Provenance records erased.
    pub erased: usize,
    /// Asynchronous jobs erased (by subject only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jobs: usize,
    /// NATS messages deleted from their streams (requests, results, dead letters).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub broker_messages: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The model cache, in `/v2/status`.
#[derive(Debug, Serialize)]
pub struct ModelsStatus {
    pub registered: usize,
    pub loaded: Vec<String>,
    pub loaded_bytes: u64,
    pub loads: u64,
    pub evictions: u64,
    /// Models with variants: which serves on this host, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantPick>,
}

/// `GET /v2/status`: what is in memory now.
#[derive(Debug, Serialize)]
pub struct Status {
    pub pipelines: usize,
    pub components: Vec<ComponentStatus>,
    pub models: ModelsStatus,
    pub resident_memory_bytes: Option<u64>,
}
