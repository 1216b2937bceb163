//! `[triggers.nats]` (the server) and each pipeline's
//! `[pipelines.NAME.triggers.nats]` (its JetStream consumer).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weir_manifest::sections::PipelineSection;
use weir_manifest::{Manifest, ManifestError, Place};

use weir_manifest::limits;

use crate::sections::{at_least_one, duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Spanned<String>,
    timeout: Option<Spanned<String>>,
    reply_prefix: Option<Spanned<String>>,
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
    reply_prefix: Option<Spanned<String>>,
    /// Copies JetStream keeps of the streams weir creates (a cluster's nodes).
    replicas: Option<Spanned<i64>>,
}

/// Where a message may ask its result to be sent when `reply_prefix` is not set.
pub const DEFAULT_REPLY_PREFIX: &str = "weir.replies.";
/// The most messages one host runs at once for one consumer.
pub const MAX_CONCURRENCY: usize = 1024;
/// The most times a message may be delivered before it is dead-lettered.
pub const MAX_DELIVER: i64 = 100;
/// JetStream's own limit on a stream's replicas.
pub const MAX_REPLICAS: i64 = 5;
/// The most servers `triggers.nats.url` may list.
pub const MAX_SERVERS: usize = 32;

/// The NATS server and the consumers feeding pipelines.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    /// As written (for messages): one URL, or a cluster's, comma-separated.
    pub url: String,
    /// Each server of `url`: the client fails over between them.
    pub servers: Vec<String>,
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
    /// Deliveries a message gets (failing in a retryable way, or with its
    /// host stopping) before it is dead-lettered.
    pub max_deliver: i64,
    pub dead_letter: Option<String>,
    /// The time limit of one message's invocation.
    pub timeout: Duration,
    /// A message's `Weir-Reply-To` must start with this (ends with `.`).
    pub reply_prefix: String,
    /// Replicas of the streams weir creates (the input stream and
    /// `<STREAM>_OUT`); existing streams are used as they are.
    pub replicas: usize,
}

impl NatsConsumer {
    /// The subjects this consumer publishes to (JetStream must store them,
    /// for publishes to be acknowledged): results or the reply prefix's
    /// subjects, and the dead-letter subject.
    pub fn outputs(&self) -> Vec<String> {
        let mut subjects = vec![match &self.results {
            Some(results) => results.clone(),
            None => format!("{}>", self.reply_prefix),
        }];
        subjects.extend(self.dead_letter.clone());
        subjects
    }
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
        let servers: Vec<String> = url.split(',').map(|s| s.trim().to_string()).collect();
        if servers.len() > MAX_SERVERS {
            let message = format!("triggers.nats.url lists {} servers; at most {MAX_SERVERS}", servers.len());
            return Err(place.at(&nats.url, message));
        }
        if let Some(bad) = servers.iter().find(|s| {
            !(s.starts_with("nats://") || s.starts_with("tls://")) || s.len() <= "nats://".len() || s.contains(' ')
        }) {
            return Err(place.at(
                &nats.url,
                format!(
                    "triggers.nats.url: `{bad}` is not a NATS URL (nats://HOST:PORT; a cluster's servers are \
                     comma-separated)"
                ),
            ));
        }
        let timeout = match &nats.timeout {
            Some(timeout) => duration(&place, timeout, "triggers.nats.timeout")?,
            None => Duration::from_secs(30),
        };
        let reply_prefix = match &nats.reply_prefix {
            Some(prefix) => subject_prefix(&place, prefix, "triggers.nats.reply_prefix")?,
            None => DEFAULT_REPLY_PREFIX.to_string(),
        };
        let consumers = raw_consumers
            .iter()
            .map(|section| consumer(&place, section, timeout, &reply_prefix))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(NatsSettings { url: url.clone(), servers, consumers }))
    }
}

fn consumer(
    place: &Place,
    section: &PipelineSection<RawNatsConsumer>,
    timeout: Duration,
    reply_prefix: &str,
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
        reply_prefix: reply_prefix.to_string(),
        replicas: 1,
    };
    for (value, field) in [(&raw.results, "results"), (&raw.dead_letter, "dead_letter")] {
        if let Some(value) = value.as_ref().filter(|v| v.get_ref().starts_with('$')) {
            let message = format!("{key}.{field}: `{}` is a system subject (it starts with `$`)", value.get_ref());
            return Err(place.at(value, message));
        }
    }
    if let Some(prefix) = &raw.reply_prefix {
        consumer.reply_prefix = subject_prefix(place, prefix, &format!("{key}.reply_prefix"))?;
    }
    if let Some(n) = &raw.concurrency {
        consumer.concurrency = at_least_one(place, n, &format!("{key}.concurrency"))?;
        limits::count(place, n, &format!("{key}.concurrency"), 1, MAX_CONCURRENCY)?;
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
    if let Some(n) = &raw.replicas {
        // In range 1..=5, so the cast is exact.
        consumer.replicas = limits::count(place, n, &format!("{key}.replicas"), 1, MAX_REPLICAS)? as usize;
    }
    if let Some(n) = &raw.max_deliver {
        if *n.get_ref() < 1 {
            return Err(place.at(n, format!("{key}.max_deliver must be at least 1")));
        }
        consumer.max_deliver = limits::count(place, n, &format!("{key}.max_deliver"), 1, MAX_DELIVER)?;
    }
    Ok(consumer)
}

/// A subject prefix such as `weir.replies.`: whole tokens, ending with `.`,
/// no wildcards, not a system (`$...`) subject.
fn subject_prefix(place: &Place, value: &Spanned<String>, key: &str) -> Result<String, ManifestError> {
    let text = value.get_ref();
    let why = if text.starts_with('$') {
        Some("it may not name system subjects (starting with `$`)")
    } else if !text.ends_with('.') || text.len() < 2 {
        Some("it must be one or more whole tokens ending with `.`, such as `weir.replies.`")
    } else if text.starts_with('.') || text.contains("..") {
        Some("it has an empty token")
    } else if !text.chars().all(|c| c.is_ascii_graphic() && c != '*' && c != '>') {
        Some("it may hold no wildcards (`*`, `>`), spaces or non-ASCII characters")
    } else if text.len() > 200 {
        Some("it is longer than 200 characters")
    } else {
        None
    };
    match why {
        Some(why) => Err(place.at(value, format!("{key}: `{text}` is not a subject prefix: {why}"))),
        None => Ok(text.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn read(nats: &str, consumer: &str) -> Result<Option<NatsSettings>, ManifestError> {
        let text = format!(
            "[components.c]\nsource = \"c.wasm\"\n[pipelines.p]\nsteps = [{{ name = \"s\", component = \"c\", inputs = \
             [\"input.x\"] }}]\noutputs = {{ y = \"s.y\" }}\n[triggers.nats]\n{nats}\n[pipelines.p.triggers.nats]\n\
             stream = \"S\"\nsubject = \"in.p\"\ndurable = \"d\"\n{consumer}\n"
        );
        NatsSettings::from_manifest(&weir_manifest::parse(Path::new("weir.toml"), &text).unwrap())
    }

    #[test]
    fn a_cluster_is_its_servers_comma_separated() {
        let settings = read("url = \"nats://a:4222, nats://b:4222,tls://c:4222\"", "").unwrap().unwrap();
        assert_eq!(settings.servers, ["nats://a:4222", "nats://b:4222", "tls://c:4222"]);
        assert_eq!(settings.consumers[0].replicas, 1, "one copy unless asked");
        let error = read("url = \"nats://a:4222,http://b\"", "").unwrap_err().to_string();
        assert!(error.contains("`http://b` is not a NATS URL") && error.contains("comma-separated"), "{error}");
        let error = read("url = \"nats://a:4222,,nats://b:4222\"", "").unwrap_err().to_string();
        assert!(error.contains("`` is not a NATS URL"), "{error}");
        let many = vec!["nats://a:1"; MAX_SERVERS + 1].join(",");
        let error = read(&format!("url = \"{many}\""), "").unwrap_err().to_string();
        assert!(error.contains("lists 33 servers; at most 32"), "{error}");
    }

    #[test]
    fn replicas_are_within_jetstreams_limit() {
        let settings = read("url = \"nats://a:4222\"", "replicas = 3").unwrap().unwrap();
        assert_eq!(settings.consumers[0].replicas, 3);
        for bad in ["0", "6", "-1"] {
            let error = read("url = \"nats://a:4222\"", &format!("replicas = {bad}")).unwrap_err().to_string();
            assert!(error.contains(&format!("replicas = {bad} is out of range; allowed: 1 to 5")), "{error}");
        }
    }
}
