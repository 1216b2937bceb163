//! An explainer component: integrated gradients (Sundararajan et al. 2017)
//! of one output element of a model step, with respect to the step's input,
//! computed by asking the model itself — the whole path from the baseline
//! to the point, with a central difference per feature at each point, in
//! one batched `wasi:nn` call. A replay of the step cannot do that in one
//! call: that is what an explainer component is for.
//!
//! Inputs (the host hands them over): the step's input (config `input`,
//! default `x`, shape `[1, F]` or `[F]`), `baseline.<input>`, and
//! `explain.target` (the output tensor's name) and `explain.index` (its
//! element, `-1` for its only one) and `explain.link` (`identity` or `logit`). Config: `model`, `model_input`
//! (default `input`), `link` (`identity` or `logit`), `steps` (points on
//! the path, default 16). Output: `<input>`, FP64, one attribution per
//! element; they sum to f(point) - f(baseline) up to the path's
//! discretisation (exactly, for a model linear in the link).

use weir_sdk::nn::Model;
use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Gradients;

fn link(kind: &str, p: f64) -> Result<f64, StepError> {
    match kind {
        "identity" => Ok(p),
        "logit" => {
            let p = p.clamp(1e-12, 1.0 - 1e-12);
            Ok((p / (1.0 - p)).ln())
        }
        other => Err(StepError::Failed(format!("config `link` is `{other}`: use `identity` or `logit`"))),
    }
}

impl Step for Gradients {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let input: String = config::parse_or("input", "x".to_string())?;
        let x = inputs.take(&input)?;
        let baseline = inputs.take(&format!("baseline.{input}"))?;
        let target = inputs.take("explain.target")?;
        let target = String::from_utf8_lossy(target.strings()?.first().copied().unwrap_or_default()).into_owned();
        let index = inputs.take("explain.index")?.to_vec::<i64>()?.first().copied().unwrap_or(-1);
        let features = x.to_vec::<f32>()?;
        let base = baseline.to_vec::<f32>()?;
        let f = features.len();
        if base.len() != f || x.shape.iter().rev().skip(1).any(|&d| d != 1) {
            return Err(StepError::InvalidInput(format!(
                "`{input}` must be one row ([1, F] or [F]) and its baseline the same; got {:?} and {:?}",
                x.shape, baseline.shape
            )));
        }
        let steps: usize = config::parse_or("steps", 16usize)?.clamp(1, 256);
        // The host says which link the caller asked for; config is the default for older hosts.
        let kind: String = match inputs.take("explain.link") {
            Ok(link) => String::from_utf8_lossy(link.strings()?.first().copied().unwrap_or_default()).into_owned(),
            Err(_) => config::parse_or("link", "identity".to_string())?,
        };
        // Each point on the path, nudged down and up along each feature.
        let mut rows: Vec<f32> = Vec::with_capacity(steps * 2 * f * f);
        let mut widths = vec![0f64; f];
        for k in 0..steps {
            let alpha = (k as f32 + 0.5) / steps as f32;
            let point: Vec<f32> = (0..f).map(|i| base[i] + alpha * (features[i] - base[i])).collect();
            for i in 0..f {
                let h = (0.01 * (features[i] - base[i]).abs()).max(1e-3);
                widths[i] = 2.0 * h as f64;
                for sign in [-1.0f32, 1.0] {
                    let mut row = point.clone();
                    row[i] += sign * h;
                    rows.extend(row);
                }
            }
        }
        let batch = Tensor::new("x", vec![(steps * 2 * f) as u64, f as u64], &rows)?;
        let model = Model::load(&config::parse_or::<String>("model", "model".into())?)?;
        let model_input: String = config::parse_or("model_input", "input".to_string())?;
        let outputs = model.run(&[(&model_input, &batch)])?;
        let out = outputs.iter().find(|t| t.name == target).ok_or_else(|| {
            let names: Vec<&str> = outputs.iter().map(|t| t.name.as_str()).collect();
            StepError::InvalidInput(format!("the model has no output `{target}` (it has {names:?})"))
        })?;
        let values = out.to_vec::<f32>()?;
        let per_row = values.len() / (steps * 2 * f).max(1);
        let column = if index < 0 { 0 } else { index as usize % per_row.max(1) };
        if per_row == 0 || (index < 0 && per_row != 1) || index >= 0 && index as usize >= per_row {
            return Err(StepError::InvalidInput(format!(
                "`{target}` has {per_row} elements per row: say which with `index`"
            )));
        }
        let at = |row: usize| link(&kind, values[row * per_row + column] as f64);
        let mut attributions = vec![0f64; f];
        for k in 0..steps {
            for i in 0..f {
                let row = (k * f + i) * 2;
                let slope = (at(row + 1)? - at(row)?) / widths[i];
                attributions[i] += slope * (features[i] - base[i]) as f64 / steps as f64;
            }
        }
        Ok(vec![Tensor::new(&input, x.shape.clone(), &attributions)?])
    }
}

export_step!(Gradients);
