//! Receipts: what one invocation and each of its steps cost — CPU time,
//! energy (always labelled with how it was obtained), money and CO2.
//!
//! Receipts are priced from what the executor measured (CPU time, memory,
//! energy with its method) and the manifest's `[accounting]`: a pure
//! function of those facts, so the receipt in a response and the one in the
//! provenance record are the same figures.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::{Energy, EnergyMethod, Pricing};
use weir_executor::{ColdStart, PipelineOutput, StepTrace};

/// What one step of one invocation cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReceipt {
    pub step: String,
    pub wall_us: u64,
    /// All CPU time the step used, including ONNX Runtime's pool threads.
    pub cpu_us: u64,
    /// The part of `cpu_us` on ONNX Runtime's intra-op pool threads.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ort_threads_cpu_us: u64,
    pub inference_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub energy_j: f64,
    pub energy_method: EnergyMethod,
    pub cost: f64,
    pub gco2e: f64,
    /// Present when this invocation had to load the step's component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStart>,
    /// The models the step ran, by digest (and variant, for a model with
    /// variants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelServed>,
}

/// A model one step ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelServed {
    pub name: String,
    /// The declared variant that served (models with variants only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub digest: String,
    pub device: String,
}

/// What one invocation cost: the sum of its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub invocation_id: String,
    pub wall_us: u64,
    /// From the request's arrival to the start of the pipeline.
    pub queue_wait_us: u64,
    pub cpu_us: u64,
    pub energy_j: f64,
    pub energy_method: EnergyMethod,
    pub cost: f64,
    pub gco2e: f64,
    pub steps: Vec<StepReceipt>,
    /// The experiment variant that served the invocation, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Served>,
}

/// Which experiment's variant served an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub experiment: String,
    /// `champion`, or the challenger's name.
    pub variant: String,
}

impl Served {
    pub fn of(tag: &weir_executor::VariantTag) -> Served {
        Served { experiment: tag.experiment.clone(), variant: tag.variant.clone() }
    }
}

/// Facts measured for one step, priced by [`price_step`].
#[derive(Debug, Clone, Default)]
pub struct StepUsage {
    pub wall: Duration,
    /// Including `ort_threads_cpu`.
    pub cpu: Duration,
    pub ort_threads_cpu: Duration,
    /// Joules and how they were obtained; `None` = the CPU model of `Pricing`.
    pub energy: Option<Energy>,
    pub inference: Duration,
    pub fuel: Option<u64>,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Peak memory held over a wall time, in GiB-seconds (what memory is charged by).
pub fn gib_seconds(peak_memory_bytes: u64, wall: Duration) -> f64 {
    peak_memory_bytes as f64 / (1u64 << 30) as f64 * wall.as_secs_f64()
}

pub fn price_step(step: &str, usage: &StepUsage, pricing: &Pricing) -> StepReceipt {
    let cpu_seconds = usage.cpu.as_secs_f64();
    let Energy { joules: energy_j, method: energy_method } =
        usage.energy.unwrap_or(Energy { joules: cpu_seconds * pricing.watts_per_core, method: EnergyMethod::CpuModel });
    let gib_seconds = gib_seconds(usage.peak_memory_bytes, usage.wall);
    StepReceipt {
        step: step.to_string(),
        wall_us: usage.wall.as_micros() as u64,
        cpu_us: usage.cpu.as_micros() as u64,
        ort_threads_cpu_us: usage.ort_threads_cpu.as_micros() as u64,
        inference_us: usage.inference.as_micros() as u64,
        fuel: usage.fuel,
        peak_memory_bytes: usage.peak_memory_bytes,
        bytes_in: usage.bytes_in,
        bytes_out: usage.bytes_out,
        energy_j,
        energy_method,
        cost: pricing.cost(cpu_seconds, gib_seconds, energy_j),
        gco2e: pricing.gco2e(energy_j),
        cold_start: None,
        models: Vec::new(),
    }
}

/// Sum step receipts into the invocation's.
pub fn receipt(invocation_id: String, wall: Duration, queue_wait: Duration, steps: Vec<StepReceipt>) -> Receipt {
    let energy_method = match steps.first() {
        Some(first) if steps.iter().all(|s| s.energy_method == first.energy_method) => first.energy_method,
        Some(_) => EnergyMethod::Mixed,
        None => EnergyMethod::CpuModel,
    };
    Receipt {
        invocation_id,
        wall_us: wall.as_micros() as u64,
        queue_wait_us: queue_wait.as_micros() as u64,
        cpu_us: steps.iter().map(|s| s.cpu_us).sum(),
        energy_j: steps.iter().map(|s| s.energy_j).sum(),
        energy_method,
        cost: steps.iter().map(|s| s.cost).sum(),
        gco2e: steps.iter().map(|s| s.gco2e).sum(),
        steps,
        variant: None,
    }
}

/// A receipt's totals, as responses carry it by default: the full receipt
/// (every step) is one request parameter or one provenance lookup away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompactReceipt {
    pub invocation_id: String,
    pub wall_us: u64,
    pub queue_wait_us: u64,
    pub cpu_us: u64,
    pub energy_j: f64,
    pub energy_method: EnergyMethod,
    pub cost: f64,
    pub gco2e: f64,
    /// Whether any step had to be loaded for this invocation.
    pub cold_start: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Served>,
}

impl Receipt {
    /// The totals only.
    pub fn compact(&self) -> CompactReceipt {
        CompactReceipt {
            invocation_id: self.invocation_id.clone(),
            wall_us: self.wall_us,
            queue_wait_us: self.queue_wait_us,
            cpu_us: self.cpu_us,
            energy_j: self.energy_j,
            energy_method: self.energy_method,
            cost: self.cost,
            gco2e: self.gco2e,
            cold_start: self.steps.iter().any(|s| s.cold_start.is_some()),
            variant: self.variant.clone(),
        }
    }
}

/// The receipt of a finished invocation, priced with `pricing`.
pub fn invocation_receipt(output: &PipelineOutput, pricing: &Pricing) -> Receipt {
    let steps = output.steps.iter().map(|step| step_receipt(step, pricing)).collect();
    let mut receipt = receipt(output.invocation_id.clone(), output.wall, output.queue_wait, steps);
    receipt.variant = output.variant.as_ref().map(Served::of);
    receipt
}

/// One finished step's receipt, priced with `pricing`.
pub fn step_receipt(step: &StepTrace, pricing: &Pricing) -> StepReceipt {
    let s = &step.stats;
    let usage = StepUsage {
        wall: s.wall,
        cpu: s.cpu,
        ort_threads_cpu: s.nn.pool_cpu,
        energy: Some(step.energy),
        inference: s.nn.inference_time,
        fuel: s.fuel_consumed,
        peak_memory_bytes: s.peak_memory_bytes,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
    };
    let mut priced = price_step(&step.step, &usage, pricing);
    priced.cold_start = step.cold_start.clone();
    priced.models =
        s.nn.models
            .iter()
            .map(|m| ModelServed {
                name: m.name.clone(),
                variant: m.variant.clone(),
                digest: m.digest.clone(),
                device: m.device.clone(),
            })
            .collect();
    priced
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_and_co2_follow_the_pricing_formula_to_the_digit() {
        let pricing =
            Pricing { cpu_second: 0.01, gib_second: 0.001, kwh: 0.2, grid_gco2e_per_kwh: 500.0, watts_per_core: 15.0 };
        // 2 CPU-seconds over 4 s of wall time, 512 MiB at peak.
        let usage = StepUsage {
            cpu: Duration::from_secs(2),
            wall: Duration::from_secs(4),
            peak_memory_bytes: 512 << 20,
            ..StepUsage::default()
        };
        let modelled = price_step("s", &usage, &pricing);
        // By hand: 2 s × 15 W = 30 J = 30 / 3.6e6 kWh; 0.5 GiB × 4 s = 2 GiB-s;
        // cost = 2 × 0.01 + 2 × 0.001 + 30 / 3.6e6 × 0.2; CO2 = 30 / 3.6e6 × 500.
        assert_eq!(modelled.energy_j, 30.0);
        assert!((modelled.cost - 0.022_001_666_666_667).abs() < 1e-15, "{}", modelled.cost);
        assert!((modelled.gco2e - 0.004_166_666_666_667).abs() < 1e-15, "{}", modelled.gco2e);
        // A measured figure replaces the model's joules, and so its kWh.
        let measured = StepUsage { energy: Some(Energy { joules: 72.0, method: EnergyMethod::Rapl }), ..usage };
        let measured = price_step("s", &measured, &pricing);
        assert_eq!((measured.energy_j, measured.energy_method), (72.0, EnergyMethod::Rapl));
        // 72 J = 0.00002 kWh: cost 0.02 + 0.002 + 0.000004; CO2 0.01 g.
        assert!((measured.cost - 0.022_004).abs() < 1e-15, "{}", measured.cost);
        assert!((measured.gco2e - 0.01).abs() < 1e-15, "{}", measured.gco2e);
    }

    #[test]
    fn energy_cost_and_co2_scale_with_cpu_time() {
        let pricing = Pricing::default();
        let usage = |cpu_ms| StepUsage {
            cpu: Duration::from_millis(cpu_ms),
            wall: Duration::from_millis(cpu_ms),
            ..StepUsage::default()
        };
        let light = price_step("light", &usage(10), &pricing);
        let heavy = price_step("heavy", &usage(40), &pricing);
        assert!((heavy.energy_j / light.energy_j - 4.0).abs() < 1e-9);
        assert!((light.energy_j - 0.01 * 10.0).abs() < 1e-12, "10 ms at 10 W is 0.1 J");
        assert!((heavy.gco2e / light.gco2e - 4.0).abs() < 1e-9);
        assert_eq!(light.energy_method, EnergyMethod::CpuModel);
        let total = receipt("id".into(), Duration::from_millis(60), Duration::ZERO, vec![light.clone(), heavy.clone()]);
        assert!((total.energy_j - light.energy_j - heavy.energy_j).abs() < 1e-12);
        assert_eq!(total.cpu_us, 50_000);
    }
}
