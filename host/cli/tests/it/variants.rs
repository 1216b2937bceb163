//! A model with variants (FP32, INT8, a smaller network, made by
//! examples/models/train.py): a host serves the one that best meets the
//! stated objective on its own architecture, names it in every receipt
//! and in `/v2/status`, and refuses clearly when none may serve there.

use std::path::{Path, PathBuf};

use crate::common::server::{get, post, start_with};
use crate::common::{example_manifest, examples_dir, weir};
use crate::models::{held_out_accuracy_of, models_dir};
use weir_core::Digest;

/// What the training script measured of each variant: name, file, accuracy.
pub fn declared() -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(models_dir().join("digits_variants.json")).unwrap();
    let table: serde_json::Value = serde_json::from_str(&text).unwrap();
    table["variants"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| (name.clone(), v["file"].as_str().unwrap().into(), v["accuracy"].as_f64().unwrap()))
        .collect()
}

/// A `[models.digits]` block with every declared variant; `choice` goes
/// under the header, `targets` restricts the variants it names.
pub fn variants_block(choice: &str, targets: &[(&str, &str)]) -> String {
    let mut text = format!("\n[models.digits]\n{choice}\n");
    for (name, file, accuracy) in declared() {
        let source = models_dir().join(&file);
        text.push_str(&format!(
            "[models.digits.variants.{name}]\nsource = \"{}\"\naccuracy = {accuracy}\n",
            source.display()
        ));
        if let Some((_, arch)) = targets.iter().find(|(variant, _)| *variant == name) {
            text.push_str(&format!("targets = [\"{arch}\"]\n"));
        }
    }
    text
}

/// The digits example with its model declared by `model`.
pub fn digits_with(dir: &Path, model: &str) -> PathBuf {
    example_manifest(dir, &["digits"], &["[triggers", "[models."], model)
}

fn request() -> PathBuf {
    examples_dir().join("digits/request.json")
}

/// The classify step's model in a receipt: (variant, digest).
fn served(receipt: &serde_json::Value) -> (String, String) {
    let steps = receipt["steps"].as_array().unwrap();
    let classify = steps.iter().find(|s| s["step"] == "classify").unwrap();
    let model = &classify["models"][0];
    assert_eq!(model["name"], "digits", "{classify}");
    (model["variant"].as_str().unwrap_or("").into(), model["digest"].as_str().unwrap().into())
}

fn digest_of(file: &str) -> String {
    Digest::of(&std::fs::read(models_dir().join(file)).unwrap()).to_string()
}

fn run(manifest: &Path) -> std::process::Output {
    weir(&["run", manifest.to_str().unwrap(), "digits", "--input", request().to_str().unwrap()], None)
}

fn served_by_run(manifest: &Path) -> (String, String) {
    let out = run(manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    served(&response["parameters"]["receipt"])
}

#[test]
fn by_accuracy_and_by_target_the_declared_variant_serves_and_the_receipt_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let variants = declared();
    assert!(variants.len() >= 3, "{variants:?}");
    // The most accurate; on a tie the smaller file.
    let size = |file: &str| std::fs::metadata(models_dir().join(file)).unwrap().len();
    let best = variants.iter().min_by(|a, b| b.2.total_cmp(&a.2).then(size(&a.1).cmp(&size(&b.1)))).unwrap();
    let manifest = digits_with(dir.path(), &variants_block("objective = \"accuracy\"", &[]));
    assert_eq!(served_by_run(&manifest), (best.0.clone(), digest_of(&best.1)));

    // Every variant but `small` is for AArch64 only: `small` serves here.
    let other = if std::env::consts::ARCH == "x86_64" { "aarch64" } else { "x86_64" };
    let elsewhere: Vec<(&str, &str)> =
        variants.iter().filter(|v| v.0 != "small").map(|v| (v.0.as_str(), other)).collect();
    let manifest = digits_with(dir.path(), &variants_block("objective = \"accuracy\"", &elsewhere));
    assert_eq!(served_by_run(&manifest), ("small".into(), digest_of("digits_small.onnx")));

    // A variant for another architecture need not be on this host.
    let model = format!(
        "\n[models.digits]\n[models.digits.variants.fp32]\nsource = \"{}\"\naccuracy = 0.98\n\
         [models.digits.variants.board]\nsource = \"/nonexistent/digits_board.onnx\"\naccuracy = 0.99\ntargets = [\"{other}\"]\n",
        models_dir().join("digits.onnx").display()
    );
    let manifest = digits_with(dir.path(), &model);
    assert_eq!(served_by_run(&manifest), ("fp32".into(), digest_of("digits.onnx")));

    // None for this architecture: refused with what to do, nothing served.
    let all: Vec<(&str, &str)> = variants.iter().map(|v| (v.0.as_str(), other)).collect();
    let manifest = digits_with(dir.path(), &variants_block("", &all));
    let out = run(&manifest);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && out.stdout.is_empty(), "{said}");
    let arch = std::env::consts::ARCH;
    assert!(said.contains(&format!("model `digits` has no variant that may serve on this host ({arch})")), "{said}");
    assert!(said.contains(&format!("targets {other} only")) && said.contains("add one for"), "{said}");
}

/// By latency and by cost the host times each candidate itself: the one
/// served is the one its own figures favour, the one below the accuracy
/// floor is left out, and every receipt names the one served.
#[test]
fn by_latency_and_by_cost_the_host_measures_and_serves_the_best_above_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let small = declared().into_iter().find(|v| v.0 == "small").unwrap();
    let floor = small.2 + 0.001;
    for (objective, figure) in [("latency", "latency_us"), ("cost", "cpu_us")] {
        let choice = format!("objective = \"{objective}\"\nmin_accuracy = {floor}");
        let manifest = digits_with(dir.path(), &variants_block(&choice, &[]));
        let server = start_with(&manifest, &[], &[]);
        let body = std::fs::read_to_string(request()).unwrap();
        let (status, response) = post(&server, "/v2/models/digits/infer", &body);
        assert_eq!(status, 200, "{response}");
        let (_, state) = get(&server, "/v2/status");
        let pick = &state["models"]["variants"][0];
        assert_eq!((pick["model"].as_str(), pick["objective"].as_str()), (Some("digits"), Some(objective)), "{pick}");
        let candidates = pick["candidates"].as_array().unwrap();
        assert_eq!(candidates.len(), declared().len() - 1, "{pick}");
        let excluded = &pick["excluded"][0];
        assert_eq!(excluded[0], "small", "{pick}");
        assert!(excluded[1].as_str().unwrap().contains("below min_accuracy"), "{pick}");
        let fastest = candidates
            .iter()
            .min_by(|a, b| a[figure].as_f64().unwrap().total_cmp(&b[figure].as_f64().unwrap()))
            .unwrap();
        assert_eq!(pick["chosen"], fastest["variant"], "{pick}");
        for c in candidates {
            let (latency, cpu) = (c["latency_us"].as_f64().unwrap(), c["cpu_us"].as_f64().unwrap());
            eprintln!(
                "x86-64, {objective}: {} accuracy {} size {} B latency {latency:.1} us cpu {cpu:.1} us",
                c["variant"], c["accuracy"], c["bytes"]
            );
        }
        let mut full: serde_json::Value = serde_json::from_str(&body).unwrap();
        full["parameters"] = serde_json::json!({"receipt": "full"});
        let (status, response) = post(&server, "/v2/models/digits/infer", &full.to_string());
        assert_eq!(status, 200, "{response}");
        let (variant, digest) = served(&response["parameters"]["receipt"]);
        assert_eq!(variant, pick["chosen"].as_str().unwrap());
        let file = declared().into_iter().find(|v| v.0 == variant).unwrap().1;
        assert_eq!(digest, digest_of(&file));

        // A reload keeps the choice (the figures too: nothing is timed
        // again, which could switch the variant under the running manifest).
        let (status, reloaded) = post(&server, "/v2/admin/reload", "");
        assert_eq!(status, 200, "{reloaded}");
        let (_, after) = get(&server, "/v2/status");
        assert_eq!(after["models"]["variants"], state["models"]["variants"]);
        let (status, response) = post(&server, "/v2/models/digits/infer", &full.to_string());
        assert_eq!(status, 200, "{response}");
        assert_eq!(served(&response["parameters"]["receipt"]).0, variant);
    }
}

/// A variant that cannot even load (a corrupt file) is left out with the
/// reason when the host times the candidates, and another serves.
#[test]
fn a_variant_that_fails_to_load_is_left_out_and_another_serves() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, b"not an ONNX model").unwrap();
    let fp32 = models_dir().join("digits.onnx");
    let model = format!(
        "\n[models.digits]\nobjective = \"latency\"\n[models.digits.variants.fp32]\nsource = \"{}\"\naccuracy = \
         0.98\n[models.digits.variants.broken]\nsource = \"{}\"\naccuracy = 0.99\n",
        fp32.display(),
        broken.display()
    );
    let manifest = digits_with(dir.path(), &model);
    let server = start_with(&manifest, &[], &[]);
    let (status, response) = post(&server, "/v2/models/digits/infer", &std::fs::read_to_string(request()).unwrap());
    assert_eq!(status, 200, "{response}");
    let (_, state) = get(&server, "/v2/status");
    let pick = &state["models"]["variants"][0];
    assert_eq!(pick["chosen"], "fp32", "{pick}");
    assert_eq!(pick["excluded"][0][0], "broken", "{pick}");
    let why = pick["excluded"][0][1].as_str().unwrap();
    assert!(why.contains("broken.onnx") && why.contains("not a well-formed ONNX"), "{pick}");
    assert_eq!(pick["candidates"].as_array().unwrap().len(), 1, "{pick}");
}

/// Each variant's accuracy through weir, on the held-out digits, is what
/// the training script declared.
#[test]
fn each_variants_accuracy_through_weir_is_the_declared_one() {
    for (name, file, declared) in declared() {
        let (weir, _) = held_out_accuracy_of("digits", &file);
        eprintln!("digits variant {name}: accuracy through weir {weir:.4} (declared {declared:.4})");
        assert!((weir - declared).abs() <= 0.0025, "{name}: weir {weir:.4}, declared {declared:.4}");
    }
}
