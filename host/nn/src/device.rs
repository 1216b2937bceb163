//! Where a model runs: the CPU, or a GPU through ONNX Runtime's CUDA execution
//! provider. GPU presence and memory come from NVML, which fails cleanly on
//! machines without an NVIDIA driver.

use std::fmt;

pub use weir_core::DeviceChoice;

/// Where a model actually runs, and why when it is not where it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub device: Device,
    /// Set when `auto` fell back to the CPU.
    pub fallback_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu { index: u32 },
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu { index } => write!(f, "gpu:{index}"),
        }
    }
}

/// A GPU as NVML sees it.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

/// The GPUs NVML reports, or why there are none usable.
pub fn gpus() -> Result<Vec<GpuInfo>, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable (no NVIDIA driver?): {e}"))?;
    let count = nvml.device_count().map_err(|e| format!("NVML device count: {e}"))?;
    let mut out = Vec::new();
    for index in 0..count {
        let device = nvml.device_by_index(index).map_err(|e| format!("NVML device {index}: {e}"))?;
        let memory = device.memory_info().map_err(|e| format!("NVML memory of device {index}: {e}"))?;
        out.push(GpuInfo {
            index,
            name: device.name().unwrap_or_else(|_| "unknown".into()),
            memory_total_bytes: memory.total,
            memory_free_bytes: memory.free,
        });
    }
    if out.is_empty() {
        return Err("NVML reports no GPU".into());
    }
    Ok(out)
}

/// Whether this build carries the CUDA execution provider.
pub const CUDA_BUILT_IN: bool = cfg!(feature = "cuda");

/// Decide where a model goes. `gpu` without a usable GPU is an error.
pub fn place(choice: DeviceChoice) -> Result<Placement, String> {
    let gpu = || -> Result<Device, String> {
        if !CUDA_BUILT_IN {
            return Err("this weir was built without CUDA support (cargo feature `cuda`)".into());
        }
        let gpus = gpus()?;
        Ok(Device::Gpu { index: gpus[0].index })
    };
    match choice {
        DeviceChoice::Cpu => Ok(Placement { device: Device::Cpu, fallback_reason: None }),
        DeviceChoice::Gpu => gpu().map(|device| Placement { device, fallback_reason: None }),
        DeviceChoice::Auto => Ok(match gpu() {
            Ok(device) => Placement { device, fallback_reason: None },
            Err(reason) => Placement { device: Device::Cpu, fallback_reason: Some(reason) },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().contains("cpu, gpu or auto"));
    }

    /// Runs everywhere: without a GPU, `gpu` is a clear error and `auto`
    /// falls back with the reason; with one (and CUDA built in), both use it.
    #[test]
    fn gpu_is_never_a_silent_fallback() {
        assert_eq!(place(DeviceChoice::Cpu).unwrap().device, Device::Cpu);
        match (gpus(), CUDA_BUILT_IN) {
            (Ok(_), true) => {
                assert!(matches!(place(DeviceChoice::Gpu).unwrap().device, Device::Gpu { .. }));
                assert!(place(DeviceChoice::Auto).unwrap().fallback_reason.is_none());
            }
            _ => {
                let err = place(DeviceChoice::Gpu).unwrap_err();
                assert!(err.contains("CUDA") || err.contains("NVML") || err.contains("GPU"), "{err}");
                let auto = place(DeviceChoice::Auto).unwrap();
                assert_eq!(auto.device, Device::Cpu);
                assert_eq!(auto.fallback_reason.as_deref(), Some(err.as_str()));
            }
        }
    }
}
