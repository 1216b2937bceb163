//! What a pipeline's output may reveal: the host applies these after the
//! last step (so no component can forget them) to make model stealing and
//! inversion harder. Keep the `top_k` largest scores of each row (the rest
//! become 0), add Laplace noise of scale `noise`, round to `decimals`, or
//! `remove` the output altogether (the label alone is answered).

use crate::tensor::{Datatype, Tensor};

/// The policy of one output; every part optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputPolicy {
    pub top_k: Option<usize>,
    pub noise: Option<f64>,
    pub decimals: Option<u32>,
    pub remove: bool,
}

impl OutputPolicy {
    /// Apply to `tensor` (FP32 or FP64, rows along the last dimension).
    pub fn apply(&self, tensor: &mut Tensor) -> Result<(), String> {
        let Some(mut values) = tensor.float_values() else {
            return Err(format!(
                "output `{}` is {}: an output policy applies to FP32 or FP64 scores only",
                tensor.name,
                crate::tensor::datatype_name(tensor.datatype)
            ));
        };
        let row = tensor.shape.last().copied().unwrap_or(1).max(1) as usize;
        if let Some(k) = self.top_k {
            for chunk in values.chunks_mut(row) {
                let mut order: Vec<usize> = (0..chunk.len()).collect();
                order.sort_by(|&a, &b| chunk[b].total_cmp(&chunk[a]));
                for &i in order.iter().skip(k) {
                    chunk[i] = 0.0;
                }
            }
        }
        if let Some(scale) = self.noise.filter(|s| *s > 0.0) {
            for value in values.iter_mut().filter(|v| **v != 0.0 || self.top_k.is_none()) {
                *value += laplace(scale);
            }
        }
        if let Some(decimals) = self.decimals {
            let factor = 10f64.powi(decimals as i32);
            for value in &mut values {
                *value = (*value * factor).round() / factor;
            }
        }
        tensor.data = match tensor.datatype {
            Datatype::Fp32 => values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        Ok(())
    }
}

/// A draw from Laplace(0, scale), from the operating system's generator.
fn laplace(scale: f64) -> f64 {
    let bits = u64::from_le_bytes(crate::secret::random_bytes::<8>());
    // Uniform in (-0.5, 0.5), never exactly ±0.5.
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64 - 0.5;
    -scale * u.signum() * (1.0 - 2.0 * u.abs()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(values: &[f32], shape: Vec<u64>) -> Tensor {
        Tensor {
            name: "p".into(),
            datatype: Datatype::Fp32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn f32s(tensor: &Tensor) -> Vec<f32> {
        tensor.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    #[test]
    fn top_k_and_rounding_apply_per_row() {
        let mut t = scores(&[0.1234, 0.5678, 0.0111, 0.2977, 0.9, 0.05, 0.03, 0.02], vec![2, 4]);
        OutputPolicy { top_k: Some(2), decimals: Some(2), ..Default::default() }.apply(&mut t).unwrap();
        assert_eq!(f32s(&t), vec![0.0, 0.57, 0.0, 0.3, 0.9, 0.05, 0.0, 0.0]);
        let mut labels = Tensor { name: "l".into(), datatype: Datatype::Int64, shape: vec![1], data: vec![0; 8] };
        assert!(OutputPolicy::default().apply(&mut labels).unwrap_err().contains("FP32 or FP64"));
    }

    #[test]
    fn noise_is_laplace_with_the_given_scale() {
        let draws: Vec<f64> = (0..20_000).map(|_| laplace(0.1)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let mean_abs = draws.iter().map(|d| d.abs()).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((mean_abs - 0.1).abs() < 0.01, "E|X| of Laplace(b) is b: {mean_abs}");
    }
}
