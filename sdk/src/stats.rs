//! Statistics for monitor components: numbers of any numeric tensor as
//! rows of `f64`, the two-sample Kolmogorov–Smirnov test, and least squares
//! on one variable.

use crate::{Datatype, Tensor, TensorError};

/// A numeric tensor as rows (first dimension) of `f64` columns.
pub fn rows(tensor: &Tensor) -> Result<Vec<Vec<f64>>, TensorError> {
    let values: Vec<f64> = match tensor.datatype {
        Datatype::Fp32 => tensor.view::<f32>()?.iter().map(|&v| v as f64).collect(),
        Datatype::Fp64 => tensor.to_vec::<f64>()?,
        Datatype::Int32 => tensor.view::<i32>()?.iter().map(|&v| v as f64).collect(),
        Datatype::Int64 => tensor.view::<i64>()?.iter().map(|&v| v as f64).collect(),
        Datatype::Uint8 => tensor.view::<u8>()?.iter().map(|&v| v as f64).collect(),
        other => {
            return Err(TensorError(format!(
                "tensor `{}` is {}: a monitor reads FP32, FP64, INT32, INT64 or UINT8",
                tensor.name,
                crate::datatype_name(other)
            )))
        }
    };
    let count = tensor.shape.first().copied().unwrap_or(1).max(1) as usize;
    let width = values.len() / count;
    if width == 0 || width * count != values.len() {
        return Err(TensorError(format!("tensor `{}` of shape {:?} has no rows", tensor.name, tensor.shape)));
    }
    Ok(values.chunks(width).map(<[f64]>::to_vec).collect())
}

/// Column `j` of rows.
pub fn column(rows: &[Vec<f64>], j: usize) -> Vec<f64> {
    rows.iter().map(|r| r[j]).collect()
}

/// The Kolmogorov distribution's upper tail: P(K > λ).
pub fn kolmogorov_tail(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for j in 1..=100 {
        let term = (-2.0 * (j * j) as f64 * lambda * lambda).exp();
        sum += if j % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Two-sample Kolmogorov–Smirnov test: the statistic D (the largest gap
/// between the empirical distribution functions) and its asymptotic
/// p-value with Stephens' small-sample correction.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 1.0);
    }
    let mut a: Vec<f64> = a.iter().copied().filter(|v| v.is_finite()).collect();
    let mut b: Vec<f64> = b.iter().copied().filter(|v| v.is_finite()).collect();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return (0.0, 1.0);
    }
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < n && j < m {
        let x = a[i].min(b[j]);
        while i < n && a[i] <= x {
            i += 1;
        }
        while j < m && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    // In f64: n * m overflows a 32-bit usize (wasm32) from 65 536 rows.
    let effective = (n as f64 * m as f64 / (n as f64 + m as f64)).sqrt();
    (d, kolmogorov_tail((effective + 0.12 + 0.11 / effective) * d))
}

/// Least squares `y ≈ a + b x`: (a, b).
pub fn line(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len().min(y.len()).max(1) as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = x.iter().map(|x| (x - mx).powi(2)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - b * mx, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_matches_known_values() {
        // Same sample: no gap. Disjoint samples of 20: D = 1, p tiny.
        let a: Vec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(ks_two_sample(&a, &a), (0.0, 1.0));
        let b: Vec<f64> = (100..120).map(f64::from).collect();
        let (d, p) = ks_two_sample(&a, &b);
        assert_eq!(d, 1.0);
        assert!(p < 1e-6, "{p}");
        // scipy.stats.ks_2samp(range(10), range(5, 15), method="asymp") gives D = 0.5, p = 0.112.
        let (d, p) =
            ks_two_sample(&(0..10).map(f64::from).collect::<Vec<_>>(), &(5..15).map(f64::from).collect::<Vec<_>>());
        assert_eq!(d, 0.5);
        assert!((p - 0.112).abs() < 0.01, "{p}");
        assert!((kolmogorov_tail(1.36) - 0.0494).abs() < 1e-3, "the 5% point of the Kolmogorov distribution");
    }

    #[test]
    fn a_line_is_fitted() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y: Vec<f64> = x.iter().map(|x| 2.0 + 3.0 * x).collect();
        let (a, b) = line(&x, &y);
        assert!((a - 2.0).abs() < 1e-12 && (b - 3.0).abs() < 1e-12);
    }
}
