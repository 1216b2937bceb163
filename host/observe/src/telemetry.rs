//! OpenTelemetry traces: a span per invocation and one per step, exported
//! with OTLP over HTTP (JSON encoding) when an endpoint is configured; off
//! by default. W3C `traceparent` from the caller makes weir's spans children
//! of the caller's.
//!
//! Configured the standard way: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full
//! URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is appended),
//! `OTEL_SERVICE_NAME` (default `weir`), `OTEL_BSP_SCHEDULE_DELAY` (ms
//! between exports, default 1000). Spans wait in a bounded queue; when the
//! collector is slow or down they are dropped (and counted), never the
//! requests.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use weir_executor::PipelineOutput;

/// Spans waiting for export at most; more are dropped.
const QUEUE: usize = 8192;
/// Spans per export request at most.
const BATCH: usize = 512;

/// A W3C trace context: the caller's trace and parent span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_span_id: Option<[u8; 8]>,
}

impl TraceContext {
    /// The `traceparent` naming span `span_id` of this trace (sampled).
    pub fn traceparent(&self, span_id: [u8; 8]) -> String {
        format!("00-{}-{}-01", hex::encode(self.trace_id), hex::encode(span_id))
    }

    /// Parse a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`); `None`
    /// for anything malformed, which then starts a new trace.
    pub fn from_traceparent(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" {
            return None;
        }
        let trace_id: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
        let span_id: [u8; 8] = hex::decode(span).ok()?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, parent_span_id: Some(span_id) })
    }

    pub fn new_root() -> TraceContext {
        let mut trace_id = [0; 16];
        trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_u64().to_be_bytes());
        TraceContext { trace_id, parent_span_id: None }
    }
}

/// Random enough for span ids: std's per-process random hasher keys over a counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish().max(1)
}

fn unix_nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()).to_string()
}

fn attribute(key: &str, value: Value) -> Value {
    let value = match value {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_f64() => json!({ "doubleValue": n }),
        // OTLP JSON carries 64-bit integers as strings.
        Value::Number(n) => json!({ "intValue": n.to_string() }),
        other => json!({ "stringValue": other.to_string() }),
    };
    json!({ "key": key, "value": value })
}

/// The finished invocation as spans, ready to export. Returns them and the
/// invocation span's id (for the response's `traceparent`).
pub fn invocation_spans(pipeline: &str, context: TraceContext, output: &PipelineOutput) -> (Vec<Value>, [u8; 8]) {
    let end = SystemTime::now();
    let start = end - output.wall;
    let span_id = random_u64().to_be_bytes();
    let trace_id = hex::encode(context.trace_id);
    let mut spans = vec![json!({
        "traceId": trace_id,
        "spanId": hex::encode(span_id),
        "parentSpanId": context.parent_span_id.map(hex::encode).unwrap_or_default(),
        "name": format!("invoke {pipeline}"),
        "kind": 2, // SERVER
        "startTimeUnixNano": unix_nanos(start),
        "endTimeUnixNano": unix_nanos(end),
        "attributes": [
            attribute("weir.pipeline", json!(pipeline)),
            attribute("weir.invocation_id", json!(output.invocation_id)),
            attribute("weir.queue_wait_us", json!(output.queue_wait.as_micros() as u64)),
        ],
        "status": { "code": 1 },
    })];
    if let (Some(tag), Some(attributes)) = (&output.variant, spans[0]["attributes"].as_array_mut()) {
        attributes.push(attribute("weir.experiment", json!(tag.experiment)));
        attributes.push(attribute("weir.variant", json!(tag.variant)));
    }
    for step in &output.steps {
        let step_start = start + step.started_after;
        let mut attributes = vec![
            attribute("weir.step", json!(step.step)),
            attribute("weir.cpu_us", json!(step.stats.cpu.as_micros() as u64)),
            attribute("weir.instantiate_us", json!(step.stats.instantiate.as_micros() as u64)),
            attribute("weir.inference_us", json!(step.stats.nn.inference_time.as_micros() as u64)),
            attribute("weir.peak_memory_bytes", json!(step.stats.peak_memory_bytes)),
            attribute("weir.energy_j", json!(step.energy.joules)),
            attribute("weir.cold_start", json!(step.cold_start.is_some())),
        ];
        attributes.extend(step.stats.nn.models.iter().map(|m| attribute("weir.model", json!(m.name))));
        spans.push(json!({
            "traceId": trace_id,
            "spanId": hex::encode(random_u64().to_be_bytes()),
            "parentSpanId": hex::encode(span_id),
            "name": format!("step {}", step.step),
            "kind": 1, // INTERNAL
            "startTimeUnixNano": unix_nanos(step_start),
            "endTimeUnixNano": unix_nanos(step_start + step.stats.wall),
            "attributes": attributes,
            "status": { "code": 1 },
        }));
    }
    (spans, span_id)
}

/// A failed invocation as one span with an error status.
pub fn failed_invocation_span(pipeline: &str, context: TraceContext, wall: Duration, error: &str) -> Value {
    let end = SystemTime::now();
    json!({
        "traceId": hex::encode(context.trace_id),
        "spanId": hex::encode(random_u64().to_be_bytes()),
        "parentSpanId": context.parent_span_id.map(hex::encode).unwrap_or_default(),
        "name": format!("invoke {pipeline}"),
        "kind": 2,
        "startTimeUnixNano": unix_nanos(end - wall),
        "endTimeUnixNano": unix_nanos(end),
        "attributes": [attribute("weir.pipeline", json!(pipeline))],
        "status": { "code": 2, "message": error },
    })
}

/// Where spans go; `None` from `from_env` means tracing is off.
pub struct Tracer {
    queue: mpsc::Sender<Value>,
    dropped: Arc<AtomicU64>,
}

impl Tracer {
    /// The exporter the environment asks for, started on the current tokio
    /// runtime; `None` when no endpoint is set.
    pub fn from_env() -> Option<Tracer> {
        let endpoint = match std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Ok(url) if !url.is_empty() => url,
            _ => format!(
                "{}/v1/traces",
                std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|u| !u.is_empty())?.trim_end_matches('/')
            ),
        };
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "weir".into());
        let delay = std::env::var("OTEL_BSP_SCHEDULE_DELAY").ok().and_then(|ms| ms.parse().ok()).unwrap_or(1000);
        Some(Tracer::start(endpoint, service, Duration::from_millis(delay)))
    }

    pub fn start(endpoint: String, service: String, every: Duration) -> Tracer {
        let (queue, spans) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tracing::info!(%endpoint, "exporting OpenTelemetry traces (OTLP/HTTP JSON)");
        tokio::spawn(export(endpoint, service, every, spans));
        Tracer { queue, dropped }
    }

    /// Queue spans for export; drops them when the queue is full.
    pub fn record(&self, spans: impl IntoIterator<Item = Value>) {
        for span in spans {
            if self.queue.try_send(span).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Spans dropped because the exporter fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn export(endpoint: String, service: String, every: Duration, mut spans: mpsc::Receiver<Value>) {
    let client = match tokio::task::spawn_blocking(reqwest::Client::new).await {
        Ok(client) => client,
        Err(error) => return tracing::error!(%error, "cannot start the trace exporter"),
    };
    let resource = json!({ "attributes": [attribute("service.name", json!(service))] });
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let deadline = tokio::time::sleep(every);
        tokio::pin!(deadline);
        // Collect until the batch is full or the interval is over.
        loop {
            tokio::select! {
                span = spans.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH { break; }
                    }
                    None if batch.is_empty() => return,
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let body = json!({ "resourceSpans": [{
            "resource": resource,
            "scopeSpans": [{ "scope": { "name": "weir", "version": env!("CARGO_PKG_VERSION") }, "spans": std::mem::take(&mut batch) }],
        }]});
        let sent = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(status = %response.status(), %endpoint, "the trace collector refused spans"),
            Err(error) => tracing::warn!(%error, %endpoint, "could not export spans"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let context =
            TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(context.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_span_id.map(hex::encode).as_deref(), Some("00f067aa0ba902b7"));
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::from_traceparent(bad).is_none(), "{bad}");
        }
        assert_ne!(TraceContext::new_root().trace_id, TraceContext::new_root().trace_id);
    }

    #[test]
    fn an_invocation_span_names_the_variant_that_served_it() {
        let output = PipelineOutput {
            invocation_id: "abc".into(),
            outputs: Vec::new(),
            steps: Vec::new(),
            wall: Duration::from_millis(2),
            queue_wait: Duration::ZERO,
            kept: Default::default(),
            variant: Some(weir_executor::VariantTag { experiment: "eta".into(), variant: "v2".into(), shadow: false }),
        };
        let (spans, _) = invocation_spans("ride", TraceContext::new_root(), &output);
        let attributes = spans[0]["attributes"].as_array().unwrap();
        let value = |key: &str| attributes.iter().find(|a| a["key"] == key).map(|a| a["value"]["stringValue"].clone());
        assert_eq!(value("weir.experiment"), Some(json!("eta")));
        assert_eq!(value("weir.variant"), Some(json!("v2")));
        let plain = PipelineOutput { variant: None, ..output };
        let (spans, _) = invocation_spans("ride", TraceContext::new_root(), &plain);
        assert!(!spans[0].to_string().contains("weir.variant"));
    }
}
