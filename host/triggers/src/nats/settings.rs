//! `[triggers.nats]` (the server) and each pipeline's
//! `[pipelines.NAME.triggers.nats]` (its JetStream consumer).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_manifest::sections::PipelineSection;
use weir_manifest::{Manifest, ManifestError, Place};

use crate::sections::{at_least_one, duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

/// `[pipelines.NAME.triggers.nats]`: a JetStream durable consumer feeding the pipeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNatsConsumer {
    stream: Spanned<String>,
    subject: Spanned<String>,
    durable: Spanned<String>,
    /// Where results go; without it, to each message's reply subject.
    results: Option<Spanned<String>>,
    concurrency: Option<Spanned<usize>>,
    ack_wait: Option<Spanned<String>>,
    max_deliver: Option<Spanned<i64>>,
    dead_letter: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

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
    /// The time limit of one message's invocation.
    pub timeout: Duration,
}

impl NatsSettings {
    /// The manifest's NATS sections; `None` when it has none.
    pub fn from_manifest(manifest: &Manifest) -> Result<Option<NatsSettings>, ManifestError> {
        let place = manifest.place();
        let raw_consumers = manifest.pipeline_trigger_sections::<RawNatsConsumer>("nats")?;
        let Some(nats) = manifest.trigger_section::<RawNats>("nats")? else {
            if let Some(section) = raw_consumers.first() {
                return Err(place.at(
                    &section.value.stream,
                    format!("{} needs the server: add [triggers.nats] url = \"nats://HOST:4222\"", section.key),
                ));
            }
            return Ok(None);
        };
        let url = nats.url.get_ref();
        if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= "nats://".len() {
            return Err(place.at(&nats.url, format!("triggers.nats.url: `{url}` is not a NATS URL (nats://HOST:PORT)")));
        }
        let timeout = match &nats.timeout {
            Some(timeout) => duration(&place, timeout, "triggers.nats.timeout")?,
            None => Duration::from_secs(30),
        };
        let consumers =
            raw_consumers.iter().map(|section| consumer(&place, section, timeout)).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(NatsSettings { url: url.clone(), consumers }))
    }
}

fn consumer(
    place: &Place,
    section: &PipelineSection<RawNatsConsumer>,
    timeout: Duration,
) -> Result<NatsConsumer, ManifestError> {
    let (key, raw, pipeline) = (&section.key, &section.value, &section.pipeline);
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
        pipeline: pipeline.clone(),
        stream,
        subject: token(&raw.subject, "subject", true)?,
        durable: token(&raw.durable, "durable", false)?,
        results: raw.results.as_ref().map(|r| token(r, "results", false)).transpose()?,
        concurrency: 1,
        ack_wait: Duration::from_secs(30),
        max_deliver: 3,
        dead_letter: raw.dead_letter.as_ref().map(|d| token(d, "dead_letter", false)).transpose()?,
        timeout,
    };
    if let Some(n) = &raw.concurrency {
        consumer.concurrency = at_least_one(place, n, &format!("{key}.concurrency"))?;
    }
    if let Some(limit) = &raw.timeout {
        consumer.timeout = duration(place, limit, &format!("{key}.timeout"))?;
    }
    if let Some(wait) = &raw.ack_wait {
        consumer.ack_wait = duration(place, wait, &format!("{key}.ack_wait"))?;
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
