//! Step logs as an observer: what each step wrote to stdout and stderr,
//! emitted as log lines tagged with the step and the invocation.

use weir_executor::{InvocationObserver, InvocationStarted, Observer, StepFinished};

/// Emits every step's captured output through `tracing`.
pub struct StepLogs;

impl Observer for StepLogs {
    fn begin(&self, _started: &InvocationStarted) -> Option<Box<dyn InvocationObserver>> {
        // A zero-sized observer: boxing it allocates nothing.
        Some(Box::new(StepLogs))
    }
}

impl InvocationObserver for StepLogs {
    fn step_finished(&mut self, event: &StepFinished) {
        weir_sandbox::logs::emit(&event.step.name, Some(event.invocation_id), event.logs);
    }
}
