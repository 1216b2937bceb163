//! Choosing among a model's variants on this host. By accuracy the declared
//! figures decide; by latency or cost each candidate is loaded and timed
//! here, on the same synthetic input, in interleaved rounds (so a burst of
//! load on the machine hits every candidate alike).

use std::time::{Duration, Instant};

use weir_core::clock::thread_cpu_time;
use weir_core::Objective;

use crate::backend::Backend;
use crate::error::NnError;
use crate::model::LoadedModel;
use crate::spec::{ModelSpec, TensorSpec};
use crate::tensor::{NnTensor, NnType};

/// Timed runs per candidate, after [`WARMUP`] untimed ones.
pub const RUNS: usize = 30;
pub const WARMUP: usize = 3;

/// A variant that may serve on this host.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its spec, `variant` set.
    pub spec: ModelSpec,
    /// Declared accuracy, 0..=1.
    pub accuracy: f64,
}

/// What was known or measured of one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub variant: String,
    pub accuracy: f64,
    /// Size of its ONNX file (with external data).
    pub bytes: u64,
    /// Median wall time of one inference on the synthetic input (latency
    /// and cost objectives only).
    pub latency: Option<Duration>,
    /// Mean CPU time of one inference, the caller's thread and ONNX
    /// Runtime's pool threads together.
    pub cpu: Option<Duration>,
}

/// The chosen candidate (an index into the candidates) and the figures
/// it was chosen on.
#[derive(Debug, Clone)]
pub struct Choice {
    pub chosen: usize,
    pub measured: Vec<Measurement>,
}

/// Pick the candidate that best meets `objective`: highest accuracy, or
/// lowest measured latency or CPU time; ties go to the more accurate, then
/// the smaller file. Blocking (it loads and runs models).
pub fn choose(backend: &dyn Backend, candidates: &[Candidate], objective: Objective) -> Result<Choice, NnError> {
    if candidates.is_empty() {
        return Err(NnError::invalid("no variant to choose from".to_string()));
    }
    let mut measured = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let (bytes, _) = candidate.spec.size_and_digest()?;
        measured.push(Measurement {
            variant: candidate.spec.variant.clone().unwrap_or_default(),
            accuracy: candidate.accuracy,
            bytes,
            latency: None,
            cpu: None,
        });
    }
    if objective != Objective::Accuracy {
        time_all(backend, candidates, &mut measured)?;
    }
    let key = |m: &Measurement| match objective {
        Objective::Accuracy => Duration::ZERO,
        Objective::Latency => m.latency.unwrap_or(Duration::MAX),
        Objective::Cost => m.cpu.unwrap_or(Duration::MAX),
    };
    let chosen = (0..measured.len())
        .min_by(|&a, &b| {
            let (a, b) = (&measured[a], &measured[b]);
            key(a).cmp(&key(b)).then(b.accuracy.total_cmp(&a.accuracy)).then(a.bytes.cmp(&b.bytes))
        })
        .unwrap_or(0);
    Ok(Choice { chosen, measured })
}

fn time_all(backend: &dyn Backend, candidates: &[Candidate], measured: &mut [Measurement]) -> Result<(), NnError> {
    let mut loaded = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let model = LoadedModel::load(candidate.spec.clone(), backend)?;
        let inputs = synthetic_inputs(&model)?;
        loaded.push((model, inputs));
    }
    let mut walls = vec![Vec::with_capacity(RUNS); loaded.len()];
    let mut cpus = vec![Duration::ZERO; loaded.len()];
    for round in 0..WARMUP + RUNS {
        for (i, (model, inputs)) in loaded.iter().enumerate() {
            let cpu_before = thread_cpu_time();
            let started = Instant::now();
            let (_, timing) = model.run(inputs)?;
            let wall = started.elapsed();
            if round >= WARMUP {
                walls[i].push(wall);
                cpus[i] += thread_cpu_time().saturating_sub(cpu_before) + timing.pool_cpu;
            }
        }
    }
    for (i, m) in measured.iter_mut().enumerate() {
        walls[i].sort();
        m.latency = Some(walls[i][RUNS / 2]);
        m.cpu = Some(cpus[i] / RUNS as u32);
    }
    Ok(())
}

/// One input per declared input: dimensions of any size taken as 1, floats
/// spread over 0..1 (a fixed sequence), integers 0.
fn synthetic_inputs(model: &LoadedModel) -> Result<Vec<(String, NnTensor)>, NnError> {
    model.inputs.iter().map(|spec| synthetic(model, spec)).collect()
}

fn synthetic(model: &LoadedModel, spec: &TensorSpec) -> Result<(String, NnTensor), NnError> {
    let cannot = || {
        NnError::invalid(format!(
            "cannot time model `{}` variant {:?}: input {spec} has no synthetic form here; choose by accuracy",
            model.spec.name,
            model.spec.variant.as_deref().unwrap_or("-")
        ))
    };
    let ty = spec.ty.ok_or_else(cannot)?;
    let dims: Vec<u32> = spec.shape.iter().map(|&d| u32::try_from(d).ok().filter(|&d| d > 0).unwrap_or(1)).collect();
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d as usize)).filter(|&n| n <= 1 << 24);
    let count = count.ok_or_else(cannot)?;
    let fraction = |i: usize| ((i * 37 + 11) % 101) as f64 / 101.0;
    let data: Vec<u8> = match ty {
        NnType::Fp32 => (0..count).flat_map(|i| (fraction(i) as f32).to_le_bytes()).collect(),
        NnType::Fp64 => (0..count).flat_map(|i| fraction(i).to_le_bytes()).collect(),
        NnType::Fp16 => (0..count).flat_map(|i| half::f16::from_f64(fraction(i)).to_le_bytes()).collect(),
        NnType::Bf16 => (0..count).flat_map(|i| half::bf16::from_f64(fraction(i)).to_le_bytes()).collect(),
        NnType::U8 | NnType::I32 | NnType::I64 => vec![0; count * ty.size()],
    };
    Ok((spec.name.clone(), NnTensor { dims, ty, data }))
}
