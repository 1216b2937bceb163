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
            error: None,
            variant: None,
            feedback: None,
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
        // The printed numbers, row by row: calls, CPU seconds, joules, cost
        // and gCO2e as summed above (1 ms of CPU per step at the default prices).
        let text = table(&summary);
        let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
        let cost = |joules: f64, steps: f64| steps * 0.001 * 0.0000125 + joules / 3.6e6 * 0.15;
        let co2 = |joules: f64| joules / 3.6e6 * 400.0;
        let expected = [
            ("*", 2, 0.004, 7.0, cost(7.0, 4.0), co2(7.0)),
            ("a", 2, 0.002, 3.0, cost(3.0, 2.0), co2(3.0)),
            ("b", 2, 0.002, 4.0, cost(4.0, 2.0), co2(4.0)),
        ];
        assert_eq!(rows.len(), expected.len(), "{text}");
        for (row, (step, calls, cpu, joules, cost, co2)) in rows.iter().zip(expected) {
            assert_eq!(row[..3], ["p", step, &calls.to_string()], "{text}");
            let number = |i: usize| row[i].parse::<f64>().unwrap();
            assert_eq!((number(3), number(4)), (cpu, joules), "{text}");
            assert!((number(5) / cost - 1.0).abs() < 1e-3 && (number(6) / co2 - 1.0).abs() < 1e-3, "{text}");
            assert_eq!(row[7], "cpu-model", "{text}");
        }
    }

    #[test]
    fn an_invocation_whose_steps_were_measured_differently_says_mixed() {
        let step = |method| {
            let usage = StepUsage {
                cpu: Duration::from_millis(1),
                energy: Some(weir_core::Energy { joules: 1.0, method }),
                ..StepUsage::default()
            };
            price_step("s", &usage, &weir_core::Pricing::default())
        };
        let mixed = receipt(
            "x".into(),
            Duration::ZERO,
            Duration::ZERO,
            vec![step(EnergyMethod::Rapl), step(EnergyMethod::CpuModel)],
        );
        assert_eq!(mixed.energy_method, EnergyMethod::Mixed);
        assert_eq!(serde_json::to_value(&mixed).unwrap()["energy_method"], "mixed");
        let same = receipt(
            "x".into(),
            Duration::ZERO,
            Duration::ZERO,
            vec![step(EnergyMethod::Rapl), step(EnergyMethod::Rapl)],
        );
        assert_eq!(same.energy_method, EnergyMethod::Rapl);
        assert_eq!(mixed.energy_j, 2.0);
    }
}
