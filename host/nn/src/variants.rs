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

/// Timed runs per candidate, after [`WARMUP`] untimed ones...
pub const RUNS: usize = 30;
pub const WARMUP: usize = 3;
/// ...unless timing has taken this long in all: then it stops once every
/// candidate has [`MIN_RUNS`], so that a slow model's first request is not
/// held for minutes.
pub const TIME_BUDGET: Duration = Duration::from_secs(3);
pub const MIN_RUNS: usize = 5;

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
    /// Timed runs behind `latency` and `cpu` (0 when nothing was timed).
    pub runs: usize,
    /// Why it cannot serve here (too large, failed to load or run).
    pub left_out: Option<String>,
}

/// The chosen candidate (an index into the candidates) and the figures
/// it was chosen on.
#[derive(Debug, Clone)]
pub struct Choice {
    pub chosen: usize,
    /// One per candidate, in order; the ones that could not serve carry
    /// `left_out`.
    pub measured: Vec<Measurement>,
}

/// Pick the candidate that best meets `objective`: highest accuracy, or
/// lowest measured latency or CPU time; ties go to the more accurate, then
/// the smaller file. A candidate larger than the model memory `budget`, or
/// that fails to load or run, is left out with the reason; only when all
/// are is it an error. Blocking (it loads and runs models).
pub fn choose(
    backend: &dyn Backend,
    candidates: &[Candidate],
    objective: Objective,
    budget: Option<u64>,
) -> Result<Choice, NnError> {
    let mut measured = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let mut m = Measurement {
            variant: candidate.spec.variant.clone().unwrap_or_default(),
            accuracy: candidate.accuracy,
            bytes: 0,
            latency: None,
            cpu: None,
            runs: 0,
            left_out: None,
        };
        match candidate.spec.size_and_digest() {
            Ok((bytes, _)) => m.bytes = bytes,
            Err(error) => m.left_out = Some(error.to_string()),
        }
        if let Some(budget) = budget.filter(|&b| m.left_out.is_none() && m.bytes > b) {
            m.left_out = Some(format!("{} bytes is more than the model memory budget of {budget}", m.bytes));
        }
        measured.push(m);
    }
    if objective != Objective::Accuracy {
        time_all(backend, candidates, &mut measured);
    }
    let key = |m: &Measurement| match objective {
        Objective::Accuracy => Duration::ZERO,
        Objective::Latency => m.latency.unwrap_or(Duration::MAX),
        Objective::Cost => m.cpu.unwrap_or(Duration::MAX),
    };
    let chosen = (0..measured.len()).filter(|&i| measured[i].left_out.is_none()).min_by(|&a, &b| {
        let (a, b) = (&measured[a], &measured[b]);
        key(a).cmp(&key(b)).then(b.accuracy.total_cmp(&a.accuracy)).then(a.bytes.cmp(&b.bytes))
    });
    let Some(chosen) = chosen else {
        let why: Vec<String> =
            measured.iter().map(|m| format!("{}: {}", m.variant, m.left_out.as_deref().unwrap_or("-"))).collect();
        return Err(NnError::invalid(format!("no variant could serve: {}", why.join("; "))));
    };
    Ok(Choice { chosen, measured })
}

/// Time every candidate not left out; one that fails to load or run is
/// left out with the error.
fn time_all(backend: &dyn Backend, candidates: &[Candidate], measured: &mut [Measurement]) {
    let mut loaded = Vec::with_capacity(candidates.len());
    for (i, candidate) in candidates.iter().enumerate() {
        if measured[i].left_out.is_some() {
            continue;
        }
        let ready = LoadedModel::load(candidate.spec.clone(), backend)
            .and_then(|model| synthetic_inputs(&model).map(|inputs| (model, inputs)));
        match ready {
            Ok((model, inputs)) => loaded.push((i, model, inputs, Vec::with_capacity(RUNS), Duration::ZERO)),
            Err(error) => measured[i].left_out = Some(format!("could not be timed: {error}")),
        }
    }
    let started = Instant::now();
    for round in 0..WARMUP + RUNS {
        if round >= WARMUP + MIN_RUNS && started.elapsed() > TIME_BUDGET {
            break;
        }
        for (i, model, inputs, walls, cpu) in loaded.iter_mut() {
            if measured[*i].left_out.is_some() {
                continue;
            }
            let cpu_before = thread_cpu_time();
            let run_started = Instant::now();
            match model.run(inputs) {
                Ok((_, timing)) if round >= WARMUP => {
                    walls.push(run_started.elapsed());
                    *cpu += thread_cpu_time().saturating_sub(cpu_before) + timing.pool_cpu;
                }
                Ok(_) => {}
                Err(error) => measured[*i].left_out = Some(format!("failed on a synthetic input: {error}")),
            }
        }
    }
    for (i, _, _, walls, cpu) in loaded.iter_mut() {
        let m = &mut measured[*i];
        if m.left_out.is_some() || walls.is_empty() {
            continue;
        }
        walls.sort();
        m.runs = walls.len();
        m.latency = Some(walls[m.runs / 2]);
        m.cpu = Some(*cpu / m.runs as u32);
    }
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
    let dims: Vec<u32> = spec
        .shape
        .iter()
        .map(|&d| if d < 0 { Ok(1) } else { u32::try_from(d) })
        .collect::<Result<_, _>>()
        .map_err(|_| cannot())?;
    // At most 16 MiB per input: timing is about the model, not the copy.
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .filter(|&n| n.checked_mul(ty.size()).is_some_and(|bytes| bytes <= 16 << 20));
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
