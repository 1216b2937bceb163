//! Reloading a served manifest: on `SIGHUP`, on `POST /v2/admin/reload`,
//! and with `weir serve --watch` when the file changes. The new manifest is
//! read and checked fully, and every component and model it names is
//! fetched, compiled and loaded, before it is swapped in; a manifest that
//! fails any of that is refused and the old one keeps serving.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use weir_core::ErrorKind;
use weir_manifest::Manifest;
use weir_triggers::{Dispatcher, Failure, Reload, Reloaded, Triggers};

use super::compose::Composer;

pub struct Reloader {
    path: PathBuf,
    composer: Composer,
    dispatcher: Arc<Dispatcher>,
    /// One reload at a time.
    one: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf, composer: Composer, dispatcher: Arc<Dispatcher>) -> Reloader {
        Reloader { path, composer, dispatcher, one: tokio::sync::Mutex::new(()) }
    }

    async fn swap(&self) -> Result<Reloaded, Failure> {
        let _one = self.one.lock().await;
        let started = Instant::now();
        let manifest = Manifest::load(&self.path)?;
        Triggers::from_manifest(&manifest)?;
        let current = self.dispatcher.executor();
        let refuse = |why: String| {
            Failure::new(ErrorKind::InvalidInput, format!("{}: {why}; the running manifest stays", self.path.display()))
        };
        current.manifest().same_sections(&manifest).map_err(refuse)?;
        changed_models(current.manifest(), &manifest).map_err(refuse)?;
        if manifest.needs_fuel() && !current.sandbox().counts_fuel() {
            return Err(refuse("a step now has a fuel limit and this server was started without fuel metering; restart weir serve to apply it".into()));
        }
        let pipelines = manifest.pipelines.keys().cloned().collect();
        let experiments = manifest.experiments.keys().cloned().collect();
        let executor = self
            .composer
            .executor(manifest)
            .map_err(|e| Failure::new(ErrorKind::Unavailable, format!("{:#}", e.error)))?;
        executor.residency().adopt_variant_picks(current.residency());
        let residency = executor.residency().clone();
        tokio::task::spawn_blocking(move || residency.prepare_registries())
            .await
            .map_err(|e| Failure::new(ErrorKind::Internal, e.to_string()))?;
        // Everything loads before the swap: the first request after it
        // meets no cold start, and a broken artifact is refused here.
        executor.residency().preload().await?;
        executor.residency().start_sweeper();
        let generation = self.dispatcher.swap(executor);
        let took_ms = started.elapsed().as_millis() as u64;
        Ok(Reloaded { generation, pipelines, experiments, took_ms })
    }

    /// Reload and log the outcome (for signals and the file watch).
    async fn reload_logged(&self, why: &str) {
        match self.swap().await {
            Ok(done) => tracing::info!(why, generation = done.generation, took_ms = done.took_ms, "manifest reloaded"),
            Err(failure) => {
                tracing::error!(why, error = %failure.message, "manifest not reloaded; the running one stays")
            }
        }
    }
}

impl Reload for Reloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Reloaded, Failure>> + Send + '_>> {
        Box::pin(self.swap())
    }
}

/// A model declared under a name the running manifest already uses must be
/// the same model: both generations share one model cache, and invocations
/// still running on the old one must keep their model. A new model is a new
/// version (`eta@v2`).
fn changed_models(running: &Manifest, new: &Manifest) -> Result<(), String> {
    for (name, model) in &new.models {
        let Some(old) = running.models.get(name) else { continue };
        let same = old.artifact.source == model.artifact.source
            && old.artifact.pin == model.artifact.pin
            && old.device == model.device
            && old.threads == model.threads
            && old.choice == model.choice
            && old.variants.len() == model.variants.len()
            && old.variants.iter().zip(&model.variants).all(|(a, b)| {
                (&a.name, &a.artifact.source, &a.artifact.pin, a.accuracy, &a.targets)
                    == (&b.name, &b.artifact.source, &b.artifact.pin, b.accuracy, &b.targets)
            });
        if !same {
            return Err(format!(
                "model `{name}` changed; declare the new one as a new version (`{name}@NEW`) and point the steps at it, or restart weir serve"
            ));
        }
    }
    Ok(())
}

/// Reload on every `SIGHUP` (on the current runtime).
pub fn on_hangup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            reloader.reload_logged("SIGHUP").await;
        }
    });
    Ok(())
}

/// Reload when the manifest file's modification time or size changes
/// (checked every `every`; a change is acted on once it has settled).
pub fn watch(reloader: Arc<Reloader>, every: Duration) {
    let stamp = |path: &PathBuf| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    tokio::spawn(async move {
        let mut seen = stamp(&reloader.path);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&reloader.path);
            if now.is_none() || now == seen {
                continue;
            }
            // An editor may still be writing: wait until the file holds still.
            tokio::time::sleep(every).await;
            let settled = stamp(&reloader.path);
            if settled != now {
                continue;
            }
            seen = settled;
            reloader.reload_logged("the manifest file changed").await;
        }
    });
}
