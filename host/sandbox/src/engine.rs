//! The process-wide wasmtime `Engine`: compilation settings, the pooling
//! allocator sized from one knob, and the epoch ticker that enforces
//! wall-clock timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use thiserror::Error;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Bytes of each pooled linear memory reset in place rather than unmapped.
const KEEP_RESIDENT: usize = 1 << 20;

/// One epoch tick: how often a running guest yields and checks its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

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

/// Advances the engine's epoch every tick so that stores with an epoch
/// deadline trap once their wall-clock budget is spent.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("weir-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(EpochTicker { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}
