//! A context-aware drift monitor: is the distribution of an edge `x`
//! *given* a context edge `c` still what it was? On the reference window,
//! the location and the spread of `x` are fitted as lines in `c`
//! (`x ≈ a + b c`, `|x - a - b c| ≈ a' + b' c`); both windows are
//! standardised by them, and the residuals are compared with the
//! two-sample Kolmogorov–Smirnov test. A change of `x` that the change of
//! `c` explains (longer trips, longer ETAs) does not alarm; one that it does
//! not (the same trips, slower) does.
//!
//! Inputs: `x`, `context` (one column each; config `target` and `context`
//! rename them) and their `reference.` twins. Config: `alpha` (default
//! 0.05). Outputs: `statistic`, `p_value`, `threshold` (alpha), `alert`,
//! and for contrast the plain test of `x` alone: `marginal_statistic`,
//! `marginal_p_value`.

use weir_sdk::stats::{column, ks_two_sample, line, rows};
use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct ContextDrift;

fn single(inputs: &Inputs, name: &str) -> Result<Vec<f64>, StepError> {
    let rows = rows(inputs.get(name)?)?;
    if rows[0].len() != 1 {
        return Err(StepError::InvalidInput(format!("`{name}` must have one column, it has {}", rows[0].len())));
    }
    Ok(column(&rows, 0))
}

impl Step for ContextDrift {
    fn process(inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let alpha: f64 = config::parse_or("alpha", 0.05)?;
        let target: String = config::parse_or("target", "x".to_string())?;
        let context: String = config::parse_or("context", "context".to_string())?;
        let (x, c) = (single(&inputs, &target)?, single(&inputs, &context)?);
        let (rx, rc) =
            (single(&inputs, &format!("reference.{target}"))?, single(&inputs, &format!("reference.{context}"))?);
        if x.len() != c.len() || rx.len() != rc.len() {
            return Err(StepError::InvalidInput("`x` and its context must have the same rows".into()));
        }
        // Pairs that are not finite numbers would poison the fit: left out.
        let finite = |x: &[f64], c: &[f64]| -> (Vec<f64>, Vec<f64>) {
            x.iter().zip(c).filter(|(x, c)| x.is_finite() && c.is_finite()).map(|(x, c)| (*x, *c)).unzip()
        };
        let (x, c) = finite(&x, &c);
        let (rx, rc) = finite(&rx, &rc);
        if rx.len() < 2 {
            return Err(StepError::InvalidInput("the reference has fewer than two finite pairs".into()));
        }
        let (a, b) = line(&rc, &rx);
        let spread: Vec<f64> = rc.iter().zip(&rx).map(|(c, x)| (x - a - b * c).abs()).collect();
        let (sa, sb) = line(&rc, &spread);
        let floor = spread.iter().sum::<f64>() / spread.len().max(1) as f64 * 0.1 + 1e-12;
        let standardise = |x: &[f64], c: &[f64]| -> Vec<f64> {
            x.iter().zip(c).map(|(x, c)| (x - a - b * c) / (sa + sb * c).max(floor)).collect()
        };
        let (d, p) = ks_two_sample(&standardise(&x, &c), &standardise(&rx, &rc));
        let (md, mp) = ks_two_sample(&x, &rx);
        Ok(vec![
            Tensor::new("statistic", vec![1], &[d])?,
            Tensor::new("p_value", vec![1], &[p])?,
            Tensor::new("threshold", vec![1], &[alpha])?,
            Tensor::from_bools("alert", vec![1], &[p < alpha])?,
            Tensor::new("marginal_statistic", vec![1], &[md])?,
            Tensor::new("marginal_p_value", vec![1], &[mp])?,
        ])
    }
}

export_step!(ContextDrift);
