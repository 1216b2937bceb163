//! `/v2/experiments`: each experiment's live figures and gate, and the
//! operator's actions (start, stop, promote, rollback); `/v2/admin/reload`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use weir_core::ErrorKind;
use weir_rollout::{Action, RolloutStatus};

use super::{api_error, ApiError, AppState};
use crate::reload::Reloaded;

/// `GET /v2/experiments`.
pub(super) async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<RolloutStatus>> {
    Json(state.dispatcher.generation().rollouts.statuses())
}

/// `GET /v2/experiments/{name}`.
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    let generation = state.dispatcher.generation();
    let rollout = generation.rollouts.get(&name).ok_or_else(|| unknown(&name, generation.rollouts.names()))?;
    Ok(Json(rollout.status()))
}

/// `POST /v2/experiments/{name}/{action}` (`?variant=NAME` to promote one of several).
pub(super) async fn act(
    State(state): State<Arc<AppState>>,
    Path((name, action)): Path<(String, String)>,
    uri: Uri,
) -> Result<Json<RolloutStatus>, ApiError> {
    let action: Action = action.parse().map_err(|e: String| api_error(ErrorKind::NotFound, e))?;
    let variant = super::param(&uri, "variant");
    let generation = state.dispatcher.generation();
    let rollout = generation.rollouts.get(&name).ok_or_else(|| unknown(&name, generation.rollouts.names()))?;
    let status = rollout.act(action, variant.as_deref()).map_err(|e| api_error(ErrorKind::InvalidInput, e))?;
    Ok(Json(status))
}

fn unknown(name: &str, known: Vec<String>) -> ApiError {
    api_error(ErrorKind::NotFound, format!("no experiment named `{name}` (experiments: {known:?})"))
}

/// `POST /v2/admin/reload`: read the manifest again and swap it in.
pub(super) async fn reload(State(state): State<Arc<AppState>>) -> Result<Json<Reloaded>, ApiError> {
    let reload = state
        .reload
        .as_ref()
        .ok_or_else(|| api_error(ErrorKind::NotFound, "this server cannot reload its manifest"))?;
    Ok(Json(reload.reload().await?))
}
