//! Property tests: any text, and any mutation of a valid manifest, parses
//! to a manifest or a located `ManifestError`, never a panic; limits that
//! parse are within their ranges.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use weir_manifest::{limits, parse, Manifest, ManifestError};

const VALID: &str = r#"manifest_version = 1

[models.digits]
source = "digits.onnx"
device = "cpu"
threads = 2

[components.scale]
source = "scale.wasm"

[components.classify]
source = "oci://localhost:5000/steps/classify:1"

[[pipelines.p.inputs]]
name = "x"
datatype = "FP32"
shape = [-1, 64]

[[pipelines.p.steps]]
name = "a"
component = "scale"
inputs = ["input.x"]
config = { mean = 0, std = 16.5, on = true, label = "hi" }
limits = { memory = "64MiB", timeout = "2s", fuel = 1000000 }

[[pipelines.p.steps]]
name = "b"
component = "classify"
inputs = ["x=a.y"]
models = ["digits"]

[pipelines.p]
sensitive = ["input.x"]

[pipelines.p.outputs]
label = { from = "b.label", datatype = "INT64", shape = [-1] }
y = "a.y"

[experiments.e]
pipeline = "p"
mode = "canary"
sticky = "header:x-user"

[[experiments.e.variants]]
name = "v2"
components = { b = "scale" }

[experiments.e.gate]
stages = [1, 50, 100]
min_requests = 10
max_p99 = "50ms"
agreement = { output = "label", tolerance = 0, min = 0.99 }

[accounting]
cpu_second = 0.0000125
watts_per_core = 10

[provenance]
path = "provenance.redb"
retention = "30d"

[triggers.http]
listen = "127.0.0.1:0"
timeout = "5s"
"#;

fn file() -> &'static Path {
    Path::new("/m/weir.toml")
}

/// A parse that must not panic, and whose error (if any) points into the text.
fn check(text: &str) -> Result<Manifest, ManifestError> {
    let result = parse(file(), text);
    if let Err(error) = &result {
        assert_eq!(error.file, file());
        if error.line != 0 {
            assert!(error.line <= text.lines().count() + 1, "{error} is past the end of the text");
            assert!(error.column >= 1, "{error}");
        }
        assert!(!error.message.is_empty());
    }
    if let Ok(manifest) = &result {
        // The triggers' generic reads of their sections must not panic either.
        let _ = manifest.trigger_section::<toml::Value>("http");
        let _ = manifest.pipeline_trigger_sections::<toml::Value>("nats");
        for step in manifest.pipelines.values().flat_map(|p| &p.steps) {
            let l = &step.limits;
            assert!(l.timeout >= limits::STEP_TIMEOUT.min && l.timeout <= limits::STEP_TIMEOUT.max, "{l:?}");
            assert!(l.memory_bytes >= limits::STEP_MEMORY.min && l.memory_bytes <= limits::STEP_MEMORY.max);
            assert!(l.fuel.is_none_or(|f| (1..=limits::MAX_FUEL).contains(&f)));
        }
        for model in manifest.models.values() {
            assert!((1..=limits::MAX_THREADS).contains(&model.threads));
        }
        for experiment in manifest.experiments.values() {
            let total: f64 = experiment.variants.iter().map(|v| v.weight).sum();
            assert!(experiment.variants.iter().all(|v| (0.0..=100.0).contains(&v.weight)), "{experiment:?}");
            assert!(experiment.mode != weir_manifest::ExperimentMode::Split || total <= 100.0);
            if let Some(gate) = &experiment.gate {
                assert_eq!(gate.stages.last(), Some(&100.0));
                assert!(gate.stages.windows(2).all(|w| w[0] < w[1]) && gate.stages[0] > 0.0);
            }
        }
        if let Some(provenance) = &manifest.provenance {
            assert!(provenance.retention <= limits::RETENTION.max && provenance.retention >= limits::RETENTION.min);
        }
    }
    result
}

/// One edit of the text: replace, insert or delete at a char boundary.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, String),
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index, usize),
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "[",
            "]",
            "{",
            "}",
            "\"",
            "'",
            "=",
            ",",
            ".",
            "\n",
            "#",
            "-",
            "0",
            "9",
            "-1",
            "1e400",
            "nan",
            "inf",
            "99999999999999999999",
            "18446744073709551615",
            "0s",
            "0",
            "ms",
            "us",
            "h",
            "d",
            "GiB",
            "\u{e9}",
            "\u{1F600}",
            "[[pipelines.p.steps]]\n",
            "[triggers.nats]\n",
            "x.y",
            "input.",
            "=a.",
            "\"\"\"",
        ])
        .prop_map(str::to_string),
        ".{0,4}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), piece()).prop_map(|(i, s)| Edit::Replace(i, s)),
        (any::<prop::sample::Index>(), piece()).prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<prop::sample::Index>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    let boundary = |text: &str, index: &prop::sample::Index| {
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        bounds[index.index(bounds.len())]
    };
    for edit in edits {
        match edit {
            Edit::Replace(at, with) => {
                let start = boundary(&text, at);
                let end = text[start..].chars().next().map_or(start, |c| start + c.len_utf8());
                text.replace_range(start..end, with);
            }
            Edit::Insert(at, with) => {
                let start = boundary(&text, at);
                text.insert_str(start, with);
            }
            Edit::Delete(at, n) => {
                let start = boundary(&text, at);
                let end = text[start..].char_indices().nth(*n).map_or(text.len(), |(i, _)| start + i);
                text.replace_range(start..end, "");
            }
        }
    }
    text
}

#[test]
fn the_base_manifest_is_valid() {
    let manifest = check(VALID).unwrap();
    assert_eq!(manifest.pipelines["p"].steps[0].limits.timeout, Duration::from_secs(2));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = check(&text);
    }

    #[test]
    fn arbitrary_toml_ish_text_never_panics(
        pieces in prop::collection::vec(piece(), 0..40),
    ) {
        let _ = check(&pieces.concat());
    }

    #[test]
    fn mutated_manifests_never_panic(edits in prop::collection::vec(edit(), 1..6)) {
        let _ = check(&apply(VALID, &edits));
    }

    /// Any value written for a limit is accepted within its range, and
    /// refused with the key and the range outside it.
    #[test]
    fn limits_are_in_range_or_located_errors(
        number in prop_oneof![0u64..3000, any::<u64>()],
        duration_unit in prop::sample::select(vec!["us", "ms", "s", "m", "h", "d"]),
        size_unit in prop::sample::select(vec!["B", "KB", "KiB", "MB", "MiB", "GB", "GiB"]),
        fuel in any::<u64>(),
    ) {
        let text = VALID
            .replace("timeout = \"2s\"", &format!("timeout = \"{number}{duration_unit}\""))
            .replace("memory = \"64MiB\"", &format!("memory = \"{number}{size_unit}\""))
            .replace("fuel = 1000000", &format!("fuel = {}", fuel >> 1));
        if let Err(error) = check(&text) {
            prop_assert_eq!(error.line, 24, "{}", error);
            prop_assert!(
                error.message.contains("allowed:") || error.message.contains("too large"),
                "{}",
                error
            );
        }
    }
}
