//! Inference and model loads off the async runtime. ONNX Runtime calls
//! block for as long as the model takes; on tokio's worker threads they
//! would stall every other request (health checks included). So they run on
//! tokio's blocking threads, at most one per core at once (more would only
//! make them fight for the same cores), and a step that is cancelled (its
//! time limit passed) stops its running inference through [`Interrupt`].
//!
//! Except when a run is known to be short: handing it to another thread
//! and back costs two thread wake-ups (tens of µs on a VM), more than a
//! small model's whole run. A run predicted from the model's recent runs to
//! take at most [`INLINE_RUN`] runs on the calling thread — no longer than a
//! guest may compute between two yields (the 1 ms epoch tick). A model's
//! first run, and any run of a model that has turned slow or of a larger
//! input, goes to the blocking pool. A warm model's lookup never leaves the
//! thread.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::cache::ModelCache;
use crate::error::NnError;
use crate::model::LoadedModel;
use crate::spec::RunTiming;
use crate::tensor::NnTensor;

/// Stops a running inference from another thread. The backend registers
/// how (ONNX Runtime: `RunOptions::terminate`); stopping before it has is
/// remembered and applied when it does.
#[derive(Default)]
pub struct Interrupt {
    state: Mutex<InterruptState>,
}

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct InterruptState {
    stopped: bool,
    hook: Option<Hook>,
}

impl Interrupt {
    fn state(&self) -> std::sync::MutexGuard<'_, InterruptState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop the run (now, or as soon as the backend says how).
    pub fn stop(&self) {
        let hook = {
            let mut state = self.state();
            state.stopped = true;
            state.hook.take()
        };
        if let Some(hook) = hook {
            hook();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state().stopped
    }

    /// How to stop the run; called at once if it was already stopped.
    pub fn on_stop(&self, hook: Hook) {
        let mut state = self.state();
        if state.stopped {
            drop(state);
            hook();
        } else {
            state.hook = Some(hook);
        }
    }

    /// The run is over: forget the hook.
    pub fn clear(&self) {
        self.state().hook = None;
    }
}

/// Stops the inference when the waiting future is dropped (cancelled).
struct StopOnDrop(Option<Arc<Interrupt>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(interrupt) = self.0.take() {
            interrupt.stop();
        }
    }
}

/// The longest run done on the calling thread (`WEIR_INLINE_RUN_US`
/// overrides it; 0 sends every run to the blocking pool).
pub const INLINE_RUN: Duration = Duration::from_micros(250);

fn inline_run() -> Duration {
    static LIMIT: OnceLock<Duration> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("WEIR_INLINE_RUN_US").ok().and_then(|v| v.parse().ok()).map_or(INLINE_RUN, Duration::from_micros)
    })
}

/// Inference calls running at once: one per core.
fn inference_slots() -> &'static Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores))
    })
}

/// What one off-runtime inference gave back.
pub struct Ran {
    pub outputs: Vec<(String, NnTensor)>,
    pub timing: RunTiming,
    /// CPU time of the blocking thread that ran it (the calling thread's
    /// share; ONNX Runtime's own pool threads are in `timing.pool_cpu`).
    pub cpu: Duration,
}

/// Run `model`: here when it is known to be short, else on a blocking
/// thread once an inference slot is free. If the returned future is
/// dropped, a blocking inference is stopped.
pub async fn run(model: Arc<LoadedModel>, inputs: Vec<(String, NnTensor)>) -> Result<Ran, NnError> {
    let bytes: usize = inputs.iter().map(|(_, t)| t.data.len()).sum();
    if model.predicted_run(bytes).is_some_and(|t| t <= inline_run()) {
        let started = std::time::Instant::now();
        let result = model.run_interruptible(&inputs, &Interrupt::default());
        model.observe_run(bytes, started.elapsed());
        // Its CPU time is the calling thread's, which the step's meter counts.
        return result.map(|(outputs, timing)| Ran { outputs, timing, cpu: Duration::ZERO });
    }
    run_blocking(model, inputs, bytes).await
}

async fn run_blocking(model: Arc<LoadedModel>, inputs: Vec<(String, NnTensor)>, bytes: usize) -> Result<Ran, NnError> {
    let slot = inference_slots()
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| NnError::runtime("the inference pool is closed (the server is shutting down)"))?;
    let interrupt = Arc::new(Interrupt::default());
    let mut guard = StopOnDrop(Some(interrupt.clone()));
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let started = weir_core::clock::thread_cpu_time();
        let wall = std::time::Instant::now();
        let result = model.run_interruptible(&inputs, &interrupt);
        if result.is_ok() {
            model.observe_run(bytes, wall.elapsed());
        }
        (result, weir_core::clock::thread_cpu_time().saturating_sub(started))
    });
    let joined = task.await;
    guard.0 = None;
    let (result, cpu) = joined.map_err(|e| NnError::runtime(format!("the inference did not finish: {e}")))?;
    result.map(|(outputs, timing)| Ran { outputs, timing, cpu })
}

/// Get the cached model `name`: here when it is loaded, else loading it on
/// a blocking thread (a cold load never holds up the async workers).
pub async fn load(cache: Arc<ModelCache>, name: String) -> Result<Arc<LoadedModel>, NnError> {
    if let Some(model) = cache.get_loaded(&name) {
        return Ok(model);
    }
    tokio::task::spawn_blocking(move || cache.get(&name))
        .await
        .map_err(|e| NnError::runtime(format!("loading the model did not finish: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_stop_reaches_the_hook_whenever_it_is_set() {
        let calls = Arc::new(AtomicUsize::new(0));
        let hook = |calls: &Arc<AtomicUsize>| -> Hook {
            let calls = calls.clone();
            Box::new(move || {
                calls.fetch_add(1, Ordering::SeqCst);
            })
        };
        let early = Interrupt::default();
        early.stop();
        early.on_stop(hook(&calls));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "stopped before the hook was set");
        let late = Interrupt::default();
        late.on_stop(hook(&calls));
        assert!(!late.is_stopped());
        late.stop();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let cleared = Interrupt::default();
        cleared.on_stop(hook(&calls));
        cleared.clear();
        cleared.stop();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a finished run is not stopped");
    }
}
