//! What kinds of artifacts weir stores, their media types, and how to tell
//! them apart from their bytes and from a manifest.

use std::fmt;
use weir_core::wasm::WasmKind;

use serde::{Deserialize, Serialize};

/// CNCF Wasm OCI artifact (<https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/>).
pub const WASM_CONFIG_MEDIA_TYPE: &str = oci_wasm::WASM_MANIFEST_CONFIG_MEDIA_TYPE;
pub const WASM_LAYER_MEDIA_TYPE: &str = oci_wasm::WASM_LAYER_MEDIA_TYPE;
/// weir's model artifact: a small JSON config and one ONNX layer.
pub const MODEL_CONFIG_MEDIA_TYPE: &str = "application/vnd.weir.model.config.v1+json";
pub const MODEL_LAYER_MEDIA_TYPE: &str = "application/vnd.weir.model.onnx.v1";

/// Code compiled ahead of time for one target (`weir push --precompile`):
/// an OCI 1.1 artifact whose `subject` is the component's manifest, tagged
/// [`precompiled_tag`] (registries without the referrers API find it so).
pub const PRECOMPILED_ARTIFACT_TYPE: &str = "application/vnd.weir.precompiled.v1";
pub const PRECOMPILED_CONFIG_MEDIA_TYPE: &str = "application/vnd.weir.precompiled.config.v1+json";
pub const PRECOMPILED_LAYER_MEDIA_TYPE: &str = "application/vnd.weir.precompiled.cwasm.v1";

/// Layer media types other tools use for ONNX files (accepted on pull).
const FOREIGN_MODEL_LAYER_TYPES: &[&str] = &["application/octet-stream", "application/onnx", "application/vnd.onnx"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    Component,
    Model,
    /// A component's code compiled ahead of time for one target.
    Precompiled,
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Component => "component",
            ArtifactKind::Model => "model",
            ArtifactKind::Precompiled => "precompiled code",
        })
    }
}

impl ArtifactKind {
    /// Tell a file's kind from its first bytes: Wasm starts with `\0asm`;
    /// an ONNX file is a protobuf `ModelProto`, whose first field on disk is
    /// `ir_version` (field 1, varint: tag byte 0x08).
    pub fn sniff(bytes: &[u8]) -> Result<ArtifactKind, String> {
        if bytes.starts_with(weir_core::precompiled::MAGIC) {
            return Ok(ArtifactKind::Precompiled);
        }
        match WasmKind::of(bytes) {
            WasmKind::CoreModule => {
                return Err(
                    "it is a core WebAssembly module, not a component (build it with `cargo component build`)".into()
                )
            }
            WasmKind::Component => return Ok(ArtifactKind::Component),
            WasmKind::NotWasm => {}
        }
        if bytes.first() == Some(&0x08) {
            return Ok(ArtifactKind::Model);
        }
        Err("it is neither a WebAssembly component nor an ONNX model".into())
    }

    pub fn layer_media_type(self) -> &'static str {
        match self {
            ArtifactKind::Component => WASM_LAYER_MEDIA_TYPE,
            ArtifactKind::Model => MODEL_LAYER_MEDIA_TYPE,
            ArtifactKind::Precompiled => PRECOMPILED_LAYER_MEDIA_TYPE,
        }
    }

    /// The kind a pulled layer holds, from its media type.
    pub fn of_layer(media_type: &str) -> Option<ArtifactKind> {
        if media_type == WASM_LAYER_MEDIA_TYPE {
            Some(ArtifactKind::Component)
        } else if media_type == PRECOMPILED_LAYER_MEDIA_TYPE {
            Some(ArtifactKind::Precompiled)
        } else if media_type == MODEL_LAYER_MEDIA_TYPE || FOREIGN_MODEL_LAYER_TYPES.contains(&media_type) {
            Some(ArtifactKind::Model)
        } else {
            None
        }
    }
}

/// The tag precompiled code for `target` of the component whose manifest is
/// `component` is pushed under, in the component's repository.
pub fn precompiled_tag(component: &weir_core::Digest, target: &str) -> String {
    format!("sha256-{}.{target}.cwasm", component.hex())
}

/// The config blob of precompiled code: what it was compiled from, and for
/// which platform (OCI's names: `amd64`, `arm64`).
#[derive(Debug, Serialize, Deserialize)]
pub struct PrecompiledConfig {
    pub component: String,
    pub target: String,
    pub architecture: String,
    pub os: String,
}

impl PrecompiledConfig {
    /// From the code's own header.
    pub fn of(header: &weir_core::precompiled::Header) -> PrecompiledConfig {
        let arch = header.target.split('-').next().unwrap_or_default();
        let architecture = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let os = if header.target.contains("linux") { "linux" } else { "unknown" };
        PrecompiledConfig {
            component: header.component.clone(),
            target: header.target.clone(),
            architecture: architecture.into(),
            os: os.into(),
        }
    }
}

/// The config blob of a model artifact.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelConfig {
    pub format: String,
    /// The file name it was pushed from (a hint for `weir pull`).
    pub file_name: Option<String>,
    pub layer_digests: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_components_models_and_mistakes() {
        assert_eq!(ArtifactKind::sniff(b"\0asm\x0d\0\x01\0rest"), Ok(ArtifactKind::Component));
        assert!(ArtifactKind::sniff(b"\0asm\x01\0\0\0").unwrap_err().contains("core WebAssembly module"));
        assert_eq!(ArtifactKind::sniff(&[0x08, 0x07, 0x12]), Ok(ArtifactKind::Model));
        assert!(ArtifactKind::sniff(b"#!/bin/sh").is_err());
        assert_eq!(ArtifactKind::of_layer("application/wasm"), Some(ArtifactKind::Component));
        assert_eq!(ArtifactKind::of_layer("application/vnd.oci.image.layer.v1.tar+gzip"), None);
    }
}
