//! `topk`: the k largest entries of each row of a score or probability tensor.
//!
//! Input: `probabilities` (FP32, shape [batch, classes] or [classes]).
//! Outputs: `indices` (INT64, [batch, k]) and `scores` (FP32, [batch, k]),
//! best first; ties keep the lower index first. Config: `k` (default 3;
//! capped at the number of classes), `input` (input tensor name).

use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct TopK;

impl Step for TopK {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let input_name = config::get("input")?.unwrap_or_else(|| "probabilities".into());
        let scores = inputs.take(&input_name)?;
        let (batch, classes) = match scores.shape[..] {
            [classes] => (1, classes as usize),
            [batch, classes] => (batch as usize, classes as usize),
            _ => {
                return Err(StepError::InvalidInput(format!(
                    "`{input_name}` must have shape [classes] or [batch, classes], got {:?}",
                    scores.shape
                )))
            }
        };
        let k: usize = config::parse_or("k", 3)?;
        if k == 0 {
            return Err(StepError::Failed("config `k` must be at least 1".into()));
        }
        let k = k.min(classes);
        let values = scores.view::<f32>()?;
        let mut top_indices = Vec::with_capacity(batch * k);
        let mut top_scores = Vec::with_capacity(batch * k);
        for row in values.chunks_exact(classes.max(1)) {
            let mut order: Vec<usize> = (0..classes).collect();
            // Stable sort: equal scores keep the lower class index first.
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            for &i in &order[..k] {
                top_indices.push(i as i64);
                top_scores.push(row[i]);
            }
        }
        let shape = vec![batch as u64, k as u64];
        Ok(vec![Tensor::new("indices", shape.clone(), &top_indices)?, Tensor::new("scores", shape, &top_scores)?])
    }
}

export_step!(TopK);
