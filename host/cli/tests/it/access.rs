//! Who may do what: every endpoint of the router has a need and enforces
//! it (walked from the same table the router is built from, and checked
//! against docs/security.md); keys made with `weir keys` work against the
//! real binary; jobs are readable only by the key that submitted them.

use std::path::Path;
use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use weir_access::{Access, KeyFile, Keyring, Quota, Scope};
use weir_triggers::http::{endpoint_table, Need};

use crate::common::server::{agent, call_with, create_key, request, start_with};

async fn call(router: &axum::Router, method: &str, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let body = r#"{"inputs":[{"name":"pixels","shape":[1,64],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#;
    let response = router.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    // An event stream does not end: its status is the answer.
    if response.headers().get("content-type").is_some_and(|t| t == "text/event-stream") {
        return (status, Value::Null);
    }
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn concrete(path: &str, pipeline: &str) -> String {
    path.replace("{name}", pipeline)
        .replace("{id}", "0123456789abcdef0123456789abcdef")
        .replace("{subject}", "someone")
        .replace("{file}", "console.js")
        .replace("{version}", "v1")
        .replace("{action}", "start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_has_a_need_and_enforces_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let mut file = KeyFile::default();
    let (_, other) = file.create("other", vec![Scope::Invoke(Some("not-digits".into()))], Quota::default()).unwrap();
    let (_, admin) = file.create("root", vec![Scope::Admin], Quota::default()).unwrap();
    let (_, revoked) = file.create("gone", vec![Scope::Admin], Quota::default()).unwrap();
    let gone = file.keys.last().unwrap().id.clone();
    file.revoke(&gone).unwrap();
    file.save(&path).unwrap();
    let router = crate::router::digits_with(Access::Keys(Keyring::open(&path).unwrap()));

    let table = endpoint_table();
    assert!(table.len() >= 12, "the table lists every endpoint: {table:?}");
    for endpoint in &table {
        let at = concrete(endpoint.path, "digits");
        let what = format!("{} {}", endpoint.method, endpoint.path);
        let (status, body) = call(&router, endpoint.method, &at, None).await;
        if endpoint.need == Need::Public {
            assert_eq!(status, StatusCode::OK, "{what} is public: {body}");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} without a key: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{what}: {body}");
        assert_eq!(call(&router, endpoint.method, &at, Some(&revoked)).await.0, StatusCode::UNAUTHORIZED, "{what}");
        let (status, body) = call(&router, endpoint.method, &at, Some(&other)).await;
        if endpoint.need == Need::AnyKey {
            assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{what}: {body}");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} with a key without the scope: {body}");
        }
        let (status, body) = call(&router, endpoint.method, &at, Some(&admin)).await;
        assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{what} as admin: {body}");
    }
    // Nothing tells a caller without the scope whether a pipeline exists.
    let (real, real_body) = call(&router, "POST", "/v2/models/digits/infer", Some(&other)).await;
    let (fake, fake_body) = call(&router, "POST", "/v2/models/nope/infer", Some(&other)).await;
    assert_eq!((real, fake), (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN));
    let shape = |v: &Value| v["error"].as_str().unwrap().replace("digits", "P").replace("nope", "P");
    assert_eq!(shape(&real_body), shape(&fake_body));
    // Server metadata lists only what the key may invoke.
    assert_eq!(call(&router, "GET", "/v2", Some(&other)).await.1["models"], serde_json::json!([]));
    assert_eq!(call(&router, "GET", "/v2", Some(&admin)).await.1["models"], serde_json::json!(["digits"]));
}

/// docs/security.md lists every endpoint with its scope, as the table says.
#[test]
fn the_documented_endpoint_table_matches_the_router() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md")).unwrap();
    for endpoint in endpoint_table() {
        let row = format!("| `{} {}` | {} |", endpoint.method, endpoint.path, endpoint.need.scope());
        assert!(doc.contains(&row), "docs/security.md lacks the row:\n{row}");
    }
}

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weir")).args(args).output().unwrap()
}

#[test]
fn keys_from_the_command_line_guard_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let manifest = dir.path().join("weir.toml");
    let components = crate::common::test_components();
    std::fs::write(
        &manifest,
        format!(
            "{components}\n[pipelines.fast]\nsteps = [{{ name = \"scale\", component = \"scale\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"scale.y\" }}\n[triggers.jobs]\npath = \"{}\"\n",
            dir.path().join("jobs.redb").display()
        ),
    )
    .unwrap();
    let manifest_arg = manifest.to_str().unwrap();
    let keys_arg = keys.to_str().unwrap();

    // No keys: refuses to start, and says how to fix it.
    let out = weir(&["serve", manifest_arg, "--listen", "127.0.0.1:0", "--keys", keys_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weir keys create"), "{out:?}");
    // --no-auth on a listener other machines can reach: refused.
    let out = weir(&["serve", manifest_arg, "--listen", "0.0.0.0:0", "--no-auth"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"), "{out:?}");

    let app = create_key(&keys, "app", &["invoke:fast"]);
    let other = create_key(&keys, "other", &["invoke:*"]);
    let ops = create_key(&keys, "ops", &["status"]);
    let root = create_key(&keys, "root", &["admin"]);
    let audit_arg = dir.path().join("audit.log");
    let listed = String::from_utf8(weir(&["keys", "--keys", keys_arg, "list"]).stdout).unwrap();
    assert!(listed.contains("app") && listed.contains("invoke:fast") && !listed.contains(&app[25..]), "{listed}");
    let server = start_with(&manifest, &["--keys", keys_arg, "--audit-log", audit_arg.to_str().unwrap()], &[]);

    let x = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    assert_eq!(request(&server, "POST", "/v2/models/fast/infer", None, Some(x)).0, 401);
    assert_eq!(request(&server, "POST", "/v2/models/fast/infer", Some(&ops), Some(x)).0, 403);
    assert_eq!(request(&server, "POST", "/v2/models/fast/infer", Some(&app), Some(x)).0, 200);
    assert_eq!(request(&server, "GET", "/metrics", Some(&app), None).0, 403);
    assert_eq!(request(&server, "GET", "/v2/status", Some(&ops), None).0, 200);
    assert_eq!(request(&server, "GET", "/v2/health/live", None, None).0, 200);

    // A job is readable by the key that submitted it, and by no other.
    let (status, accepted) = call_with(&server, "POST", "/v2/models/fast/infer", Some(&app), Some(x), true);
    assert_eq!(status, 202, "{accepted}");
    let location = accepted["location"].as_str().unwrap();
    let id = location.rsplit('/').next().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "a 128-bit random id: {id}");
    assert_eq!(request(&server, "GET", location, Some(&app), None).0, 200);
    assert_eq!(request(&server, "GET", location, Some(&other), None).0, 404);

    // Budgets count rows: a batch of 4 uses 4 of a budget of 5.
    let out = weir(&[
        "keys",
        "--keys",
        keys_arg,
        "--audit-log",
        audit_arg.to_str().unwrap(),
        "create",
        "--name",
        "batcher",
        "--scope",
        "invoke:fast",
        "--budget",
        "5",
    ]);
    assert!(out.status.success(), "{out:?}");
    let batcher = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let batch = r#"{"inputs":[{"name":"x","shape":[4,1],"datatype":"FP32","data":[1,2,3,4]}]}"#;
    let statuses: Vec<u16> = [batch, x, x]
        .iter()
        .map(|body| request(&server, "POST", "/v2/models/fast/infer", Some(&batcher), Some(body)).0)
        .collect();
    assert_eq!(statuses, [200, 200, 429], "4 + 1 rows spend a budget of 5");

    // Quotas: a burst of 2 at 0.5 requests per second, counted per pipeline.
    let limited = create_key(&keys, "limited", &["invoke:fast"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = weir(&[
        "keys",
        "--keys",
        keys_arg,
        "create",
        "--name",
        "metered",
        "--scope",
        "invoke:fast",
        "--rate",
        "0.5",
        "--burst",
        "2",
    ]);
    assert!(out.status.success(), "{out:?}");
    let metered = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let statuses: Vec<u16> =
        (0..3).map(|_| request(&server, "POST", "/v2/models/fast/infer", Some(&metered), Some(x)).0).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let mut over = agent()
        .post(format!("{}/v2/models/fast/infer", server.base))
        .header("authorization", &format!("Bearer {metered}"))
        .send(x)
        .unwrap();
    assert_eq!(over.status().as_u16(), 429);
    let wait: u64 = over.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert!(over.body_mut().read_to_string().unwrap().contains("rate of 0.5 requests per second"));
    assert_eq!(
        request(&server, "POST", "/v2/models/fast/infer", Some(&limited), Some(x)).0,
        200,
        "other keys unaffected"
    );
    let metrics = agent()
        .get(format!("{}/metrics", server.base))
        .header("authorization", &format!("Bearer {ops}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let metered_id = &metered[5..21];
    let line = format!("weir_quota_refusals_total{{key=\"{metered_id}\",pipeline=\"fast\",limit=\"rate\"}} 2");
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");

    // Revoked: refused by the running server within a second or two.
    let app_id = &app[5..21];
    let audit = audit_arg.to_str().unwrap();
    assert!(weir(&["keys", "--keys", keys_arg, "--audit-log", audit, "revoke", app_id]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(request(&server, "POST", "/v2/models/fast/infer", Some(&app), Some(x)).0, 401);

    // An erasure is audited under the subject's keyed hash, never its id.
    request(&server, "DELETE", "/v2/subjects/patient%2042", Some(&root), None);
    let key = weir_core::hash_key::HashKey::load(&dir.path().join("audit.log.key"), false).unwrap();
    let pseudonym = format!("subject:{}", &key.hash(b"patient 42")["hmac-sha256:".len()..]);
    let written = std::fs::read_to_string(&audit_arg).unwrap();
    assert!(written.contains(&format!("DELETE /v2/subjects/{pseudonym}")), "{written}");
    assert!(!written.contains("patient"), "the erased subject's id is in the audit log");

    // The audit log: who did what and how it ended; admins only.
    assert_eq!(request(&server, "GET", "/v2/audit", Some(&ops), None).0, 403);
    let (status, events) = request(&server, "GET", "/v2/audit?limit=1000", Some(&root), None);
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().unwrap();
    let seen = |key: &str, action: &str, status: u64| {
        events.iter().any(|e| e["key_id"] == key && e["action"] == action && e["status"] == status)
    };
    let infer = "POST /v2/models/fast/infer";
    assert!(seen(app_id, infer, 200) && seen(&ops[5..21], infer, 403) && seen("unauthenticated", infer, 401));
    assert!(seen(&metered[5..21], infer, 429), "quota refusals are audited");
    assert!(events.iter().any(|e| e["action"] == "keys revoke" && e["detail"].as_str().unwrap().contains(app_id)));
    assert!(events.iter().any(|e| e["action"] == "keys create" && e["detail"].as_str().unwrap().contains("root")));
    assert!(!std::fs::read_to_string(&audit_arg).unwrap().contains(&app[22..]), "no secret in the audit log");
}

/// A self-signed certificate for `localhost` with `cn`, as PEM files.
fn certificate(dir: &Path, cn: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", &format!("/CN={cn}"), "-addext", "subjectAltName=DNS:localhost"])
        .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .expect("openssl is installed (scripts/setup.sh)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// `curl` over HTTPS trusting `ca`: (HTTP status, the verbose log).
fn curl_https(url: &str, ca: &Path) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca.to_str().unwrap(), url])
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn https_with_a_certificate_that_is_reloaded_when_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path(), "first");
    let manifest = dir.path().join("weir.toml");
    let components = crate::common::test_components();
    std::fs::write(&manifest, format!("{components}\n[pipelines.p]\nsteps = [{{ name = \"s\", component = \"scale\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"s.y\" }}\n")).unwrap();
    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = start_with(&manifest, &args, &[]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}/v2/health/live");
    let (status, log) = curl_https(&url, &cert);
    assert_eq!(status, "200", "{log}");
    assert!(log.contains("CN=first") || log.contains("CN = first"), "{log}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://localhost:{port}/v2/health/live")])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    // Renewed in place: served within RECHECK (5 s) without a restart.
    let renewed = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = certificate(renewed.path(), "second");
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let _ = curl_https(&url, &cert);
    let (status, log) = curl_https(&url, &cert);
    assert_eq!(status, "200", "{log}");
    assert!(log.contains("CN=second") || log.contains("CN = second"), "{log}");

    // Broken files: a clear error at start.
    std::fs::write(&key, "not a key").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS: key file"), "{out:?}");
}

/// A key declared by hash in the manifest (`[[access.keys]]`, lines from
/// `weir keys hash`) is accepted with its scopes; the key file may be empty.
#[test]
fn keys_declared_by_hash_in_the_manifest() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    let key = create_key(&elsewhere, "ci", &["status"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["keys", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(key.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines = String::from_utf8(out.stdout).unwrap().replace("\"invoke:*\"", "\"invoke:fast\"");
    assert!(lines.contains("hash = \"sha256:") && !lines.contains(&key[22..]), "{lines}");
    let components = crate::common::test_components();
    let manifest = dir.path().join("weir.toml");
    std::fs::write(&manifest, format!("{components}\n[pipelines.fast]\nsteps = [{{ name = \"scale\", component = \"scale\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"scale.y\" }}\n\n{lines}\n")).unwrap();
    let empty = dir.path().join("keys.json");
    let server = start_with(
        &manifest,
        &["--keys", empty.to_str().unwrap(), "--audit-log", dir.path().join("audit.log").to_str().unwrap()],
        &[],
    );
    let x = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
    assert_eq!(request(&server, "POST", "/v2/models/fast/infer", Some(&key), Some(x)).0, 200);
    assert_eq!(request(&server, "GET", "/v2/status", Some(&key), None).0, 403, "the manifest's scopes, not the file's");
    // A malformed declaration stops the server with a clear error.
    std::fs::write(&manifest, format!("{components}\n[pipelines.fast]\nsteps = [{{ name = \"scale\", component = \"scale\", inputs = [\"input.x\"] }}]\noutputs = {{ y = \"scale.y\" }}\n[[access.keys]]\nid = \"nothex\"\nname = \"x\"\nhash = \"sha256:00\"\nscopes = []\n")).unwrap();
    let out =
        weir(&["serve", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0", "--keys", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("[access] keys: key id `nothex`"), "{out:?}");
}
