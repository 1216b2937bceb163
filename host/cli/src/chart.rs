//! `weir receipts --svg`: energy per step as a bar chart, for people who
//! would rather look than read.

use std::collections::BTreeMap;
use std::fmt::Write;

use weir_observe::report::Totals;

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
        let _ = writeln!(
            out,
            r##"<rect x="{label_w}" y="{y:.1}" width="{width:.1}" height="{:.1}" fill="#4a7ab5"/>"##,
            row_h - 8.0
        );
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

    #[test]
    fn bars_are_labelled_with_their_method() {
        let totals =
            |energy_j| Totals { invocations: 1, energy_j, methods: vec!["cpu-model".into()], ..Totals::default() };
        let mut summary = BTreeMap::new();
        summary.insert(("p".to_string(), "*".to_string()), totals(7.0));
        summary.insert(("p".to_string(), "a".to_string()), totals(3.0));
        summary.insert(("p".to_string(), "b".to_string()), totals(4.0));
        let chart = svg(&summary, "energy");
        assert_eq!(chart.matches("<rect").count(), 2, "the pipeline total is not a bar");
        assert!(chart.contains("4.000 J (cpu-model)"), "{chart}");
    }
}
