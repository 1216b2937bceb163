//! Signed artifacts from the command line and in `weir serve`: a key pair
//! made by `weir signing-key`, `weir push --sign`, `weir verify`, and a
//! server that runs only what `signed_by` or the trust policy trusts.

use std::os::unix::fs::PermissionsExt as _;

use crate::common::server::{post, start_with};
use crate::registry::{assert_exit, one_step_pipelines, weir};
use weir_tests::services::TestRegistry;
use weir_tests::{HOSTILE, NOOP};

#[test]
fn only_artifacts_signed_by_a_trusted_key_are_run() {
    let Some(registry) = TestRegistry::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = |name: &str| dir.path().join(name).display().to_string();

    // A key pair; the private half is the owner's only, and never overwritten.
    assert_exit(&weir(&["signing-key", "new", &path("release")], &cache, None), 0, "key id");
    assert_eq!(std::fs::metadata(path("release.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_exit(&weir(&["signing-key", "new", &path("release")], &cache, None), 2, "never overwrites");
    assert_exit(&weir(&["signing-key", "new", &path("stranger")], &cache, None), 0, "key id");

    let signed = registry.reference("steps/noop:signed");
    let unsigned = registry.reference("steps/noop:unsigned");
    assert_exit(&weir(&["push", NOOP, &signed, "--sign", &path("release.key")], &cache, None), 0, "signed   by key");
    assert_exit(&weir(&["push", NOOP, &unsigned], &cache, None), 0, "pushed component");
    // A key that cannot be read stops the push before anything is sent.
    assert_exit(&weir(&["push", NOOP, &unsigned, "--sign", &path("missing.key")], &cache, None), 2, "missing.key");

    assert_exit(&weir(&["verify", &signed, "--key", &path("release.pub")], &cache, None), 0, "verified");
    assert_exit(&weir(&["verify", &signed, "--key", &path("stranger.pub")], &cache, None), 5, "trusted key");
    assert_exit(&weir(&["verify", &unsigned, "--key", &path("release.pub")], &cache, None), 5, "it is not signed");
    // `weir sign` signs what is already there.
    assert_exit(&weir(&["sign", &unsigned, "--key", &path("stranger.key")], &cache, None), 0, "signed");
    assert_exit(&weir(&["verify", &unsigned, "--key", &path("stranger.pub")], &cache, None), 0, "verified");

    // A trust policy: the whole registry must be signed by `release`.
    let policy = dir.path().join("trust.toml");
    std::fs::write(&policy, format!("[[rule]]\nprefix = \"{}/\"\nkeys = [\"release.pub\"]\n", registry.addr)).unwrap();
    let policy_flag = policy.display().to_string();
    let pulled = weir(&["pull", &unsigned, "--trust-policy", &policy_flag], &dir.path().join("fresh"), None);
    assert_exit(&pulled, 5, "refused, nothing was run");
    assert_exit(
        &weir(&["pull", &signed, "--trust-policy", &policy_flag], &dir.path().join("fresh"), None),
        0,
        "pulled",
    );

    // The server: `signed_by` per component, and the policy on top.
    let manifest = dir.path().join("weir.toml");
    let other = registry.reference("steps/other:1");
    assert_exit(&weir(&["push", HOSTILE, &other], &cache, None), 0, "pushed");
    let text = one_step_pipelines(&[
        ("signed", &signed, "signed_by = \"release.pub\""),
        ("wrong_key", &signed, "signed_by = [\"stranger.pub\"]"),
        ("unsigned", &other, ""),
        ("local", NOOP, ""),
    ]);
    std::fs::write(&manifest, text).unwrap();
    let oci = dir.path().join("oci");
    let server = start_with(&manifest, &["--trust-policy", &policy_flag], &[("WEIR_OCI_CACHE", oci.as_path())]);
    let x = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}"#;
    assert_eq!(post(&server, "/v2/models/signed/infer", x).0, 200);
    let (code, response) = post(&server, "/v2/models/wrong_key/infer", x);
    assert_eq!(code, 503, "{response}");
    let error = response["error"].as_str().unwrap();
    assert!(error.contains("does not verify with any trusted key") && error.contains("signed_by"), "{error}");
    let (code, response) = post(&server, "/v2/models/unsigned/infer", x);
    assert_eq!(code, 503, "{response}");
    assert!(response["error"].as_str().unwrap().contains("trust policy"), "{response}");
    // Local files are the operator's own: the policy is about registries.
    assert_eq!(post(&server, "/v2/models/local/infer", x).0, 200);
}

#[test]
fn signed_by_on_a_local_file_or_a_bad_key_stops_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("weir.toml");
    std::fs::write(dir.path().join("bad.pub"), "not a key").unwrap();
    for (source, key, expected) in [
        (NOOP.to_string(), "bad.pub", "only an oci:// artifact carries a signature"),
        ("oci://127.0.0.1:1/x:1".to_string(), "bad.pub", "not an ECDSA P-256 public key"),
        ("oci://127.0.0.1:1/x:1".to_string(), "absent.pub", "cannot read key file"),
    ] {
        std::fs::write(
            &manifest,
            format!(
                "[components.c]\nsource = \"{source}\"\nsigned_by = \"{key}\"\n[pipelines.p]\nsteps = [{{ name = \"s\", component = \"c\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"s.x\" }}\n"
            ),
        )
        .unwrap();
        let out = weir(&["graph", manifest.to_str().unwrap(), "p"], &dir.path().join("cache"), None);
        assert_exit(&out, 2, expected);
        assert!(String::from_utf8_lossy(&out.stderr).contains("weir.toml:3"), "located: {:?}", out);
    }
}
