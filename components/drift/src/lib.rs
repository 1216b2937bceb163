//! A drift monitor: the two-sample Kolmogorov–Smirnov test of every
//! feature (column) of every monitored edge against its reference, with a
//! Bonferroni correction for the number of features tested.
//!
//! Inputs: each monitored edge `NAME` (a window of rows) and
//! `reference.NAME`. Config: `alpha` (the family-wise false-alarm rate per
//! window, default 0.05). Outputs: `statistic` and `p_value` per feature
//! (FP64, features of constant value in both get D = 0, p = 1 and are not
//! counted), `threshold` (alpha / features tested), `min_p_value`,
//! `drifted` (how many features are under the threshold) and `alert`.

use weir_sdk::stats::{column, ks_two_sample, rows};
use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Drift;

impl Step for Drift {
    fn process(inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let alpha: f64 = config::parse_or("alpha", 0.05)?;
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(StepError::Failed(format!("config `alpha` must be in (0, 1), got {alpha}")));
        }
        let names: Vec<String> =
            inputs.names().into_iter().filter(|n| !n.starts_with("reference.")).map(String::from).collect();
        let (mut statistics, mut p_values, mut tested) = (Vec::new(), Vec::new(), 0usize);
        for name in &names {
            let current = rows(inputs.get(name)?)?;
            let reference = rows(inputs.get(&format!("reference.{name}"))?)?;
            if current[0].len() != reference[0].len() {
                return Err(StepError::InvalidInput(format!(
                    "`{name}` has {} columns, its reference {}",
                    current[0].len(),
                    reference[0].len()
                )));
            }
            for j in 0..current[0].len() {
                let (a, b) = (column(&current, j), column(&reference, j));
                let constant = |v: &[f64]| v.iter().all(|x| *x == v[0]);
                if constant(&a) && constant(&b) && a[0] == b[0] {
                    statistics.push(0.0);
                    p_values.push(1.0);
                    continue;
                }
                tested += 1;
                let (d, p) = ks_two_sample(&a, &b);
                statistics.push(d);
                p_values.push(p);
            }
        }
        let threshold = alpha / tested.max(1) as f64;
        let drifted = p_values.iter().filter(|p| **p < threshold).count();
        let min_p = p_values.iter().copied().fold(1.0, f64::min);
        let features = statistics.len() as u64;
        Ok(vec![
            Tensor::new("statistic", vec![features], &statistics)?,
            Tensor::new("p_value", vec![features], &p_values)?,
            Tensor::new("threshold", vec![1], &[threshold])?,
            Tensor::new("min_p_value", vec![1], &[min_p])?,
            Tensor::new("drifted", vec![1], &[drifted as f64])?,
            Tensor::from_bools("alert", vec![1], &[drifted > 0])?,
        ])
    }
}

export_step!(Drift);
