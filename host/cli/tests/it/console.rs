//! The web console in a real browser (Debian's headless Chromium through
//! chromedriver) against a real `weir serve` of both examples: the page
//! loads without console errors, every step and edge of digits and ride-eta
//! is drawn, live counters move when requests are sent, a failing step turns
//! red, receipts are charted with their energy method, an invocation opened
//! from the list shows its trace; a screenshot of each view is saved under
//! `target/console-screenshots/`. And the console's API without a browser:
//! scopes, bad parameters, the event stream.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use weir_access::{KeyFile, Quota, Scope};
use weir_tests::browser::{screenshot_dir, Browser};

use crate::common::server::{agent, get, post, start_with, Server};

const WAIT: Duration = Duration::from_secs(20);

/// Both examples, a pipeline whose only step always fails, one whose input
/// is sensitive, provenance on; `args` for `weir serve`.
fn serve_with(dir: &std::path::Path, args: &[&str]) -> Server {
    let step = |name: &str, mode: &str| {
        format!(
            "steps = [{{ name = \"{name}\", component = \"hostile\", inputs = [\"x=input.x\"], config = {{ mode = \"{mode}\" }} }}]"
        )
    };
    let extra = format!(
        "[provenance]\npath = \"{}\"\n[components.hostile]\nsource = \"{}\"\n\
         [pipelines.broken]\n{}\n[pipelines.broken.outputs]\ny = \"explode.x\"\n\
         [pipelines.private]\n{}\nsensitive = [\"input.x\"]\n[pipelines.private.outputs]\ny = \"echo.x\"\n",
        dir.join("records.redb").display(),
        weir_tests::HOSTILE,
        step("explode", "panic"),
        step("echo", "echo"),
    );
    start_with(&crate::common::examples_manifest(dir, &extra), args, &[])
}

fn serve(dir: &std::path::Path) -> Server {
    serve_with(dir, &[])
}

const X: &str = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;

fn example_request(example: &str) -> String {
    std::fs::read_to_string(crate::common::examples_dir().join(example).join("request.json")).unwrap()
}

fn send_traffic(server: &Server, digits: usize, rides: usize, broken: usize) {
    let (digits_request, ride_request) = (example_request("digits"), example_request("ride-eta"));
    for _ in 0..digits {
        assert_eq!(post(server, "/v2/models/digits/infer", &digits_request).0, 200);
    }
    for _ in 0..rides {
        assert_eq!(post(server, "/v2/models/ride/infer", &ride_request).0, 200);
    }
    for _ in 0..broken {
        assert_eq!(post(server, "/v2/models/broken/infer", X).0, 500, "the broken step fails");
    }
}

fn shot(browser: &Browser, name: &str) -> PathBuf {
    let path = screenshot_dir().join(format!("{name}.png"));
    browser.screenshot(&path);
    path
}

/// The ids of what the page drew for `pipeline` (`[data-node]` or `[data-edge]`).
fn drawn(browser: &Browser, pipeline: &str, attribute: &str) -> Vec<String> {
    let script = "return Array.from(document.querySelectorAll('svg.graph[data-pipeline=\"' + arguments[0] + '\"] [' + \
                  arguments[1] + ']')).map(e => e.getAttribute(arguments[1])).sort();";
    let found = browser.run(script, json!([pipeline, attribute]));
    serde_json::from_value(found).unwrap()
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    items.sort();
    items
}

#[test]
fn the_console_shows_graphs_live_traffic_receipts_and_invocations_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let Some(browser) = Browser::start() else { return };
    browser.goto(&format!("{}/ui", server.base));
    browser.wait_for("both graphs", "return document.querySelectorAll('svg.graph').length >= 3;", json!([]), WAIT);

    // Every step and every edge, as the manifests declare them.
    let ride_nodes = [
        "input:distance_km",
        "input:hour",
        "input:congestion",
        "input:driver",
        "step:features",
        "step:eta",
        "step:acceptance",
        "step:fare",
        "output:eta_minutes",
        "output:fare",
        "output:accept_probability",
    ];
    assert_eq!(drawn(&browser, "ride", "data-node"), sorted(&ride_nodes));
    let ride_edges = [
        "input:distance_km->step:features",
        "input:hour->step:features",
        "input:congestion->step:features",
        "input:driver->step:features",
        "step:features->step:eta",
        "step:features->step:acceptance",
        "input:distance_km->step:fare",
        "step:eta->step:fare",
        "input:congestion->step:fare",
        "step:eta->output:eta_minutes",
        "step:fare->output:fare",
        "step:acceptance->output:accept_probability",
    ];
    assert_eq!(drawn(&browser, "ride", "data-edge"), sorted(&ride_edges));
    let digits_nodes = [
        "input:pixels",
        "step:normalise",
        "step:classify",
        "step:top3",
        "output:label",
        "output:top_classes",
        "output:top_scores",
    ];
    assert_eq!(drawn(&browser, "digits", "data-node"), sorted(&digits_nodes));
    let digits_edges = [
        "input:pixels->step:normalise",
        "step:normalise->step:classify",
        "step:classify->step:top3",
        "step:classify->output:label",
        "step:top3->output:top_classes",
        "step:top3->output:top_scores",
    ];
    assert_eq!(drawn(&browser, "digits", "data-edge"), sorted(&digits_edges));
    // The edge labels name the tensors, as the step sees them.
    let label = browser.run(
        "return document.querySelector('[data-edge-label=\"step:eta->step:fare\"] [data-field=tensors]').textContent;",
        json!([]),
    );
    assert_eq!(label, "variable as eta_minutes");
    shot(&browser, "pipelines-idle");

    // Live counters move with traffic; the failing step turns red with its error.
    send_traffic(&server, 5, 3, 2);
    browser.wait_for(
        "live counters",
        "const n = (p, id) => (document.querySelector('svg[data-pipeline=\"' + p + '\"] [data-node=\"' + id + '\"]') || {dataset: {}}).dataset.calls;\n\
         return n('digits', 'step:classify') === '5' && n('ride', 'step:eta') === '3' && n('ride', 'step:fare') === '3';",
        json!([]),
        WAIT,
    );
    let edge_calls = browser.run(
        "return document.querySelector('[data-edge-label=\"input:pixels->step:normalise\"]').dataset.calls;",
        json!([]),
    );
    assert_eq!(edge_calls, "5", "the edge counted every request");
    let rate = browser.run(
        "return document.querySelector('[data-edge-label=\"input:pixels->step:normalise\"] [data-field=rate]').textContent;",
        json!([]),
    );
    let per_second = rate.as_str().unwrap().trim_start_matches(" · ").trim_end_matches("/s").parse::<f64>();
    assert!(per_second.is_ok(), "the edge shows its rate: {rate}");
    let failing = browser.wait_for(
        "the failing step in red",
        "const n = document.querySelector('svg[data-pipeline=\"broken\"] [data-node=\"step:explode\"]');\n\
         return n.classList.contains('failing') && n.dataset.errors === '2' && n.querySelector('title').textContent;",
        json!([]),
        WAIT,
    );
    assert!(failing.as_str().unwrap().contains("panic"), "the last error is in the step's tooltip: {failing}");
    let shown = browser.run("return document.querySelector('[data-step-error=\"explode\"]').textContent;", json!([]));
    assert!(
        shown.as_str().unwrap().contains("explode failed at") && shown.as_str().unwrap().contains("panic"),
        "{shown}"
    );
    let summary = browser.run("return document.querySelector('[data-summary=\"digits\"]').textContent;", json!([]));
    assert!(summary.as_str().unwrap().starts_with("5 calls · 0 failed"), "{summary}");
    shot(&browser, "pipelines-live");
    browser.run("document.querySelector('[data-card=\"ride\"]').scrollIntoView();", json!([]));
    shot(&browser, "pipelines-ride");

    // Receipts: charts per pipeline and step, the energy method named (modelled here).
    browser.goto(&format!("{}/ui#/receipts", server.base));
    browser.wait_for(
        "receipt charts",
        "return document.querySelectorAll('[data-card=\"digits\"] svg[data-chart=\"energy_j\"] polyline').length === 4;",
        json!([]),
        WAIT,
    );
    let method = browser.run(
        "return document.querySelector('[data-card=\"digits\"] tr[data-step=\"classify\"] [data-method]').textContent;",
        json!([]),
    );
    assert_eq!(method, "cpu-model (modelled)", "no RAPL in tests: the energy is modelled and says so");
    let calls = browser.run(
        "return document.querySelector('[data-card=\"ride\"] tr[data-step=\"eta\"] td.num').textContent;",
        json!([]),
    );
    assert_eq!(calls, "3");
    shot(&browser, "receipts");

    // Invocations: all of them, then only the failed ones through the form.
    browser.goto(&format!("{}/ui#/invocations", server.base));
    let rows = browser.wait_for(
        "the invocation list",
        "return document.querySelectorAll('tr[data-invocation]').length;",
        json!([]),
        WAIT,
    );
    assert_eq!(rows, 10, "5 digits + 3 rides + 2 failures");
    browser.run("document.querySelector('select[name=outcome]').value = 'failed';", json!([]));
    browser.click("form.search button");
    browser.wait_for(
        "only the failed invocations",
        "const rows = document.querySelectorAll('tr[data-invocation]');\n\
         return location.hash.includes('outcome=failed') && rows.length === 2 && Array.from(rows).every(r => r.dataset.outcome === 'failed');",
        json!([]),
        WAIT,
    );
    shot(&browser, "invocations");

    // One ride opened from the list shows its trace on the graph.
    browser.goto(&format!("{}/ui#/invocations?pipeline=ride", server.base));
    browser.wait_for(
        "the rides",
        "return document.querySelectorAll('tr[data-invocation]').length === 3;",
        json!([]),
        WAIT,
    );
    browser.click("tr[data-invocation] a");
    let id = browser.wait_for(
        "the trace",
        "const g = document.querySelector('svg[data-trace]'); return g && g.dataset.trace;",
        json!([]),
        WAIT,
    );
    let (status, record) = get(&server, &format!("/v2/invocations/{}", id.as_str().unwrap()));
    assert_eq!(status, 200);
    let features = record["steps"].as_array().unwrap().iter().find(|s| s["step"] == "features").unwrap();
    let distance = features["inputs"].as_array().unwrap().iter().find(|t| t["name"] == "distance_km").unwrap();
    let label = browser.run(
        "return document.querySelector('[data-edge-label=\"input:distance_km->step:features\"] [data-field=tensors]').textContent;",
        json!([]),
    );
    assert_eq!(label, "distance_km FP32[2]", "the edge shows its tensor and shape");
    let hash = browser.run(
        "return document.querySelector('[data-edge-row=\"input:distance_km->step:features\"] code').textContent;",
        json!([]),
    );
    assert_eq!(hash, distance["sha256"], "the edge table shows the recorded hash");
    let eta = browser.run(
        "return document.querySelector('[data-edge-label=\"step:features->step:eta\"] [data-field=tensors]').textContent;",
        json!([]),
    );
    assert!(eta.as_str().unwrap().starts_with("x FP32[2,"), "the feature block reaches eta as x: {eta}");
    let timing = browser.run(
        "return document.querySelector('svg[data-trace] [data-node=\"step:fare\"] [data-field=live]').textContent;",
        json!([]),
    );
    assert!(timing.as_str().unwrap().starts_with("at +") && timing.as_str().unwrap().contains("wall"), "{timing}");
    let provenance = browser.run("return document.querySelector('[data-provenance]').textContent;", json!([]));
    let digest = features["component_digest"].as_str().unwrap();
    assert!(provenance.as_str().unwrap().contains(digest), "the provenance names the component digest");
    let receipt_rows = browser.run("return document.querySelectorAll('[data-receipt] tr').length;", json!([]));
    assert_eq!(receipt_rows, 6, "a header, the 4 steps, the total");
    shot(&browser, "invocation");

    // A sensitive tensor shows only its keyed hash.
    assert_eq!(post(&server, "/v2/models/private/infer", X).0, 200);
    browser.goto(&format!("{}/ui#/invocations?pipeline=private", server.base));
    browser.wait_for(
        "the private invocation",
        "return document.querySelectorAll('tr[data-invocation]').length === 1;",
        json!([]),
        WAIT,
    );
    browser.click("tr[data-invocation] a");
    let hash = browser.wait_for(
        "the sensitive edge",
        "const c = document.querySelector('[data-edge-row=\"input:x->step:echo\"] code'); return c && c.textContent;",
        json!([]),
        WAIT,
    );
    assert!(hash.as_str().unwrap().starts_with("hmac-sha256:"), "{hash}");
    let dashed = browser.run("return document.querySelector('svg[data-trace] [data-edge=\"input:x->step:echo\"]').classList.contains('sensitive');", json!([]));
    assert_eq!(dashed, true, "a sensitive edge is drawn as one");

    // Residency: every component the traffic loaded is warm.
    browser.goto(&format!("{}/ui#/residency", server.base));
    browser.wait_for(
        "warm components",
        "return document.querySelectorAll('tr[data-state=\"warm\"]').length;",
        json!([]),
        WAIT,
    );
    for component in ["scale", "classify", "topk", "concat", "model", "fare"] {
        let state = browser.run(
            &format!("return document.querySelector('tr[data-component=\"{component}\"]').dataset.state;"),
            json!([]),
        );
        assert_eq!(state, "warm", "{component}");
    }
    shot(&browser, "residency");

    let errors = browser.console_errors();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
}

#[test]
fn the_console_api_answers_with_scopes_bounds_and_a_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    send_traffic(&server, 2, 1, 1);

    let (status, layouts) = get(&server, "/v2/console/pipelines");
    assert_eq!(status, 200);
    let names: Vec<&str> = layouts.as_array().unwrap().iter().map(|l| l["pipeline"].as_str().unwrap()).collect();
    assert_eq!(names, ["broken", "digits", "private", "ride"]);

    let (status, live) = get(&server, "/v2/console/live?window=60");
    assert_eq!(status, 200);
    let digits = live["pipelines"].as_array().unwrap().iter().find(|p| p["pipeline"] == "digits").unwrap();
    assert_eq!(digits["invocations"]["total_calls"], 2);
    let classify = digits["steps"].as_array().unwrap().iter().find(|s| s["step"] == "classify").unwrap();
    assert_eq!(classify["total_calls"], 2);
    assert!(classify["p50_us"].as_f64().unwrap() > 0.0, "{classify}");
    assert!(classify["cpu_us_per_call"].as_f64().unwrap() > 0.0);
    let broken = live["pipelines"].as_array().unwrap().iter().find(|p| p["pipeline"] == "broken").unwrap();
    assert_eq!(broken["steps"][0]["total_errors"], 1);
    assert_eq!(broken["invocations"]["error_rate"], 1.0);

    // The board's history agrees with the receipts the provenance store kept.
    let (_, history) = get(&server, "/v2/console/receipts");
    let digits_history = history["pipelines"].as_array().unwrap().iter().find(|p| p["pipeline"] == "digits").unwrap();
    let (_, records) = get(&server, "/v2/console/invocations?pipeline=digits");
    for step in ["normalise", "classify", "top3"] {
        let board: u64 = digits_history["steps"].as_array().unwrap().iter().find(|s| s["step"] == step).unwrap()
            ["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["cpu_us"].as_u64().unwrap())
            .sum();
        let recorded: u64 = records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let (_, record) = get(&server, &format!("/v2/invocations/{}", r["invocation_id"].as_str().unwrap()));
                let receipt =
                    record["receipt"]["steps"].as_array().unwrap().iter().find(|s| s["step"] == step).cloned();
                receipt.unwrap()["cpu_us"].as_u64().unwrap()
            })
            .sum();
        assert_eq!(board, recorded, "{step}: the board's CPU equals the receipts'");
    }

    let (status, found) = get(&server, "/v2/console/invocations?outcome=failed");
    assert_eq!(status, 200);
    assert_eq!(found.as_array().unwrap().len(), 1);
    let failed = &found[0];
    let (_, record) = get(&server, &format!("/v2/invocations/{}", failed["invocation_id"].as_str().unwrap()));
    assert_eq!(record["error"]["step"], "explode", "the failed invocation's record names its step: {record}");
    assert_eq!(record["error"]["kind"], "step-failed");
    let steps = record["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "the failed step is recorded with its inputs: {record}");
    assert_eq!((steps[0]["step"].as_str(), steps[0]["inputs"][0]["shape"].clone()), (Some("explode"), json!([1])));

    for (query, wanted) in [
        ("/v2/console/live?window=0", "window must be a whole number from 1 to 60"),
        ("/v2/console/live?window=ten", "window must be"),
        ("/v2/console/invocations?outcome=maybe", "outcome must be `ok`, `failed` or `any`"),
        ("/v2/console/invocations?limit=0", "limit must be a whole number from 1 to 1000"),
        ("/v2/console/invocations?since=yesterday", "since must be"),
        ("/v2/console/events?every=5", "every must be a whole number from 100"),
    ] {
        let (status, body) = get(&server, query);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(wanted), "{query}: {body}");
    }
    let (status, body) = get(&server, "/ui/..%2F..%2FCargo.toml");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("the console has no file `../../Cargo.toml`"), "{body}");

    // The page: public, with its policy; its files are the binary's own.
    let mut page = agent().get(format!("{}/ui", server.base)).call().unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
    assert!(page.body_mut().read_to_string().unwrap().contains("/ui/console.js"));

    // The event stream sends a `live` event at once, then one per `every`.
    let mut stream = agent().get(format!("{}/v2/console/events?every=200", server.base)).call().unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut reader = stream.body_mut().as_reader();
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while seen.matches("event: live").count() < 2 {
        let n = reader.read(&mut buffer).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let data = seen.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let snapshot: Value = serde_json::from_str(data).unwrap();
    assert_eq!(snapshot["window_secs"], 10);

    // Open streams are bounded: the 33rd is refused while 32 are open, and
    // served again once one closes.
    let open: Vec<_> =
        (0..31).map(|_| agent().get(format!("{}/v2/console/events", server.base)).call().unwrap()).collect();
    assert!(open.iter().all(|r| r.status() == 200));
    let (status, body) = get(&server, "/v2/console/events");
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("32 event streams are open already"), "{body}");
    drop(stream);
    let reopened = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let response = agent().get(format!("{}/v2/console/events", server.base)).call().unwrap();
        (response.status() == 200).then_some(response)
    });
    assert!(reopened.is_some(), "a closed stream gives its place back");
    drop(open);
}

#[test]
fn the_console_works_with_a_read_only_key_and_says_what_a_key_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let mut file = KeyFile::default();
    let (_, viewer) = file.create("viewer", vec![Scope::Status, Scope::ReadRecords], Quota::default()).unwrap();
    let (_, status_only) = file.create("status", vec![Scope::Status], Quota::default()).unwrap();
    let (_, invoker) = file.create("app", vec![Scope::Invoke(None)], Quota::default()).unwrap();
    file.save(&keys).unwrap();
    let audit = dir.path().join("audit.log");
    let server = serve_with(dir.path(), &["--keys", keys.to_str().unwrap(), "--audit-log", audit.to_str().unwrap()]);
    let mut response = agent()
        .post(format!("{}/v2/models/digits/infer", server.base))
        .header("authorization", format!("Bearer {invoker}"))
        .send(example_request("digits"))
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.body_mut().read_to_string().unwrap());
    let Some(browser) = Browser::start() else { return };
    let use_key = |key: &str| {
        browser.run("document.getElementById('key').value = arguments[0];", json!([key]));
        browser.click("#key-form button");
    };

    // Without a key the page loads and says what it needs.
    browser.goto(&format!("{}/ui", server.base));
    let error = browser.wait_for(
        "the 401",
        "const e = document.querySelector('[data-error]'); return e && e.textContent;",
        json!([]),
        WAIT,
    );
    assert!(error.as_str().unwrap().contains("Enter an API key"), "{error}");

    // A status + records:read key sees everything.
    use_key(&viewer);
    browser.wait_for("the graphs", "return document.querySelectorAll('svg.graph').length === 4;", json!([]), WAIT);
    browser.wait_for(
        "the live figures",
        "const s = document.querySelector('[data-summary=\"digits\"]'); return s && s.dataset.calls === '1';",
        json!([]),
        WAIT,
    );
    browser.goto(&format!("{}/ui#/invocations", server.base));
    browser.wait_for(
        "the invocation",
        "return document.querySelectorAll('tr[data-invocation]').length === 1;",
        json!([]),
        WAIT,
    );

    // A status-only key sees the graphs, and is told it lacks the scope for invocations.
    use_key(&status_only);
    browser.goto(&format!("{}/ui#/invocations", server.base));
    let refused = browser.wait_for(
        "the 403",
        "const e = document.querySelector('[data-error=\"403\"]'); return e && e.textContent;",
        json!([]),
        WAIT,
    );
    assert!(refused.as_str().unwrap().contains("records:read"), "{refused}");
    shot(&browser, "invocations-forbidden");
    let errors = browser.console_errors();
    let unexpected: Vec<&String> = errors.iter().filter(|e| !e.contains(" 401 ") && !e.contains(" 403 ")).collect();
    assert!(unexpected.is_empty(), "the page logged errors besides the refusals it was sent: {errors:#?}");
}

#[test]
fn invocations_cut_off_by_the_time_limit_are_counted_and_recorded_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = format!(
        "[provenance]\npath = \"{}\"\n[triggers.http]\ntimeout = \"1s\"\n\
         [pipelines.slow]\nsteps = [{{ name = \"nap\", component = \"hostile\", inputs = [\"x=input.x\"], \
         config = {{ mode = \"sleep\", ms = 4000 }} }}]\n[pipelines.slow.outputs]\ny = \"nap.x\"\n",
        dir.path().join("records.redb").display()
    );
    let server = start_with(&crate::common::manifest_with_components(dir.path(), &pipelines), &[], &[]);
    let (status, body) = post(&server, "/v2/models/slow/infer", X);
    assert_eq!(status, 504, "{body}");
    let (_, live) = get(&server, "/v2/console/live");
    let slow = &live["pipelines"][0];
    assert_eq!(
        (slow["pipeline"].as_str(), slow["invocations"]["total_errors"].as_u64()),
        (Some("slow"), Some(1)),
        "{live}"
    );
    let (_, found) = get(&server, "/v2/console/invocations?outcome=failed");
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let (_, record) = get(&server, &format!("/v2/invocations/{}", found[0]["invocation_id"].as_str().unwrap()));
    assert_eq!(record["error"]["kind"], "timed-out", "{record}");
    assert!(record["error"]["message"].as_str().unwrap().contains("cancelled"), "{record}");
    assert_eq!(record["steps"][0]["step"], "nap", "the step it was cut off in is recorded with its inputs: {record}");
}

#[test]
fn the_console_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with(dir.path(), &["--no-console"]);
    for path in ["/ui", "/ui/console.js", "/v2/console/pipelines", "/v2/console/live", "/v2/console/events"] {
        let (status, body) = get(&server, path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("--no-console"), "{path}: {body}");
    }
    // Everything else serves as before.
    assert_eq!(post(&server, "/v2/models/digits/infer", &example_request("digits")).0, 200);
}
