//! `[triggers.jobs]`: asynchronous invocations kept in an embedded store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_core::Digest;
use weir_manifest::{limits, Manifest, ManifestError};

use crate::sections::{at_least_one, duration};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    path: Option<Spanned<String>>,
    retention: Option<Spanned<String>>,
    max_queued: Option<Spanned<usize>>,
    workers: Option<Spanned<usize>>,
    timeout: Option<Spanned<String>>,
    max_attempts: Option<Spanned<u32>>,
}

/// How the async mode runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Whether `[triggers.jobs]` was written (then a store that cannot be
    /// opened stops `weir serve`; otherwise only async mode is off).
    pub configured: bool,
    pub path: PathBuf,
    pub retention: Duration,
    pub max_queued: usize,
    pub workers: usize,
    /// The time limit of one job's invocation.
    pub timeout: Duration,
    /// Starts a job gets: one that was started this often without
    /// finishing (its host stopped or crashed while running it) ends as
    /// failed instead of running again.
    pub max_attempts: u32,
}

/// The most `max_attempts` a manifest may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// Where jobs are kept when the manifest does not say: one store per
/// manifest under weir's data folder, so two manifests never share a queue.
fn default_path(manifest: &Path) -> PathBuf {
    let canonical = manifest.canonicalize().unwrap_or_else(|_| manifest.to_path_buf());
    let hash = Digest::of(canonical.to_string_lossy().as_bytes());
    weir_core::paths::data_dir().join("jobs").join(format!("{}.redb", &hash.hex()[..16]))
}

impl JobSettings {
    /// The manifest's `[triggers.jobs]`, defaults where it is silent.
    pub fn from_manifest(manifest: &Manifest) -> Result<JobSettings, ManifestError> {
        let raw = manifest.trigger_section::<RawJobs>("jobs")?;
        let mut jobs = JobSettings {
            configured: raw.is_some(),
            path: default_path(&manifest.path),
            retention: Duration::from_secs(86_400),
            max_queued: 1000,
            workers: 4,
            timeout: Duration::from_secs(30),
            max_attempts: 3,
        };
        let Some(raw) = raw else { return Ok(jobs) };
        let place = manifest.place();
        if let Some(path) = &raw.path {
            jobs.path = place.resolve(path.get_ref());
        }
        if let Some(retention) = &raw.retention {
            jobs.retention = duration(&place, retention, "triggers.jobs.retention")?;
        }
        if let Some(value) = &raw.max_queued {
            jobs.max_queued = at_least_one(&place, value, "triggers.jobs.max_queued")?;
        }
        if let Some(value) = &raw.workers {
            jobs.workers = at_least_one(&place, value, "triggers.jobs.workers")?;
        }
        if let Some(timeout) = &raw.timeout {
            jobs.timeout = duration(&place, timeout, "triggers.jobs.timeout")?;
        }
        if let Some(value) = &raw.max_attempts {
            jobs.max_attempts = limits::count(&place, value, "triggers.jobs.max_attempts", 1, MAX_ATTEMPTS)?;
        }
        Ok(jobs)
    }
}
