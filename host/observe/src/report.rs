//! Receipts summed from the provenance store: energy, cost and CO2 per
//! pipeline and step over a time window (what `weir receipts` prints).

use std::collections::BTreeMap;
use std::fmt::Write;

use weir_core::EnergyMethod;

use crate::provenance::InvocationRecord;
use crate::receipts::{Receipt, StepReceipt};

/// Totals for one (pipeline, step); the step `*` is the whole pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub invocations: u64,
    pub cpu_seconds: f64,
    pub energy_j: f64,
    pub cost: f64,
    pub gco2e: f64,
    /// Energy methods seen (e.g. `cpu-model`), so a modelled total says so.
    pub methods: Vec<String>,
}

/// The figures a receipt and each of its steps share.
struct Figures {
    cpu_us: u64,
    energy_j: f64,
    cost: f64,
    gco2e: f64,
    method: EnergyMethod,
}

impl From<&Receipt> for Figures {
    fn from(r: &Receipt) -> Self {
        Figures { cpu_us: r.cpu_us, energy_j: r.energy_j, cost: r.cost, gco2e: r.gco2e, method: r.energy_method }
    }
}

impl From<&StepReceipt> for Figures {
    fn from(r: &StepReceipt) -> Self {
        Figures { cpu_us: r.cpu_us, energy_j: r.energy_j, cost: r.cost, gco2e: r.gco2e, method: r.energy_method }
    }
}

fn add(totals: &mut Totals, figures: Figures) {
    totals.invocations += 1;
    totals.cpu_seconds += figures.cpu_us as f64 / 1e6;
    totals.energy_j += figures.energy_j;
    totals.cost += figures.cost;
    totals.gco2e += figures.gco2e;
    let method = figures.method.as_str();
    if !totals.methods.iter().any(|m| m == method) {
        totals.methods.push(method.to_string());
    }
}

/// Sum receipts by (pipeline, step), with a `*` row per pipeline.
pub fn summarise(records: &[InvocationRecord]) -> BTreeMap<(String, String), Totals> {
    let mut out: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for record in records {
        add(out.entry((record.pipeline.clone(), "*".into())).or_default(), (&record.receipt).into());
        for step in &record.receipt.steps {
            add(out.entry((record.pipeline.clone(), step.step.clone())).or_default(), step.into());
        }
    }
    out
}

pub fn table(summary: &BTreeMap<(String, String), Totals>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<14} {:>8} {:>10} {:>12} {:>12} {:>12}  energy method",
        "pipeline", "step", "calls", "cpu s", "energy J", "cost", "gCO2e"
    );
    for ((pipeline, step), t) in summary {
        let _ = writeln!(
            out,
            "{pipeline:<16} {step:<14} {:>8} {:>10.4} {:>12.4} {:>12.3e} {:>12.3e}  {}",
            t.invocations,
            t.cpu_seconds,
            t.energy_j,
            t.cost,
            t.gco2e,
            t.methods.join(",")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::receipts::{price_step, receipt, StepUsage};
    use std::time::Duration;

    pub(crate) fn record(pipeline: &str, steps: &[(&str, f64)]) -> InvocationRecord {
        let steps = steps
            .iter()
            .map(|(s, j)| {
                let energy = weir_core::Energy { joules: *j, method: EnergyMethod::CpuModel };
                let usage = StepUsage { cpu: Duration::from_millis(1), energy: Some(energy), ..StepUsage::default() };
                price_step(s, &usage, &weir_core::Pricing::default())
            })
            .collect();
        InvocationRecord {
            invocation_id: "x".into(),
            pipeline: pipeline.into(),
            subject: None,
            unix_ms: 0,
            inputs: vec![],
            outputs: vec![],
            receipt: receipt("x".into(), Duration::ZERO, Duration::ZERO, steps),
            steps: vec![],
        }
    }

    #[test]
    fn sums_per_pipeline_and_step() {
        let records = [record("p", &[("a", 1.0), ("b", 3.0)]), record("p", &[("a", 2.0), ("b", 1.0)])];
        let summary = summarise(&records);
        assert_eq!(summary[&("p".into(), "a".into())].energy_j, 3.0);
        assert_eq!(summary[&("p".into(), "b".into())].invocations, 2);
        assert_eq!(summary[&("p".into(), "*".into())].energy_j, 7.0);
        assert_eq!(summary[&("p".into(), "*".into())].cpu_seconds, 0.004);
        let text = table(&summary);
        assert!(text.contains("cpu-model"), "{text}");
    }
}
