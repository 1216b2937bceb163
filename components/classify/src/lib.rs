//! `classify`: run a granted classifier model on a batch of feature rows.
//!
//! Input: `x` (FP32 [batch, features]; name set by config `input`).
//! Outputs: whatever the model returns under its own names — for the
//! example models `label` (INT64 [batch]) and `probabilities` (FP32
//! [batch, classes]). Config: `model` (default `digits`), `model_input`
//! (the model's input name, default `input`), `divide_by` (scale the
//! features first, e.g. 16 for raw digit pixels; default: as they are).

use weir_sdk::nn::Model;
use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Classify;

impl Step for Classify {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let input = config::parse_or::<String>("input", "x".into())?;
        let mut features = inputs.take(&input)?;
        let divide_by = config::parse_or::<f32>("divide_by", 1.0)?;
        if divide_by != 1.0 {
            let scaled: Vec<f32> = features.view::<f32>()?.iter().map(|v| v / divide_by).collect();
            features = Tensor::new(&features.name, features.shape.clone(), &scaled)?;
        }
        let model = Model::load(&config::parse_or::<String>("model", "digits".into())?)?;
        let model_input = config::parse_or::<String>("model_input", "input".into())?;
        model.run(&[(&model_input, &features)])
    }
}

export_step!(Classify);
