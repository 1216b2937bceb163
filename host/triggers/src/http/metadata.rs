//! What a caller can learn about the server and its pipelines (OIP server
//! and model metadata, readiness), and which pipeline a model path names.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use weir_access::{Principal, Requirement};
use weir_core::ErrorKind;
use weir_manifest::Pipeline;

use super::api::{self, ModelMetadata, ModelReady, ServerMetadata, TensorMetadata};
use super::{api_error, ApiError, AppState};
use crate::dispatch::Failure;

/// Server metadata; `models` lists only the pipelines the caller may invoke.
pub(super) async fn server_metadata(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Json<ServerMetadata> {
    let executor = state.dispatcher.executor();
    let pipelines = executor.manifest().pipelines.keys();
    let models = pipelines.filter(|name| principal.may(&Requirement::invoke(name))).cloned().collect();
    Json(ServerMetadata {
        name: "weir".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: extensions(),
        models,
    })
}

/// The Open Inference Protocol extensions weir speaks (Triton's names).
pub(crate) fn extensions() -> Vec<String> {
    vec!["binary_tensor_data".into()]
}

pub(super) fn pipeline(state: &AppState, name: &str) -> Result<Pipeline, ApiError> {
    Ok(state.dispatcher.executor().pipeline(name)?.clone())
}

pub(super) async fn model_metadata(
    State(state): State<Arc<AppState>>,
    PipelineName(name): PipelineName,
) -> Result<Json<ModelMetadata>, ApiError> {
    Ok(Json(metadata_of(&pipeline(&state, &name)?)))
}

/// The pipeline a model path names: `{name}`, or `{name}@{version}` on
/// the protocol's `/versions/{version}` paths.
pub(super) struct PipelineName(pub(super) String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PipelineName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| api_error(ErrorKind::InvalidInput, e.body_text()))?;
        let name = params.get("name").cloned().unwrap_or_default();
        Ok(PipelineName(match params.get("version") {
            Some(version) => format!("{name}@{version}"),
            None => name,
        }))
    }
}

/// A pipeline as an OIP model.
pub(crate) fn metadata_of(pipeline: &Pipeline) -> ModelMetadata {
    let typed = |name: &str, d: &weir_manifest::TensorDecl| TensorMetadata {
        name: name.into(),
        datatype: d.datatype.name().into(),
        shape: d.shape.clone(),
    };
    let inputs = pipeline.inputs.iter().map(|d| typed(&d.name, d)).collect();
    // Declared outputs carry their type; others are typed by the steps at
    // run time (empty datatype, any shape).
    let outputs = pipeline
        .outputs
        .iter()
        .map(|r| match pipeline.output_types.get(&r.name) {
            Some(d) => typed(&r.name, d),
            None => TensorMetadata { name: r.name.clone(), datatype: String::new(), shape: vec![-1] },
        })
        .collect();
    let steps = pipeline
        .steps
        .iter()
        .map(|s| api::StepMetadata {
            name: s.name.clone(),
            component: s.component.clone(),
            models: s.grants.nn.models.clone(),
        })
        .collect();
    ModelMetadata {
        name: pipeline.name.clone(),
        versions: vec![],
        platform: "weir".into(),
        inputs,
        outputs,
        parameters: api::PipelineParameters { description: pipeline.description.clone(), steps },
    }
}

pub(super) async fn model_ready(
    State(state): State<Arc<AppState>>,
    PipelineName(name): PipelineName,
) -> Result<Json<ModelReady>, ApiError> {
    ready(&state, &name).await?;
    Ok(Json(ModelReady { name, ready: true }))
}

/// A pipeline is ready when every component can be loaded (compiled or
/// from the cache).
pub(crate) async fn ready(state: &AppState, name: &str) -> Result<(), Failure> {
    let executor = state.dispatcher.executor();
    let pipeline = executor.pipeline(name)?;
    for step in &pipeline.steps {
        executor.component(step).await.map_err(|e| Failure::new(ErrorKind::Unavailable, e.to_string()))?;
    }
    Ok(())
}
