//! Experiments and hot reloads, end to end on `weir serve`: the rollout
//! example's canary promoting a retrained ETA model and rolling back a bad
//! one; sticky splits recorded per variant; shadows off the callers' path,
//! failing and dropped without a caller noticing; shared steps run once;
//! reloads under load without a failed request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::server::{agent, get, metrics, post, start, Server};
use crate::common::{example_manifest, examples_dir, test_components};

/// The rollout example's manifest (sources absolute, no listener), its
/// experiment replaced by `experiment` when given.
fn rollout_manifest(dir: &Path, experiment: Option<&str>) -> PathBuf {
    let mut skip = vec!["[triggers"];
    if experiment.is_some() {
        skip.extend(["[experiments", "[[experiments"]);
    }
    example_manifest(dir, &["rollout"], &skip, experiment.unwrap_or_default())
}

/// Held-out ride requests (one trip each), as the example's tests send them.
fn rides() -> Vec<String> {
    let test: Value =
        serde_json::from_str(&std::fs::read_to_string(examples_dir().join("ride-eta/ride_test.json")).unwrap())
            .unwrap();
    test["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let r: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            json!({"inputs": [
                {"name": "distance_km", "shape": [1], "datatype": "FP32", "data": [r[0]]},
                {"name": "hour", "shape": [1], "datatype": "FP32", "data": [r[1]]},
                {"name": "congestion", "shape": [1], "datatype": "FP32", "data": [r[2]]},
                {"name": "driver", "shape": [1, 3], "datatype": "FP32", "data": [[r[3], r[4], r[5]]]}
            ]})
            .to_string()
        })
        .collect()
}

/// One ride request as rider `rider`: the status, the variant header and the body.
fn ride(server: &Server, body: &str, rider: &str) -> (u16, Option<String>, Value) {
    let mut response = agent()
        .post(format!("{}/v2/models/ride/infer", server.base))
        .header("content-type", "application/json")
        .header("x-rider", rider)
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let variant = response.headers().get("weir-variant").map(|v| v.to_str().unwrap().to_string());
    (status, variant, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap())
}

fn experiment(server: &Server, name: &str) -> Value {
    let (status, body) = get(server, &format!("/v2/experiments/{name}"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The experiment once every queued shadow copy has finished.
fn settled(server: &Server, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = experiment(server, name);
        let shadow = &status["shadow"];
        if shadow["finished"] == shadow["queued"] {
            return status;
        }
        assert!(Instant::now() < deadline, "queued shadow copies never all finished: {status:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn variant<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["variants"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap()
}

#[test]
fn the_canary_promotes_a_good_challenger_and_a_reload_brings_a_bad_one_that_it_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = rollout_manifest(dir.path(), None);
    let server = start(&manifest);
    let rides = rides();
    let mut sent = 0;
    let mut answered_by = std::collections::HashMap::<String, u64>::new();
    while experiment(&server, "eta-canary")["phase"] == "running" {
        assert!(sent < 1000, "the canary neither promoted nor rolled back after {sent} requests");
        let (status, served, body) = ride(&server, &rides[sent % rides.len()], &format!("rider-{sent}"));
        assert_eq!(status, 200, "{body}");
        let served = served.expect("an experiment's answer names its variant");
        assert_eq!(body["parameters"]["receipt"]["variant"]["variant"], served.split('/').nth(1).unwrap());
        *answered_by.entry(served).or_default() += 1;
        sent += 1;
    }
    let status = settled(&server, "eta-canary");
    assert_eq!(status["phase"], "promoted", "{status:#}");
    let decisions: Vec<&str> =
        status["decisions"].as_array().unwrap().iter().map(|d| d["action"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["advance", "advance", "advance", "promote"], "{status:#}");
    for decision in status["decisions"].as_array().unwrap() {
        let figures = &decision["figures"];
        assert!(figures["runs"].as_u64().unwrap() >= 40 && figures["agreement"].as_f64().unwrap() >= 0.9, "{decision}");
        assert_eq!(decision["by"], "gate");
    }
    // What the status counts is what callers were answered by.
    assert_eq!(variant(&status, "v2")["served"].as_u64(), answered_by.get("eta-canary/v2").copied(), "{answered_by:?}");
    assert_eq!(variant(&status, "v2")["shared_steps"], json!(["features", "acceptance"]));
    // Promoted: every request is the challenger's now.
    for body in rides.iter().take(5) {
        assert_eq!(ride(&server, body, "anyone").1.as_deref(), Some("eta-canary/v2"));
    }
    println!("promoted after {sent} requests: {answered_by:?}");

    // A "retrained" model with a feature bug arrives as a new challenger.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let bad =
        text.replace("name = \"v2\"\nmodels = { eta = \"eta@v2\" }", "name = \"bad\"\nmodels = { eta = \"eta@bad\" }");
    assert_ne!(text, bad);
    std::fs::write(&manifest, bad).unwrap();
    let (status, reloaded) = post(&server, "/v2/admin/reload", "");
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded["generation"], 2);
    let mut before_rollback = 0;
    let mut bad_answers = 0;
    while experiment(&server, "eta-canary")["phase"] == "running" {
        assert!(before_rollback < 500, "the bad challenger was not rolled back after {before_rollback} requests");
        let (status, served, body) =
            ride(&server, &rides[before_rollback % rides.len()], &format!("r{before_rollback}"));
        assert_eq!(status, 200, "{body}");
        bad_answers += u64::from(served.as_deref() == Some("eta-canary/bad"));
        before_rollback += 1;
    }
    let status = settled(&server, "eta-canary");
    assert_eq!(status["phase"], "rolled-back", "{status:#}");
    let decision = &status["decisions"][0];
    assert_eq!((decision["action"].as_str(), decision["by"].as_str()), (Some("rollback"), Some("gate")));
    assert!(decision["reason"].as_str().unwrap().contains("agreement on `eta_minutes`"), "{decision}");
    assert_eq!(variant(&status, "bad")["served"].as_u64(), Some(bad_answers));
    // At 5% over the few requests the gate needed, the bad model answered almost nobody.
    assert!(
        bad_answers * 10 <= before_rollback as u64 + 10,
        "{bad_answers} of {before_rollback} answered by the bad model"
    );
    println!("rolled back after {before_rollback} requests, {bad_answers} answered by the bad challenger: {decision}");
    for body in rides.iter().take(5) {
        assert_eq!(ride(&server, body, "anyone").1.as_deref(), Some("eta-canary/champion"));
    }
    let text = metrics(&server);
    assert!(
        text.contains("weir_experiment_share_percent{experiment=\"eta-canary\",variant=\"champion\"} 100"),
        "{text}"
    );
}

/// The rollout example's pipeline, with `[provenance]` and an experiment of the test's.
fn with_experiment(dir: &Path, experiment: &str) -> PathBuf {
    let provenance = format!("[provenance]\npath = \"{}\"\nkeep_tensors = true\n", dir.join("records.redb").display());
    rollout_manifest(dir, Some(&format!("{provenance}\n{experiment}")))
}

#[test]
fn a_sticky_split_keeps_each_caller_on_one_variant_and_every_record_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = with_experiment(
        dir.path(),
        "[experiments.split]\npipeline = \"ride\"\nmode = \"split\"\nsticky = \"parameter:rider\"\n\
         [[experiments.split.variants]]\nname = \"v2\"\nmodels = { eta = \"eta@v2\" }\nweight = 50\n",
    );
    let server = start(&manifest);
    let body: Value = serde_json::from_str(&rides()[0]).unwrap();
    let as_rider = |rider: usize| {
        let mut request = body.clone();
        request["parameters"] = json!({ "rider": format!("rider-{rider}") });
        let (status, answer) = post(&server, "/v2/models/ride/infer", &request.to_string());
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let mut v2 = 0;
    for rider in 0..60 {
        let answers: Vec<String> = (0..3)
            .map(|_| as_rider(rider)["parameters"]["receipt"]["variant"]["variant"].as_str().unwrap().to_string())
            .collect();
        assert!(answers.iter().all(|a| *a == answers[0]), "rider {rider} met {answers:?}");
        v2 += usize::from(answers[0] == "v2");
    }
    assert!((15..=45).contains(&v2), "{v2} of 60 riders on a 50% challenger");
    let status = experiment(&server, "split");
    assert_eq!(variant(&status, "v2")["served"].as_u64(), Some(3 * v2 as u64));
    assert_eq!(variant(&status, "champion")["served"].as_u64(), Some(3 * (60 - v2) as u64));
    // The provenance record says who answered, as the receipt did.
    let answer = as_rider(7);
    let id = answer["parameters"]["receipt"]["invocation_id"].as_str().unwrap();
    let (status, record) = get(&server, &format!("/v2/invocations/{id}"));
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["variant"], answer["parameters"]["receipt"]["variant"], "{record}");
    assert_eq!(record["variant"]["experiment"], "split");
    let text = metrics(&server);
    let line = format!(
        "weir_experiment_runs_total{{experiment=\"split\",variant=\"v2\",kind=\"served\"}} {}",
        3 * v2 + usize::from(answer["parameters"]["receipt"]["variant"]["variant"] == "v2")
    );
    assert!(text.contains(&line), "no `{line}` in:\n{text}");
    // An operator can stop it and promote a variant by name.
    let (status, stopped) = post(&server, "/v2/experiments/split/stop", "");
    assert_eq!((status, stopped["phase"].as_str()), (200, Some("stopped")));
    assert_eq!(as_rider(1)["parameters"]["receipt"]["variant"]["variant"], "champion");
    let (status, promoted) = post(&server, "/v2/experiments/split/promote?variant=v2", "");
    assert_eq!((status, promoted["phase"].as_str()), (200, Some("promoted")), "{promoted}");
    assert_eq!(as_rider(1)["parameters"]["receipt"]["variant"]["variant"], "v2");
    let (status, error) = post(&server, "/v2/experiments/split/promote?variant=v9", "");
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("no variant `v9`"), "{error}");
    let (status, error) = post(&server, "/v2/experiments/split/explode", "");
    assert_eq!(status, 404);
    assert!(error["error"].as_str().unwrap().contains("use start, stop, promote or rollback"), "{error}");
    assert_eq!(get(&server, "/v2/experiments/nope").0, 404);
}

#[test]
fn shadow_copies_share_steps_with_the_answer_and_the_saving_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = |share: bool| {
        format!(
            "[experiments.mirror]\npipeline = \"ride\"\nmode = \"shadow\"\nshare_steps = {share}\nshadow_queue = 1000\n\
             compare = {{ output = \"eta_minutes\", tolerance = 3.0 }}\n\
             [[experiments.mirror.variants]]\nname = \"v2\"\nmodels = {{ eta = \"eta@v2\" }}\n"
        )
    };
    let manifest = with_experiment(dir.path(), &mirror(true));
    let server = start(&manifest);
    let rides = rides();
    let mut figures = Vec::new();
    for share in [true, false] {
        if !share {
            std::fs::write(
                &manifest,
                std::fs::read_to_string(&manifest).unwrap().replace(&mirror(true), &mirror(false)),
            )
            .unwrap();
            assert_eq!(post(&server, "/v2/admin/reload", "").0, 200);
        }
        for (i, body) in rides.iter().take(40).enumerate() {
            let (status, served, answer) = ride(&server, body, &format!("r{i}"));
            assert_eq!((status, served.as_deref()), (200, Some("mirror/champion")));
            assert_eq!(answer["parameters"]["receipt"]["variant"]["variant"], "champion");
        }
        let status = settled(&server, "mirror");
        let (champion, v2) = (variant(&status, "champion"), variant(&status, "v2"));
        assert_eq!((champion["served"].as_u64(), v2["shadowed"].as_u64()), (Some(40), Some(40)), "{status:#}");
        assert_eq!(champion["steps_per_run"], 4.0);
        // Sharing, the copy reruns only `eta` and `fare`; without, all four steps.
        assert_eq!(v2["shadow_steps_per_run"], if share { 2.0 } else { 4.0 }, "{status:#}");
        assert!(v2["agreement"].as_f64().unwrap() >= 0.9, "{v2}");
        figures.push((share, champion["cpu_us_per_run"].clone(), v2["shadow_cpu_us_per_run"].clone()));
    }
    println!("share_steps, champion CPU µs per request, challenger shadow CPU µs per request: {figures:?}");
}

#[test]
fn shadows_never_slow_or_fail_a_caller_and_a_full_queue_drops_them_counted() {
    let dir = tempfile::tempdir().unwrap();
    let echo = |name: &str, config: &str| {
        format!(
            "[[pipelines.\"{name}\".steps]]\nname = \"s\"\ncomponent = \"hostile\"\ninputs = [\"input.x\"]\nconfig = {config}\n\
             [pipelines.\"{name}\".outputs]\nx = \"s.x\"\n"
        )
    };
    let text = format!(
        "{}{}{}{}[experiments.mirror]\npipeline = \"echo\"\nmode = \"shadow\"\nshadow_queue = 2\n\
         [[experiments.mirror.variants]]\nname = \"sleepy\"\npipeline = \"echo@sleepy\"\n\
         [[experiments.mirror.variants]]\nname = \"broken\"\npipeline = \"echo@broken\"\n",
        test_components(),
        echo("echo", "{ mode = \"echo\" }"),
        echo("echo@sleepy", "{ mode = \"sleep\", ms = 400 }"),
        echo("echo@broken", "{ mode = \"panic\" }"),
    );
    let manifest = dir.path().join("weir.toml");
    std::fs::write(&manifest, text).unwrap();
    let server = start(&manifest);
    let request = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]}]}"#;
    for _ in 0..20 {
        let (status, answer) = post(&server, "/v2/models/echo/infer", request);
        assert_eq!(status, 200, "a shadow's failure reached the caller: {answer}");
        // The caller waited for the echo only, never for the 400 ms copy.
        assert!(answer["parameters"]["receipt"]["wall_us"].as_u64().unwrap() < 400_000, "{answer}");
        assert_eq!(answer["outputs"][0]["data"], json!([1.0, 2.0]));
    }
    let status = settled(&server, "mirror");
    let shadow = &status["shadow"];
    let (queued, dropped) = (shadow["queued"].as_u64().unwrap(), shadow["dropped"].as_u64().unwrap());
    assert_eq!(queued + dropped, 40, "two copies of each of 20 requests: {status:#}");
    assert!(dropped > 0, "a two-place queue behind 400 ms copies must drop some: {status:#}");
    assert_eq!(shadow["held_bytes"], 0, "every finished copy gave its tensors back: {status:#}");
    let broken = variant(&status, "broken");
    assert!(broken["shadowed"].as_u64().unwrap() > 0 && broken["error_rate"] == 1.0, "{broken}");
    assert_eq!(variant(&status, "champion")["served"], 20);
    let line = format!("weir_experiment_shadow_dropped_total{{experiment=\"mirror\"}} {dropped}");
    assert!(metrics(&server).contains(&line), "no `{line}`");
}

#[test]
fn reloads_under_load_fail_no_request_and_a_bad_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = rollout_manifest(dir.path(), Some(""));
    let original = std::fs::read_to_string(&manifest).unwrap();
    let server = Arc::new(start(&manifest));
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..3)
        .map(|worker| {
            let (server, stop, answered, failed) = (server.clone(), stop.clone(), answered.clone(), failed.clone());
            let rides = rides();
            std::thread::spawn(move || {
                let mut i = worker;
                while !stop.load(Ordering::Relaxed) {
                    let (status, _, body) = ride(&server, &rides[i % rides.len()], "load");
                    if status == 200 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed during a reload: {status} {body}");
                    }
                    i += 3;
                }
            })
        })
        .collect();
    let reload = |text: &str| {
        std::fs::write(&manifest, text).unwrap();
        post(&server, "/v2/admin/reload", "")
    };
    let canary = "[experiments.c]\npipeline = \"ride\"\nmode = \"split\"\n[[experiments.c.variants]]\nname = \"v2\"\n\
                  models = { eta = \"eta@v2\" }\nweight = 50\n";
    let declared = &original[original.find("[pipelines.ride]").unwrap()..];
    let pipeline_v3 = declared
        .replace("[pipelines.ride]", "[pipelines.\"ride@v3\"]")
        .replace("pipelines.ride.", "pipelines.\"ride@v3\".");
    let mut generation = 1;
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = reload(&format!("{original}\n{canary}\n{pipeline_v3}"));
        assert_eq!(status, 200, "round {round}: {body}");
        generation += 1;
        assert_eq!(body["generation"], generation);
        assert_eq!(body["pipelines"], json!(["ride", "ride@v3"]));
        // The new version is served by the protocol's version path.
        let (status, answer) = post(&server, "/v2/models/ride/versions/v3/infer", &rides()[0]);
        assert_eq!((status, answer["model_name"].as_str()), (200, Some("ride@v3")), "{answer}");
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = reload(&original);
        assert_eq!(status, 200, "{body}");
        generation += 1;
        assert_eq!(post(&server, "/v2/models/ride/versions/v3/infer", &rides()[0]).0, 404);
    }
    // Refused, each saying why, and the running manifest stays.
    let (status, body) = reload(&format!("{original}\n[pipelines.broken]\nsteps = 3\n"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("weir.toml:"), "{body}");
    let (status, body) = reload(&format!("{original}\n[triggers.http]\nlisten = \"127.0.0.1:1\"\n"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("[triggers] changed; restart weir serve"), "{body}");
    // A model may not change under a name in use (both generations share it): a new version may.
    let swapped = original.replace("eta_v2.onnx", "eta_bad.onnx");
    let (status, body) = reload(&swapped);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("model `eta@v2` changed; declare the new one as a new version"),
        "{body}"
    );
    let fuel = original.replace(
        "name = \"fare\"\ncomponent = \"fare\"",
        "name = \"fare\"\ncomponent = \"fare\"\nlimits = { fuel = 100000000 }",
    );
    assert_ne!(fuel, original);
    let (status, body) = reload(&fuel);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("without fuel metering; restart"), "{body}");
    let missing = original.replace("eta_v2.onnx", "eta_v9.onnx");
    let (status, body) = reload(&missing);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("eta_v9.onnx"), "{body}");
    // SIGHUP reloads too (the file is back to a good one).
    std::fs::write(&manifest, format!("{original}\n{canary}")).unwrap();
    let pid = server.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&server, "/v2/experiments/c").0 != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the manifest");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    load.into_iter().for_each(|t| t.join().unwrap());
    let (answered, failed) = (answered.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{answered} requests answered across {generation} generations, {failed} failed");
    assert_eq!(failed, 0);
    assert!(answered > 20, "the load ran: {answered}");
}

#[test]
fn an_invocation_in_flight_finishes_on_the_manifest_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |mode: &str| {
        format!(
            "{}[[pipelines.p.steps]]\nname = \"s\"\ncomponent = \"hostile\"\ninputs = [\"input.x\"]\n\
             config = {{ mode = \"{mode}\", ms = 1500 }}\n[pipelines.p.outputs]\nx = \"s.x\"\n",
            test_components()
        )
    };
    let manifest = dir.path().join("weir.toml");
    std::fs::write(&manifest, pipeline("sleep")).unwrap();
    let server = Arc::new(start(&manifest));
    let request = r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[7]}]}"#;
    let slow = {
        let server = server.clone();
        std::thread::spawn(move || post(&server, "/v2/models/p/infer", request))
    };
    std::thread::sleep(Duration::from_millis(300));
    // The pipeline changes under the running invocation: it no longer sleeps.
    std::fs::write(&manifest, pipeline("echo")).unwrap();
    assert_eq!(post(&server, "/v2/admin/reload", "").0, 200);
    let started = Instant::now();
    let (status, answer) = post(&server, "/v2/models/p/infer", request);
    assert_eq!(status, 200, "{answer}");
    assert!(started.elapsed() < Duration::from_millis(1000), "a new request runs the new manifest (no sleep)");
    let (status, answer) = slow.join().unwrap();
    assert_eq!(status, 200, "the invocation started before the reload finished: {answer}");
    assert!(answer["parameters"]["receipt"]["wall_us"].as_u64().unwrap() >= 1_500_000, "it slept: {answer}");
}

#[test]
fn watch_reloads_when_the_file_changes_and_keeps_serving_through_a_bad_edit() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = rollout_manifest(dir.path(), Some(""));
    let original = std::fs::read_to_string(&manifest).unwrap();
    let server = crate::common::server::start_with(&manifest, &["--watch"], &[]);
    let wait_for = |path: &str, want: u16| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&server, path).0 != want {
            assert!(Instant::now() < deadline, "{path} never answered {want} after the edit");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A broken edit is refused: the running manifest keeps answering.
    std::fs::write(&manifest, format!("{original}\n[pipelines.broken\n")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ride(&server, &rides()[0], "r").0, 200);
    // A good edit (a step-level challenger: another version of `fare`) is picked up.
    let fare = original.lines().skip_while(|l| *l != "[components.fare]").nth(1).unwrap().to_string();
    let step_level = format!(
        "{original}\n[components.\"fare@v2\"]\n{fare}\n[experiments.s]\npipeline = \"ride\"\nmode = \"shadow\"\n\
         [[experiments.s.variants]]\nname = \"fare2\"\ncomponents = {{ fare = \"fare@v2\" }}\n"
    );
    std::fs::write(&manifest, step_level).unwrap();
    wait_for("/v2/experiments/s", 200);
    for body in rides().iter().take(10) {
        assert_eq!(ride(&server, body, "r").0, 200);
    }
    let status = settled(&server, "s");
    let fare2 = variant(&status, "fare2");
    // Only the swapped step runs in the copy; everything upstream is the champion's.
    assert_eq!(
        (fare2["shadowed"].as_u64(), fare2["shadow_steps_per_run"].as_f64()),
        (Some(10), Some(1.0)),
        "{status:#}"
    );
    assert_eq!(fare2["shared_steps"], json!(["features", "eta", "acceptance"]));
    assert_eq!(fare2["agreement"], 1.0, "the same fare code agrees with itself");
}

#[test]
fn weir_experiment_and_weir_reload_talk_to_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = rollout_manifest(dir.path(), None);
    let server = start(&manifest);
    let weir = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--url", &server.base]);
        crate::common::weir(&all, None)
    };
    let out = weir(&["experiment", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.contains("eta-canary") && listed.contains("canary") && listed.contains("v2 5%"), "{listed}");
    let out = weir(&["experiment", "promote", "eta-canary"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["phase"], "promoted");
    assert_eq!(shown["decisions"][0]["by"], "operator");
    let out = weir(&["experiment", "show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no experiment named `nope`"));
    let out = weir(&["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["generation"], 2);
}
