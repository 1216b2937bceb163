//! The store data of one invocation: WASI with everything denied but the
//! step's stdout and stderr and its grants (config values, read-only
//! directories, environment variables, HTTP hosts), its `wasi:nn` context,
//! and the memory limiter.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use weir_core::{StepGrants, StepLimits};
use weir_nn::{ModelCache, NnCtx, NnUsage, NnView};

use crate::egress::{EgressEvent, EgressHooks};

/// Store data of one invocation.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    config: WasiConfigVariables,
    nn: NnCtx,
    http: WasiHttpCtx,
    egress: EgressHooks,
    limiter: MemoryLimiter,
}

impl StepState {
    /// Everything denied but what `grants` give; memory limited by `limits`.
    pub(crate) fn new(
        stdout: &MemoryOutputPipe,
        stderr: &MemoryOutputPipe,
        models: &Arc<ModelCache>,
        grants: &StepGrants,
        limits: &StepLimits,
    ) -> Result<StepState, String> {
        Ok(StepState {
            wasi: granted_wasi(stdout, stderr, grants)?,
            table: ResourceTable::new(),
            config: grants.config.iter().cloned().collect(),
            // What the step's wasi:nn resources hold on the host counts against
            // the same limit as its linear memory.
            nn: NnCtx::new(Some(models.clone()), grants.nn.clone(), limits.memory_bytes),
            http: WasiHttpCtx::new(),
            egress: EgressHooks::new(&grants.http),
            limiter: MemoryLimiter { limit: limits.memory_bytes, peak: 0, refused: None },
        })
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    pub(crate) fn memory(&self) -> &MemoryLimiter {
        &self.limiter
    }

    /// What the step did with `wasi:nn`, taken out of the state.
    pub(crate) fn take_nn_usage(&mut self) -> NnUsage {
        self.nn.take_usage()
    }

    /// The step's outgoing requests, sent and refused.
    pub(crate) fn egress_events(&self) -> Vec<EgressEvent> {
        self.egress.events()
    }

    pub(crate) fn config(&self) -> &WasiConfigVariables {
        &self.config
    }

    pub(crate) fn nn_view(&mut self) -> NnView<'_> {
        NnView::new(&mut self.table, &mut self.nn)
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

/// Enforces the step's memory limit and remembers what was refused, so an
/// allocation failure that ends in a trap is reported as what it is.
pub(crate) struct MemoryLimiter {
    limit: u64,
    /// The largest the memory grew to.
    pub(crate) peak: u64,
    /// The largest growth refused, if any.
    pub(crate) refused: Option<u64>,
}

/// Table elements a step may have (function references); generous, bounded.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // `maximum` is the memory's own or the pool slot's ceiling.
        let over_ceiling = maximum.is_some_and(|max| desired > max);
        let desired = desired as u64;
        if desired > self.limit || over_ceiling {
            self.refused = Some(self.refused.map_or(desired, |r| r.max(desired)));
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// WASI with nothing but the grants: the builder starts with no preopens,
/// no env, no args and no stdin; network access is switched off explicitly
/// rather than relied upon. Granted directories are read-only preopens
/// (cap-std: `..` and symlinks cannot lead out of them).
fn granted_wasi(stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe, grants: &StepGrants) -> Result<WasiCtx, String> {
    let mut builder = WasiCtx::builder();
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    for dir in &grants.dirs {
        builder
            .preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
            .map_err(|e| format!("the granted directory {} cannot be opened: {e}", dir.host.display()))?;
    }
    for (name, value) in &grants.env {
        builder.env(name, value);
    }
    Ok(builder.build())
}
