//! GPU energy, measured: NVML's total-energy counter of each GPU (mJ since
//! the driver loaded) is sampled in the background together with the time
//! the GPUs spent on this process's inferences (`weir_nn::gpu_busy`). Each
//! interval gives joules per GPU-busy-second; a step is charged its own GPU
//! time at the latest rate, i.e. the devices' energy split by busy-time
//! share (their idle power is thereby spread over busy time, as RAPL's is
//! over busy CPU time). Without an NVIDIA driver there is nothing to read
//! and steps are charged by their CPU time alone.

use std::sync::Arc;
use std::time::Duration;

use crate::energy::{between, Rate};

/// Where GPU energy comes from: NVML, or a stand-in in tests.
pub trait GpuCounters: Send + 'static {
    /// The devices whose energy can be read.
    fn devices(&self) -> Vec<u32>;
    /// Device `index`'s energy since the driver loaded, in millijoules.
    fn millijoules(&self, index: u32) -> Option<u64>;
}

/// NVML's counters.
pub struct Nvml(nvml_wrapper::Nvml);

impl Nvml {
    /// NVML, when a driver answers and at least one GPU reports its energy.
    pub fn open() -> Option<Nvml> {
        let nvml = Nvml(nvml_wrapper::Nvml::init().ok()?);
        (!nvml.devices().is_empty()).then_some(nvml)
    }
}

impl GpuCounters for Nvml {
    fn devices(&self) -> Vec<u32> {
        let count = self.0.device_count().unwrap_or(0).min(weir_nn::gpu_busy::MAX_DEVICES as u32);
        (0..count).filter(|&index| self.millijoules(index).is_some()).collect()
    }

    fn millijoules(&self, index: u32) -> Option<u64> {
        self.0.device_by_index(index).ok()?.total_energy_consumption().ok()
    }
}

/// Sample `counters` every `every` in a background thread: joules per
/// GPU-busy-second of all their devices together.
pub fn start(counters: impl GpuCounters, every: Duration) -> Arc<Rate> {
    let devices = counters.devices();
    let read = move || -> Option<(u64, f64)> {
        let mut millijoules = 0u64;
        let mut busy = Duration::ZERO;
        for &index in &devices {
            millijoules = millijoules.saturating_add(counters.millijoules(index)?);
            busy += weir_nn::gpu_busy::busy(index);
        }
        Some((millijoules, busy.as_secs_f64()))
    };
    Rate::start("weir-nvml", every, between(read, |e0: &u64, e1: &u64| e1.saturating_sub(*e0) as f64 / 1e3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{EnergyMethod, EnergySource};

    /// NVML's stand-in: a GPU that draws 300 W whenever it is busy with our
    /// inferences (its counter follows the busy time the host records).
    struct Busy300W(u32);

    impl GpuCounters for Busy300W {
        fn devices(&self) -> Vec<u32> {
            vec![self.0]
        }

        fn millijoules(&self, index: u32) -> Option<u64> {
            (index == self.0).then(|| (weir_nn::gpu_busy::busy(index).as_secs_f64() * 300.0 * 1e3) as u64)
        }
    }

    #[test]
    fn gpu_time_is_charged_at_the_measured_rate_and_labelled_nvml() {
        // Device 7: no other test records busy time there.
        let meter = crate::energy::EnergyMeter::model(10.0).with_gpu(Busy300W(7), Duration::from_millis(20));
        assert_eq!(meter.attribute_gpu(Duration::from_secs(1)), None, "no interval measured yet");
        let cpu_only = meter.attribute_step(Duration::from_millis(100), Duration::ZERO);
        assert_eq!((cpu_only.joules, cpu_only.method), (1.0, EnergyMethod::CpuModel));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while meter.attribute_gpu(Duration::from_secs(1)).is_none() {
            weir_nn::gpu_busy::record(7, Duration::from_millis(50));
            assert!(std::time::Instant::now() < deadline, "the sampler never measured a rate");
            std::thread::sleep(Duration::from_millis(5));
        }
        let gpu = meter.attribute_gpu(Duration::from_millis(500)).unwrap();
        assert!((gpu.joules - 150.0).abs() < 0.5, "500 ms at 300 W is 150 J, got {}", gpu.joules);
        // A step with both: its CPU joules (model, 10 W) plus its GPU joules.
        let step = meter.attribute_step(Duration::from_millis(100), Duration::from_millis(500));
        assert_eq!(step.method, EnergyMethod::Nvml);
        assert!((step.joules - 151.0).abs() < 0.5, "{}", step.joules);
        assert_eq!(step.method.as_str(), "nvml");
    }
}
