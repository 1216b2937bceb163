//! The provenance observer: builds one invocation's record from its events
//! (component and model digests, grants, a hash — and, when allowed, the
//! data — of every tensor on every edge, the receipt) and writes it to the
//! store when the invocation finishes.

use std::collections::HashMap;
use std::sync::Arc;

use weir_core::tensor::datatype_name;
use weir_core::{Digest, Pricing, Tensor};
use weir_executor::{InvocationFinished, InvocationObserver, InvocationStarted, Observer, StepFinished, StepStarted};
use weir_manifest::Source;

use crate::hash_key::HashKey;
use crate::provenance::{EdgeTensor, InvocationRecord, ProvenanceStore, StepRecord};
use crate::receipts::invocation_receipt;

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
        Some(Box::new(Recording {
            store: self.store.clone(),
            pricing: self.pricing.clone(),
            keep_tensors: self.keep_tensors,
            hash_key: self.hash_key.clone(),
            sensitive: started.pipeline.sensitive.clone(),
            steps: HashMap::new(),
            finished: Vec::new(),
        }))
    }
}

struct Recording {
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
    }

    fn finished(mut self: Box<Self>, event: &InvocationFinished) {
        let pipeline = event.pipeline;
        let mut request: Vec<EdgeTensor> =
            event.inputs.values().map(|t| self.edge(t, &Source::Input(t.name.clone()))).collect();
        request.sort_by(|a, b| a.name.cmp(&b.name));
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
        let finished = std::mem::take(&mut self.finished);
        let steps = finished.iter().filter_map(|s| self.steps.remove(s)).collect();
        let record = InvocationRecord {
            invocation_id: event.output.invocation_id.clone(),
            pipeline: pipeline.name.clone(),
            subject: event.options.subject.clone(),
            unix_ms: weir_core::clock::unix_ms(),
            inputs: request,
            outputs,
            steps,
            receipt: invocation_receipt(event.output, &self.pricing),
        };
        // A provenance failure is logged, not turned into a failed inference.
        if let Err(error) = self.store.put(&record) {
            tracing::error!(invocation = %record.invocation_id, %error, "could not write the provenance record");
        }
    }
}
