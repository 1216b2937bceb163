//! `fare`: the business rule that prices a ride from its distance, predicted
//! duration and traffic: `(base + per_km·km + per_min·minutes) · surge`,
//! where surge rises linearly with congestion above `surge_from`, and never
//! below `minimum`.
//!
//! Inputs (FP32, [batch] or [batch, 1]): `distance_km`, `eta_minutes`,
//! `congestion` (0..1). Output: `fare` (FP32 [batch]). Config (numbers):
//! `base` 2.5, `per_km` 1.2, `per_min` 0.3, `minimum` 6, `surge_from` 0.6,
//! `surge_max` 1.8.

use weir_sdk::{config, export_step, Inputs, Step, StepError, Tensor};

struct Fare;

fn column(inputs: &mut Inputs, name: &str) -> Result<Vec<f32>, StepError> {
    let tensor = inputs.take(name)?;
    let values = tensor.to_vec::<f32>()?;
    if values.len() as u64 != tensor.shape.first().copied().unwrap_or(1) {
        return Err(StepError::InvalidInput(format!(
            "`{name}` must have shape [batch] or [batch, 1], got {:?}",
            tensor.shape
        )));
    }
    Ok(values)
}

impl Step for Fare {
    fn process(mut inputs: Inputs) -> Result<Vec<Tensor>, StepError> {
        let km = column(&mut inputs, "distance_km")?;
        let minutes = column(&mut inputs, "eta_minutes")?;
        let congestion = column(&mut inputs, "congestion")?;
        if km.len() != minutes.len() || km.len() != congestion.len() {
            return Err(StepError::InvalidInput(
                "distance_km, eta_minutes and congestion must have the same batch".into(),
            ));
        }
        let base: f32 = config::parse_or("base", 2.5)?;
        let per_km: f32 = config::parse_or("per_km", 1.2)?;
        let per_min: f32 = config::parse_or("per_min", 0.3)?;
        let minimum: f32 = config::parse_or("minimum", 6.0)?;
        let surge_from: f32 = config::parse_or("surge_from", 0.6)?;
        let surge_max: f32 = config::parse_or("surge_max", 1.8)?;
        let fares: Vec<f32> = km
            .iter()
            .zip(&minutes)
            .zip(&congestion)
            .map(|((&km, &minutes), &congestion)| {
                let excess = ((congestion - surge_from) / (1.0 - surge_from)).clamp(0.0, 1.0);
                let surge = 1.0 + excess * (surge_max - 1.0);
                ((base + per_km * km + per_min * minutes.max(0.0)) * surge).max(minimum)
            })
            .collect();
        Ok(vec![Tensor::new("fare", vec![fares.len() as u64], &fares)?])
    }
}

export_step!(Fare);
