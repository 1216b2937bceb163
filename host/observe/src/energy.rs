//! Where a step's joules come from, and how we know.
//!
//! - `rapl`: the Linux powercap counters (`/sys/class/powercap/intel-rapl:N/energy_uj`,
//!   package domains) are sampled in the background together with the
//!   machine's busy CPU time (`/proc/stat`). Each interval gives the
//!   package's joules per busy CPU-second; a step is charged its own CPU
//!   seconds times the latest rate, i.e. the package energy of the interval
//!   split by CPU-time share. Idle power is thereby spread over busy time.
//! - `cpu-model`: CPU seconds × the configured watts per core, when nothing
//!   can be read (the usual case in VMs and containers, where the counters
//!   are absent or root-only). Modelled, and labelled so.
//!
//! - `nvml`: a step whose inferences ran on a GPU is also charged its GPU
//!   busy time at the GPUs' measured joules per busy-second
//!   ([`crate::gpu_energy`]); its CPU time is priced as above.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_core::energy::CpuModel;
use weir_core::{Energy, EnergyMethod, EnergySource};

use crate::gpu_energy::{GpuCounters, Nvml};

/// How often the RAPL counters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// The energy source of this process: RAPL when it can be read, else the
/// CPU model (which RAPL also falls back to until its first interval).
#[derive(Clone)]
pub struct EnergyMeter {
    rapl: Option<Arc<Rate>>,
    gpu: Option<Arc<Rate>>,
    model: CpuModel,
}

impl std::fmt::Debug for EnergyMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rapl {
            Some(rate) => write!(f, "Rapl({:?} J/CPU-s)", rate.per_busy_second()),
            None => write!(f, "CpuModel({} W/core)", self.model.watts_per_core),
        }
    }
}

impl EnergyMeter {
    /// RAPL when its counters can be read (under `$WEIR_POWERCAP_ROOT`, else
    /// `/sys/class/powercap`), the CPU model at `watts_per_core` otherwise.
    pub fn detect(watts_per_core: f64) -> EnergyMeter {
        let root =
            std::env::var_os("WEIR_POWERCAP_ROOT").map_or_else(|| PathBuf::from("/sys/class/powercap"), PathBuf::from);
        let rapl = RaplCounters::find(&root).map(|counters| {
            tracing::info!(domains = counters.domains.len(), root = %root.display(), "energy: measuring with RAPL");
            let ranges = counters.clone();
            Rate::start(
                "weir-rapl",
                SAMPLE_EVERY,
                between(move || counters.read().zip(busy_cpu_seconds()), move |e0, e1| ranges.joules_between(e0, e1)),
            )
        });
        let gpu = Nvml::open().map(|nvml| {
            tracing::info!(devices = ?nvml.devices(), "energy: measuring GPU energy with NVML");
            crate::gpu_energy::start(nvml, SAMPLE_EVERY)
        });
        EnergyMeter { rapl, gpu, model: CpuModel { watts_per_core } }
    }

    /// The CPU model only.
    pub fn model(watts_per_core: f64) -> EnergyMeter {
        EnergyMeter { rapl: None, gpu: None, model: CpuModel { watts_per_core } }
    }

    /// Read GPU energy from `counters` (NVML's stand-in in tests).
    pub fn with_gpu(mut self, counters: impl GpuCounters, every: Duration) -> EnergyMeter {
        self.gpu = Some(crate::gpu_energy::start(counters, every));
        self
    }
}

impl EnergySource for EnergyMeter {
    /// Joules for `cpu` of CPU time, and the method behind the figure.
    fn attribute(&self, cpu: Duration) -> Energy {
        match self.rapl.as_ref().and_then(|rate| rate.per_busy_second()) {
            Some(rate) => Energy { joules: cpu.as_secs_f64() * rate, method: EnergyMethod::Rapl },
            None => self.model.attribute(cpu),
        }
    }

    fn attribute_gpu(&self, gpu: Duration) -> Option<Energy> {
        let rate = self.gpu.as_ref()?.per_busy_second()?;
        Some(Energy { joules: gpu.as_secs_f64() * rate, method: EnergyMethod::Nvml })
    }
}

/// The package-level powercap domains (`intel-rapl:N`, not their sub-zones).
#[derive(Clone)]
struct RaplCounters {
    domains: Vec<(PathBuf, u64)>,
}

impl RaplCounters {
    fn find(root: &Path) -> Option<RaplCounters> {
        let mut domains = Vec::new();
        for entry in std::fs::read_dir(root).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `intel-rapl:0` is a package; `intel-rapl:0:1` a sub-zone of it.
            if !name.starts_with("intel-rapl:") || name.matches(':').count() != 1 {
                continue;
            }
            let counter = entry.path().join("energy_uj");
            let max = read_u64(&entry.path().join("max_energy_range_uj")).unwrap_or(u64::MAX);
            if read_u64(&counter).is_some() {
                domains.push((counter, max));
            }
        }
        (!domains.is_empty()).then_some(RaplCounters { domains })
    }

    /// Microjoules per domain now.
    fn read(&self) -> Option<Vec<u64>> {
        self.domains.iter().map(|(path, _)| read_u64(path)).collect()
    }

    /// Joules between two readings, allowing for counters that wrapped.
    fn joules_between(&self, before: &[u64], after: &[u64]) -> f64 {
        let micro: u64 = self
            .domains
            .iter()
            .zip(before.iter().zip(after))
            .map(|((_, max), (&b, &a))| if a >= b { a - b } else { max.saturating_sub(b) + a })
            .sum();
        micro as f64 / 1e6
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Busy CPU seconds of the whole machine so far (`/proc/stat`).
fn busy_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy = fields.first()?
        + fields.get(1)?
        + fields.get(2)?
        + fields.get(5)?
        + fields.get(6)?
        + fields.get(7).unwrap_or(&0);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy as f64 / ticks)
}

/// The latest joules per busy second a background sampler measured (f64
/// bits; 0 = none yet): per busy CPU-second for RAPL, per GPU-busy-second for
/// NVML.
pub struct Rate(AtomicU64);

impl Rate {
    /// Every `every`, on a thread named `thread`, store what `interval` says
    /// the rate was since its last call (an interval it cannot tell leaves
    /// the last rate).
    pub fn start(
        thread: &str,
        every: Duration,
        mut interval: impl FnMut() -> Option<f64> + Send + 'static,
    ) -> Arc<Rate> {
        let rate = Arc::new(Rate(AtomicU64::new(0)));
        let shared = rate.clone();
        let sampler = move || loop {
            std::thread::sleep(every);
            if let Some(measured) = interval().filter(|r| r.is_finite() && *r > 0.0) {
                shared.0.store(measured.to_bits(), Ordering::Relaxed);
            }
        };
        if let Err(error) = std::thread::Builder::new().name(thread.into()).spawn(sampler) {
            tracing::warn!(%error, thread, "energy: cannot start a sampler; that meter stays off");
        }
        rate
    }

    pub fn per_busy_second(&self) -> Option<f64> {
        let rate = f64::from_bits(self.0.load(Ordering::Relaxed));
        (rate > 0.0).then_some(rate)
    }
}

/// The rate between successive readings of (counters, busy seconds so far):
/// the joules between two counter readings over the busy time between them.
/// The first reading is taken now.
pub fn between<S>(
    mut read: impl FnMut() -> Option<(S, f64)>,
    joules: impl Fn(&S, &S) -> f64,
) -> impl FnMut() -> Option<f64> {
    let mut last = read();
    move || {
        let now = read();
        let rate = match (&last, &now) {
            (Some((s0, b0)), Some((s1, b1))) if b1 - b0 > 0.0 => Some(joules(s0, s1) / (b1 - b0)),
            _ => None,
        };
        last = now;
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_package_domains_and_handles_wraparound() {
        let root = tempfile::tempdir().unwrap();
        for (zone, value) in [("intel-rapl:0", "1000"), ("intel-rapl:0:0", "5"), ("intel-rapl:1", "2000")] {
            std::fs::create_dir_all(root.path().join(zone)).unwrap();
            std::fs::write(root.path().join(zone).join("energy_uj"), value).unwrap();
            std::fs::write(root.path().join(zone).join("max_energy_range_uj"), "10000").unwrap();
        }
        let counters = RaplCounters::find(root.path()).unwrap();
        assert_eq!(counters.domains.len(), 2, "sub-zones are part of their package");
        // Domain 0 wrapped from 9 000 to 500 µJ: 1 500 µJ; domain 1 moved 2 000 µJ.
        let joules = counters.joules_between(&[9_000, 1_000], &[500, 3_000]);
        assert!((joules - 0.0035).abs() < 1e-12, "{joules}");
        assert!(RaplCounters::find(&root.path().join("absent")).is_none());
    }

    #[test]
    fn the_model_is_labelled_as_a_model() {
        let model = CpuModel { watts_per_core: 10.0 };
        let meter = EnergyMeter::model(10.0);
        assert_eq!(meter.attribute(Duration::from_millis(500)), Energy { joules: 5.0, method: EnergyMethod::CpuModel });
        let rapl = EnergyMeter { rapl: Some(Arc::new(Rate(AtomicU64::new(0)))), gpu: None, model };
        assert_eq!(rapl.attribute(Duration::from_secs(1)).method, EnergyMethod::CpuModel, "no interval measured yet");
        let rapl = EnergyMeter { rapl: Some(Arc::new(Rate(AtomicU64::new(25.0f64.to_bits())))), gpu: None, model };
        assert_eq!(rapl.attribute(Duration::from_secs(2)), Energy { joules: 50.0, method: EnergyMethod::Rapl });
    }
}
