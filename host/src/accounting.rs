//! Receipts: what one invocation and each of its steps cost — CPU time,
//! energy (always labelled with how it was obtained), money and CO2.
//!
//! CPU time is the calling thread's CPU clock summed over every poll of the
//! step's future, so it follows the step across worker threads and includes
//! ONNX Runtime work done on that thread (all of it with `threads = 1`).
//! These VMs have no RAPL and no GPU, so energy is `cpu-model`: CPU seconds
//! times the configured watts per core — a model, never presented as a
//! measurement.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;

/// The calling thread's CPU time.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A future that adds up the CPU time its polls take.
pub struct CpuMetered<F> {
    inner: Pin<Box<F>>,
    cpu: Duration,
}

impl<F: Future> CpuMetered<F> {
    pub fn new(inner: F) -> Self {
        CpuMetered { inner: Box::pin(inner), cpu: Duration::ZERO }
    }
}

impl<F: Future> Future for CpuMetered<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = thread_cpu_time();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(started);
        self.cpu += spent;
        polled.map(|output| (output, self.cpu))
    }
}

/// Prices and factors, from the manifest's `[accounting]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    /// Money per CPU-second (default: USD 0.0000125, about a cloud vCPU-hour of 4.5 cents).
    pub cpu_second: f64,
    /// Money per GiB-second of peak step memory (default: USD 0.0000012).
    pub gib_second: f64,
    /// Money per kWh of energy (default: USD 0.15).
    pub kwh: f64,
    /// Grid carbon intensity, gCO2e per kWh (default: 400).
    pub grid_gco2e_per_kwh: f64,
    /// Modelled power of one busy core, in watts (default: 10).
    pub watts_per_core: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing { cpu_second: 0.0000125, gib_second: 0.0000012, kwh: 0.15, grid_gco2e_per_kwh: 400.0, watts_per_core: 10.0 }
    }
}

/// How an energy figure was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyMethod {
    /// CPU seconds × watts per core: modelled, not measured.
    CpuModel,
    /// Linux powercap (RAPL) package energy, split by CPU-time share: measured.
    Rapl,
    /// Some steps measured, some modelled (invocation totals only).
    Mixed,
}

impl EnergyMethod {
    /// The name receipts and metric labels use.
    pub fn as_str(self) -> &'static str {
        match self {
            EnergyMethod::CpuModel => "cpu-model",
            EnergyMethod::Rapl => "rapl",
            EnergyMethod::Mixed => "mixed",
        }
    }
}

/// What one step of one invocation cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReceipt {
    pub step: String,
    pub wall_us: u64,
    /// All CPU time the step used, including ONNX Runtime's pool threads.
    pub cpu_us: u64,
    /// The part of `cpu_us` on ONNX Runtime's intra-op pool threads.
    #[serde(skip_serializing_if = "is_zero")]
    pub ort_threads_cpu_us: u64,
    pub inference_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub energy_j: f64,
    pub energy_method: EnergyMethod,
    pub cost: f64,
    pub gco2e: f64,
    /// Present when this invocation had to load the step's component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<crate::residency::ColdStart>,
}

/// What one invocation cost: the sum of its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

/// Facts measured for one step, priced by [`price_step`].
#[derive(Debug, Clone, Default)]
pub struct StepUsage {
    pub wall: Duration,
    /// Including `ort_threads_cpu`.
    pub cpu: Duration,
    pub ort_threads_cpu: Duration,
    /// Joules and how they were obtained; `None` = the CPU model of `Pricing`.
    pub energy: Option<(f64, EnergyMethod)>,
    pub inference: Duration,
    pub fuel: Option<u64>,
    pub peak_memory_bytes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub fn price_step(step: &str, usage: &StepUsage, pricing: &Pricing) -> StepReceipt {
    let cpu_seconds = usage.cpu.as_secs_f64();
    let (energy_j, energy_method) = usage.energy.unwrap_or((cpu_seconds * pricing.watts_per_core, EnergyMethod::CpuModel));
    let kwh = energy_j / 3.6e6;
    let gib_seconds = usage.peak_memory_bytes as f64 / (1u64 << 30) as f64 * usage.wall.as_secs_f64();
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
        cost: cpu_seconds * pricing.cpu_second + gib_seconds * pricing.gib_second + kwh * pricing.kwh,
        gco2e: kwh * pricing.grid_gco2e_per_kwh,
        cold_start: None,
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
    }
}

impl Receipt {
    /// The totals only, for responses: the full receipt (every step) is one
    /// request parameter or one provenance lookup away.
    pub fn compact(&self) -> serde_json::Value {
        serde_json::json!({
            "invocation_id": self.invocation_id,
            "wall_us": self.wall_us,
            "queue_wait_us": self.queue_wait_us,
            "cpu_us": self.cpu_us,
            "energy_j": self.energy_j,
            "energy_method": self.energy_method.as_str(),
            "cost": self.cost,
            "gco2e": self.gco2e,
            "cold_start": self.steps.iter().any(|s| s.cold_start.is_some()),
        })
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A new invocation id: time, process and a counter, unique per host.
pub fn new_invocation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:016x}-{:08x}-{:08x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_follows_work_not_waiting() {
        let started = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let idle = thread_cpu_time() - started;
        assert!(idle < Duration::from_millis(10), "sleeping costs no CPU: {idle:?}");
        // Work until the CPU clock has advanced 20 ms (however long that
        // takes on a busy machine); a clock that does not move fails here.
        let started = thread_cpu_time();
        let wall = std::time::Instant::now();
        while thread_cpu_time() - started < Duration::from_millis(20) {
            assert!(wall.elapsed() < Duration::from_secs(20), "the thread CPU clock does not advance");
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
    }

    #[test]
    fn energy_cost_and_co2_scale_with_cpu_time() {
        let pricing = Pricing::default();
        let usage = |cpu_ms| StepUsage { cpu: Duration::from_millis(cpu_ms), wall: Duration::from_millis(cpu_ms), ..StepUsage::default() };
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

    #[test]
    fn invocation_ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_invocation_id()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
