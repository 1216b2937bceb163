//! Hot changes: a server reloads its manifest (on `SIGHUP`, `POST
//! /v2/admin/reload`, or when the file changes) without dropping a request.
//! Whoever composes the server knows how to build an executor, so it
//! implements [`Reload`]; the triggers only ask for it.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::Failure;

/// What a reload put in place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reloaded {
    /// The new generation's number (1 was the manifest weir started with).
    pub generation: u64,
    pub pipelines: Vec<String>,
    pub experiments: Vec<String>,
    /// Reading, checking and loading the new manifest, in milliseconds.
    pub took_ms: u64,
}

/// Re-read the manifest, check it fully and load what it needs, then swap
/// it in; a manifest that fails any of that is refused and the old one
/// keeps serving.
pub trait Reload: Send + Sync {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Reloaded, Failure>> + Send + '_>>;
}
