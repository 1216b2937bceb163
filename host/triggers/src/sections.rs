//! Helpers every trigger uses to read its own manifest section.

use toml::Spanned;
use weir_manifest::{Manifest, ManifestError, Place};

/// The triggers this weir has; a section naming another is an error.
pub const KNOWN: [&str; 4] = ["http", "grpc", "jobs", "nats"];

/// Refuse `[triggers.NAME]` (or a pipeline's) for a trigger weir does not have.
pub fn check_names(manifest: &Manifest) -> Result<(), ManifestError> {
    for (name, location) in manifest.trigger_names() {
        if !KNOWN.contains(&name.as_str()) {
            let message = format!("triggers.{name}: weir has no trigger `{name}` (it has {})", KNOWN.join(", "));
            return Err(ManifestError::at(&manifest.path, *location, message));
        }
    }
    Ok(())
}

/// A spanned count that must be at least 1.
pub fn at_least_one(place: &Place, value: &Spanned<usize>, key: &str) -> Result<usize, ManifestError> {
    match *value.get_ref() {
        0 => Err(place.at(value, format!("{key} must be at least 1"))),
        n => Ok(n),
    }
}

/// A spanned duration such as `30s`, within its range
/// (`weir_manifest::limits`): a `*.retention` from 1s to 3650d, every
/// other trigger duration (time limits, `ack_wait`) from 1ms to 24h.
pub fn duration(place: &Place, value: &Spanned<String>, key: &str) -> Result<std::time::Duration, ManifestError> {
    use weir_manifest::limits;
    let range = if key.ends_with(".retention") { limits::RETENTION } else { limits::TRIGGER_TIMEOUT };
    limits::duration(place, value, key, &range)
}
