//! `classify`: run a granted classifier model on a batch of feature rows.
//!
//! Input: `x` (FP32 [batch, features]; name set by config `input`).
//! Outputs: whatever the model returns under its own names — for the
//! example models `label` (INT64 [batch]) and `probabilities` (FP32
//! [batch, classes]). Config: `model` (default `digits`), `model_input`
//! (the model's input name, default `input`).

use weir_sdk::nn::Model;
use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Classify;

impl Step for Classify {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let input = config::parse_or::<String>("input", "x".into())?;
        let features = inputs.take(&input)?;
        let model = Model::load(&config::parse_or::<String>("model", "digits".into())?)?;
        let model_input = config::parse_or::<String>("model_input", "input".into())?;
        model.run(&[(&model_input, &features)])
    }
}

export_step!(Classify);
