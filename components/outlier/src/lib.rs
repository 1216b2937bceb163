//! An outlier monitor: the Mahalanobis distance of each row from the
//! reference rows (features standardised by the reference, covariance
//! regularised), against the (1 - alpha) quantile of the reference's own
//! distances.
//!
//! Inputs: `x` (config `input` renames it) and `reference.x`. Config:
//! `alpha` (the share of reference rows over the threshold, default 0.01).
//! Outputs: `score` (the distance of each row), `threshold`, `alert` (per
//! row) and `outliers` (how many).

use weir_sdk::stats::rows;
use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Outlier;

/// The inverse of a symmetric positive-definite matrix (Gauss–Jordan).
fn inverse(mut a: Vec<Vec<f64>>) -> Result<Vec<Vec<f64>>, StepError> {
    let n = a.len();
    let mut inv: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-12 {
            return Err(StepError::Failed("the reference's covariance is singular".into()));
        }
        for k in 0..n {
            a[col][k] /= p;
            inv[col][k] /= p;
        }
        for row in 0..n {
            if row != col {
                let f = a[row][col];
                for k in 0..n {
                    a[row][k] -= f * a[col][k];
                    inv[row][k] -= f * inv[col][k];
                }
            }
        }
    }
    Ok(inv)
}

impl Step for Outlier {
    fn process(inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let name: String = config::parse_or("input", "x".to_string())?;
        let alpha: f64 = config::parse_or("alpha", 0.01)?;
        let current = rows(inputs.get(&name)?)?;
        // A reference row that is not all finite numbers would poison the fit: left out.
        let reference: Vec<Vec<f64>> = rows(inputs.get(&format!("reference.{name}"))?)?
            .into_iter()
            .filter(|r| r.iter().all(|v| v.is_finite()))
            .collect();
        if reference.is_empty() {
            return Err(StepError::InvalidInput(format!("`reference.{name}` has no row of finite numbers")));
        }
        let f = reference[0].len();
        if current[0].len() != f || reference.len() < 2 {
            return Err(StepError::InvalidInput(format!(
                "`{name}` has {} columns, its reference {f} (and needs two rows at least)",
                current[0].len()
            )));
        }
        let n = reference.len() as f64;
        let mean: Vec<f64> = (0..f).map(|j| reference.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let std: Vec<f64> = (0..f)
            .map(|j| (reference.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0)).sqrt().max(1e-9))
            .collect();
        let z = |r: &[f64]| -> Vec<f64> { (0..f).map(|j| (r[j] - mean[j]) / std[j]).collect() };
        let zs: Vec<Vec<f64>> = reference.iter().map(|r| z(r)).collect();
        // The correlation matrix, with a ridge so that collinear features invert.
        let mut cov = vec![vec![0.0; f]; f];
        for r in &zs {
            for i in 0..f {
                for j in 0..f {
                    cov[i][j] += r[i] * r[j] / (n - 1.0);
                }
            }
        }
        for (i, row) in cov.iter_mut().enumerate() {
            row[i] += 1e-3;
        }
        let inv = inverse(cov)?;
        let distance = |v: &[f64]| -> f64 {
            let mut sum = 0.0;
            for i in 0..f {
                for j in 0..f {
                    sum += v[i] * inv[i][j] * v[j];
                }
            }
            sum.max(0.0).sqrt()
        };
        let mut reference_scores: Vec<f64> = zs.iter().map(|v| distance(v)).collect();
        reference_scores.sort_by(f64::total_cmp);
        let at = (((1.0 - alpha) * reference_scores.len() as f64).ceil() as usize).clamp(1, reference_scores.len()) - 1;
        let threshold = reference_scores[at];
        // A row that is not all finite numbers is as far out as can be.
        let scores: Vec<f64> = current
            .iter()
            .map(|r| if r.iter().all(|v| v.is_finite()) { distance(&z(r)) } else { f64::INFINITY })
            .collect();
        let alerts: Vec<bool> = scores.iter().map(|s| *s > threshold).collect();
        let outliers = alerts.iter().filter(|a| **a).count() as f64;
        let count = scores.len() as u64;
        Ok(vec![
            Tensor::new("score", vec![count], &scores)?,
            Tensor::new("threshold", vec![1], &[threshold])?,
            Tensor::from_bools("alert", vec![count], &alerts)?,
            Tensor::new("outliers", vec![1], &[outliers])?,
        ])
    }
}

export_step!(Outlier);
