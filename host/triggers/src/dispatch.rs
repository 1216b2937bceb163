//! The one trigger contract. Every trigger (HTTP, asynchronous jobs, NATS)
//! hands a request to the [`Dispatcher`]: it is parsed, run under the
//! trigger's time limit, priced, counted in metrics, exported as spans and
//! answered — or failed with an [`ErrorKind`] that each trigger maps the
//! same way (HTTP status, job status, queue retry). So the three behave
//! the same by construction; only their settings differ.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use weir_core::ids::new_invocation_id;
use weir_core::{Classify, ErrorKind};
use weir_executor::{Executor, PipelineOutput, RunOptions, Seeded};
use weir_manifest::StickyKey;
use weir_observe::metrics::Metrics;
use weir_observe::receipts::{invocation_receipt, Receipt};
use weir_observe::telemetry::{self, TraceContext, Tracer};
use weir_rollout::{Rollout, Rollouts, Routed, Run, ShadowJob};

use crate::oip::{self, BinaryOutputs, InferenceRequest, InferenceResponse, RequestLimits};

/// Which trigger a request came through (for logs and spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Http,
    Grpc,
    Jobs,
    Nats,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Http => "http",
            TriggerKind::Grpc => "grpc",
            TriggerKind::Jobs => "jobs",
            TriggerKind::Nats => "nats",
        }
    }
}

/// A failed request: whose fault, and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure { kind, message: message.into() }
    }

    /// Any classified error, with its own message.
    pub fn from_error<E: Classify + std::fmt::Display>(error: &E) -> Failure {
        Failure::new(error.kind(), error.to_string())
    }

    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> u16 {
        self.kind.http_status()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Classify + std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::from_error(&error)
    }
}

/// How an invocation's answer goes back on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// OIP JSON (every trigger's default).
    Json,
    /// JSON, with the outputs the request asked for as binary data after it
    /// (HTTP's binary tensor extension).
    Binary(BinaryOutputs),
    /// The trigger encodes [`Completed::response`] itself (gRPC); no body is written.
    Typed,
}

/// A parsed request, ready to run.
pub struct Prepared {
    pub request: InferenceRequest,
    inputs: Vec<weir_core::Tensor>,
    options: RunOptions,
    encoding: Encoding,
}

impl Prepared {
    /// Parse an OIP JSON request body within `limits`; `received` starts the
    /// queue-wait clock.
    pub fn parse(body: &[u8], received: Instant, limits: &RequestLimits) -> Result<Prepared, Failure> {
        let request = oip::parse_request(body, limits)?;
        let inputs = oip::request_tensors(&request)?;
        Prepared::new(request, inputs, received, Encoding::Json)
    }

    /// Parse an HTTP request body: JSON, or with `header_length`
    /// (`Inference-Header-Content-Length`) a JSON header and binary tensor
    /// data; answered with the binary outputs the request asks for.
    pub fn parse_http(
        body: &[u8],
        header_length: Option<&str>,
        received: Instant,
        limits: &RequestLimits,
    ) -> Result<Prepared, Failure> {
        let (json, binary) = match header_length {
            Some(length) => oip::split_body(body, length)?,
            None => (body, &[][..]),
        };
        let request = oip::parse_request(json, limits)?;
        let inputs = oip::request_tensors_with(&request, binary)?;
        let encoding = Encoding::Binary(BinaryOutputs::of(&request)?);
        Prepared::new(request, inputs, received, encoding)
    }

    /// A request whose tensors were decoded by the trigger (gRPC): its
    /// names, counts and parameters are checked within `limits` here.
    pub fn from_parts(
        request: InferenceRequest,
        inputs: Vec<weir_core::Tensor>,
        received: Instant,
        limits: &RequestLimits,
    ) -> Result<Prepared, Failure> {
        oip::check_request(&request, limits)?;
        Prepared::new(request, inputs, received, Encoding::Typed)
    }

    fn new(
        request: InferenceRequest,
        inputs: Vec<weir_core::Tensor>,
        received: Instant,
        encoding: Encoding,
    ) -> Result<Prepared, Failure> {
        let mut options = oip::run_options(&request)?;
        options.received = Some(received);
        Ok(Prepared { request, inputs, options, encoding })
    }

    /// The request's tensors.
    pub fn inputs(&self) -> &[weir_core::Tensor] {
        &self.inputs
    }

    /// Whose data the request carries (`parameters.subject`).
    pub fn subject(&self) -> Option<&str> {
        self.options.subject.as_deref()
    }

    /// Answer with the full receipt unless the request asked for the compact one.
    pub fn prefer_full_receipt(&mut self) {
        let asked = self.request.parameters.as_ref().and_then(|p| p.get("receipt")).is_some();
        self.options.full_receipt |= !asked;
    }
}

/// A finished invocation and its OIP response.
pub struct Completed {
    pub output: PipelineOutput,
    pub receipt: Option<Receipt>,
    pub response: InferenceResponse,
    /// `response` as JSON (and binary outputs), within the response limit;
    /// empty for [`Encoding::Typed`].
    pub body: Vec<u8>,
    /// The JSON's length in `body` when binary outputs follow it.
    pub header_length: Option<usize>,
    /// The span id of the invocation's span (for `traceparent` answers).
    pub span_id: Option<[u8; 8]>,
}

/// One request as a trigger hands it over.
pub struct Invocation<'a> {
    pub trigger: TriggerKind,
    pub pipeline: &'a str,
    pub prepared: Prepared,
    /// The trigger's time limit for the whole invocation.
    pub timeout: Duration,
    /// The caller's trace, when it sent one (or a new root when tracing is on).
    pub trace: Option<TraceContext>,
    /// The value of the experiment's sticky header, when the trigger has
    /// headers ([`Dispatcher::sticky_header`] names it).
    pub sticky_header: Option<String>,
}

/// What one manifest runs with: its executor and experiments. A reload
/// makes a new generation; invocations keep the one they started with.
pub struct Generation {
    pub executor: Arc<Executor>,
    pub rollouts: Rollouts,
    /// 1 for the manifest weir started with, one more per reload.
    pub number: u64,
}

/// What every trigger shares: the current generation, receipts, metrics and spans.
pub struct Dispatcher {
    current: RwLock<Arc<Generation>>,
    receipts: bool,
    metrics: Arc<Metrics>,
    tracer: Option<Tracer>,
    limits: RequestLimits,
}

impl Dispatcher {
    /// `receipts` turns per-invocation receipts (and their metrics) on;
    /// `tracer` exports spans when an OTLP endpoint is configured.
    pub fn new(executor: Arc<Executor>, receipts: bool, metrics: Arc<Metrics>, tracer: Option<Tracer>) -> Dispatcher {
        let rollouts = Rollouts::new(executor.manifest(), None);
        let current = RwLock::new(Arc::new(Generation { executor, rollouts, number: 1 }));
        Dispatcher { current, receipts, metrics, tracer, limits: RequestLimits::default() }
    }

    /// What new invocations run with now.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serve `executor`'s manifest from now on: invocations already running
    /// finish on the generation they started with. Experiments that did not
    /// change keep their state. Returns the new generation's number.
    pub fn swap(&self, executor: Arc<Executor>) -> u64 {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        let rollouts = Rollouts::new(executor.manifest(), Some(&current.rollouts));
        let number = current.number + 1;
        *current = Arc::new(Generation { executor, rollouts, number });
        number
    }

    /// The header whose value keeps a caller of `pipeline` on one variant, if its experiment has one.
    pub fn sticky_header(&self, pipeline: &str) -> Option<String> {
        match self.generation().rollouts.on(pipeline)?.sticky()? {
            StickyKey::Header(name) => Some(name.clone()),
            StickyKey::Parameter(_) => None,
        }
    }

    /// What one request may hold, for every trigger alike.
    pub fn with_limits(mut self, limits: RequestLimits) -> Dispatcher {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    /// Parse a request body under this dispatcher's limits.
    pub fn prepare(&self, body: &[u8], received: Instant) -> Result<Prepared, Failure> {
        Prepared::parse(body, received, &self.limits)
    }

    /// The current generation's executor.
    pub fn executor(&self) -> Arc<Executor> {
        self.generation().executor.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Spans dropped so far because the exporter fell behind (0 without one).
    pub fn spans_dropped(&self) -> u64 {
        self.tracer.as_ref().map_or(0, Tracer::dropped)
    }

    /// The trace a request continues: its `traceparent` when valid, a new
    /// root otherwise; `None` when spans are not exported.
    pub fn trace(&self, traceparent: Option<&str>) -> Option<TraceContext> {
        self.tracer.as_ref()?;
        Some(traceparent.and_then(TraceContext::from_traceparent).unwrap_or_else(TraceContext::new_root))
    }

    /// Count an answer that did not run an invocation (a bad request, a 202).
    pub fn count(&self, pipeline: &str, status: u16) {
        self.metrics.request(pipeline, status);
    }

    /// Run one invocation under the trigger's time limit; over it, the
    /// invocation is cancelled (timed out). Metrics, spans and logs are
    /// recorded here, for every trigger alike. A panic anywhere in the run is
    /// caught and answered as an internal error naming the invocation: the
    /// trigger (an HTTP worker, a job worker, a queue consumer) lives on.
    pub async fn invoke(&self, invocation: Invocation<'_>) -> Result<Completed, Failure> {
        let Invocation { trigger, pipeline, mut prepared, timeout, trace, sticky_header } = invocation;
        let received = prepared.options.received.unwrap_or_else(Instant::now);
        let invocation_id = prepared.options.invocation_id.get_or_insert_with(new_invocation_id).clone();
        let _in_flight = self.metrics.in_flight(pipeline);
        let run = AssertUnwindSafe(self.run(pipeline, prepared, timeout, trace, sticky_header)).catch_unwind();
        let result = run.await.unwrap_or_else(|panic| {
            let why = panic_message(panic.as_ref());
            tracing::error!(trigger = trigger.as_str(), pipeline, invocation = %invocation_id, panic = %why, "an invocation panicked");
            Err(Failure::new(
                ErrorKind::Internal,
                format!("internal error in invocation {invocation_id} (a bug in weir, please report it): {why}"),
            ))
        });
        match &result {
            Ok(completed) => {
                self.metrics.request(pipeline, 200);
                let cold = completed.output.steps.iter().filter(|s| s.cold_start.is_some()).count();
                self.metrics.ran(pipeline, completed.output.queue_wait, cold);
                if let Some(receipt) = &completed.receipt {
                    self.metrics.invocation(pipeline, completed.output.wall, receipt);
                }
            }
            Err(failure) => {
                self.metrics.request(pipeline, failure.status());
                tracing::warn!(trigger = trigger.as_str(), pipeline, kind = %failure.kind, error = %failure.message, "invocation failed");
                if let (Some(tracer), Some(trace)) = (&self.tracer, trace) {
                    tracer.record([telemetry::failed_invocation_span(
                        pipeline,
                        trace,
                        received.elapsed(),
                        &failure.message,
                    )]);
                }
            }
        }
        result
    }

    async fn run(
        &self,
        pipeline: &str,
        prepared: Prepared,
        timeout: Duration,
        trace: Option<TraceContext>,
        sticky_header: Option<String>,
    ) -> Result<Completed, Failure> {
        let Prepared { request, inputs, mut options, encoding } = prepared;
        let generation = self.generation();
        let executor = &generation.executor;
        let experiment = match generation.rollouts.on(pipeline) {
            Some(rollout) => {
                let key = sticky_key(rollout, &request, sticky_header);
                let mut routed = rollout.route(key.as_deref());
                if options.until.is_some() || options.trace {
                    // A step's tensors or a trace answer is no answer to compare.
                    routed.shadows.clear();
                }
                options.variant = Some(rollout.tag(routed.served, false));
                options.keep_steps = rollout.keep_for(&routed);
                Some((rollout, routed))
            }
            None => None,
        };
        let target = match &experiment {
            Some((rollout, routed)) => rollout.pipeline(routed.served),
            None => executor.pipeline(pipeline)?,
        };
        let copies = experiment.as_ref().filter(|(_, r)| !r.shadows.is_empty()).map(|_| inputs.clone());
        let run = executor.run_pipeline(target, inputs, &options, Seeded::new());
        let result = tokio::time::timeout(timeout, run).await;
        // Priced once, for the caller's receipt and for the experiment's figures.
        let receipt = match &result {
            Ok(Ok(output)) if self.receipts || experiment.is_some() => {
                Some(invocation_receipt(output, &executor.manifest().accounting))
            }
            _ => None,
        };
        if let Some((rollout, routed)) = &experiment {
            rollout.served(routed.served, served_run(&result, receipt.as_ref()));
        }
        let result = match result {
            Ok(result) => result.map_err(Failure::from),
            Err(_) => {
                let message = format!("the invocation took longer than {timeout:?} and was cancelled");
                Err(Failure::new(ErrorKind::TimedOut, message))
            }
        };
        if let (Some((rollout, routed)), Ok(output), Some(inputs)) = (&experiment, &result, copies) {
            self.shadow(executor, rollout, routed, output, inputs);
        }
        let mut output = result?;
        output.kept.clear();
        let receipt = receipt.filter(|_| self.receipts);
        let sensitive = target.sensitive.as_slice();
        let mut response = oip::pipeline_response(pipeline, &request, &output, &options, receipt.as_ref(), sensitive)?;
        let (body, header_length) = match &encoding {
            Encoding::Json => (oip::to_json_bounded(&response, self.limits.max_response_bytes)?, None),
            Encoding::Binary(binary) => {
                oip::use_binary_outputs(&mut response, binary);
                oip::encode_response(&response, self.limits.max_response_bytes)?
            }
            Encoding::Typed => (Vec::new(), None),
        };
        let span_id = match (&self.tracer, trace) {
            (Some(tracer), Some(trace)) => {
                let (spans, span_id) = telemetry::invocation_spans(pipeline, trace, &output);
                tracer.record(spans);
                Some(span_id)
            }
            _ => None,
        };
        Ok(Completed { output, receipt, response, body, header_length, span_id })
    }

    /// Queue the request's shadow copies, each seeded with the served run's
    /// outputs of the steps it shares with the variant that served.
    fn shadow(
        &self,
        executor: &Arc<Executor>,
        rollout: &Rollout,
        routed: &Routed,
        output: &PipelineOutput,
        inputs: Vec<weir_core::Tensor>,
    ) {
        for &variant in &routed.shadows {
            let seeded: Seeded = rollout
                .shared_between(variant, routed.served)
                .into_iter()
                .filter_map(|step| output.kept.get(&step).map(|tensors| (step, tensors.clone())))
                .collect();
            let options = RunOptions { variant: Some(rollout.tag(variant, true)), ..RunOptions::default() };
            rollout.shadow(ShadowJob {
                executor: executor.clone(),
                variant,
                served: routed.served,
                served_outputs: output.outputs.clone(),
                inputs: inputs.clone(),
                seeded,
                options,
                pricing: executor.manifest().accounting.clone(),
            });
        }
    }
}

/// The key that keeps a caller on one variant: the experiment's header
/// (as the trigger read it) or request parameter.
fn sticky_key(rollout: &Rollout, request: &InferenceRequest, header: Option<String>) -> Option<String> {
    match rollout.sticky()? {
        StickyKey::Header(_) => header,
        StickyKey::Parameter(name) => {
            let value = request.parameters.as_ref()?.get(name)?;
            Some(value.as_str().map_or_else(|| value.to_string(), str::to_string))
        }
    }
}

/// How a served run counts for its variant. A request refused before any
/// step ran (inputs that do not match the declared ones) says nothing about
/// the variant; anything a step did, its time limit included, counts.
fn served_run(
    result: &Result<Result<PipelineOutput, weir_executor::PipelineError>, tokio::time::error::Elapsed>,
    receipt: Option<&Receipt>,
) -> Option<Run> {
    match (result, receipt) {
        (Ok(Ok(output)), Some(receipt)) => Some(Run::priced(output, receipt)),
        // Never: an experiment's runs are always priced.
        (Ok(Ok(_)), None) => None,
        (Ok(Err(error)), _) if error.is_caller_error() && error.step().is_none() => None,
        _ => Some(Run::failed()),
    }
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
