//! How a step's joules are known: the source is chosen by the host (RAPL,
//! a CPU model), the figure travels with the step's other measured facts.

use std::time::Duration;

/// How an energy figure was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyMethod {
    /// CPU seconds × watts per core: modelled, not measured.
    CpuModel,
    /// Linux powercap (RAPL) package energy, split by CPU-time share: measured.
    Rapl,
    /// Some steps measured, some modelled (invocation totals only).
    Mixed,
    /// A step whose inferences ran on a GPU: the GPU's energy from NVML,
    /// split by each step's share of the device's busy time, plus its CPU
    /// time's joules as RAPL or the CPU model says.
    Nvml,
}

impl EnergyMethod {
    /// The name receipts and metric labels use.
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::CpuModel => "cpu-model",
            EnergyMethod::Rapl => "rapl",
            EnergyMethod::Mixed => "mixed",
            EnergyMethod::Nvml => "nvml",
        }
    }
}

/// Joules, and how they were obtained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Energy {
    pub joules: f64,
    pub method: EnergyMethod,
}

/// Something that can say how many joules some CPU time cost, now.
pub trait EnergySource: Send + Sync {
    fn attribute(&self, cpu: Duration) -> Energy;

    /// Joules of `gpu` of GPU busy time, when a GPU's energy can be read.
    fn attribute_gpu(&self, _gpu: Duration) -> Option<Energy> {
        None
    }

    /// A step's joules: its CPU time's, plus its GPU time's where measured
    /// (then labelled `nvml`).
    fn attribute_step(&self, cpu: Duration, gpu: Duration) -> Energy {
        let energy = self.attribute(cpu);
        match (gpu > Duration::ZERO).then(|| self.attribute_gpu(gpu)).flatten() {
            Some(on_gpu) => Energy { joules: energy.joules + on_gpu.joules, method: EnergyMethod::Nvml },
            None => energy,
        }
    }
}

/// CPU seconds × a fixed power per busy core: a model, labelled as one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuModel {
    pub watts_per_core: f64,
}

impl EnergySource for CpuModel {
    fn attribute(&self, cpu: Duration) -> Energy {
        Energy { joules: cpu.as_secs_f64() * self.watts_per_core, method: EnergyMethod::CpuModel }
    }
}
