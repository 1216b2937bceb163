//! Prometheus metrics in the text format, for `/metrics`: requests, errors
//! and latency per pipeline and step, energy, cost and CO2 counters, and the
//! model cache's size.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use weir_core::EnergyMethod;
use weir_executor::residency::ComponentStatus;

use crate::receipts::Receipt;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineStatus {
    pipeline: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    pipeline: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnergyLabel {
    pipeline: String,
    step: String,
    method: String,
}

type FloatCounter = Counter<f64, AtomicU64>;

/// Decrements the in-flight gauges (all pipelines, and its own) when
/// dropped (also on errors and cancellation).
pub struct InFlight([Gauge; 2]);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.iter().for_each(|g| {
            g.dec();
        });
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    pipeline: String,
    stream: String,
    consumer: String,
}

/// 100 µs .. ~1.9 h: a message may wait in JetStream far longer than a request runs.
fn queue_wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 2.0, 27))
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~20 s
    Histogram::new(exponential_buckets(1e-5, 2.0, 22))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<PipelineStatus, Counter>,
    latency: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    step_latency: Family<StepLabel, Histogram, fn() -> Histogram>,
    step_cpu: Family<StepLabel, FloatCounter>,
    energy: Family<EnergyLabel, FloatCounter>,
    cost: Family<StepLabel, FloatCounter>,
    co2: Family<StepLabel, FloatCounter>,
    models_loaded: Gauge,
    model_loads: Gauge,
    in_flight: Gauge,
    pipeline_in_flight: Family<PipelineLabel, Gauge>,
    queue_wait: Family<PipelineLabel, Histogram, fn() -> Histogram>,
    step_cold_starts: Family<PipelineLabel, Counter>,
    consumer_pending: Family<ConsumerLabel, Gauge>,
    consumer_ack_pending: Family<ConsumerLabel, Gauge>,
    duplicate_outputs: Family<PipelineLabel, Counter>,
    components_resident: Gauge,
    cold_starts: Family<ComponentLabel, Gauge>,
    resident_memory: Gauge,
    quota_refusals: Family<QuotaLabel, Counter>,
    spans_dropped: Counter,
    process_cpu: FloatCounter,
    process_energy: FloatCounter,
    /// Handles of each pipeline's metrics, looked up once: recording a
    /// request then allocates nothing (label sets are owned strings).
    handles: RwLock<HashMap<String, PipelineHandles>>,
}

struct PipelineHandles {
    ok: Counter,
    latency: Histogram,
    in_flight: Gauge,
    queue_wait: Histogram,
    cold_starts: Counter,
    steps: HashMap<String, StepHandles>,
}

struct StepHandles {
    latency: Histogram,
    cpu: FloatCounter,
    cost: FloatCounter,
    co2: FloatCounter,
    /// One counter per energy method, made on first use.
    energy: [Option<FloatCounter>; 4],
}

fn method_index(method: EnergyMethod) -> usize {
    match method {
        EnergyMethod::CpuModel => 0,
        EnergyMethod::Rapl => 1,
        EnergyMethod::Nvml => 3,
        EnergyMethod::Mixed => 2,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabel {
    key: String,
    pipeline: String,
    limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    component: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let requests = Family::<PipelineStatus, Counter>::default();
        let latency = Family::<PipelineLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let step_latency = Family::<StepLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let step_cpu = Family::<StepLabel, FloatCounter>::default();
        let energy = Family::<EnergyLabel, FloatCounter>::default();
        let cost = Family::<StepLabel, FloatCounter>::default();
        let co2 = Family::<StepLabel, FloatCounter>::default();
        let models_loaded = Gauge::default();
        let model_loads = Gauge::default();
        let in_flight = Gauge::default();
        let pipeline_in_flight = Family::<PipelineLabel, Gauge>::default();
        let queue_wait = Family::<PipelineLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            queue_wait_histogram as fn() -> Histogram,
        );
        let step_cold_starts = Family::<PipelineLabel, Counter>::default();
        let consumer_pending = Family::<ConsumerLabel, Gauge>::default();
        let consumer_ack_pending = Family::<ConsumerLabel, Gauge>::default();
        let duplicate_outputs = Family::<PipelineLabel, Counter>::default();
        let components_resident = Gauge::default();
        let cold_starts = Family::<ComponentLabel, Gauge>::default();
        let resident_memory = Gauge::default();
        registry.register("requests", "Inference requests by pipeline and HTTP status", requests.clone());
        registry.register("request_duration_seconds", "Wall time of successful invocations", latency.clone());
        registry.register("step_duration_seconds", "Wall time of each step", step_latency.clone());
        registry.register("step_cpu_seconds", "CPU time of each step", step_cpu.clone());
        registry.register(
            "energy_joules",
            "Energy attributed to each step, by method (cpu-model is modelled, not measured)",
            energy.clone(),
        );
        registry.register("cost", "Cost attributed to each step, in the manifest's currency", cost.clone());
        registry.register("co2_grams", "gCO2e attributed to each step", co2.clone());
        registry.register("models_loaded", "Models held by the model cache now", models_loaded.clone());
        registry.register("model_loads", "Model loads since start (cold starts of models)", model_loads.clone());
        registry.register("in_flight", "Invocations running now", in_flight.clone());
        // What a scaler reads, per pipeline (docs/scaling.md).
        registry.register("pipeline_in_flight", "Invocations of the pipeline running now", pipeline_in_flight.clone());
        registry.register(
            "queue_wait_seconds",
            "From a request's arrival (or a message's storing in JetStream) to the start of its pipeline",
            queue_wait.clone(),
        );
        registry.register(
            "step_cold_starts",
            "Steps of the pipeline's invocations that had to load their component first",
            step_cold_starts.clone(),
        );
        registry.register(
            "consumer_pending_messages",
            "Messages in the JetStream consumer not yet delivered (the consumer's lag)",
            consumer_pending.clone(),
        );
        registry.register(
            "consumer_ack_pending_messages",
            "Messages delivered to the consumer and not yet acknowledged (being worked on)",
            consumer_ack_pending.clone(),
        );
        registry.register(
            "nats_duplicate_outputs",
            "Results and dead letters JetStream dropped as already stored (a redelivered message answered again, or a retried publish)",
            duplicate_outputs.clone(),
        );
        registry.register(
            "components_resident",
            "Components loaded in memory now (the rest scaled to zero)",
            components_resident.clone(),
        );
        registry.register(
            "component_cold_starts",
            "Cold starts (fetch, compile or cache load, link) of each component since start",
            cold_starts.clone(),
        );
        registry.register("resident_memory_bytes", "Resident set size of the weir process", resident_memory.clone());
        let quota_refusals = Family::<QuotaLabel, Counter>::default();
        registry.register(
            "quota_refusals",
            "Requests refused by a key's quota, by key id, pipeline and limit (rate, concurrent, budget)",
            quota_refusals.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "spans_dropped",
            "OpenTelemetry spans dropped because the exporter fell behind (requests never wait for it)",
            spans_dropped.clone(),
        );
        // What the whole process used, for reconciling with the receipts' sums.
        let process_cpu = FloatCounter::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time of the whole weir process (all threads), to reconcile with the sum of the receipts",
            process_cpu.clone(),
        );
        let process_energy = FloatCounter::default();
        registry.register(
            "process_energy_joules",
            "The process's CPU time priced by the receipts' own energy meter, to reconcile with their sum",
            process_energy.clone(),
        );
        Metrics {
            process_cpu,
            process_energy,
            spans_dropped,
            registry,
            requests,
            latency,
            step_latency,
            step_cpu,
            energy,
            cost,
            co2,
            models_loaded,
            model_loads,
            in_flight,
            pipeline_in_flight,
            queue_wait,
            step_cold_starts,
            consumer_pending,
            consumer_ack_pending,
            duplicate_outputs,
            components_resident,
            cold_starts,
            resident_memory,
            quota_refusals,
            handles: RwLock::new(HashMap::new()),
        }
    }

    /// Run `record` with the pipeline's handles, making them the first time.
    fn with_pipeline(&self, pipeline: &str, record: impl FnOnce(&PipelineHandles)) {
        if let Some(handles) = self.handles.read().unwrap_or_else(|p| p.into_inner()).get(pipeline) {
            return record(handles);
        }
        let mut handles = self.handles.write().unwrap_or_else(|p| p.into_inner());
        let handles = handles.entry(pipeline.into()).or_insert_with(|| PipelineHandles {
            ok: self
                .requests
                .get_or_create(&PipelineStatus { pipeline: pipeline.into(), status: "200".into() })
                .clone(),
            latency: self.latency.get_or_create(&PipelineLabel { pipeline: pipeline.into() }).clone(),
            in_flight: self.pipeline_in_flight.get_or_create(&PipelineLabel { pipeline: pipeline.into() }).clone(),
            queue_wait: self.queue_wait.get_or_create(&PipelineLabel { pipeline: pipeline.into() }).clone(),
            cold_starts: self.step_cold_starts.get_or_create(&PipelineLabel { pipeline: pipeline.into() }).clone(),
            steps: HashMap::new(),
        });
        record(handles);
    }

    /// Run `record` with the step's handles, making them the first time.
    fn with_step(
        &self,
        pipeline: &str,
        step: &str,
        method: EnergyMethod,
        record: impl FnOnce(&StepHandles, &FloatCounter),
    ) {
        {
            let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
            if let Some(step) = handles.get(pipeline).and_then(|p| p.steps.get(step)) {
                if let Some(energy) = &step.energy[method_index(method)] {
                    return record(step, energy);
                }
            }
        }
        let label = StepLabel { pipeline: pipeline.into(), step: step.into() };
        let mut handles = self.handles.write().unwrap_or_else(|p| p.into_inner());
        // `invocation` made the pipeline's handles before its steps'.
        let Some(pipeline_handles) = handles.get_mut(pipeline) else { return };
        let step_handles = pipeline_handles.steps.entry(step.into()).or_insert_with(|| StepHandles {
            latency: self.step_latency.get_or_create(&label).clone(),
            cpu: self.step_cpu.get_or_create(&label).clone(),
            cost: self.cost.get_or_create(&label).clone(),
            co2: self.co2.get_or_create(&label).clone(),
            energy: [None, None, None, None],
        });
        let energy = step_handles.energy[method_index(method)].get_or_insert_with(|| {
            let label = EnergyLabel {
                pipeline: label.pipeline.clone(),
                step: label.step.clone(),
                method: method.as_str().into(),
            };
            self.energy.get_or_create(&label).clone()
        });
        let energy = energy.clone();
        record(step_handles, &energy);
    }

    /// Count an invocation of `pipeline` as running until the guard is dropped.
    pub fn in_flight(&self, pipeline: &str) -> InFlight {
        let mut own = None;
        self.with_pipeline(pipeline, |handles| own = Some(handles.in_flight.clone()));
        let own = own.unwrap_or_default();
        self.in_flight.inc();
        own.inc();
        InFlight([self.in_flight.clone(), own])
    }

    /// What a scaler reads of an invocation that ran (receipts on or off):
    /// how long it waited to start, and how many of its steps started cold.
    pub fn ran(&self, pipeline: &str, queue_wait: Duration, cold_starts: usize) {
        self.with_pipeline(pipeline, |handles| {
            handles.queue_wait.observe(queue_wait.as_secs_f64());
            handles.cold_starts.inc_by(cold_starts as u64);
        });
    }

    /// A JetStream consumer's backlog, as its server reported it.
    pub fn consumer_backlog(&self, pipeline: &str, stream: &str, consumer: &str, pending: u64, ack_pending: u64) {
        let label = ConsumerLabel { pipeline: pipeline.into(), stream: stream.into(), consumer: consumer.into() };
        self.consumer_pending.get_or_create(&label).set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.consumer_ack_pending.get_or_create(&label).set(i64::try_from(ack_pending).unwrap_or(i64::MAX));
    }

    /// Count an output JetStream dropped as a duplicate: a redelivered
    /// message (its first ack was lost) answered again.
    pub fn duplicate_output(&self, pipeline: &str) {
        self.duplicate_outputs.get_or_create(&PipelineLabel { pipeline: pipeline.into() }).inc();
    }

    /// Count a request a key's quota refused (`limit`: rate, concurrent, budget).
    pub fn quota_refused(&self, key: &str, pipeline: &str, limit: &str) {
        let label = QuotaLabel { key: key.into(), pipeline: pipeline.into(), limit: limit.into() };
        self.quota_refusals.get_or_create(&label).inc();
    }

    /// Count a request that ended with `status`.
    pub fn request(&self, pipeline: &str, status: u16) {
        if status == 200 {
            return self.with_pipeline(pipeline, |handles| {
                handles.ok.inc();
            });
        }
        self.requests.get_or_create(&PipelineStatus { pipeline: pipeline.into(), status: status.to_string() }).inc();
    }

    /// Record a successful invocation and its receipt.
    pub fn invocation(&self, pipeline: &str, wall: Duration, receipt: &Receipt) {
        self.with_pipeline(pipeline, |handles| handles.latency.observe(wall.as_secs_f64()));
        for step in &receipt.steps {
            self.with_step(pipeline, &step.step, step.energy_method, |handles, energy| {
                handles.latency.observe(step.wall_us as f64 / 1e6);
                handles.cpu.inc_by(step.cpu_us as f64 / 1e6);
                handles.cost.inc_by(step.cost);
                handles.co2.inc_by(step.gco2e);
                energy.inc_by(step.energy_j);
            });
        }
    }

    /// Bring the process totals up to `cpu` (the process's CPU time so far),
    /// pricing the new CPU time with the receipts' meter `energy`.
    pub fn process_usage(&self, cpu: std::time::Duration, energy: &dyn weir_core::EnergySource) {
        let new = cpu.as_secs_f64() - self.process_cpu.get();
        if new > 0.0 {
            self.process_cpu.inc_by(new);
            self.process_energy.inc_by(energy.attribute(std::time::Duration::from_secs_f64(new)).joules);
        }
    }

    /// Bring `weir_spans_dropped_total` up to the tracer's own count.
    pub fn spans_dropped(&self, total: u64) {
        let counted = self.spans_dropped.get();
        self.spans_dropped.inc_by(total.saturating_sub(counted));
    }

    /// The text exposition, with what is resident now.
    pub fn encode(&self, models: &weir_nn::CacheStats, components: &[ComponentStatus], rss: Option<u64>) -> String {
        self.models_loaded.set(models.loaded.len() as i64);
        self.model_loads.set(models.loads as i64);
        self.components_resident.set(components.iter().filter(|c| c.state == "warm").count() as i64);
        for component in components {
            self.cold_starts
                .get_or_create(&ComponentLabel { component: component.name.clone() })
                .set(component.cold_starts as i64);
        }
        self.resident_memory.set(rss.unwrap_or_default() as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
