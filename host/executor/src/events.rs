//! Typed events of an invocation, for whatever observes it (receipts,
//! provenance, logs, traces, metrics live in weir-observe and subscribe
//! here). The executor only schedules: it tells its observers what
//! happened and never prices, records or logs itself.

use std::collections::HashMap;

use weir_core::Tensor;
use weir_manifest::{Pipeline, Step};
use weir_sandbox::logs::LogLine;
use weir_sandbox::StepComponent;

use crate::outcome::{PipelineError, PipelineOutput, RunOptions, StepTrace};

/// An invocation is about to run its first step.
pub struct InvocationStarted<'a> {
    pub invocation_id: &'a str,
    pub pipeline: &'a Pipeline,
    /// The request's tensors by name.
    pub inputs: &'a HashMap<String, Tensor>,
    pub options: &'a RunOptions,
}

/// A step is about to be instantiated with these inputs.
pub struct StepStarted<'a> {
    pub invocation_id: &'a str,
    pub step: &'a Step,
    pub component: &'a StepComponent,
    pub inputs: &'a [Tensor],
}

/// A step returned its outputs.
pub struct StepFinished<'a> {
    pub invocation_id: &'a str,
    pub step: &'a Step,
    pub outputs: &'a [Tensor],
    /// What the step wrote to stdout and stderr.
    pub logs: &'a [LogLine],
    /// Its timings and measured facts.
    pub trace: &'a StepTrace,
}

/// The invocation produced its outputs.
pub struct InvocationFinished<'a> {
    pub pipeline: &'a Pipeline,
    pub inputs: &'a HashMap<String, Tensor>,
    pub options: &'a RunOptions,
    pub output: &'a PipelineOutput,
}

/// Subscribes to invocations. `begin` is called once per invocation; the
/// observer it returns (if any) gets that invocation's events.
pub trait Observer: Send + Sync {
    fn begin(&self, started: &InvocationStarted) -> Option<Box<dyn InvocationObserver>>;
}

/// One invocation's events, in order. An invocation that is cancelled
/// (its trigger's time limit) just drops its observers.
pub trait InvocationObserver: Send {
    fn step_started(&mut self, _event: &StepStarted) {}
    fn step_finished(&mut self, _event: &StepFinished) {}
    fn finished(self: Box<Self>, _event: &InvocationFinished) {}
    fn failed(self: Box<Self>, _error: &PipelineError) {}
}

/// The observers of one invocation.
#[derive(Default)]
pub(crate) struct Session {
    observers: Vec<Box<dyn InvocationObserver>>,
}

impl Session {
    pub(crate) fn begin(observers: &[std::sync::Arc<dyn Observer>], started: &InvocationStarted) -> Session {
        Session { observers: observers.iter().filter_map(|o| o.begin(started)).collect() }
    }

    pub(crate) fn step_started(&mut self, event: &StepStarted) {
        self.observers.iter_mut().for_each(|o| o.step_started(event));
    }

    pub(crate) fn step_finished(&mut self, event: &StepFinished) {
        self.observers.iter_mut().for_each(|o| o.step_finished(event));
    }

    pub(crate) fn finished(self, event: &InvocationFinished) {
        self.observers.into_iter().for_each(|o| o.finished(event));
    }

    pub(crate) fn failed(self, error: &PipelineError) {
        self.observers.into_iter().for_each(|o| o.failed(error));
    }
}
