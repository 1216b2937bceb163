//! What a model with several variants (say FP32 and INT8) is served for:
//! the host picks the variant that best meets it on its own target.

use std::str::FromStr;

/// The stated objective of a model's variant choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// The most accurate variant (declared accuracy); nothing is measured.
    #[default]
    Accuracy,
    /// The variant with the shortest measured inference on this host.
    Latency,
    /// The variant with the least measured CPU time per inference on this
    /// host: what receipts charge for.
    Cost,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Accuracy => "accuracy",
            Objective::Latency => "latency",
            Objective::Cost => "cost",
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Objective {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "accuracy" => Ok(Objective::Accuracy),
            "latency" => Ok(Objective::Latency),
            "cost" => Ok(Objective::Cost),
            other => Err(format!("unknown objective `{other}`; expected latency, cost or accuracy")),
        }
    }
}

/// The architecture part of a target triple (`aarch64-unknown-linux-gnu`
/// → `aarch64`), the name variants' `targets` lists use.
pub fn arch_of(triple: &str) -> &str {
    triple.split('-').next().unwrap_or(triple)
}

/// Architectures a variant may name in `targets`.
pub const KNOWN_ARCHES: [&str; 2] = ["x86_64", "aarch64"];
