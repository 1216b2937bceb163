//! `scale`: standardise features, `y = (x - mean) / std`, per feature (last
//! axis) or with one value for all.
//!
//! Input: `x` (FP32, shape [..., n]). Output: `y` (FP32, same shape; renamed
//! with config `output`). Config: `mean`, `std` — one number or a
//! comma-separated list of n numbers (defaults 0 and 1).

use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Scale;

impl Step for Scale {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let input_name = config::get("input")?.unwrap_or_else(|| "x".into());
        let x = inputs.take(&input_name)?;
        let features = x.shape.last().copied().unwrap_or(1) as usize;
        let mean = per_feature("mean", 0.0, features)?;
        let std = per_feature("std", 1.0, features)?;
        if let Some(i) = std.iter().position(|s| *s == 0.0) {
            return Err(StepError::Failed(format!("config `std` is 0 for feature {i}; it must be non-zero")));
        }
        let values = x.view::<f32>()?;
        let y: Vec<f32> =
            values.iter().enumerate().map(|(i, v)| (v - mean[i % features]) / std[i % features]).collect();
        let output = config::get("output")?.unwrap_or_else(|| "y".into());
        Ok(vec![Tensor::new(output, x.shape.clone(), &y)?])
    }
}

/// A config value given once (broadcast) or once per feature.
fn per_feature(key: &str, default: f32, features: usize) -> Result<Vec<f32>, StepError> {
    let values = config::parse_list::<f32>(key)?.unwrap_or_else(|| vec![default]);
    match values.len() {
        1 => Ok(vec![values[0]; features]),
        n if n == features => Ok(values),
        n => Err(StepError::InvalidInput(format!(
            "config `{key}` has {n} values but the input has {features} features (last axis)"
        ))),
    }
}

export_step!(Scale);
