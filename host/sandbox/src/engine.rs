//! The process-wide wasmtime `Engine`: compilation settings, the pooling
//! allocator sized from one knob, and the epoch ticker that enforces
//! wall-clock timeouts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Bytes of each pooled linear memory reset in place rather than unmapped.
const KEEP_RESIDENT: usize = 1 << 20;

/// One epoch tick: how often a running guest yields and checks its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks in a row with no guest running after which the epoch thread parks
/// until one starts: an idle server does not wake a thousand times a second
/// for nothing (scale to zero), and steady traffic never parks it.
const IDLE_TICKS_BEFORE_PARKING: u32 = 50;

/// How the engine is built. Fixed for the life of the process: every
/// component is compiled for these settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The one pooling knob: how many step instances may be alive at once.
    /// Slots for memories, tables, core instances and fiber stacks are derived
    /// from it. `0` turns pooling off (on-demand allocation).
    pub max_instances: u32,
    /// The largest linear memory any step may be granted; per-step limits are
    /// enforced below it.
    pub max_memory_bytes: u64,
    /// Count guest instructions (fuel). Costs some speed on every call, so it
    /// is off unless a step asks for a fuel limit.
    pub fuel: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_instances: 64, max_memory_bytes: 1 << 30, fuel: false }
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("could not create the WebAssembly engine: {0}")]
    Create(String),
    #[error(
        "cannot compile for `{target}`: {message} (a target triple such as x86_64-unknown-linux-gnu or \
         aarch64-unknown-linux-gnu; this weir must be built with the `compiler` feature)"
    )]
    Target { target: String, message: String },
}

/// The engine plus the thread that advances its epoch.
pub struct WeirEngine {
    engine: Engine,
    options: EngineOptions,
    ticker: Option<EpochTicker>,
}

impl WeirEngine {
    pub fn new(options: EngineOptions) -> Result<Self, EngineError> {
        let engine = Engine::new(&config(&options)).map_err(|e| EngineError::Create(format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|e| EngineError::Create(format!("starting the epoch thread: {e}")))?;
        Ok(WeirEngine { engine, options, ticker: Some(ticker) })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Held while a guest may run in a store of this engine: the epoch
    /// thread ticks (and so deadlines are enforced) for as long as any such
    /// guard is alive.
    pub fn guest_running(&self) -> GuestRunning<'_> {
        if let Some(ticker) = &self.ticker {
            ticker.shared.guest_started();
        }
        GuestRunning(self.ticker.as_ref().map(|t| &*t.shared))
    }

    /// Whether the epoch thread is parked now (no guest has run for
    /// `IDLE_TICKS_BEFORE_PARKING` ticks).
    pub fn ticker_parked(&self) -> bool {
        self.ticker.as_ref().is_some_and(|t| t.shared.parked.load(Ordering::SeqCst))
    }
}

/// See [`WeirEngine::guest_running`].
pub struct GuestRunning<'a>(Option<&'a TickerShared>);

impl Drop for GuestRunning<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.0 {
            shared.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for WeirEngine {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// An engine that compiles, with exactly these settings, for `target` (a
/// target triple such as `aarch64-unknown-linux-gnu`): what `weir compile
/// --target` uses. It runs nothing, so it has no epoch thread.
pub fn for_target(options: &EngineOptions, target: &str) -> Result<Engine, EngineError> {
    let arch = target.split('-').next().unwrap_or_default();
    if !TARGET_ARCHES.contains(&arch) {
        let message = format!("weir compiles for {} only", TARGET_ARCHES.join(" and "));
        return Err(EngineError::Target { target: target.into(), message });
    }
    let mut config = config(options);
    config.target(target).map_err(|e| EngineError::Target { target: target.into(), message: format!("{e:#}") })?;
    Engine::new(&config).map_err(|e| EngineError::Target { target: target.into(), message: format!("{e:#}") })
}

/// The architectures `weir compile --target` compiles for: Cranelift's
/// others (riscv64, s390x) want CPU features named that weir does not ask
/// for, and fail on ordinary components without them.
pub const TARGET_ARCHES: &[&str] = &["x86_64", "aarch64"];

/// The settings every engine of this process is made with: code compiled
/// by one loads in another only when these agree.
fn config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(options.fuel);
    config.wasm_component_model(true);
    // Guests get a bounded stack; overflow is a trap, not a host crash.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    if options.max_instances > 0 {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(options)));
    }
    config
}

fn pooling_config(options: &EngineOptions) -> PoolingAllocationConfig {
    let n = options.max_instances;
    let mut pool = PoolingAllocationConfig::default();
    // A Rust component holds a handful of core instances (main module, WASI
    // adapter, shims) and tables, and one or two memories.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .total_stacks(n)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(options.max_memory_bytes as usize)
        // Keep a few slots' pages around so reuse is cheap; the rest are
        // returned to the OS (scale to zero).
        .max_unused_warm_slots(n.min(16))
        // Reset the first pages of a memory, table and fiber stack in place
        // instead of unmapping them: no page faults (and fewer cache misses)
        // on the next instantiation. Steps rarely touch more than this.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Advances the engine's epoch every tick while guests run, so that stores
/// with an epoch deadline yield and trap once their wall-clock budget is
/// spent; parks when none has run for a while.
struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: JoinHandle<()>,
}

struct TickerShared {
    stop: AtomicBool,
    /// Guests that may be running now ([`GuestRunning`] guards alive).
    running: AtomicUsize,
    /// The ticker is parked, or about to park: a starting guest unparks it.
    parked: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl TickerShared {
    fn guest_started(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
        // SeqCst on both sides: either the ticker sees this guest before it
        // parks, or this sees `parked` and wakes it (an unpark before the
        // park is not lost).
        if self.parked.load(Ordering::SeqCst) {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let shared = Arc::new(TickerShared {
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let ticking = shared.clone();
        let thread = std::thread::Builder::new().name("weir-epoch".into()).spawn(move || {
            let mut idle_ticks = 0;
            while !ticking.stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
                if ticking.running.load(Ordering::SeqCst) > 0 {
                    idle_ticks = 0;
                    continue;
                }
                idle_ticks += 1;
                if idle_ticks < IDLE_TICKS_BEFORE_PARKING {
                    continue;
                }
                ticking.parked.store(true, Ordering::SeqCst);
                while ticking.running.load(Ordering::SeqCst) == 0 && !ticking.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                ticking.parked.store(false, Ordering::SeqCst);
                idle_ticks = 0;
            }
        })?;
        let _ = shared.thread.set(thread.thread().clone());
        Ok(EpochTicker { shared, thread })
    }

    fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(10), "{what} did not happen within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_ticker_parks_when_idle_and_ticks_while_a_guest_runs() {
        let engine = WeirEngine::new(EngineOptions { max_instances: 0, ..EngineOptions::default() }).unwrap();
        wait_for("parking when idle", || engine.ticker_parked());
        let running = engine.guest_running();
        wait_for("waking for a guest", || !engine.ticker_parked());
        // It keeps ticking for as long as the guest may run.
        std::thread::sleep(EPOCH_TICK * (IDLE_TICKS_BEFORE_PARKING * 3));
        assert!(!engine.ticker_parked(), "the ticker parked while a guest was running");
        drop(running);
        wait_for("parking again", || engine.ticker_parked());
        // A parked ticker still stops promptly.
        let started = Instant::now();
        drop(engine);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
