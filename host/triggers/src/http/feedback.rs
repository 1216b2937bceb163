//! Feedback: `POST /v2/invocations/{id}/feedback` (one) and `POST
//! /v2/feedback` (a batch) attach the true outcome to recorded invocations,
//! scored against what each answered; `GET /v2/quality` shows the live
//! quality per pipeline, experiment variant and output.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use weir_core::ErrorKind;
use weir_observe::feedback::{score, truth_edge, Feedback, QualityFigures};
use weir_observe::provenance::FeedbackAdded;

use super::records::provenance;
use super::{api_error, control_body, ApiError, AppState};
use crate::dispatch::Failure;
use crate::oip::{self, InferenceRequest, RequestInput};

/// Items in one batch at most.
const MAX_BATCH: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    /// The true value of some of the invocation's outputs, as OIP tensors.
    outputs: Vec<RequestInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    feedback: Vec<BatchItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    id: String,
    outputs: Vec<RequestInput>,
}

/// One invocation's feedback, as answered.
#[derive(Serialize)]
pub(super) struct Given {
    pub id: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
pub(super) struct BatchAnswer {
    results: Vec<Given>,
}

fn body_error(e: serde_json::Error) -> ApiError {
    api_error(
        ErrorKind::InvalidInput,
        format!("the body is not feedback JSON ({e}); send {{\"outputs\": [OIP tensors]}}"),
    )
}

/// `POST /v2/invocations/{id}/feedback`: answered with the item's own
/// status (200, 400, 404, or 409 when the invocation already has feedback).
pub(super) async fn give(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Given>), ApiError> {
    let body = control_body(&state, body).await?;
    let FeedbackBody { outputs } = serde_json::from_slice(&body).map_err(body_error)?;
    // The store's commit blocks: off the async workers.
    let given = tokio::task::spawn_blocking(move || attach(&state, id, outputs))
        .await
        .map_err(|e| api_error(ErrorKind::Internal, format!("feedback: {e}")))??;
    let status = StatusCode::from_u16(given.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((status, Json(given)))
}

/// `POST /v2/feedback`: each item answered on its own (200, 400, 404 or 409).
pub(super) async fn give_many(State(state): State<Arc<AppState>>, body: Body) -> Result<Json<BatchAnswer>, ApiError> {
    let body = control_body(&state, body).await?;
    let BatchBody { feedback } = serde_json::from_slice(&body).map_err(|e| {
        api_error(ErrorKind::InvalidInput, format!("the body is not a feedback batch ({e}); send {{\"feedback\": [{{\"id\": \"…\", \"outputs\": [OIP tensors]}}]}}"))
    })?;
    if feedback.len() > MAX_BATCH {
        return Err(api_error(
            ErrorKind::TooLarge,
            format!("{} items in one batch; at most {MAX_BATCH}", feedback.len()),
        ));
    }
    let results = tokio::task::spawn_blocking(move || {
        feedback
            .into_iter()
            .map(|item| {
                // A store failure fails this item alone: those before it are kept, and said so.
                let id = item.id.clone();
                attach(&state, item.id, item.outputs).unwrap_or_else(|ApiError(failure)| Given {
                    id,
                    status: failure.status(),
                    feedback: None,
                    error: Some(failure.message),
                })
            })
            .collect()
    })
    .await
    .map_err(|e| api_error(ErrorKind::Internal, format!("feedback: {e}")))?;
    Ok(Json(BatchAnswer { results }))
}

/// Score and keep one invocation's feedback; the store failing is the
/// only error (everything about the item itself is in its answer).
fn attach(state: &AppState, id: String, outputs: Vec<RequestInput>) -> Result<Given, ApiError> {
    let store = provenance(state)?;
    let refused = |status: StatusCode, error: String| Given {
        id: id.clone(),
        status: status.as_u16(),
        feedback: None,
        error: Some(error),
    };
    let request = InferenceRequest { id: None, parameters: None, inputs: outputs, outputs: None };
    let truth =
        match oip::check_request(&request, state.dispatcher.limits()).and_then(|()| oip::request_tensors(&request)) {
            Ok(truth) => truth,
            Err(e) => return Ok(refused(StatusCode::BAD_REQUEST, Failure::from_error(&e).message)),
        };
    let added = store.add_feedback(&id, |record| {
        let scores = score(record, &truth)?;
        let truth = truth.iter().map(truth_edge).collect();
        Ok::<_, weir_observe::feedback::FeedbackError>(Feedback { unix_ms: weir_core::clock::unix_ms(), truth, scores })
    })?;
    Ok(match added {
        FeedbackAdded::Added(record) => {
            let feedback = record.feedback.clone();
            if let Some(feedback) = &feedback {
                let variant =
                    record.variant.as_ref().map(|v| format!("{}/{}", v.experiment, v.variant)).unwrap_or_default();
                state.quality.record(&record.pipeline, &variant, &feedback.scores);
                // A canary's gate may judge its challenger on feedback.
                if let Some(served) = &record.variant {
                    if let Some(rollout) = state.dispatcher.generation().rollouts.get(&served.experiment) {
                        rollout.feedback(&served.variant, &feedback.scores);
                    }
                }
            }
            Given { id, status: 200, feedback, error: None }
        }
        FeedbackAdded::NoRecord => refused(
            StatusCode::NOT_FOUND,
            format!("no record of invocation `{id}` (never recorded, expired or erased)"),
        ),
        FeedbackAdded::AlreadyGiven => {
            refused(StatusCode::CONFLICT, format!("invocation `{id}` already has feedback; it is given once"))
        }
        FeedbackAdded::Refused(why) => refused(StatusCode::BAD_REQUEST, why.to_string()),
    })
}

/// `GET /v2/quality`.
pub(super) async fn quality(State(state): State<Arc<AppState>>) -> Json<Vec<QualityFigures>> {
    Json(state.quality.figures())
}
