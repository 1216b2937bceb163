//! `weir receipts`: energy, cost and CO2 per pipeline and step over a time
//! window, summed from the provenance store — as a table, and as an SVG bar
//! chart for people who would rather look than read.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::provenance::InvocationRecord;

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

fn add(totals: &mut Totals, receipt: &serde_json::Value) {
    let number = |key: &str| receipt[key].as_f64().unwrap_or(0.0);
    totals.invocations += 1;
    totals.cpu_seconds += number("cpu_us") / 1e6;
    totals.energy_j += number("energy_j");
    totals.cost += number("cost");
    totals.gco2e += number("gco2e");
    if let Some(method) = receipt["energy_method"].as_str() {
        if !totals.methods.iter().any(|m| m == method) {
            totals.methods.push(method.to_string());
        }
    }
}

/// Sum receipts by (pipeline, step), with a `*` row per pipeline.
pub fn summarise(records: &[InvocationRecord]) -> BTreeMap<(String, String), Totals> {
    let mut out: BTreeMap<(String, String), Totals> = BTreeMap::new();
    for record in records {
        add(out.entry((record.pipeline.clone(), "*".into())).or_default(), &record.receipt);
        for step in record.receipt["steps"].as_array().into_iter().flatten() {
            let name = step["step"].as_str().unwrap_or("?").to_string();
            add(out.entry((record.pipeline.clone(), name)).or_default(), step);
        }
    }
    out
}

pub fn table(summary: &BTreeMap<(String, String), Totals>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:<14} {:>8} {:>10} {:>12} {:>12} {:>12}  energy method", "pipeline", "step", "calls", "cpu s", "energy J", "cost", "gCO2e");
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

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bars of energy per step (pipeline totals left out), labelled
/// with the energy method so a model is never read as a measurement.
pub fn svg(summary: &BTreeMap<(String, String), Totals>, title: &str) -> String {
    let rows: Vec<(&(String, String), &Totals)> = summary.iter().filter(|((_, step), _)| step != "*").collect();
    let max = rows.iter().map(|(_, t)| t.energy_j).fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
    let (label_w, bar_w, row_h) = (220.0, 420.0, 26.0);
    let height = 60.0 + row_h * rows.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="13">"#,
        w = label_w + bar_w + 160.0
    );
    let _ = writeln!(out, r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#, escape(title));
    for (i, ((pipeline, step), t)) in rows.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let width = bar_w * t.energy_j / max;
        let _ = writeln!(out, r#"<text x="10" y="{:.1}">{}/{}</text>"#, y + 15.0, escape(pipeline), escape(step));
        let _ = writeln!(out, r##"<rect x="{label_w}" y="{y:.1}" width="{width:.1}" height="{:.1}" fill="#4a7ab5"/>"##, row_h - 8.0);
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{:.3} J ({})</text>"#,
            label_w + width + 6.0,
            y + 15.0,
            t.energy_j,
            escape(&t.methods.join(","))
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pipeline: &str, steps: &[(&str, f64)]) -> InvocationRecord {
        let steps: Vec<serde_json::Value> = steps
            .iter()
            .map(|(s, j)| serde_json::json!({"step": s, "cpu_us": 1000, "energy_j": j, "cost": 1.0, "gco2e": 2.0, "energy_method": "cpu-model"}))
            .collect();
        let energy: f64 = steps.iter().map(|s| s["energy_j"].as_f64().unwrap()).sum();
        InvocationRecord {
            invocation_id: "x".into(),
            pipeline: pipeline.into(),
            subject: None,
            unix_ms: 0,
            inputs: vec![],
            outputs: vec![],
            receipt: serde_json::json!({"cpu_us": 1000 * steps.len(), "energy_j": energy, "cost": 1.0, "gco2e": 2.0, "energy_method": "cpu-model", "steps": steps}),
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
        let text = table(&summary);
        assert!(text.contains("cpu-model"), "{text}");
        let chart = svg(&summary, "energy");
        assert_eq!(chart.matches("<rect").count(), 2);
        assert!(chart.contains("4.000 J (cpu-model)"), "{chart}");
    }
}
