//! The queue triggers of a manifest: asynchronous jobs (`[triggers.jobs]`)
//! and NATS JetStream consumers (`[triggers.nats]` + `[pipelines.NAME.nats]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::{RawManifest, RawNatsConsumer};
use super::validate::Place;
use super::ManifestError;
use crate::jobs::JobSettings;
use crate::units::parse_duration;

/// The NATS server and the consumers feeding pipelines.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    pub url: String,
    pub consumers: Vec<NatsConsumer>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NatsConsumer {
    pub pipeline: String,
    pub stream: String,
    pub subject: String,
    pub durable: String,
    /// `None`: answer on each message's reply subject.
    pub results: Option<String>,
    pub concurrency: usize,
    pub ack_wait: Duration,
    pub max_deliver: i64,
    pub dead_letter: Option<String>,
}

/// Where jobs are kept when the manifest does not say: one store per
/// manifest under weir's data folder, so two manifests never share a queue.
fn default_jobs_path(manifest: &Path) -> PathBuf {
    let data = std::env::var_os("WEIR_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(std::env::temp_dir)
            .join("weir")
    });
    let canonical = manifest.canonicalize().unwrap_or_else(|_| manifest.to_path_buf());
    let hash = weir_registry::Digest::of(canonical.to_string_lossy().as_bytes());
    data.join("jobs").join(format!("{}.redb", &hash.hex()[..16]))
}

pub(super) fn jobs_settings(place: &Place, raw: &RawManifest) -> Result<JobSettings, ManifestError> {
    let mut jobs = JobSettings {
        configured: raw.triggers.jobs.is_some(),
        path: default_jobs_path(place.file),
        retention: Duration::from_secs(86_400),
        max_queued: 1000,
        workers: 4,
    };
    let Some(raw) = &raw.triggers.jobs else { return Ok(jobs) };
    if let Some(path) = &raw.path {
        jobs.path = place.resolve(path.get_ref());
    }
    if let Some(retention) = &raw.retention {
        jobs.retention = parse_duration(retention.get_ref()).map_err(|e| place.at(retention, format!("triggers.jobs.retention: {e}")))?;
    }
    for (value, key, target) in [(&raw.max_queued, "max_queued", &mut jobs.max_queued), (&raw.workers, "workers", &mut jobs.workers)] {
        if let Some(value) = value {
            if *value.get_ref() == 0 {
                return Err(place.at(value, format!("triggers.jobs.{key} must be at least 1")));
            }
            *target = *value.get_ref();
        }
    }
    Ok(jobs)
}

pub(super) fn nats_settings(place: &Place, raw: &RawManifest) -> Result<Option<NatsSettings>, ManifestError> {
    let consumers = raw
        .pipelines
        .iter()
        .filter_map(|(name, pipeline)| pipeline.nats.as_ref().map(|c| consumer(place, name, c)))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(nats) = &raw.triggers.nats else {
        if let Some((name, pipeline)) = raw.pipelines.iter().find(|(_, p)| p.nats.is_some()) {
            let at = &pipeline.nats.as_ref().expect("found above").stream;
            return Err(place.at(at, format!("pipelines.{name}.nats needs the server: add [triggers.nats] url = \"nats://HOST:4222\"")));
        }
        return Ok(None);
    };
    let url = nats.url.get_ref();
    if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= "nats://".len() {
        return Err(place.at(&nats.url, format!("triggers.nats.url: `{url}` is not a NATS URL (nats://HOST:PORT)")));
    }
    Ok(Some(NatsSettings { url: url.clone(), consumers }))
}

fn consumer(place: &Place, pipeline: &str, raw: &RawNatsConsumer) -> Result<NatsConsumer, ManifestError> {
    let key = format!("pipelines.{pipeline}.nats");
    let token = |value: &toml::Spanned<String>, field: &str, wildcards: bool| -> Result<String, ManifestError> {
        let text = value.get_ref();
        let bad_char = |c: char| c.is_whitespace() || (!wildcards && (c == '*' || c == '>'));
        if text.is_empty() || text.chars().any(bad_char) || text.starts_with('.') || text.ends_with('.') {
            return Err(place.at(value, format!("{key}.{field}: `{text}` is not a valid NATS name")));
        }
        Ok(text.clone())
    };
    let stream = token(&raw.stream, "stream", false)?;
    if stream.contains('.') {
        return Err(place.at(&raw.stream, format!("{key}.stream: stream names cannot contain `.`")));
    }
    let mut consumer = NatsConsumer {
        pipeline: pipeline.into(),
        stream,
        subject: token(&raw.subject, "subject", true)?,
        durable: token(&raw.durable, "durable", false)?,
        results: raw.results.as_ref().map(|r| token(r, "results", false)).transpose()?,
        concurrency: 1,
        ack_wait: Duration::from_secs(30),
        max_deliver: 3,
        dead_letter: raw.dead_letter.as_ref().map(|d| token(d, "dead_letter", false)).transpose()?,
    };
    if let Some(n) = &raw.concurrency {
        if *n.get_ref() == 0 {
            return Err(place.at(n, format!("{key}.concurrency must be at least 1")));
        }
        consumer.concurrency = *n.get_ref();
    }
    if let Some(wait) = &raw.ack_wait {
        consumer.ack_wait = parse_duration(wait.get_ref()).map_err(|e| place.at(wait, format!("{key}.ack_wait: {e}")))?;
        if consumer.ack_wait < Duration::from_secs(1) {
            return Err(place.at(wait, format!("{key}.ack_wait must be at least 1s")));
        }
    }
    if let Some(n) = &raw.max_deliver {
        if *n.get_ref() < 1 {
            return Err(place.at(n, format!("{key}.max_deliver must be at least 1")));
        }
        consumer.max_deliver = *n.get_ref();
    }
    Ok(consumer)
}
