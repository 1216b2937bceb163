//! Putting weir together: a sandbox, an executor for a manifest with its
//! observers (step logs, provenance) and its energy source. `weir run` and
//! `weir serve` build the same thing with different options.

use std::sync::Arc;

use weir_executor::artifacts::Resolver;
use weir_executor::{Executor, Observer, ResidencyPolicy};
use weir_manifest::Manifest;
use weir_monitor::{MonitorBoard, PreparedMonitors};
use weir_observe::energy::EnergyMeter;
use weir_observe::logs::StepLogs;
use weir_observe::provenance::ProvenanceStore;
use weir_observe::recording::ProvenanceRecorder;
use weir_registry::{BlobStore, RegistryOptions};
use weir_sandbox::{Sandbox, SandboxOptions};

use weir_observe::hash_key::HashKey;

use super::{classified, exit, with_code, Failure};

/// The manifest's provenance store, when it has one.
pub fn open_provenance(manifest: &Manifest) -> Result<Option<Arc<ProvenanceStore>>, Failure> {
    let Some(settings) = &manifest.provenance else { return Ok(None) };
    let store = ProvenanceStore::open(&settings.path, settings.retention).map_err(classified)?;
    Ok(Some(Arc::new(store)))
}

/// Builds executors that share one sandbox (engine, instance pool, model
/// cache), one energy meter and one set of observers (step logs,
/// provenance, the caller's): the one weir starts with, and one per reload.
pub struct Composer {
    sandbox: Arc<Sandbox>,
    store: BlobStore,
    registry: RegistryOptions,
    policy: ResidencyPolicy,
    energy: Arc<EnergyMeter>,
    observers: Vec<Arc<dyn Observer>>,
    /// What every generation's monitors found.
    monitors: Arc<MonitorBoard>,
    /// Where monitor results are kept as records (the manifest's provenance store).
    records: Option<Arc<ProvenanceStore>>,
}

impl Composer {
    /// For `manifest`: logs step output, measures energy (RAPL when
    /// readable), records provenance when the manifest asks, and tells
    /// `observers` too. Also returns the provenance store, if any.
    pub fn new(
        manifest: &Manifest,
        sandbox: SandboxOptions,
        registry: RegistryOptions,
        policy: ResidencyPolicy,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<(Composer, Option<Arc<ProvenanceStore>>), Failure> {
        let sandbox = Arc::new(Sandbox::new(sandbox).map_err(with_code(exit::INTERNAL))?);
        let provenance = open_provenance(manifest)?;
        let energy = Arc::new(EnergyMeter::detect(manifest.accounting.watts_per_core));
        let mut all: Vec<Arc<dyn Observer>> = vec![Arc::new(StepLogs)];
        if let (Some(store), Some(settings)) = (&provenance, &manifest.provenance) {
            // The manifest's key must exist; the default one is made on first use.
            let key = match &settings.hash_key {
                Some(path) => HashKey::load(path, false),
                None => HashKey::load(&weir_observe::hash_key::default_path(&settings.path), true),
            };
            let key = key.map_err(classified)?;
            let recorder =
                ProvenanceRecorder::new(store.clone(), manifest.accounting.clone(), settings.keep_tensors, key);
            all.push(Arc::new(recorder));
        }
        all.extend(observers);
        let store = BlobStore::new(BlobStore::default_root());
        let monitors = Arc::new(MonitorBoard::default());
        let records = provenance.clone();
        Ok((Composer { sandbox, store, registry, policy, energy, observers: all, monitors, records }, provenance))
    }

    /// An executor for `manifest` on the shared parts.
    pub fn executor(&self, manifest: Manifest) -> Result<Arc<Executor>, Failure> {
        if !manifest.models.is_empty() {
            // Say what is missing now, not as a model error inside a step.
            weir_nn::library::init().map_err(with_code(exit::INTERNAL))?;
        }
        let monitors = PreparedMonitors::read(&manifest).map_err(with_code(exit::BAD_INPUT))?;
        let resolver = Resolver::new(self.store.clone(), self.registry.clone());
        let mut executor = Executor::with_resolver(self.sandbox.clone(), manifest, resolver, self.policy)
            .with_energy(self.energy.clone());
        for observer in &self.observers {
            executor = executor.with_observer(observer.clone());
        }
        if monitors.is_empty() {
            return Ok(Arc::new(executor));
        }
        // The monitors' tasks run components on this executor, held weakly:
        // they end with it (a reload starts the new generation's own).
        let (board, records) = (self.monitors.clone(), self.records.clone());
        Ok(Arc::new_cyclic(|this| executor.with_observer(monitors.start(this.clone(), board, records))))
    }

    /// What the monitors found, across reloads.
    pub fn monitors(&self) -> Arc<MonitorBoard> {
        self.monitors.clone()
    }
}

/// An executor for `manifest` as [`Composer`] builds it, and the provenance store.
pub fn executor(
    manifest: Manifest,
    sandbox: SandboxOptions,
    registry: RegistryOptions,
    policy: ResidencyPolicy,
    observers: Vec<Arc<dyn Observer>>,
) -> Result<(Arc<Executor>, Option<Arc<ProvenanceStore>>), Failure> {
    let (composer, provenance) = Composer::new(&manifest, sandbox, registry, policy, observers)?;
    Ok((composer.executor(manifest)?, provenance))
}
