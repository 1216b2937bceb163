//! The shape of a weir artifact's OCI manifest: it parses, and it has
//! exactly one layer of a kind weir reads.

use oci_client::manifest::OciImageManifest;

use crate::artifact::ArtifactKind;
use crate::error::RegistryError;
use crate::reference::ArtifactRef;

pub(crate) fn bad_manifest(reference: &ArtifactRef, why: String) -> RegistryError {
    RegistryError::BadManifest { reference: reference.to_string(), why }
}

pub(crate) fn parse_manifest(reference: &ArtifactRef, bytes: &[u8]) -> Result<OciImageManifest, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| bad_manifest(reference, format!("it does not parse: {e}")))
}

/// The one layer of a weir artifact, of the wanted kind (any kind when `None`).
pub(crate) fn single_layer<'m>(
    reference: &ArtifactRef,
    manifest: &'m OciImageManifest,
    want: Option<ArtifactKind>,
) -> Result<(&'m oci_client::manifest::OciDescriptor, ArtifactKind), RegistryError> {
    let [layer] = manifest.layers.as_slice() else {
        return Err(bad_manifest(
            reference,
            format!("it has {} layers; a weir artifact has exactly one", manifest.layers.len()),
        ));
    };
    let wanted = want.map_or("component or model".to_string(), |w| w.to_string());
    match (ArtifactKind::of_layer(&layer.media_type), want) {
        (Some(kind), None) => Ok((layer, kind)),
        (Some(kind), Some(want)) if kind == want => Ok((layer, kind)),
        (Some(kind), Some(_)) => {
            Err(RegistryError::WrongKind { reference: reference.to_string(), wanted, found: kind.to_string() })
        }
        (None, _) => Err(RegistryError::WrongKind {
            reference: reference.to_string(),
            wanted,
            found: format!(
                "layer of media type `{}` (weir reads `{}` and `{}`)",
                layer.media_type,
                ArtifactKind::Component.layer_media_type(),
                ArtifactKind::Model.layer_media_type()
            ),
        }),
    }
}
