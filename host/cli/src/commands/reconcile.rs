//! `weir receipts --reconcile URL`: check a running server's receipts
//! against its process. Over a window, the CPU time all receipts charged is
//! compared with the CPU time the whole process used, and the receipts'
//! joules with the same meter applied to the process's CPU time. The gap is
//! the work no step is charged for (HTTP, JSON, scheduling, idle threads).

use std::time::{Duration, Instant};

use super::{exit, fail, Failure};

/// Cumulative figures read from one `/metrics` scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Totals {
    receipts_cpu: f64,
    receipts_energy: f64,
    process_cpu: f64,
    process_energy: f64,
    answered: f64,
}

impl Totals {
    /// Sum each metric over its label sets in Prometheus text.
    fn parse(text: &str) -> Totals {
        let mut totals = Totals::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let name = series.split('{').next().unwrap_or(series);
            match name {
                "weir_step_cpu_seconds_total" => totals.receipts_cpu += value,
                "weir_energy_joules_total" => totals.receipts_energy += value,
                "weir_process_cpu_seconds_total" => totals.process_cpu += value,
                "weir_process_energy_joules_total" => totals.process_energy += value,
                "weir_requests_total" if series.contains("status=\"200\"") => totals.answered += value,
                _ => {}
            }
        }
        totals
    }

    fn since(self, before: Totals) -> Totals {
        Totals {
            receipts_cpu: self.receipts_cpu - before.receipts_cpu,
            receipts_energy: self.receipts_energy - before.receipts_energy,
            process_cpu: self.process_cpu - before.process_cpu,
            process_energy: self.process_energy - before.process_energy,
            answered: self.answered - before.answered,
        }
    }
}

fn scrape(agent: &ureq::Agent, url: &str, key: Option<&str>) -> Result<Totals, Failure> {
    let mut request = agent.get(url);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut response = request.call().map_err(|e| fail(exit::INTERNAL)(anyhow::anyhow!("reading {url}: {e}")))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        return Err(fail(exit::BAD_INPUT)(anyhow::anyhow!(
            "{url} answered {status}: {}{}",
            text.trim(),
            if status == 401 || status == 403 { " (pass --key with a key that has the `status` scope)" } else { "" }
        )));
    }
    let totals = Totals::parse(&text);
    if !text.contains("weir_process_cpu_seconds_total") {
        return Err(fail(exit::BAD_INPUT)(anyhow::anyhow!("{url} has no weir_process_cpu_seconds_total: is it weir?")));
    }
    Ok(totals)
}

/// Scrape `base`/metrics twice, `window` apart, and print the two sums and the gap.
pub fn reconcile(base: &str, window: Duration, key: Option<&str>) -> Result<(), Failure> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let before = scrape(&agent, &url, key)?;
    let started = Instant::now();
    std::thread::sleep(window);
    let d = scrape(&agent, &url, key)?.since(before);
    let elapsed = started.elapsed().as_secs_f64();
    if d.process_cpu <= 0.0 {
        return Err(fail(exit::BAD_INPUT)(anyhow::anyhow!(
            "the server used no CPU in the {elapsed:.1} s window: run load against it while reconciling"
        )));
    }
    let gap = |receipts: f64, process: f64| {
        let share = if process > 0.0 { 100.0 * (process - receipts) / process } else { 0.0 };
        format!("{:>12.4} ({share:.1} % not charged to any step)", process - receipts)
    };
    println!("window {elapsed:.1} s, {} invocations answered", d.answered);
    println!("{:<12} {:>12} {:>12} {:>12}", "", "receipts", "process", "gap");
    println!("{:<12} {:>12.4} {:>12.4} {}", "CPU s", d.receipts_cpu, d.process_cpu, gap(d.receipts_cpu, d.process_cpu));
    println!(
        "{:<12} {:>12.4} {:>12.4} {}",
        "energy J",
        d.receipts_energy,
        d.process_energy,
        gap(d.receipts_energy, d.process_energy)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn metrics_text_is_summed_over_label_sets() {
        let text = "# HELP x\nweir_step_cpu_seconds_total{pipeline=\"p\",step=\"a\"} 1.5\n\
                    weir_step_cpu_seconds_total{pipeline=\"p\",step=\"b\"} 0.5\n\
                    weir_energy_joules_total{pipeline=\"p\",step=\"a\",method=\"cpu-model\"} 20\n\
                    weir_process_cpu_seconds_total 2.5\nweir_process_energy_joules_total 25\n\
                    weir_requests_total{pipeline=\"p\",status=\"200\"} 7\nweir_requests_total{pipeline=\"p\",status=\"400\"} 3\n";
        let totals = Totals::parse(text);
        assert_eq!(
            totals,
            Totals { receipts_cpu: 2.0, receipts_energy: 20.0, process_cpu: 2.5, process_energy: 25.0, answered: 7.0 }
        );
        let later = Totals { receipts_cpu: 3.0, ..totals };
        assert_eq!(later.since(totals).receipts_cpu, 1.0);
    }
}
