//! One invocation of one step: a fresh `Store` with the step's grants and
//! limits, a fresh instance from the component's `InstancePre`, one call of
//! `process`, output validation, and the store dropped — nothing survives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use weir_nn::{ModelCache, NnUsage};

use weir_core::clock::CpuMetered;
use weir_core::tensor::{validate_all, Tensor, TensorError};
use weir_core::{Classify, ErrorKind, StepGrants, StepLimits};

use crate::bindings::weir::pipeline::types::StepError;
use crate::component::StepComponent;
use crate::convert::{from_guest, to_guest};
use crate::engine::WeirEngine;
use crate::logs::LogLine;
use crate::state::StepState;

/// Bytes of stdout (and, separately, stderr) kept per invocation. A step that
/// writes more finds the stream closed (Rust's `println!` then panics, which
/// fails that invocation) rather than growing host memory.
pub const LOG_CAPACITY: usize = 256 * 1024;

/// Extra time the outer timer gives a step over its limit, so that guest
/// code is normally stopped by the (cheaper, precise) epoch deadline.
const HOST_CALL_GRACE: Duration = Duration::from_millis(20);

/// Measured facts about one invocation.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    pub wall: Duration,
    pub instantiate: Duration,
    /// Peak linear memory the step grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Guest instructions consumed, when fuel is on.
    pub fuel_consumed: Option<u64>,
    /// Models used, inference calls and time inside ONNX Runtime.
    pub nn: NnUsage,
    /// CPU time spent on the step (guest, host calls, inference on the
    /// calling thread, and ONNX Runtime's pool threads working for it),
    /// summed over every thread it ran on.
    pub cpu: Duration,
    /// Tensor bytes in and out.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Outgoing HTTP requests the step sent or had refused, in order.
    pub egress: Vec<crate::EgressEvent>,
}

/// A successful invocation.
#[derive(Debug, Clone)]
pub struct StepOutput {
    pub outputs: Vec<Tensor>,
    pub logs: Vec<LogLine>,
    pub stats: StepStats,
}

/// Why an invocation failed. Every variant carries the step's name.
#[derive(Debug, Error)]
pub enum InvokeError {
    #[error("step `{step}`: invalid input: {message}")]
    InvalidInput { step: String, message: String },
    #[error("step `{step}` failed: {message}")]
    StepFailed { step: String, message: String },
    #[error("step `{step}` timed out after {limit:?}")]
    Timeout { step: String, limit: Duration },
    #[error("step `{step}` exceeded its memory limit of {limit} bytes (it asked for {requested} bytes)")]
    MemoryLimit { step: String, limit: u64, requested: u64 },
    #[error("step `{step}` failed: {source}")]
    HostMemory { step: String, source: weir_nn::budget::HostMemoryExceeded },
    #[error("step `{step}` ran out of fuel (limit {limit} instructions)")]
    FuelExhausted { step: String, limit: u64 },
    #[error("step `{step}` trapped: {message}")]
    Trap { step: String, message: String },
    #[error("step `{step}` returned a malformed tensor: {source}")]
    MalformedOutput { step: String, source: TensorError },
    #[error("step `{step}` got a malformed input tensor: {source}")]
    MalformedInput { step: String, source: TensorError },
    #[error("step `{step}`: fuel limit {limit} was set but this engine counts no fuel (start it with fuel enabled)")]
    FuelNotEnabled { step: String, limit: u64 },
}

impl InvokeError {
    /// The step that failed.
    pub fn step(&self) -> &str {
        match self {
            InvokeError::InvalidInput { step, .. }
            | InvokeError::StepFailed { step, .. }
            | InvokeError::Timeout { step, .. }
            | InvokeError::MemoryLimit { step, .. }
            | InvokeError::HostMemory { step, .. }
            | InvokeError::FuelExhausted { step, .. }
            | InvokeError::Trap { step, .. }
            | InvokeError::MalformedOutput { step, .. }
            | InvokeError::MalformedInput { step, .. }
            | InvokeError::FuelNotEnabled { step, .. } => step,
        }
    }
}

impl Classify for InvokeError {
    fn kind(&self) -> ErrorKind {
        match self {
            InvokeError::InvalidInput { .. } | InvokeError::MalformedInput { .. } => ErrorKind::InvalidInput,
            InvokeError::Timeout { .. } => ErrorKind::TimedOut,
            InvokeError::FuelNotEnabled { .. } => ErrorKind::Internal,
            _ => ErrorKind::StepFailed,
        }
    }
}

impl InvokeError {
    /// Whether the caller's request was at fault (HTTP 400 / exit code 2).
    pub fn is_caller_error(&self) -> bool {
        self.kind().is_caller_error()
    }
}

/// Run `process` once on a fresh instance of `component`.
pub async fn invoke(
    engine: &WeirEngine,
    models: &Arc<ModelCache>,
    component: &StepComponent,
    step: &str,
    grants: &StepGrants,
    limits: &StepLimits,
    inputs: Vec<Tensor>,
) -> Result<StepOutput, InvokeError> {
    let started = Instant::now();
    // The epoch thread ticks while this guard lives, which the deadline needs.
    let _ticking = engine.guest_running();
    validate_all(&inputs).map_err(|source| InvokeError::MalformedInput { step: step.into(), source })?;
    let guest_inputs: Vec<_> = inputs.into_iter().map(to_guest).collect();

    let stdout = MemoryOutputPipe::new(LOG_CAPACITY);
    let stderr = MemoryOutputPipe::new(LOG_CAPACITY);
    let state = StepState::new(&stdout, &stderr, models, grants, limits)
        .map_err(|message| InvokeError::StepFailed { step: step.into(), message })?;
    let mut store = Store::new(engine.engine(), state);
    store.limiter(StepState::limiter);
    // Every epoch tick a running guest yields to the async executor, so a
    // long computation never starves other invocations on the same worker
    // thread; past its deadline it is interrupted (a timeout trap).
    let deadline = started + limits.timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    if engine.options().fuel {
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX)).expect("fuel is enabled on this engine");
    } else if let Some(limit) = limits.fuel {
        return Err(InvokeError::FuelNotEnabled { step: step.into(), limit });
    }

    // Epoch interruption stops guest code; this outer timer also stops a
    // guest parked in a host call (e.g. sleeping on a wasi:clocks pollable).
    // Dropping the call future abandons the instance safely.
    let bytes_in = guest_inputs.iter().map(|t| t.data.len() as u64).sum();
    let call = async move {
        let called = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            let instantiated = started.elapsed();
            let output = instance.weir_pipeline_step().call_process(&mut store, &guest_inputs).await?;
            Ok::<_, wasmtime::Error>((instantiated, output))
        }
        .await;
        let after = AfterCall {
            fuel_consumed: limits_fuel_consumed(&store, engine, limits),
            nn: store.data_mut().take_nn_usage(),
            peak_memory_bytes: store.data().memory().peak,
            refused_memory: store.data().memory().refused,
            egress: store.data().egress_events(),
        };
        // The instance goes back to the pool (its memory reset in place)
        // here, inside the metered future: a step pays for its teardown.
        drop(store);
        (called, after)
    };
    let ((result, after), cpu) =
        match tokio::time::timeout(limits.timeout + HOST_CALL_GRACE, CpuMetered::new(call)).await {
            Ok(result) => result,
            Err(_elapsed) => return Err(InvokeError::Timeout { step: step.into(), limit: limits.timeout }),
        };

    let logs = crate::logs::collect(&stdout, &stderr);
    let (instantiate, output) = match result {
        Ok(ok) => ok,
        Err(error) => return Err(classify_failure(step, limits, after.refused_memory, &error, &logs)),
    };
    let outputs: Vec<Tensor> = match output {
        Ok(outputs) => outputs.into_iter().map(from_guest).collect(),
        Err(StepError::InvalidInput(message)) => return Err(InvokeError::InvalidInput { step: step.into(), message }),
        Err(StepError::Failed(message)) => return Err(InvokeError::StepFailed { step: step.into(), message }),
    };
    validate_all(&outputs).map_err(|source| InvokeError::MalformedOutput { step: step.into(), source })?;
    let bytes_out = outputs.iter().map(|t| t.data.len() as u64).sum();
    let stats = StepStats {
        wall: started.elapsed(),
        instantiate,
        peak_memory_bytes: after.peak_memory_bytes,
        fuel_consumed: after.fuel_consumed,
        // Inference ran on a blocking thread, and ONNX Runtime's pool
        // threads worked for this step too.
        cpu: cpu + after.nn.run_cpu + after.nn.pool_cpu,
        nn: after.nn,
        bytes_in,
        bytes_out,
        egress: after.egress,
    };
    Ok(StepOutput { outputs, logs, stats })
}

/// What a step's store recorded, read before the store is dropped.
struct AfterCall {
    fuel_consumed: Option<u64>,
    nn: NnUsage,
    peak_memory_bytes: u64,
    refused_memory: Option<u64>,
    egress: Vec<crate::EgressEvent>,
}

fn limits_fuel_consumed(store: &Store<StepState>, engine: &WeirEngine, limits: &StepLimits) -> Option<u64> {
    if !engine.options().fuel {
        return None;
    }
    let start = limits.fuel.unwrap_or(u64::MAX);
    store.get_fuel().ok().map(|left| start - left)
}

/// Turn a wasmtime failure into the error a person can act on.
fn classify_failure(
    step: &str,
    limits: &StepLimits,
    refused_memory: Option<u64>,
    error: &wasmtime::Error,
    logs: &[LogLine],
) -> InvokeError {
    let step = step.to_string();
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return InvokeError::Timeout { step, limit: limits.timeout },
        Some(Trap::OutOfFuel) => return InvokeError::FuelExhausted { step, limit: limits.fuel.unwrap_or(u64::MAX) },
        _ => {}
    }
    if let Some(exceeded) = error.downcast_ref::<weir_nn::budget::HostMemoryExceeded>() {
        return InvokeError::HostMemory { step, source: exceeded.clone() };
    }
    // A refused memory.grow usually surfaces as the guest aborting
    // ("memory allocation failed" then `unreachable`): report the cause.
    if let Some(requested) = refused_memory {
        return InvokeError::MemoryLimit { step, limit: limits.memory_bytes, requested };
    }
    let mut message = match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(Trap::UnreachableCodeReached) => "unreachable code reached (a panic or abort in the guest)".to_string(),
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if let Some(tail) = crate::logs::stderr_tail(logs, 2) {
        message.push_str(&format!("; the step's stderr ended with: {tail}"));
    }
    InvokeError::Trap { step, message }
}
