//! What each variant did: runs served and shadowed, failures, latency
//! quantiles over a bounded window, agreement with the champion, and the
//! steps and CPU each run took.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use weir_core::Tensor;
use weir_manifest::experiments::Agreement;

/// Latencies kept per variant (the newest) for its quantiles.
const WINDOW: usize = 4096;

/// One finished run of a variant, served or shadowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    pub ok: bool,
    pub wall: Duration,
    /// Steps this run executed (shared steps it reused are not counted).
    pub steps: usize,
    pub cpu: Duration,
    pub cost: f64,
}

impl Run {
    /// A finished run's figures, priced like its receipt.
    pub fn of(output: &weir_executor::PipelineOutput, pricing: &weir_core::Pricing) -> Run {
        Run::priced(output, &weir_observe::receipts::invocation_receipt(output, pricing))
    }

    /// A finished run's figures from the receipt already made for it.
    pub fn priced(output: &weir_executor::PipelineOutput, receipt: &weir_observe::receipts::Receipt) -> Run {
        Run {
            ok: true,
            wall: output.wall,
            steps: output.steps.len(),
            cpu: Duration::from_micros(receipt.cpu_us),
            cost: receipt.cost,
        }
    }

    /// A failed run: it counts against the variant, with nothing measured.
    pub fn failed() -> Run {
        Run { ok: false, wall: Duration::ZERO, steps: 0, cpu: Duration::ZERO, cost: 0.0 }
    }
}

/// A variant's counts since the experiment (re)started.
#[derive(Debug, Clone, Default)]
pub struct VariantStats {
    pub served: u64,
    pub served_failed: u64,
    pub shadowed: u64,
    pub shadow_failed: u64,
    pub compared: u64,
    pub agreed: u64,
    steps: u64,
    cpu_us: u64,
    shadow_steps: u64,
    shadow_cpu_us: u64,
    cost: f64,
    latencies_us: VecDeque<u64>,
}

/// A variant's figures as the status API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantFigures {
    pub served: u64,
    pub shadowed: u64,
    /// Failed runs, served and shadowed.
    pub failed: u64,
    /// Failed runs over all runs (served and shadowed).
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Share of compared requests whose output agreed with the champion's.
    pub agreement: Option<f64>,
    pub compared: u64,
    /// Steps executed per served run.
    pub steps_per_run: f64,
    pub cpu_us_per_run: f64,
    /// Steps executed per shadow run: fewer than the pipeline has when the
    /// steps it shares with the variant that answered were reused.
    pub shadow_steps_per_run: f64,
    pub shadow_cpu_us_per_run: f64,
    pub cost_per_run: f64,
}

impl VariantStats {
    pub fn record(&mut self, run: &Run, shadow: bool) {
        match (shadow, run.ok) {
            (false, ok) => {
                self.served += 1;
                self.served_failed += u64::from(!ok);
            }
            (true, ok) => {
                self.shadowed += 1;
                self.shadow_failed += u64::from(!ok);
            }
        }
        let (steps, cpu_us) = if shadow {
            (&mut self.shadow_steps, &mut self.shadow_cpu_us)
        } else {
            (&mut self.steps, &mut self.cpu_us)
        };
        *steps += run.steps as u64;
        *cpu_us += micros(run.cpu);
        self.cost += run.cost;
        if run.ok {
            if self.latencies_us.len() == WINDOW {
                self.latencies_us.pop_front();
            }
            self.latencies_us.push_back(micros(run.wall));
        }
    }

    pub fn compared(&mut self, agreed: bool) {
        self.compared += 1;
        self.agreed += u64::from(agreed);
    }

    pub fn figures(&self) -> VariantFigures {
        let runs = self.served + self.shadowed;
        let per = |total: f64, runs: u64| if runs == 0 { 0.0 } else { total / runs as f64 };
        let per_run = |total: f64| per(total, runs);
        let mut sorted: Vec<u64> = self.latencies_us.iter().copied().collect();
        sorted.sort_unstable();
        VariantFigures {
            served: self.served,
            shadowed: self.shadowed,
            failed: self.served_failed + self.shadow_failed,
            error_rate: per_run((self.served_failed + self.shadow_failed) as f64),
            p50_ms: quantile(&sorted, 0.50).map(|us| us as f64 / 1000.0),
            p99_ms: quantile(&sorted, 0.99).map(|us| us as f64 / 1000.0),
            agreement: (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64),
            compared: self.compared,
            steps_per_run: per(self.steps as f64, self.served),
            cpu_us_per_run: per(self.cpu_us as f64, self.served),
            shadow_steps_per_run: per(self.shadow_steps as f64, self.shadowed),
            shadow_cpu_us_per_run: per(self.shadow_cpu_us as f64, self.shadowed),
            cost_per_run: per_run(self.cost),
        }
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// The `q` quantile of sorted values (nearest rank); `None` when empty.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Whether the challenger's outputs agree with the champion's: the named
/// output (or every output) has the same datatype and shape, and each
/// element differs by at most the tolerance (numbers) or not at all (other data).
pub fn agrees(champion: &[Tensor], challenger: &[Tensor], agreement: Option<&Agreement>) -> bool {
    let tolerance = agreement.map_or(0.0, |a| a.tolerance);
    let compared: Vec<&Tensor> = match agreement {
        Some(a) => champion.iter().filter(|t| t.name == a.output).collect(),
        None => champion.iter().collect(),
    };
    !compared.is_empty()
        && compared.into_iter().all(|ours| {
            challenger.iter().find(|t| t.name == ours.name).is_some_and(|theirs| same_within(ours, theirs, tolerance))
        })
}

fn same_within(a: &Tensor, b: &Tensor, tolerance: f64) -> bool {
    if a.datatype != b.datatype || a.shape != b.shape {
        return false;
    }
    match (numbers(a), numbers(b)) {
        (Some(x), Some(y)) => x.iter().zip(&y).all(|(x, y)| (x - y).abs() <= tolerance),
        _ => a.data == b.data,
    }
}

/// A numeric tensor's elements as `f64` (floats and integers alike).
fn numbers(t: &Tensor) -> Option<Vec<f64>> {
    use weir_core::Datatype::*;
    if let Some(values) = t.float_values() {
        return Some(values);
    }
    let ints = |size: usize, read: fn(&[u8]) -> f64| Some(t.data.chunks_exact(size).map(read).collect());
    match t.datatype {
        Int64 => ints(8, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64),
        Int32 => ints(4, |b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::Datatype;

    fn fp32(name: &str, values: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            datatype: Datatype::Fp32,
            shape: vec![values.len() as u64],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&sorted, 0.99), Some(99));
        assert_eq!(quantile(&sorted, 0.5), Some(50));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn agreement_is_within_the_tolerance_on_the_named_output() {
        let a = Agreement { output: "eta".into(), tolerance: 0.5, min: 0.99 };
        let champion = [fp32("eta", &[10.0, 20.0]), fp32("fare", &[1.0])];
        assert!(agrees(&champion, &[fp32("eta", &[10.4, 19.6]), fp32("fare", &[9.0])], Some(&a)));
        assert!(!agrees(&champion, &[fp32("eta", &[10.6, 20.0])], Some(&a)));
        // Another shape, or the output missing, never agrees.
        assert!(!agrees(&champion, &[fp32("eta", &[10.0])], Some(&a)));
        assert!(!agrees(&champion, &[fp32("fare", &[1.0])], Some(&a)));
        // Without a stated agreement every output must be equal.
        assert!(!agrees(&champion, &[fp32("eta", &[10.0, 20.0]), fp32("fare", &[1.5])], None));
        assert!(agrees(&champion, &champion, None));
    }

    #[test]
    fn figures_count_served_and_shadowed_runs() {
        let mut stats = VariantStats::default();
        let ok = Run { ok: true, wall: Duration::from_millis(2), steps: 2, cpu: Duration::from_micros(100), cost: 1.0 };
        stats.record(&ok, false);
        stats.record(&ok, true);
        stats.record(&Run::failed(), true);
        stats.compared(true);
        stats.compared(false);
        let f = stats.figures();
        assert_eq!((f.served, f.shadowed, f.compared), (1, 2, 2));
        assert!((f.error_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.agreement, Some(0.5));
        assert_eq!((f.steps_per_run, f.shadow_steps_per_run), (2.0, 1.0), "a failed shadow ran no step");
        assert_eq!(f.p99_ms, Some(2.0));
    }
}
