//! The second pass: what `parse` left alone because it needs the file
//! system. Local sources must exist.

use std::env::consts::ARCH;

use crate::{ArtifactDecl, ArtifactSource, Location, Manifest, ManifestError};

impl Manifest {
    /// Check that every local component and model file exists (of a
    /// model's variants, those that may serve on this architecture).
    pub fn check_files(&self) -> Result<(), ManifestError> {
        let components =
            self.components.values().map(|c| (format!("components.{}", c.name), &c.artifact, " (build it first?)"));
        let models = self.models.values().flat_map(|m| {
            let plain = m.variants.is_empty().then(|| (format!("models.{}", m.name), &m.artifact, ""));
            // A variant for other architectures need not be on this host.
            let here = |v: &&crate::ModelVariantDecl| v.targets.is_empty() || v.targets.iter().any(|t| t == ARCH);
            let variants = m
                .variants
                .iter()
                .filter(here)
                .map(move |v| (format!("models.{}.variants.{}", m.name, v.name), &v.artifact, ""));
            plain.into_iter().chain(variants)
        });
        for (key, artifact, hint) in components.chain(models) {
            self.check_file(&key, artifact, hint)?;
        }
        for component in self.components.values() {
            if let Some(missing) = component.precompiled.iter().find(|p| !p.is_file()) {
                let message = format!(
                    "components.{}.precompiled: file `{}` does not exist (make it with `weir compile`)",
                    component.name,
                    missing.display()
                );
                return Err(ManifestError::at(&self.path, component.artifact.declared_at, message));
            }
        }
        for pipeline in self.pipelines.values() {
            for step in &pipeline.steps {
                if let Some(grant) = step.grants.dirs.iter().find(|g| !g.host.is_dir()) {
                    let message = format!(
                        "pipelines.{}.steps.{}.files: source {} is not a directory (grants are read-only directories)",
                        pipeline.name,
                        step.name,
                        grant.host.display()
                    );
                    return Err(ManifestError::at(&self.path, Location::default(), message));
                }
            }
        }
        Ok(())
    }

    fn check_file(&self, key: &str, artifact: &ArtifactDecl, hint: &str) -> Result<(), ManifestError> {
        let ArtifactSource::File(path) = &artifact.source else { return Ok(()) };
        if path.is_file() {
            return Ok(());
        }
        let message = format!("{key}.source: file `{}` does not exist{hint}", path.display());
        Err(ManifestError::at(&self.path, artifact.declared_at, message))
    }
}
