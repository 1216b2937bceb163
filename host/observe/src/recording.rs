//! The provenance observer: builds one invocation's record from its events
//! (component and model digests, grants, a hash — and, when allowed, the
//! data — of every tensor on every edge, the receipt) and writes it to the
//! store when the invocation finishes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_core::tensor::datatype_name;
use weir_core::{Classify, ErrorKind};
use weir_core::{Digest, Pricing, Tensor};
use weir_executor::{
    InvocationFinished, InvocationObserver, InvocationStarted, Observer, PipelineError, StepFinished, StepStarted,
};
use weir_manifest::Source;

use crate::hash_key::HashKey;
use crate::provenance::{EdgeTensor, InvocationRecord, ProvenanceStore, RecordedError, StepRecord};
use crate::receipts::{receipt, step_receipt, Receipt, StepReceipt};

/// The longest error message a record keeps.
const ERROR_CHARS: usize = 4096;

/// Records every invocation of a manifest's pipelines in `store`.
pub struct ProvenanceRecorder {
    store: Arc<ProvenanceStore>,
    pricing: Pricing,
    keep_tensors: bool,
    hash_key: HashKey,
}

impl ProvenanceRecorder {
    pub fn new(store: Arc<ProvenanceStore>, pricing: Pricing, keep_tensors: bool, hash_key: HashKey) -> Self {
        ProvenanceRecorder { store, pricing, keep_tensors, hash_key }
    }
}

impl Observer for ProvenanceRecorder {
    fn begin(&self, started: &InvocationStarted) -> Option<Box<dyn InvocationObserver>> {
        let mut recording = Recording {
            invocation_id: started.invocation_id.to_string(),
            pipeline: started.pipeline.name.clone(),
            subject: started.options.subject.clone(),
            variant: started.options.variant.as_ref().map(crate::receipts::Served::of),
            began: Instant::now(),
            request: Vec::new(),
            priced: Vec::new(),
            written: false,
            store: self.store.clone(),
            pricing: self.pricing.clone(),
            keep_tensors: self.keep_tensors,
            hash_key: self.hash_key.clone(),
            sensitive: started.pipeline.sensitive.clone(),
            steps: HashMap::new(),
            finished: Vec::new(),
        };
        let mut request: Vec<EdgeTensor> =
            started.inputs.values().map(|t| recording.edge(t, &Source::Input(t.name.clone()))).collect();
        request.sort_by(|a, b| a.name.cmp(&b.name));
        recording.request = request;
        Some(Box::new(recording))
    }
}

struct Recording {
    invocation_id: String,
    pipeline: String,
    subject: Option<String>,
    variant: Option<crate::receipts::Served>,
    began: Instant,
    /// The request's tensors as edges.
    request: Vec<EdgeTensor>,
    /// Receipts of the steps that finished, for a failed invocation's record.
    priced: Vec<StepReceipt>,
    /// Whether its record was written.
    written: bool,
    store: Arc<ProvenanceStore>,
    pricing: Pricing,
    keep_tensors: bool,
    hash_key: HashKey,
    sensitive: Vec<Source>,
    steps: HashMap<String, StepRecord>,
    finished: Vec<String>,
}

impl Recording {
    fn edge(&self, tensor: &Tensor, source: &Source) -> EdgeTensor {
        let sensitive = self.sensitive.contains(source);
        EdgeTensor {
            name: tensor.name.clone(),
            datatype: datatype_name(tensor.datatype).to_string(),
            shape: tensor.shape.clone(),
            sha256: (!sensitive).then(|| Digest::of(&tensor.data).to_string()),
            hmac_sha256: sensitive.then(|| self.hash_key.hash(&tensor.data)),
            data: (self.keep_tensors && !sensitive)
                .then(|| serde_json::Value::Array(weir_core::tensor_json::json_values(tensor))),
        }
    }
}

impl InvocationObserver for Recording {
    fn step_started(&mut self, event: &StepStarted) {
        let step = event.step;
        let edges =
            step.inputs.iter().zip(event.inputs).map(|(route, tensor)| self.edge(tensor, &route.source)).collect();
        let mut config_keys: Vec<String> = step.grants.config.iter().map(|(k, _)| k.clone()).collect();
        config_keys.sort();
        let record = StepRecord {
            step: step.name.clone(),
            component: step.component.clone(),
            component_digest: event.component.digest.to_string(),
            models: Vec::new(),
            granted_models: step.grants.nn.models.clone(),
            config_keys,
            granted_dirs: step.grants.dirs.iter().map(|d| format!("{} <- {}", d.guest, d.host.display())).collect(),
            env_keys: step.grants.env.iter().map(|(name, _)| name.clone()).collect(),
            granted_http: step.grants.http.iter().map(ToString::to_string).collect(),
            started_after_us: self.began.elapsed().as_micros() as u64,
            inputs: edges,
            outputs: Vec::new(),
        };
        self.steps.insert(step.name.clone(), record);
    }

    fn step_finished(&mut self, event: &StepFinished) {
        let step = &event.step.name;
        let edges: Vec<EdgeTensor> = event
            .outputs
            .iter()
            .map(|t| self.edge(t, &Source::Step { step: step.clone(), tensor: t.name.clone() }))
            .collect();
        if let Some(record) = self.steps.get_mut(step) {
            record.outputs = edges;
            let models = &event.trace.stats.nn.models;
            record.models = models.iter().map(|m| (m.name.clone(), m.digest.clone(), m.device.clone())).collect();
        }
        self.finished.push(step.clone());
        self.priced.push(step_receipt(event.trace, &self.pricing));
    }

    fn finished(mut self: Box<Self>, event: &InvocationFinished) {
        let pipeline = event.pipeline;
        // A pipeline output is as sensitive as the tensor it comes from;
        // with `until`, the outputs are that step's tensors, under their names.
        let source_of = |t: &Tensor| match &event.options.until {
            Some(step) => Source::Step { step: step.clone(), tensor: t.name.clone() },
            None => pipeline
                .outputs
                .iter()
                .find(|r| r.name == t.name)
                .map_or_else(|| Source::Input(t.name.clone()), |r| r.source.clone()),
        };
        let outputs = event.output.outputs.iter().map(|t| self.edge(t, &source_of(t))).collect();
        // The steps were priced as they finished, in the order the output lists them.
        let priced = std::mem::take(&mut self.priced);
        let receipt = receipt(event.output.invocation_id.clone(), event.output.wall, event.output.queue_wait, priced);
        self.write(outputs, receipt, None);
    }

    fn failed(mut self: Box<Self>, error: &PipelineError) {
        let error = RecordedError {
            kind: error.kind().as_str().to_string(),
            // A guest's error text is its own: bounded before it is kept.
            message: error.to_string().chars().take(ERROR_CHARS).collect(),
            step: error.step().map(str::to_string),
        };
        self.write_failed(error);
    }
}

/// An invocation its trigger cancelled (its time limit) ends without an
/// event: it is recorded as failed when its recording is dropped.
impl Drop for Recording {
    fn drop(&mut self) {
        if !self.written {
            let message = "cancelled before it finished (the trigger's time limit)".to_string();
            self.write_failed(RecordedError { kind: ErrorKind::TimedOut.as_str().to_string(), message, step: None });
        }
    }
}

impl Recording {
    fn write_failed(&mut self, error: RecordedError) {
        // What the finished steps cost; the failing step's own use is not measured.
        let priced = std::mem::take(&mut self.priced);
        let receipt = receipt(self.invocation_id.clone(), self.began.elapsed(), Duration::ZERO, priced);
        self.write(Vec::new(), receipt, Some(error));
    }

    fn write(&mut self, outputs: Vec<EdgeTensor>, mut receipt: Receipt, error: Option<RecordedError>) {
        receipt.variant = self.variant.clone();
        self.written = true;
        let finished = std::mem::take(&mut self.finished);
        let mut steps: Vec<StepRecord> = finished.iter().filter_map(|s| self.steps.remove(s)).collect();
        // Steps that started and never finished (the failed one, and any
        // cancelled beside it) come last, with their inputs and no outputs.
        let mut unfinished: Vec<StepRecord> = self.steps.drain().map(|(_, record)| record).collect();
        unfinished.sort_by_key(|r| r.started_after_us);
        steps.extend(unfinished);
        let record = InvocationRecord {
            invocation_id: std::mem::take(&mut self.invocation_id),
            pipeline: std::mem::take(&mut self.pipeline),
            subject: self.subject.take(),
            unix_ms: weir_core::clock::unix_ms(),
            inputs: std::mem::take(&mut self.request),
            outputs,
            steps,
            receipt,
            error,
            variant: self.variant.take(),
            feedback: None,
        };
        // A provenance failure is logged, not turned into a failed inference.
        if let Err(error) = self.store.put(&record) {
            tracing::error!(invocation = %record.invocation_id, %error, "could not write the provenance record");
        }
    }
}
