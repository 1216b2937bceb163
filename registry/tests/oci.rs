//! Push and pull against a real registry (`docker-registry` on loopback):
//! round trips, the cache, pins, tampering, malformed manifests, basic auth
//! and interop with `skopeo`.

use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use weir_registry::{
    ArtifactKind, ArtifactRef, BlobStore, Credentials, Digest, Registry, RegistryError, RegistryOptions,
};
use weir_tests::services::{require, TestRegistry};
use weir_tests::NOOP;

fn component() -> Vec<u8> {
    std::fs::read(NOOP).unwrap()
}

fn model() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/digits.onnx")).unwrap()
}

fn client(store: &Path, credentials: Credentials) -> Registry {
    Registry::new(BlobStore::new(store), RegistryOptions { credentials, ..Default::default() })
}

fn anonymous(store: &Path) -> Registry {
    client(store, Credentials::Anonymous)
}

fn reference(registry: &TestRegistry, path: &str) -> ArtifactRef {
    registry.reference(path).parse().unwrap()
}

#[tokio::test]
async fn a_pushed_component_pulls_back_verified_and_is_cached() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weir = anonymous(dir.path());
    let at = reference(&registry, "steps/noop:1");
    let pushed = weir.push(component(), Some("noop.wasm"), &at, &()).await.unwrap();
    assert_eq!(pushed.kind, ArtifactKind::Component);
    assert_eq!(pushed.content, Digest::of(&component()));

    let fetched = weir.fetch(&at, None, Some(ArtifactKind::Component), &()).await.unwrap();
    assert_eq!(std::fs::read(&fetched.path).unwrap(), component());
    assert_eq!(
        (fetched.content.clone(), fetched.manifest.clone()),
        (pushed.content.clone(), Some(pushed.manifest.clone()))
    );
    assert_eq!(fetched.downloaded, component().len() as u64);
    // The layer is cached by digest: not downloaded again.
    assert_eq!(weir.fetch(&at, None, Some(ArtifactKind::Component), &()).await.unwrap().downloaded, 0);

    // By manifest digest, and pinned: both work with the registry gone.
    let by_digest = at.with_digest(&pushed.manifest);
    drop(registry);
    let offline = weir.fetch(&by_digest, None, Some(ArtifactKind::Component), &()).await.unwrap();
    assert_eq!(offline.path, fetched.path);
    let pinned = weir.fetch(&at, Some(&pushed.content), Some(ArtifactKind::Component), &()).await.unwrap();
    assert_eq!(pinned.path, fetched.path);
}

#[tokio::test]
async fn models_round_trip_and_kinds_are_checked() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weir = anonymous(dir.path());
    let at = reference(&registry, "models/digits:v1");
    let pushed = weir.push(model(), Some("digits.onnx"), &at, &()).await.unwrap();
    assert_eq!(pushed.kind, ArtifactKind::Model);
    let fetched = weir.fetch(&at, None, Some(ArtifactKind::Model), &()).await.unwrap();
    assert_eq!(std::fs::read(&fetched.path).unwrap(), model());

    let error = weir.fetch(&at, None, Some(ArtifactKind::Component), &()).await.unwrap_err();
    assert!(matches!(error, RegistryError::WrongKind { .. }), "{error}");
    assert!(error.to_string().contains("models/digits:v1") && error.to_string().contains("not a component"), "{error}");

    let error = weir.push(b"#!/bin/sh\necho hi".to_vec(), Some("run.sh"), &at, &()).await.unwrap_err();
    assert!(error.to_string().contains("run.sh") && error.to_string().contains("neither"), "{error}");
    let missing =
        weir.fetch(&reference(&registry, "models/absent:1"), None, Some(ArtifactKind::Model), &()).await.unwrap_err();
    assert!(matches!(missing, RegistryError::NotFound { .. }), "{missing}");
}

#[tokio::test]
async fn a_pin_that_does_not_match_is_refused() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weir = anonymous(dir.path());
    let at = reference(&registry, "steps/noop:1");
    weir.push(component(), None, &at, &()).await.unwrap();
    let other = Digest::of(b"something else");
    let error = weir.fetch(&at, Some(&other), Some(ArtifactKind::Component), &()).await.unwrap_err();
    assert!(matches!(error, RegistryError::PinMismatch { .. }), "{error}");
    assert!(error.to_string().contains(&other.to_string()), "{error}");
    assert!(!weir.store().contains(&Digest::of(&component())), "nothing is kept from a refused pull");
}

#[tokio::test]
async fn a_tampered_blob_in_the_registry_is_never_used() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weir = anonymous(dir.path());
    let at = reference(&registry, "steps/noop:1");
    let pushed = weir.push(component(), None, &at, &()).await.unwrap();
    // Flip one byte of the stored layer, keeping its size.
    let blob = registry.blob_file(&pushed.content.to_string());
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let error = weir.fetch(&at, None, Some(ArtifactKind::Component), &()).await.unwrap_err();
    assert!(matches!(error, RegistryError::Integrity { .. }), "{error}");
    assert!(error.to_string().contains("steps/noop:1"), "{error}");
    assert!(!weir.store().contains(&pushed.content));
}

/// Push a hand-made manifest (what a buggy or hostile pusher could do).
async fn push_manifest(
    registry: &TestRegistry,
    path: &str,
    layers: Vec<OciDescriptor>,
    blobs: &[&[u8]],
) -> ArtifactRef {
    let at = reference(registry, path);
    let raw = oci_client::Reference::try_from(at.to_string().trim_start_matches("oci://")).unwrap();
    let client = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    client.auth(&raw, &RegistryAuth::Anonymous, oci_client::RegistryOperation::Push).await.unwrap();
    for blob in blobs {
        client.push_blob(&raw, blob.to_vec(), &Digest::of(blob).to_string()).await.unwrap();
    }
    let config = b"{}";
    client.push_blob(&raw, config.to_vec(), &Digest::of(config).to_string()).await.unwrap();
    let manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        config: OciDescriptor {
            media_type: weir_registry::WASM_CONFIG_MEDIA_TYPE.into(),
            digest: Digest::of(config).to_string(),
            size: 2,
            ..Default::default()
        },
        layers,
        ..Default::default()
    };
    client.push_manifest(&raw, &manifest.into()).await.unwrap();
    at
}

fn wasm_layer(bytes: &[u8], size: i64) -> OciDescriptor {
    OciDescriptor {
        media_type: "application/wasm".into(),
        digest: Digest::of(bytes).to_string(),
        size,
        ..Default::default()
    }
}

#[tokio::test]
async fn malformed_manifests_are_refused_before_anything_runs() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let weir = anonymous(dir.path());
    let bytes = component();

    // The registry accepts a descriptor with the wrong size; weir does not.
    let at = push_manifest(&registry, "bad/size:1", vec![wasm_layer(&bytes, bytes.len() as i64 - 1)], &[&bytes]).await;
    let error = weir.fetch(&at, None, Some(ArtifactKind::Component), &()).await.unwrap_err();
    assert!(matches!(error, RegistryError::Integrity { .. }), "{error}");
    assert!(error.to_string().contains("bad/size:1") && error.to_string().contains("declares"), "{error}");
    assert!(!weir.store().contains(&Digest::of(&bytes)));

    let at = push_manifest(
        &registry,
        "bad/two:1",
        vec![wasm_layer(&bytes, bytes.len() as i64), wasm_layer(b"x", 1)],
        &[&bytes, b"x"],
    )
    .await;
    let error = weir.fetch(&at, None, Some(ArtifactKind::Component), &()).await.unwrap_err();
    assert!(error.to_string().contains("bad/two:1") && error.to_string().contains("2 layers"), "{error}");
}

#[tokio::test]
async fn basic_auth_from_flags_and_from_the_docker_config() {
    let Some(registry) = TestRegistry::start_with_auth("alice", "wonderland") else { return };
    let dir = tempfile::tempdir().unwrap();
    let at = reference(&registry, "private/noop:1");

    let error = anonymous(dir.path()).push(component(), None, &at, &()).await.unwrap_err();
    assert!(matches!(error, RegistryError::Unauthorized { .. }), "{error}");
    assert!(error.to_string().contains("--password-stdin"), "{error}");

    let alice = Credentials::Basic { username: "alice".into(), password: "wonderland".into() };
    client(dir.path(), alice).push(component(), None, &at, &()).await.unwrap();

    // A fresh cache, credentials only in a Docker config file.
    let docker = tempfile::tempdir().unwrap();
    let auth = "YWxpY2U6d29uZGVybGFuZA=="; // base64("alice:wonderland")
    std::fs::write(
        docker.path().join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, registry.addr),
    )
    .unwrap();
    // This test binary's only DOCKER_CONFIG user.
    unsafe { std::env::set_var("DOCKER_CONFIG", docker.path()) };
    let store = tempfile::tempdir().unwrap();
    let fetched =
        client(store.path(), Credentials::Discover).fetch(&at, None, Some(ArtifactKind::Component), &()).await;
    assert_eq!(std::fs::read(fetched.unwrap().path).unwrap(), component());

    // WEIR_REGISTRY_USERNAME / _PASSWORD alone (the Docker config emptied):
    // wrong ones are refused, right ones pull.
    std::fs::write(docker.path().join("config.json"), r#"{"auths": {}}"#).unwrap();
    let pull = |user: &str, password: &str| {
        unsafe { std::env::set_var("WEIR_REGISTRY_USERNAME", user) };
        unsafe { std::env::set_var("WEIR_REGISTRY_PASSWORD", password) };
        let store = tempfile::tempdir().unwrap();
        let client = client(store.path(), Credentials::Discover);
        let at = at.clone();
        async move {
            let fetched = client.fetch(&at, None, Some(ArtifactKind::Component), &()).await;
            (store, fetched)
        }
    };
    let (_store, refused) = pull("alice", "looking-glass").await;
    assert!(matches!(refused, Err(RegistryError::Unauthorized { .. })), "{refused:?}");
    let (_store, fetched) = pull("alice", "wonderland").await;
    assert_eq!(std::fs::read(fetched.unwrap().path).unwrap(), component());
    unsafe { std::env::remove_var("WEIR_REGISTRY_USERNAME") };
    unsafe { std::env::remove_var("WEIR_REGISTRY_PASSWORD") };
    unsafe { std::env::remove_var("DOCKER_CONFIG") };
}

#[tokio::test]
async fn skopeo_pulls_what_weir_pushed() {
    let Some(registry) = TestRegistry::start() else { return };
    let Some(skopeo) = require("skopeo") else { return };
    let dir = tempfile::tempdir().unwrap();
    let weir = anonymous(dir.path());
    let pushed = weir.push(component(), None, &reference(&registry, "steps/noop:1"), &()).await.unwrap();
    let out = dir.path().join("copied");
    let status = std::process::Command::new(skopeo)
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}/steps/noop:1", registry.addr),
            &format!("dir:{}", out.display()),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // `dir:` transport: each blob is a file named by its hex digest.
    assert_eq!(std::fs::read(out.join(pushed.content.hex())).unwrap(), component());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
}

#[tokio::test]
async fn two_pulls_of_the_same_blob_at_once_both_succeed() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let at = reference(&registry, "models/digits:v1");
    anonymous(dir.path()).push(model(), None, &at, &()).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let (a, b) = (anonymous(store.path()), anonymous(store.path()));
    let (x, y) = tokio::join!(
        a.fetch(&at, None, Some(ArtifactKind::Model), &()),
        b.fetch(&at, None, Some(ArtifactKind::Model), &())
    );
    assert_eq!(std::fs::read(x.unwrap().path).unwrap(), model());
    assert_eq!(std::fs::read(y.unwrap().path).unwrap(), model());
}
