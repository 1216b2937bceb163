//! Signed artifacts against a real registry: sign, pull, tamper, refuse —
//! and the signatures checked by tools that are not weir (`skopeo` reads
//! them where cosign keeps them, `openssl` verifies them, and a signature
//! `openssl` made is accepted by weir).

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use weir_registry::{
    signature_tag, ArtifactKind, ArtifactRef, BlobStore, Credentials, Digest, PublicKey, Registry, RegistryError,
    RegistryOptions, SigningKey, TrustRequirement,
};
use weir_tests::services::{require, TestRegistry};
use weir_tests::{HOSTILE, NOOP};

fn weir(store: &Path) -> Registry {
    Registry::new(BlobStore::new(store), RegistryOptions { credentials: Credentials::Anonymous, ..Default::default() })
}

fn trusting(key: &PublicKey) -> TrustRequirement {
    TrustRequirement { keys: vec![key.clone()], from: "the test".into() }
}

async fn fetch(
    weir: &Registry,
    at: &ArtifactRef,
    trust: &TrustRequirement,
) -> Result<weir_registry::Fetched, RegistryError> {
    weir.fetch_signed(at, None, Some(ArtifactKind::Component), Some(trust), &()).await
}

fn refused(result: Result<weir_registry::Fetched, RegistryError>, why: &str) {
    match result {
        Err(error @ RegistryError::SignatureRequired { .. }) => {
            assert!(error.to_string().contains(why), "expected `{why}` in: {error}")
        }
        other => panic!("expected a refusal for `{why}`, got {other:?}"),
    }
}

fn raw_client() -> oci_client::Client {
    oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() })
}

fn raw_ref(registry: &TestRegistry, path: &str) -> oci_client::Reference {
    oci_client::Reference::try_from(format!("{}/{path}", registry.addr).as_str()).unwrap()
}

#[tokio::test]
async fn sign_pull_tamper_refuse() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let client = weir(&dir.path().join("a"));
    let at: ArtifactRef = registry.reference("steps/noop:1").parse().unwrap();
    let pushed = client.push(std::fs::read(NOOP).unwrap(), None, &at, &()).await.unwrap();
    let key = SigningKey::generate();
    let stranger = SigningKey::generate();
    client.sign(&at, &pushed.manifest, &key).await.unwrap();

    // Signed by the trusted key: pulled.
    let fetched = fetch(&client, &at, &trusting(&key.public())).await.unwrap();
    assert_eq!(fetched.content, pushed.content);

    // Trusting another key only: refused, and nothing downloaded.
    let fresh = weir(&dir.path().join("b"));
    refused(fetch(&fresh, &at, &trusting(&stranger.public())).await, "does not verify with any trusted key");
    assert!(!fresh.store().contains(&pushed.content));

    // A second signer adds a signature; both verify.
    client.sign(&at, &pushed.manifest, &stranger).await.unwrap();
    let both = weir(&dir.path().join("c"));
    fetch(&both, &at, &trusting(&key.public())).await.unwrap();
    fetch(&both, &at, &trusting(&stranger.public())).await.unwrap();

    // Never signed: refused.
    let unsigned: ArtifactRef = registry.reference("steps/unsigned:1").parse().unwrap();
    client.push(std::fs::read(NOOP).unwrap(), None, &unsigned, &()).await.unwrap();
    refused(fetch(&weir(&dir.path().join("d")), &unsigned, &trusting(&key.public())).await, "it is not signed");

    // The tag moved to other bytes (someone pushed over it): their manifest
    // carries no signature, so it is refused.
    let moved = client.push(std::fs::read(HOSTILE).unwrap(), None, &at, &()).await.unwrap();
    let e = weir(&dir.path().join("e"));
    refused(fetch(&e, &at, &trusting(&key.public())).await, "it is not signed");
    assert!(!e.store().contains(&moved.content), "the unsigned layer was not downloaded");

    // A valid signature replayed onto the other manifest: it names the
    // first manifest, so it does not hold for this one.
    let raw = raw_client();
    let old_signatures = raw_ref(&registry, &format!("steps/noop:{}", signature_tag(&pushed.manifest)));
    raw.auth(&old_signatures, &RegistryAuth::Anonymous, oci_client::RegistryOperation::Push).await.unwrap();
    let (bytes, _) =
        raw.pull_manifest_raw(&old_signatures, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE]).await.unwrap();
    let replay = raw_ref(&registry, &format!("steps/noop:{}", signature_tag(&moved.manifest)));
    raw.push_manifest_raw(&replay, bytes.to_vec(), OCI_IMAGE_MEDIA_TYPE.parse().unwrap()).await.unwrap();
    refused(fetch(&weir(&dir.path().join("f")), &at, &trusting(&key.public())).await, "the payload signs");

    // The signed payload tampered with in the registry's storage: its
    // digest no longer matches, so it is not even parsed.
    let manifest: OciImageManifest = serde_json::from_slice(&bytes).unwrap();
    let payload_file = registry.blob_file(&manifest.layers[0].digest);
    let mut payload = std::fs::read(&payload_file).unwrap();
    let at_digest = String::from_utf8_lossy(&payload).find("sha256:").unwrap() + 7;
    payload[at_digest] = if payload[at_digest] == b'0' { b'1' } else { b'0' };
    std::fs::write(&payload_file, payload).unwrap();
    let pinned = at.with_digest(&pushed.manifest);
    refused(fetch(&weir(&dir.path().join("g")), &pinned, &trusting(&key.public())).await, "does not match its digest");
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn signatures_are_cosign_format_that_other_tools_read_and_make() {
    let Some(registry) = TestRegistry::start() else { return };
    let (Some(skopeo), Some(_)) = (require("skopeo"), require("openssl")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    // A key made by openssl (SEC1 PEM), its public half as cosign.pub is.
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &path("ec.key")]);
    openssl(&["ec", "-in", &path("ec.key"), "-pubout", "-out", &path("ec.pub")]);
    let key = SigningKey::from_pem_file(Path::new(&path("ec.key"))).unwrap();
    let public = PublicKey::from_pem_file(Path::new(&path("ec.pub"))).unwrap();
    assert_eq!(key.public(), public);

    let client = weir(&dir.path().join("store"));
    let at: ArtifactRef = registry.reference("steps/noop:1").parse().unwrap();
    let pushed = client.push(std::fs::read(NOOP).unwrap(), None, &at, &()).await.unwrap();
    client.sign(&at, &pushed.manifest, &key).await.unwrap();

    // skopeo finds the signature where cosign looks, in cosign's layout...
    let copied = dir.path().join("sig");
    let tag = signature_tag(&pushed.manifest);
    let status = Command::new(skopeo)
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/steps/noop:{tag}", registry.addr))
        .arg(format!("dir:{}", copied.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copied.join("manifest.json")).unwrap()).unwrap();
    let layer = &manifest["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    let payload_path = copied.join(layer["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    let payload: serde_json::Value = serde_json::from_slice(&std::fs::read(&payload_path).unwrap()).unwrap();
    assert_eq!(payload["critical"]["image"]["docker-manifest-digest"], pushed.manifest.to_string());
    assert_eq!(payload["critical"]["type"], "cosign container image signature");
    assert_eq!(payload["critical"]["identity"]["docker-reference"], format!("{}/steps/noop", registry.addr));
    // ...and openssl verifies it (ECDSA P-256, SHA-256, DER, base64).
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap();
    let der = base64::engine::general_purpose::STANDARD.decode(signature).unwrap();
    std::fs::write(path("sig.der"), der).unwrap();
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &path("ec.pub"),
        "-signature",
        &path("sig.der"),
        &payload_path.display().to_string(),
    ]);
    assert!(verified.contains("Verified OK"), "{verified}");

    // A signature openssl made, stored the way cosign stores it, is accepted.
    let other: ArtifactRef = registry.reference("steps/other:1").parse().unwrap();
    let other_pushed = client.push(std::fs::read(HOSTILE).unwrap(), None, &other, &()).await.unwrap();
    let text = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}/steps/other"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        registry.addr, other_pushed.manifest
    );
    std::fs::write(path("payload.json"), &text).unwrap();
    openssl(&["dgst", "-sha256", "-sign", &path("ec.key"), "-out", &path("made.der"), &path("payload.json")]);
    let made = base64::engine::general_purpose::STANDARD.encode(std::fs::read(path("made.der")).unwrap());
    let raw = raw_client();
    let target = raw_ref(&registry, &format!("steps/other:{}", signature_tag(&other_pushed.manifest)));
    raw.auth(&target, &RegistryAuth::Anonymous, oci_client::RegistryOperation::Push).await.unwrap();
    raw.push_blob(&target, text.as_bytes().to_vec(), &Digest::of(text.as_bytes()).to_string()).await.unwrap();
    let config = b"{}";
    raw.push_blob(&target, config.to_vec(), &Digest::of(config).to_string()).await.unwrap();
    let signature_manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        config: OciDescriptor {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            digest: Digest::of(config).to_string(),
            size: 2,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: "application/vnd.dev.cosign.simplesigning.v1+json".into(),
            digest: Digest::of(text.as_bytes()).to_string(),
            size: text.len() as i64,
            annotations: Some([("dev.cosignproject.cosign/signature".to_string(), made)].into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    raw.push_manifest(&target, &signature_manifest.into()).await.unwrap();
    let fresh = weir(&dir.path().join("fresh"));
    fetch(&fresh, &other, &trusting(&public)).await.expect("a signature made by openssl verifies");
}
