//! `[experiments.NAME]` and versions: what a valid declaration becomes
//! (challenger pipelines, shared steps) and how each mistake is reported.

use std::path::Path;

use weir_manifest::{parse, ExperimentMode, Manifest, StickyKey};

/// Two models in two versions, three components, a four-step pipeline
/// shaped like ride-eta and a whole-pipeline version of it.
const BASE: &str = r#"
[models.eta]
source = "eta.onnx"
[models."eta@v2"]
source = "eta_v2.onnx"
[models.acceptance]
source = "acceptance.onnx"
[components.concat]
source = "concat.wasm"
[components.model]
source = "classify.wasm"
[components."model@v2"]
source = "classify_v2.wasm"
[components.fare]
source = "fare.wasm"

[[pipelines.ride.steps]]
name = "features"
component = "concat"
inputs = ["input.x"]
[[pipelines.ride.steps]]
name = "eta"
component = "model"
inputs = ["x=features.features"]
models = ["eta"]
[[pipelines.ride.steps]]
name = "acceptance"
component = "model"
inputs = ["x=features.features"]
models = ["acceptance"]
[[pipelines.ride.steps]]
name = "fare"
component = "fare"
inputs = ["input.x", "eta_minutes=eta.variable"]
[pipelines.ride.outputs]
eta = "eta.variable"
fare = "fare.fare"

[[pipelines."ride@v2".steps]]
name = "features"
component = "concat"
inputs = ["input.x"]
[[pipelines."ride@v2".steps]]
name = "eta"
component = "model"
inputs = ["x=features.features"]
models = ["eta@v2"]
[[pipelines."ride@v2".steps]]
name = "fare"
component = "fare"
inputs = ["input.x", "eta_minutes=eta.variable"]
[pipelines."ride@v2".outputs]
eta = "eta.variable"
fare = "fare.fare"
"#;

fn with(experiment: &str) -> Result<Manifest, String> {
    parse(Path::new("/m/weir.toml"), &format!("{BASE}\n{experiment}")).map_err(|e| e.to_string())
}

fn error(experiment: &str) -> String {
    match with(experiment) {
        Ok(_) => panic!("accepted:\n{experiment}"),
        Err(error) => error,
    }
}

#[test]
fn a_model_version_swap_makes_a_challenger_that_shares_the_untouched_steps() {
    let manifest = with(
        r#"
[experiments.e]
pipeline = "ride"
mode = "canary"
sticky = "header:X-Rider"
[[experiments.e.variants]]
name = "v2"
models = { eta = "eta@v2" }
[experiments.e.gate]
stages = [1, 10, 100]
agreement = { output = "eta", tolerance = 0.5, min = 0.99 }
"#,
    )
    .unwrap();
    let e = &manifest.experiments["e"];
    assert_eq!(
        (e.mode, e.pipeline.as_str(), e.share_steps, e.shadow_queue),
        (ExperimentMode::Canary, "ride", true, 64)
    );
    assert_eq!(e.sticky, Some(StickyKey::Header("x-rider".into())));
    let v2 = &e.variants[0];
    assert_eq!(v2.pipeline.step("eta").unwrap().grants.nn.models, ["eta@v2"]);
    assert_eq!(v2.pipeline.step("acceptance").unwrap().grants.nn.models, ["acceptance"]);
    // `fare` is unchanged but reads the swapped step: it runs again.
    assert_eq!(v2.shared_steps, ["features", "acceptance"]);
    assert_eq!(v2.change, "model eta -> eta@v2");
    assert_eq!(e.gate.as_ref().unwrap().min_requests, 100);
    assert_eq!(e.gate.as_ref().unwrap().max_error_rate, 0.01, "failures count even when no bound is stated");
    assert_eq!(manifest.experiment_on("ride").map(|e| e.name.as_str()), Some("e"));
    assert_eq!(manifest.runnable_pipelines().count(), 3);
}

#[test]
fn a_split_between_pipeline_and_component_versions() {
    let manifest = with(
        r#"
[experiments.e]
pipeline = "ride"
mode = "split"
sticky = "parameter:user"
share_steps = false
[[experiments.e.variants]]
name = "whole"
pipeline = "ride@v2"
weight = 30
[[experiments.e.variants]]
name = "step"
components = { acceptance = "model@v2" }
weight = 20
"#,
    )
    .unwrap();
    let e = &manifest.experiments["e"];
    assert_eq!(e.sticky, Some(StickyKey::Parameter("user".into())));
    assert!(!e.share_steps);
    let (whole, step) = (&e.variants[0], &e.variants[1]);
    assert_eq!((whole.weight, step.weight), (30.0, 20.0));
    assert_eq!(whole.pipeline.name, "ride@v2");
    // `eta` differs (another model) and `fare` reads it; only `features` is shared.
    assert_eq!(whole.shared_steps, ["features"]);
    assert_eq!(step.pipeline.step("acceptance").unwrap().component, "model@v2");
    assert_eq!(step.shared_steps, ["features", "eta", "fare"]);
}

#[test]
fn each_mistake_is_named_with_its_key_and_place() {
    let cases: &[(&str, &str)] = &[
        ("[experiments.e]\npipeline = \"nope\"\nmode = \"split\"\nvariants = []", "experiments.e.pipeline: no pipeline named `nope`"),
        ("[experiments.e]\npipeline = \"ride\"\nmode = \"ab\"\nvariants = []", "`ab` is not a mode; use split, shadow or canary"),
        ("[experiments.e]\npipeline = \"ride\"\nmode = \"split\"\nvariants = []", "name at least one challenger"),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"split\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\nweight = 70\n[[experiments.e.variants]]\nname = \"b\"\npipeline = \"ride@v2\"\nweight = 40",
            "weights add up to 110%, more than 100%",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"split\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "a split needs each challenger's `weight`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\nweight = 101",
            "weight = 101 is out of range",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "a canary needs [experiments.e.gate]",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [10, 5, 100]\nmax_error_rate = 0.1",
            "stages: percents that increase",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [10, 50]\nmax_error_rate = 0.1",
            "ending at 100",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nagreement = { output = \"label\", min = 0.9 }",
            "pipeline `ride` has no output `label`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nmax_error_rate = 1.5",
            "max_error_rate = 1.5 is out of range",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\nmodels = { acceptance = \"eta@v2\" }\ncomponents = { nope = \"model\" }",
            "pipeline `ride` has no step `nope`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\nmodels = { eta = \"eta@v9\" }",
            "no model named `eta@v9`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\nmodels = { \"eta@v1\" = \"eta@v2\" }",
            "no step of pipeline `ride` uses model `eta@v1`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\nmodels = { eta = \"acceptance\" }",
            "`acceptance` is not a version of `eta` (write `eta@VERSION`)",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride\"",
            "the challenger is the champion itself",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"",
            "say what the challenger changes",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"champion\"\npipeline = \"ride@v2\"",
            "`champion` is reserved",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\nsticky = \"cookie:x\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "`cookie:x` is not a key; write `header:NAME` or `parameter:NAME`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.f]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.f.variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "already takes pipeline `ride`'s traffic",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\nshadow_queue = 0\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "shadow_queue = 0 is out of range",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\ncompare = { output = \"nope\" }\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "experiments.e.compare.output: pipeline `ride` has no output `nope`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\ncompare = { output = \"eta\" }\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nagreement = { output = \"fare\", min = 0.9 }",
            "the gate's agreement already says how answers are compared; keep one",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nfeedback = { output = \"eta\" }",
            "state exactly one of min_accuracy (labels) or max_mae (numbers)",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nfeedback = { output = \"eta\", min_accuracy = 0.9, max_mae = 2 }",
            "state exactly one of min_accuracy",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nfeedback = { output = \"eta\", min_accuracy = 9 }",
            "feedback.min_accuracy = 9 is out of range",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nfeedback = { output = \"nope\", max_mae = 1 }",
            "experiments.e.gate.feedback.output: pipeline `ride` has no output `nope`",
        ),
        (
            "[experiments.e]\npipeline = \"ride\"\nmode = \"canary\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"\n[experiments.e.gate]\nstages = [100]\nfeedback = { output = \"eta\", max_mae = 1, min_feedback = 0 }",
            "min_feedback = 0 is out of range",
        ),
        (
            "[experiments.\"a b\"]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.\"a b\".variants]]\nname = \"a\"\npipeline = \"ride@v2\"",
            "an experiment's name must be letters, digits",
        ),
    ];
    for (text, expected) in cases {
        let error = error(text);
        assert!(error.contains(expected), "for\n{text}\nexpected `{expected}` in: {error}");
        assert!(error.starts_with("/m/weir.toml"), "{error}");
    }
}

#[test]
fn a_challenger_with_other_outputs_is_refused() {
    let text = BASE.replace(
        "[pipelines.\"ride@v2\".outputs]\neta = \"eta.variable\"",
        "[pipelines.\"ride@v2\".outputs]\nminutes = \"eta.variable\"",
    );
    let experiment = "[experiments.e]\npipeline = \"ride\"\nmode = \"shadow\"\n[[experiments.e.variants]]\nname = \"a\"\npipeline = \"ride@v2\"";
    let error = parse(Path::new("/m/weir.toml"), &format!("{text}\n{experiment}")).unwrap_err().to_string();
    assert!(
        error.contains("outputs [\"fare\", \"minutes\"] differ from the champion's [\"eta\", \"fare\"]"),
        "{error}"
    );
}

#[test]
fn a_reload_may_change_pipelines_and_experiments_but_not_triggers_access_or_provenance() {
    let old = with("[triggers.http]\nlisten = \"127.0.0.1:8080\"").unwrap();
    let swapped = with("[triggers.http]\nlisten = \"127.0.0.1:8080\"\n[models.extra]\nsource = \"x.onnx\"").unwrap();
    assert_eq!(old.same_sections(&swapped), Ok(()));
    let moved = with("[triggers.http]\nlisten = \"127.0.0.1:9090\"").unwrap();
    assert!(old.same_sections(&moved).unwrap_err().contains("[triggers] changed; restart"));
    let keyed = with("[triggers.http]\nlisten = \"127.0.0.1:8080\"\n[access]\nkeys = []").unwrap();
    assert!(old.same_sections(&keyed).unwrap_err().contains("[access] changed"));
    let recorded = with("[triggers.http]\nlisten = \"127.0.0.1:8080\"\n[provenance]\npath = \"p.redb\"").unwrap();
    assert!(old.same_sections(&recorded).unwrap_err().contains("[provenance] changed"));
    let nats = BASE.replace(
        "[pipelines.ride.outputs]",
        "[pipelines.ride.triggers.nats]\nsubject = \"x\"\n[pipelines.ride.outputs]",
    );
    let nats =
        parse(Path::new("/m/weir.toml"), &format!("{nats}\n[triggers.http]\nlisten = \"127.0.0.1:8080\"")).unwrap();
    assert!(old.same_sections(&nats).unwrap_err().contains("[pipelines.ride.triggers] changed"));
}
