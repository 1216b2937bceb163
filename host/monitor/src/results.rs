//! What monitors found: per monitor, counters (rows seen, invocations
//! dropped, windows run, failures, alerts) and the latest results with
//! every output, for the status API and `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use weir_core::Tensor;
use weir_manifest::offpath::Monitor;

/// Results kept per monitor.
const RECENT: usize = 50;
/// Elements of one output kept in a result.
const MAX_ELEMENTS: usize = 256;

pub use weir_observe::monitor_records::MonitorResult;

/// A monitor's standing, as `GET /v2/monitors` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonitorFigures {
    pub pipeline: String,
    pub monitor: String,
    pub component: String,
    pub inputs: Vec<String>,
    pub window: usize,
    pub queue: usize,
    /// Where the reference comes from, and its rows once there.
    pub reference: String,
    pub reference_rows: usize,
    pub rows_seen: u64,
    pub invocations_dropped: u64,
    pub invocations_refused: u64,
    /// Rows of one invocation past the windows it may fill (`WINDOWS_PER_INVOCATION`).
    pub rows_dropped: u64,
    pub windows: u64,
    pub failures: u64,
    pub alerts: u64,
    pub recent: VecDeque<MonitorResult>,
}

/// Every monitor's figures (shared by every generation of executors).
#[derive(Debug, Default)]
pub struct MonitorBoard {
    monitors: Mutex<BTreeMap<(String, String), MonitorFigures>>,
    /// References learned from the first rows, with the declaration they were learned under.
    learned: Mutex<BTreeMap<(String, String), Learned>>,
}

/// A reference learned from the first rows, and the monitor as declared then.
#[derive(Debug)]
struct Learned {
    declared: Monitor,
    /// Shared with the monitor's task, not copied.
    reference: Arc<Vec<Tensor>>,
}

impl MonitorBoard {
    /// Keep a reference learned from the first rows, for a reload that keeps the monitor.
    pub(crate) fn learn(&self, pipeline: &str, monitor: &Monitor, reference: Arc<Vec<Tensor>>) {
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Learned { declared: monitor.clone(), reference };
        learned.insert((pipeline.to_string(), monitor.name.clone()), entry);
    }

    /// Forget the references of monitors not in `declared` (pipeline, monitor).
    pub(crate) fn keep_learned(&self, declared: std::collections::BTreeSet<(String, String)>) {
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned.retain(|key, _| declared.contains(key));
    }

    /// The reference learned for this very declaration, if any.
    pub(crate) fn learned(&self, pipeline: &str, monitor: &Monitor) -> Option<Arc<Vec<Tensor>>> {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let entry = learned.get(&(pipeline.to_string(), monitor.name.clone()))?;
        (entry.declared == *monitor).then(|| entry.reference.clone())
    }

    pub(crate) fn register(&self, figures: MonitorFigures) {
        let key = (figures.pipeline.clone(), figures.monitor.clone());
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        // A reload keeps the counts of a monitor of the same name.
        let entry = monitors.entry(key).or_default();
        let kept = std::mem::take(entry);
        *entry = MonitorFigures {
            rows_seen: kept.rows_seen,
            invocations_dropped: kept.invocations_dropped,
            invocations_refused: kept.invocations_refused,
            rows_dropped: kept.rows_dropped,
            windows: kept.windows,
            failures: kept.failures,
            alerts: kept.alerts,
            recent: kept.recent,
            ..figures
        };
    }

    pub(crate) fn update(&self, pipeline: &str, monitor: &str, change: impl FnOnce(&mut MonitorFigures)) {
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(figures) = monitors.get_mut(&(pipeline.to_string(), monitor.to_string())) {
            change(figures);
        }
    }

    pub(crate) fn finished(&self, pipeline: &str, monitor: &str, result: MonitorResult) {
        self.update(pipeline, monitor, |f| {
            f.windows += 1;
            f.alerts += result.alerts as u64;
            f.failures += u64::from(result.error.is_some());
            if f.recent.len() == RECENT {
                f.recent.pop_front();
            }
            f.recent.push_back(result);
        });
    }

    pub fn figures(&self) -> Vec<MonitorFigures> {
        self.monitors.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Prometheus families (text format, before `# EOF`).
    pub fn metrics_text(&self, out: &mut String) {
        let all = self.figures();
        if all.is_empty() {
            return;
        }
        let label =
            |f: &MonitorFigures| format!("pipeline=\"{}\",monitor=\"{}\"", escape(&f.pipeline), escape(&f.monitor));
        type Counter = (&'static str, &'static str, fn(&MonitorFigures) -> u64);
        let counters: [Counter; 7] = [
            ("weir_monitor_rows_total", "Rows of monitored edges seen.", |f| f.rows_seen),
            ("weir_monitor_dropped_total", "Invocations shed because the monitor's queue was full.", |f| {
                f.invocations_dropped
            }),
            ("weir_monitor_refused_total", "Invocations whose edges did not stack into the window.", |f| {
                f.invocations_refused
            }),
            ("weir_monitor_rows_dropped_total", "Rows of one invocation past the windows it may fill.", |f| {
                f.rows_dropped
            }),
            ("weir_monitor_windows_total", "Windows the monitor ran on.", |f| f.windows),
            ("weir_monitor_failures_total", "Monitor runs that failed.", |f| f.failures),
            ("weir_monitor_alerts_total", "True elements of the monitors' `alert` outputs.", |f| f.alerts),
        ];
        for (name, help, value) in counters {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for f in &all {
                out.push_str(&format!("{name}{{{}}} {}\n", label(f), value(f)));
            }
        }
        let name = "weir_monitor_value";
        out.push_str(&format!(
            "# HELP {name} The latest value of each one-element monitor output.\n# TYPE {name} gauge\n"
        ));
        for f in &all {
            let Some(last) = f.recent.iter().rev().find(|r| r.error.is_none()) else { continue };
            for (output, values) in &last.outputs {
                if let [value] = values.as_slice() {
                    out.push_str(&format!("{name}{{{},output=\"{}\"}} {value}\n", label(f), escape(output)));
                }
            }
        }
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A monitor's answer as a result.
pub(crate) fn result_of(rows: usize, outputs: &[Tensor]) -> MonitorResult {
    let mut kept = BTreeMap::new();
    let mut alerts = 0;
    for tensor in outputs {
        let values = weir_core::tensor_json::numbers(tensor);
        if tensor.name == "alert" {
            alerts = values.iter().filter(|v| **v != 0.0).count();
        }
        kept.insert(tensor.name.clone(), values.into_iter().take(MAX_ELEMENTS).collect());
    }
    MonitorResult { unix_ms: weir_core::clock::unix_ms(), rows, outputs: kept, alerts, error: None }
}
