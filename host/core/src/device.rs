//! Where a model declaration asks to run.

use std::str::FromStr;

/// What a model declaration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    /// A GPU or an error: never a silent fallback.
    Gpu,
    /// A GPU when one is usable, else the CPU (said in the log and the record).
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu),
            "auto" => Ok(DeviceChoice::Auto),
            other => Err(format!("unknown device `{other}`; expected cpu, gpu or auto")),
        }
    }
}
