//! A model's variants on this host: the ones that may serve here (their
//! `targets` name this architecture, their accuracy meets the floor), and
//! the one that does, chosen once per manifest generation by the stated
//! objective ([`weir_nn::variants::choose`]) and shown in `/v2/status`.

use serde::Serialize;
use weir_core::Objective;
use weir_manifest::ModelDecl;
use weir_nn::cache::ModelCache;
use weir_nn::variants::{self, Candidate, Measurement};
use weir_nn::ModelSpec;
use weir_registry::ArtifactKind;

use crate::artifacts::Resolver;
use crate::residency::ResidencyError;

/// This host's architecture, as variants' `targets` name it.
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// Which variant of a model serves here, and the figures behind it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantPick {
    pub model: String,
    pub objective: String,
    pub min_accuracy: Option<f64>,
    pub arch: &'static str,
    pub chosen: String,
    /// Every candidate that could serve here (the chosen one among them).
    pub candidates: Vec<CandidateStatus>,
    /// Variants left out here, with why.
    pub excluded: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CandidateStatus {
    pub variant: String,
    pub accuracy: f64,
    pub bytes: u64,
    /// Median of the timed runs (latency and cost objectives).
    pub latency_us: Option<f64>,
    /// CPU per inference (latency and cost objectives).
    pub cpu_us: Option<f64>,
    /// Timed runs behind those figures.
    pub runs: usize,
}

impl From<&Measurement> for CandidateStatus {
    fn from(m: &Measurement) -> Self {
        let micros = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        CandidateStatus {
            variant: m.variant.clone(),
            accuracy: m.accuracy,
            bytes: m.bytes,
            latency_us: m.latency.map(micros),
            cpu_us: m.cpu.map(micros),
            runs: m.runs,
        }
    }
}

/// Fetch the variants that may serve here and choose one; `spec_of` makes
/// the cache's spec of a variant's local file.
pub async fn choose(
    decl: &ModelDecl,
    resolver: &Resolver,
    cache: &ModelCache,
    spec_of: impl Fn(&str, std::path::PathBuf) -> ModelSpec,
) -> Result<(ModelSpec, VariantPick), ResidencyError> {
    let arch = host_arch();
    let mut excluded = Vec::new();
    let mut candidates = Vec::new();
    let mut eligible = Vec::new();
    for variant in &decl.variants {
        if !variant.targets.is_empty() && !variant.targets.iter().any(|t| t == arch) {
            excluded.push((variant.name.clone(), format!("targets {} only", variant.targets.join(", "))));
        } else if let Some(min) = decl.choice.min_accuracy.filter(|&min| variant.accuracy < min) {
            excluded.push((variant.name.clone(), format!("accuracy {} is below min_accuracy {min}", variant.accuracy)));
        } else {
            eligible.push(variant);
        }
    }
    // By accuracy only the most accurate can win: fetch no other (an edge
    // link need not download every form of the model to pick one).
    if decl.choice.objective == Objective::Accuracy {
        let best = eligible.iter().map(|v| v.accuracy).fold(f64::MIN, f64::max);
        for less in eligible.iter().filter(|v| v.accuracy < best) {
            excluded.push((less.name.clone(), format!("accuracy {} is below the best, {best}", less.accuracy)));
        }
        eligible.retain(|v| v.accuracy >= best);
    }
    for variant in eligible {
        let resolved = resolver.resolve(&variant.artifact, ArtifactKind::Model).await.map_err(|error| {
            ResidencyError::Fetch { kind: ArtifactKind::Model, name: format!("{}.{}", decl.name, variant.name), error }
        })?;
        candidates.push(Candidate { spec: spec_of(&variant.name, resolved.path), accuracy: variant.accuracy });
    }
    let no_variant = |excluded: &[(String, String)]| {
        let why: Vec<String> = excluded.iter().map(|(name, why)| format!("{name}: {why}")).collect();
        ResidencyError::NoVariant { name: decl.name.clone(), arch, why: why.join("; ") }
    };
    if candidates.is_empty() {
        return Err(no_variant(&excluded));
    }
    let objective = decl.choice.objective;
    let (backend, budget) = (cache.backend().clone(), cache.memory_budget());
    let choosing = candidates.clone();
    let choice = tokio::task::spawn_blocking(move || variants::choose(backend.as_ref(), &choosing, objective, budget))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
    let choice = match choice {
        Ok(choice) => choice,
        Err(error) => {
            excluded.push(("(all candidates)".into(), error.message));
            return Err(no_variant(&excluded));
        }
    };
    excluded.extend(choice.measured.iter().filter_map(|m| Some((m.variant.clone(), m.left_out.clone()?))));
    let spec = candidates.swap_remove(choice.chosen).spec;
    let pick = VariantPick {
        model: decl.name.clone(),
        objective: objective.to_string(),
        min_accuracy: decl.choice.min_accuracy,
        arch,
        chosen: spec.variant.clone().unwrap_or_default(),
        candidates: choice.measured.iter().filter(|m| m.left_out.is_none()).map(CandidateStatus::from).collect(),
        excluded,
    };
    tracing::info!(model = %pick.model, variant = %pick.chosen, objective = %pick.objective, arch,
        candidates = ?pick.candidates, "model variant chosen");
    Ok((spec, pick))
}
