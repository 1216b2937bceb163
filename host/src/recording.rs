//! Building one invocation's provenance record while the executor runs it:
//! component and model digests, grants, and a hash (and, when allowed, the
//! data) of every tensor on every edge.

use std::collections::HashMap;

use crate::component::StepComponent;
use crate::invoke::StepStats;
use crate::manifest::{Pipeline, Source, Step};
use crate::provenance::{now_ms, EdgeTensor, InvocationRecord, StepRecord};
use crate::tensor::{datatype_name, Tensor};

pub(crate) struct Recording {
    keep_tensors: bool,
    sensitive: Vec<Source>,
    steps: HashMap<String, StepRecord>,
    finished: Vec<String>,
}

impl Recording {
    pub fn new(pipeline: &Pipeline, keep_tensors: bool) -> Self {
        Recording { keep_tensors, sensitive: pipeline.sensitive.clone(), steps: HashMap::new(), finished: Vec::new() }
    }

    fn edge(&self, tensor: &Tensor, source: &Source) -> EdgeTensor {
        let keep = self.keep_tensors && !self.sensitive.contains(source);
        EdgeTensor {
            name: tensor.name.clone(),
            datatype: datatype_name(tensor.datatype).to_string(),
            shape: tensor.shape.clone(),
            sha256: weir_registry::Digest::of(&tensor.data).to_string(),
            data: keep.then(|| serde_json::Value::Array(crate::oip::tensor_to_output(tensor).data)),
        }
    }

    pub fn step_started(&mut self, step: &Step, component: &StepComponent, inputs: &[Tensor]) {
        let edges = step.inputs.iter().zip(inputs).map(|(route, tensor)| self.edge(tensor, &route.source)).collect();
        let mut config_keys: Vec<String> = step.grants.config.iter().map(|(k, _)| k.clone()).collect();
        config_keys.sort();
        self.steps.insert(
            step.name.clone(),
            StepRecord {
                step: step.name.clone(),
                component: step.component.clone(),
                component_digest: component.digest.to_string(),
                models: Vec::new(),
                granted_models: step.grants.nn.models.clone(),
                config_keys,
                inputs: edges,
                outputs: Vec::new(),
            },
        );
    }

    pub fn step_finished(&mut self, step: &str, stats: &StepStats, outputs: &[Tensor]) {
        let edges: Vec<EdgeTensor> = outputs
            .iter()
            .map(|t| self.edge(t, &Source::Step { step: step.to_string(), tensor: t.name.clone() }))
            .collect();
        if let Some(record) = self.steps.get_mut(step) {
            record.outputs = edges;
            record.models = stats.nn.models.iter().map(|m| (m.name.clone(), m.digest.clone(), m.device.clone())).collect();
        }
        self.finished.push(step.to_string());
    }

    pub fn finish(
        mut self,
        pipeline: &Pipeline,
        invocation_id: &str,
        subject: Option<String>,
        inputs: &HashMap<String, Tensor>,
        outputs: &[Tensor],
        receipt: serde_json::Value,
    ) -> InvocationRecord {
        let mut request: Vec<EdgeTensor> = inputs.values().map(|t| self.edge(t, &Source::Input(t.name.clone()))).collect();
        request.sort_by(|a, b| a.name.cmp(&b.name));
        // A pipeline output is as sensitive as the tensor it comes from.
        let outputs = outputs
            .iter()
            .map(|t| {
                let source = pipeline.outputs.iter().find(|r| r.name == t.name).map(|r| r.source.clone());
                self.edge(t, &source.unwrap_or(Source::Input(t.name.clone())))
            })
            .collect();
        let steps = self.finished.iter().filter_map(|s| self.steps.remove(s)).collect();
        InvocationRecord {
            invocation_id: invocation_id.to_string(),
            pipeline: pipeline.name.clone(),
            subject,
            unix_ms: now_ms(),
            inputs: request,
            outputs,
            steps,
            receipt,
        }
    }
}
