//! `concat`: join FP32 feature blocks side by side into one feature matrix.
//!
//! Inputs: FP32 tensors of shape [batch, k_i] (or [batch]), joined in the
//! order config `order` lists them (comma-separated names; default: the
//! order they arrive in). Output: `features` (FP32 [batch, sum k_i]; renamed
//! with config `output`).

use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Concat;

impl Step for Concat {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let blocks = match config::parse_list::<String>("order")? {
            Some(order) => order.iter().map(|name| inputs.take(name)).collect::<Result<Vec<_>, _>>()?,
            None => inputs.into_vec(),
        };
        let Some(first) = blocks.first() else {
            return Err(StepError::InvalidInput("concat needs at least one input tensor".into()));
        };
        let batch = first.shape.first().copied().unwrap_or(1);
        let mut columns = Vec::with_capacity(blocks.len());
        for block in &blocks {
            let width = match block.shape[..] {
                [b] if b == batch => 1,
                [b, k] if b == batch => k as usize,
                _ => {
                    return Err(StepError::InvalidInput(format!(
                        "`{}` has shape {:?}; every input must be [{batch}] or [{batch}, k]",
                        block.name, block.shape
                    )))
                }
            };
            columns.push((block.view::<f32>()?, width));
        }
        let total: usize = columns.iter().map(|(_, w)| w).sum();
        let mut features = Vec::with_capacity(batch as usize * total);
        for row in 0..batch as usize {
            for (values, width) in &columns {
                features.extend_from_slice(&values[row * width..(row + 1) * width]);
            }
        }
        let output = config::parse_or::<String>("output", "features".into())?;
        Ok(vec![Tensor::new(output, vec![batch, total as u64], &features)?])
    }
}

export_step!(Concat);
