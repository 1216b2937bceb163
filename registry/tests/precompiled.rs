//! Code compiled ahead of time, pushed with its component to a real
//! registry: found by its tag, pointing at the component (OCI `subject`),
//! and handed to a host only when it is signed as the component must be.

use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use weir_core::precompiled::{encode, Header};
use weir_registry::{
    precompiled_tag, ArtifactRef, BlobStore, Credentials, Registry, RegistryError, RegistryOptions, SigningKey,
    TrustRequirement, PRECOMPILED_ARTIFACT_TYPE,
};
use weir_tests::services::TestRegistry;
use weir_tests::{HOSTILE, NOOP};

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn weir(store: &Path) -> Registry {
    Registry::new(BlobStore::new(store), RegistryOptions { credentials: Credentials::Anonymous, ..Default::default() })
}

fn code_for(component: &str) -> Vec<u8> {
    let header = Header {
        component: component.to_string(),
        target: TARGET.into(),
        wasmtime: "48".into(),
        fuel: false,
        max_memory_bytes: 1 << 30,
        pooling: true,
    };
    encode(&header, b"\x7fELF stands in for the code")
}

#[tokio::test]
async fn precompiled_code_is_taken_only_when_signed_as_its_component() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = weir(&dir.path().join("store"));
    let at: ArtifactRef = registry.reference("steps/noop:1").parse().unwrap();
    let component = client.push(std::fs::read(NOOP).unwrap(), None, &at, &()).await.unwrap();
    let trusted = SigningKey::generate();
    client.sign(&at, &component.manifest, &trusted).await.unwrap();
    let trust = TrustRequirement { keys: vec![trusted.public()], from: "the test".into() };

    // Precompiled code on its own, or for another component, is not pushed.
    let error = client.push(code_for(&component.content.to_string()), Some("c.cwasm"), &at, &()).await.unwrap_err();
    assert!(matches!(error, RegistryError::NotPushable { .. }), "{error}");
    let other = weir_core::Digest::of(&std::fs::read(HOSTILE).unwrap()).to_string();
    let error = client.push_precompiled(code_for(&other), "c.cwasm", &component, &()).await.unwrap_err();
    assert!(error.to_string().contains("not from"), "{error}");

    let code = code_for(&component.content.to_string());
    let pushed = client.push_precompiled(code.clone(), "noop.cwasm", &component, &()).await.unwrap();
    assert_eq!(pushed.reference.tag(), Some(precompiled_tag(&component.manifest, TARGET).as_str()));
    // An OCI 1.1 artifact whose subject is the component, with its platform in the config.
    let raw = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    let reference =
        oci_client::Reference::try_from(format!("{}/steps/noop:{}", registry.addr, pushed.reference.tag().unwrap()))
            .unwrap();
    let (manifest, _) = raw.pull_image_manifest(&reference, &RegistryAuth::Anonymous).await.unwrap();
    assert_eq!(manifest.artifact_type.as_deref(), Some(PRECOMPILED_ARTIFACT_TYPE));
    assert_eq!(manifest.subject.as_ref().map(|s| s.digest.clone()), Some(component.manifest.to_string()));
    let mut config = Vec::new();
    raw.pull_blob(&reference, &manifest.config, &mut config).await.unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("amd64"), Some("linux")));

    let fetch = |signed_by: Option<&TrustRequirement>| {
        let (client, at, manifest) = (&client, &at, &component.manifest);
        let signed_by = signed_by.cloned();
        async move { client.fetch_precompiled(at, manifest, TARGET, signed_by.as_ref()).await }
    };
    // Unsigned native code is refused; so is code signed by a key the component does not trust.
    assert!(matches!(fetch(Some(&trust)).await, Err(RegistryError::SignatureRequired { .. })));
    client.sign(&pushed.reference, &pushed.manifest, &SigningKey::generate()).await.unwrap();
    assert!(matches!(fetch(Some(&trust)).await, Err(RegistryError::SignatureRequired { .. })));
    client.sign(&pushed.reference, &pushed.manifest, &trusted).await.unwrap();
    let fetched = fetch(Some(&trust)).await.unwrap().expect("signed code is handed over");
    assert_eq!(std::fs::read(fetched.path).unwrap(), code);
    // Without a signature requirement nothing is asked of the registry.
    assert!(fetch(None).await.unwrap().is_none());
    // No code for another target: none, not an error.
    let arm = client.fetch_precompiled(&at, &component.manifest, "aarch64-unknown-linux-gnu", Some(&trust)).await;
    assert!(arm.unwrap().is_none());
}
