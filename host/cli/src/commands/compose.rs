//! Putting weir together: a sandbox, an executor for a manifest with its
//! observers (step logs, provenance) and its energy source. `weir run` and
//! `weir serve` build the same thing with different options.

use std::sync::Arc;

use weir_executor::artifacts::Resolver;
use weir_executor::{Executor, Observer, ResidencyPolicy};
use weir_manifest::Manifest;
use weir_observe::energy::EnergyMeter;
use weir_observe::logs::StepLogs;
use weir_observe::provenance::ProvenanceStore;
use weir_observe::recording::ProvenanceRecorder;
use weir_sandbox::{Sandbox, SandboxOptions};

use weir_observe::hash_key::HashKey;

use super::{classified, exit, with_code, Failure};

/// The manifest's provenance store, when it has one.
pub fn open_provenance(manifest: &Manifest) -> Result<Option<Arc<ProvenanceStore>>, Failure> {
    let Some(settings) = &manifest.provenance else { return Ok(None) };
    let store = ProvenanceStore::open(&settings.path, settings.retention).map_err(classified)?;
    Ok(Some(Arc::new(store)))
}

/// An executor for `manifest` that logs step output, measures energy
/// (RAPL when readable), records provenance when the manifest asks, and
/// tells `observers` too.
pub fn executor(
    manifest: Manifest,
    sandbox: SandboxOptions,
    resolver: Resolver,
    policy: ResidencyPolicy,
    observers: Vec<Arc<dyn Observer>>,
) -> Result<(Arc<Executor>, Option<Arc<ProvenanceStore>>), Failure> {
    if !manifest.models.is_empty() {
        // Say what is missing now, not as a model error inside a step.
        weir_nn::library::init().map_err(with_code(exit::INTERNAL))?;
    }
    let sandbox = Arc::new(Sandbox::new(sandbox).map_err(with_code(exit::INTERNAL))?);
    let provenance = open_provenance(&manifest)?;
    let energy = Arc::new(EnergyMeter::detect(manifest.accounting.watts_per_core));
    let recorder = match (&provenance, &manifest.provenance) {
        (Some(store), Some(settings)) => {
            // The manifest's key must exist; the default one is made on first use.
            let key = match &settings.hash_key {
                Some(path) => HashKey::load(path, false),
                None => HashKey::load(&weir_observe::hash_key::default_path(&settings.path), true),
            };
            let key = key.map_err(classified)?;
            Some(ProvenanceRecorder::new(store.clone(), manifest.accounting.clone(), settings.keep_tensors, key))
        }
        _ => None,
    };
    let mut executor = Executor::with_resolver(sandbox, manifest, resolver, policy)
        .with_energy(energy)
        .with_observer(Arc::new(StepLogs));
    if let Some(recorder) = recorder {
        executor = executor.with_observer(Arc::new(recorder));
    }
    for observer in observers {
        executor = executor.with_observer(observer);
    }
    Ok((Arc::new(executor), provenance))
}
