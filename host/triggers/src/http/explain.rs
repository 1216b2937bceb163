//! Explanations and root-cause walks over HTTP:
//! `POST /v2/models/{name}/explain` explains one element of an edge for a
//! request (or a recorded invocation) by Shapley attributions, replaying
//! the pipeline's sandboxed steps; `GET /v2/invocations/{id}/rca` walks a
//! recorded output back, step by step, to the request's inputs.
//!
//! Both are heavy: each holds one of the server's invocation slots for its
//! whole run, its evaluations are bounded by a budget
//! (`weir_explain::MAX_BUDGET` at most) and a time limit, and its cost
//! (evaluations, step runs, CPU) is in its answer and charged to the
//! caller's quota as rows.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use weir_access::{base_pipeline, Admission, Principal, Requirement};
use weir_core::{Classify, ErrorKind, Tensor};
use weir_explain::explain::{recorded_baseline, zeros};
use weir_explain::{
    Baseline, Edge, ExplainError, InTermsOf, Link, Meter, Method, Question, RcaQuestion, Target, MAX_BUDGET,
};
use weir_observe::provenance::{InvocationRecord, Outcome, ProvenanceStore, RecordQuery};

use super::metadata::{pipeline, PipelineName};
use super::records::provenance;
use super::{api_error, control_body, decoding_budget, over_quota, ApiError, AppState};
use crate::oip::{self, InferenceRequest, RequestInput};

/// Evaluations when the caller names no budget.
const DEFAULT_BUDGET: usize = 512;
/// Recorded invocations the baseline is the mean of.
const BASELINE_RECORDS: usize = 200;
/// The longest an explanation or a walk may run.
const TIME_LIMIT: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainBody {
    /// The request to explain, as OIP tensors...
    #[serde(default)]
    inputs: Option<Vec<RequestInput>>,
    /// ...or a recorded invocation of this pipeline (needs `records:read`).
    #[serde(default)]
    invocation_id: Option<String>,
    /// `output.NAME`, `NAME` or `STEP.TENSOR`.
    target: String,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    link: Link,
    #[serde(default)]
    in_terms_of: InTermsOf,
    #[serde(default = "auto")]
    method: Method,
    #[serde(default)]
    budget: Option<usize>,
    #[serde(default)]
    seed: u64,
    /// An explainer component of the pipeline (`[[pipelines.P.explainers]]`).
    #[serde(default)]
    explainer: Option<String>,
    /// `"recorded"` (default), `"zeros"`, or OIP tensors (read after the
    /// rest: OIP `data` is kept as raw JSON, which an untagged enum cannot hold).
    #[serde(default)]
    baseline: Option<Box<serde_json::value::RawValue>>,
}

fn auto() -> Method {
    Method::Auto
}

fn failed(error: ExplainError) -> ApiError {
    api_error(error.kind(), error.to_string())
}

fn budget(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked.unwrap_or(DEFAULT_BUDGET) {
        0 => Err(api_error(ErrorKind::InvalidInput, "`budget` must be at least 1 evaluation")),
        b if b > MAX_BUDGET => {
            Err(api_error(ErrorKind::TooLarge, format!("`budget` {b} is over the limit of {MAX_BUDGET} evaluations")))
        }
        b => Ok(b),
    }
}

fn tensors(state: &AppState, inputs: Vec<RequestInput>) -> Result<Vec<Tensor>, ApiError> {
    let request = InferenceRequest { id: None, parameters: None, inputs, outputs: None };
    oip::check_request(&request, state.dispatcher.limits())
        .and_then(|()| oip::request_tensors(&request))
        .map_err(|e| api_error(ErrorKind::InvalidInput, e.message().to_string()))
}

/// Blocking store reads, off the async workers.
async fn read_store<T: Send + 'static>(
    store: &Arc<ProvenanceStore>,
    read: impl FnOnce(&ProvenanceStore) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(|e| api_error(ErrorKind::Internal, format!("reading records: {e}")))?
}

fn record_of(store: &ProvenanceStore, id: &str) -> Result<InvocationRecord, ApiError> {
    store.get(id)?.ok_or_else(|| api_error(ErrorKind::NotFound, format!("no recorded invocation `{id}`")))
}

/// The newest successful records of `pipeline`, for a baseline.
fn recent(store: &ProvenanceStore, pipeline: &str) -> Result<Vec<InvocationRecord>, ApiError> {
    let query = RecordQuery {
        pipeline: Some(pipeline.to_string()),
        outcome: Some(Outcome::Ok),
        limit: BASELINE_RECORDS,
        ..RecordQuery::default()
    };
    Ok(store.newest(&query)?)
}

/// The recorded request of an invocation, as tensors (each must be kept).
fn recorded_request(record: &InvocationRecord) -> Result<Vec<Tensor>, ApiError> {
    record.inputs.iter().map(|e| weir_explain::space::recorded(e).map_err(failed)).collect()
}

async fn limited<T>(run: impl std::future::Future<Output = Result<T, ExplainError>>) -> Result<T, ApiError> {
    match tokio::time::timeout(TIME_LIMIT, run).await {
        Ok(result) => result.map_err(failed),
        Err(_) => Err(api_error(
            ErrorKind::TimedOut,
            format!("the explanation ran over its {TIME_LIMIT:?} limit; lower `budget` or explain fewer features"),
        )),
    }
}

fn slot(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    state.slots.try_acquire().map_err(|_| {
        api_error(
            ErrorKind::Overloaded,
            format!(
                "{} invocations are already running (max_concurrency); retry later",
                state.settings.max_concurrency
            ),
        )
    })
}

/// `POST /v2/models/{name}/explain`.
pub(super) async fn explain(
    State(state): State<Arc<AppState>>,
    PipelineName(name): PipelineName,
    Extension(principal): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = control_body(&state, body).await?;
    // The parsed tensors are held while the explanation runs: their bytes count against max_decoded.
    let _decoding = decoding_budget(&state, raw.len()).map_err(ApiError)?;
    let parsed = serde_json::from_slice::<ExplainBody>(&raw);
    drop(raw);
    let body = parsed.map_err(|e| {
        api_error(
            ErrorKind::InvalidInput,
            format!(
                "the body is not an explain request ({e}); send {{\"inputs\": [OIP tensors], \"target\": \"OUTPUT\"}}"
            ),
        )
    })?;
    let pipeline = pipeline(&state, &name)?;
    let budget = budget(body.budget)?;
    let _admission = match admit(&state, &principal, &name) {
        Ok(admission) => admission,
        Err(refused) => return Ok(*refused),
    };
    // The slot first: reading records for the baseline is part of the work it bounds.
    let _slot = slot(&state)?;
    let point = match (body.inputs, body.invocation_id) {
        (Some(inputs), None) => tensors(&state, inputs)?,
        (None, Some(id)) => {
            if !principal.may(&Requirement::ReadRecords) {
                return Err(api_error(ErrorKind::Forbidden, "explaining a recorded invocation needs `records:read`"));
            }
            let record = read_store(provenance(&state)?, move |store| record_of(store, &id)).await?;
            if record.pipeline != name {
                let message =
                    format!("invocation {} is of pipeline `{}`, not `{name}`", record.invocation_id, record.pipeline);
                return Err(api_error(ErrorKind::InvalidInput, message));
            }
            recorded_request(&record)?
        }
        _ => return Err(api_error(ErrorKind::InvalidInput, "send exactly one of `inputs` and `invocation_id`")),
    };
    let baseline = match body.baseline.as_deref().map(serde_json::value::RawValue::get) {
        None | Some("\"recorded\"") => Baseline::Recorded,
        Some("\"zeros\"") => Baseline::Zeros,
        Some(text) => match serde_json::from_str::<Vec<RequestInput>>(text) {
            Ok(inputs) => Baseline::Tensors(tensors(&state, inputs)?),
            Err(e) => {
                let message = format!(
                    "`baseline` is not \"recorded\", \"zeros\" or a list of OIP tensors ({e}): {}",
                    text.chars().take(80).collect::<String>()
                );
                return Err(api_error(ErrorKind::InvalidInput, message));
            }
        },
    };
    let baseline = match baseline {
        Baseline::Zeros => zeros(&point),
        Baseline::Tensors(tensors) => tensors,
        Baseline::Recorded => {
            // The mean of other callers' requests is recorded data: it needs `records:read`.
            if !principal.may(&Requirement::ReadRecords) {
                let message = "the recorded baseline is the mean of recorded requests and needs `records:read`; send \
                               `baseline` (tensors, or \"zeros\")";
                return Err(api_error(ErrorKind::Forbidden, message));
            }
            let store = provenance(&state).map_err(|_| {
                api_error(ErrorKind::InvalidInput, "no recorded baseline (provenance is off): send `baseline`")
            })?;
            let records = read_store(store, {
                let name = name.clone();
                move |store| recent(store, &name)
            })
            .await?;
            recorded_baseline(&name, &records, &point).map_err(failed)?
        }
    };
    let question = Question {
        target: Target { edge: Edge::parse(&body.target), index: body.index, link: body.link },
        in_terms_of: body.in_terms_of,
        method: body.method,
        budget,
        seed: body.seed,
        explainer: body.explainer,
    };
    let executor = state.dispatcher.executor();
    let charge = Charge { state: &state, principal: &principal, pipeline: &name, meter: Meter::default() };
    let explanation =
        limited(weir_explain::explain::explain(&executor, &pipeline, point, baseline, &question, &charge.meter))
            .await?;
    Ok(Json(explanation).into_response())
}

/// Charges the caller one quota row per sandboxed step run when dropped:
/// whether the work succeeded, failed, ran over its time limit, or the
/// client went away and the handler was dropped mid-run.
struct Charge<'a> {
    state: &'a AppState,
    principal: &'a Principal,
    pipeline: &'a str,
    meter: Meter,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        let (_, step_runs) = self.meter.cost();
        self.state.quotas.charge_rows(self.principal, base_pipeline(self.pipeline), step_runs);
    }
}

/// Admission against the caller's quota on the pipeline; a refusal is the
/// same 429 (with `Retry-After`, counted) as an inference's.
fn admit(state: &AppState, principal: &Principal, pipeline: &str) -> Result<Admission, Box<Response>> {
    state
        .quotas
        .admit(principal, base_pipeline(pipeline))
        .map_err(|refusal| Box::new(over_quota(state, pipeline, principal, refusal)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RcaParams {
    output: String,
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    budget: Option<usize>,
    #[serde(default)]
    seed: u64,
}

/// `GET /v2/invocations/{id}/rca?output=NAME[&index=I][&budget=N]`.
pub(super) async fn rca(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<RcaParams>,
) -> Result<Response, ApiError> {
    let budget = budget(params.budget.or(Some(4 * DEFAULT_BUDGET)))?;
    let store = provenance(&state)?;
    let _slot = slot(&state)?;
    let (record, records) = read_store(store, move |store| {
        let record = record_of(store, &id)?;
        // The baseline is what is usual: the walked invocation itself is not part of it.
        let mut records = recent(store, &record.pipeline)?;
        records.retain(|r| r.invocation_id != record.invocation_id);
        Ok((record, records))
    })
    .await?;
    let pipeline = pipeline(&state, &record.pipeline)?;
    let _admission = match admit(&state, &principal, &record.pipeline) {
        Ok(admission) => admission,
        Err(refused) => return Ok(*refused),
    };
    // The baseline is shaped like the request; a request input that is
    // sensitive (hash only) has no value here, and its steps stop the walk.
    let point: Vec<Tensor> = record.inputs.iter().filter_map(|e| weir_explain::space::recorded(e).ok()).collect();
    let baseline = recorded_baseline(&record.pipeline, &records, &point).map_err(failed)?;
    let question = RcaQuestion { output: Edge::parse(&params.output), index: params.index, budget, seed: params.seed };
    let executor = state.dispatcher.executor();
    let charge = Charge { state: &state, principal: &principal, pipeline: &record.pipeline, meter: Meter::default() };
    let walk = weir_explain::walk::walk(&executor, &pipeline, &record, baseline, &records, &question, &charge.meter);
    Ok(Json(limited(walk).await?).into_response())
}
