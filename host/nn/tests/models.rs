//! The model cache and ONNX Runtime, with the real example models.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weir_nn::{CacheOptions, ModelCache, ModelSpec, NnErrorCode, NnTensor, NnType};

fn model_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models").join(file)
}

fn f32_tensor(dims: &[u32], values: &[f32]) -> NnTensor {
    NnTensor { dims: dims.to_vec(), ty: NnType::Fp32, data: bytemuck_bytes(values) }
}

fn bytemuck_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The first held-out digits sample and its label.
fn digits_sample() -> (Vec<f32>, i64) {
    let text = std::fs::read_to_string(model_path("digits_test.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let x: Vec<f32> = json["inputs"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    (x, json["labels"][0].as_i64().unwrap())
}

#[test]
fn digits_model_classifies_a_held_out_sample() {
    let cache = ModelCache::new(CacheOptions::default());
    cache.register(ModelSpec::new("digits", model_path("digits.onnx")));
    let model = cache.get("digits").expect("load digits");
    let (x, label) = digits_sample();
    let (outputs, timing) = model.run(&[("input".into(), f32_tensor(&[1, 64], &x))]).unwrap();
    assert!(timing.inference > Duration::ZERO);
    assert_eq!(
        (model.pool_threads(), timing.pool_cpu),
        (0, Duration::ZERO),
        "threads = 1: no pool, the caller does the work"
    );
    let (name, predicted) = &outputs[0];
    assert_eq!(name, "label");
    assert_eq!(predicted.ty, NnType::I64, "sklearn labels are int64");
    assert_eq!(i64::from_le_bytes(predicted.data[..8].try_into().unwrap()), label);
    let (name, probabilities) = &outputs[1];
    assert_eq!(
        (name.as_str(), probabilities.ty, probabilities.dims.as_slice()),
        ("probabilities", NnType::Fp32, &[1u32, 10][..])
    );
}

#[test]
fn inputs_are_checked_against_the_model() {
    let cache = ModelCache::new(CacheOptions::default());
    cache.register(ModelSpec::new("digits", model_path("digits.onnx")));
    let model = cache.get("digits").unwrap();
    let cases = [
        (("pixels", f32_tensor(&[1, 64], &[0.0; 64])), "has no input `pixels`; its inputs are: input (FP32 [-1, 64])"),
        (("input", NnTensor { dims: vec![1, 64], ty: NnType::I64, data: vec![0; 512] }), "is FP32, got I64"),
        (("input", f32_tensor(&[1, 63], &[0.0; 63])), "has shape [-1, 64] (-1 = any), got [1, 63]"),
        (("input", f32_tensor(&[64], &[0.0; 64])), "got [64]"),
        (("input", NnTensor { dims: vec![1, 64], ty: NnType::Fp32, data: vec![0; 255] }), "need 256 bytes, got 255"),
    ];
    for ((name, tensor), expected) in cases {
        let err = model.run(&[(name.to_string(), tensor)]).unwrap_err();
        assert_eq!(err.code, NnErrorCode::InvalidArgument, "{err}");
        assert!(err.message.contains(expected), "{err}");
    }
    let err = model.run(&[]).unwrap_err();
    assert!(err.message.contains("needs input input (FP32 [-1, 64])"), "{err}");
}

#[test]
fn every_wasi_nn_type_goes_both_ways() {
    let cache = ModelCache::new(CacheOptions::default());
    cache.register(ModelSpec::new("dtypes", model_path("dtypes.onnx")));
    let model = cache.get("dtypes").unwrap();
    let types = [
        ("fp16", NnType::Fp16),
        ("fp32", NnType::Fp32),
        ("fp64", NnType::Fp64),
        ("bf16", NnType::Bf16),
        ("u8", NnType::U8),
        ("i32", NnType::I32),
        ("i64", NnType::I64),
    ];
    let inputs: Vec<(String, NnTensor)> = types
        .iter()
        .map(|(name, ty)| {
            let data = (0..3 * ty.size()).map(|i| (i * 7 % 251) as u8).collect();
            (format!("in_{name}"), NnTensor { dims: vec![1, 3], ty: *ty, data })
        })
        .collect();
    let (outputs, _) = model.run(&inputs).unwrap();
    for ((in_name, input), (out_name, output)) in inputs.iter().zip(&outputs) {
        assert_eq!(out_name.trim_start_matches("out_"), in_name.trim_start_matches("in_"));
        assert_eq!(output, input, "{out_name} round-trips exactly");
    }
}

#[test]
fn overcommit_budget_for_two_models_serves_three_in_turn() {
    let one = std::fs::metadata(model_path("digits.onnx")).unwrap().len();
    // Three copies of the digits model under three names; room for two.
    let cache = Arc::new(ModelCache::new(CacheOptions { memory_budget_bytes: Some(2 * one), idle_timeout: None }));
    for name in ["a", "b", "c"] {
        cache.register(ModelSpec::new(name, model_path("digits.onnx")));
    }
    let (x, label) = digits_sample();
    for round in 0..3 {
        for name in ["a", "b", "c"] {
            let model = cache.get(name).unwrap();
            let (outputs, _) = model.run(&[("input".into(), f32_tensor(&[1, 64], &x))]).unwrap();
            assert_eq!(
                i64::from_le_bytes(outputs[0].1.data[..8].try_into().unwrap()),
                label,
                "{name} in round {round}"
            );
            let stats = cache.stats();
            assert!(stats.charged_bytes <= 2 * one, "cache holds {} bytes, budget {}", stats.charged_bytes, 2 * one);
            assert!(stats.loaded.len() <= 2, "{:?}", stats.loaded);
        }
    }
    let stats = cache.stats();
    assert_eq!(stats.registered, 3);
    assert!(stats.evictions >= 7, "round-robin over 3 models with room for 2 evicts on every miss: {stats:?}");
}

#[test]
fn idle_models_are_unloaded() {
    let cache =
        ModelCache::new(CacheOptions { memory_budget_bytes: None, idle_timeout: Some(Duration::from_millis(100)) });
    cache.register(ModelSpec::new("digits", model_path("digits.onnx")));
    cache.get("digits").unwrap();
    assert_eq!(cache.stats().loaded, vec!["digits".to_string()]);
    std::thread::sleep(Duration::from_millis(150));
    cache.unload_idle();
    assert!(cache.stats().loaded.is_empty());
    cache.get("digits").unwrap();
    assert_eq!(cache.stats().loads, 2, "loaded again on next use");
}

#[test]
fn concurrent_calls_share_one_session_and_agree() {
    let cache = ModelCache::new(CacheOptions::default());
    cache.register(ModelSpec::new("digits", model_path("digits.onnx")));
    let model = cache.get("digits").unwrap();
    let text = std::fs::read_to_string(model_path("digits_test.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows: Vec<Vec<f32>> = json["inputs"].as_array().unwrap()[..40]
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect();
    let run = |row: &[f32]| model.run(&[("input".into(), f32_tensor(&[1, 64], row))]).unwrap().0;
    let expected: Vec<_> = rows.iter().map(|r| run(r)).collect();
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        for offset in 0..4 {
            let (rows, expected, run, barrier) = (&rows, &expected, &run, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for round in 0..25 {
                    let i = (offset * 7 + round) % rows.len();
                    assert_eq!(run(&rows[i]), expected[i], "concurrent run {round} of thread {offset} differs");
                }
            });
        }
    });
}

#[test]
fn unknown_and_broken_models_are_clear_errors() {
    let cache = ModelCache::new(CacheOptions::default());
    assert_eq!(cache.get("nope").unwrap_err().code, NnErrorCode::NotFound);
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"not an onnx model").unwrap();
    cache.register(ModelSpec::new("garbage", garbage.path()));
    let err = cache.get("garbage").unwrap_err();
    assert_eq!(err.code, NnErrorCode::RuntimeError);
    assert!(err.message.contains("loading model `garbage`"), "{err}");
    cache.register(ModelSpec::new("missing", "/nonexistent/model.onnx"));
    assert_eq!(cache.get("missing").unwrap_err().code, NnErrorCode::NotFound);
}

/// With `threads > 1` ONNX Runtime works on pool threads too; weir starts
/// them and charges their CPU time to the calls they served.
#[test]
fn pool_threads_cpu_time_is_attributed_to_the_call() {
    let cache = ModelCache::new(CacheOptions::default());
    let mut spec = ModelSpec::new("digits", model_path("digits.onnx"));
    spec.threads = 3;
    cache.register(spec);
    let model = cache.get("digits").expect("load digits");
    assert_eq!(model.pool_threads(), 2, "ONNX Runtime runs threads - 1 pool threads beside the caller");
    // A batch big enough that MLAS splits the matrix products across threads.
    let (x, _) = digits_sample();
    let rows = 4096;
    let batch: Vec<f32> = x.iter().copied().cycle().take(64 * rows).collect();
    let run = || model.run(&[("input".into(), f32_tensor(&[rows as u32, 64], &batch))]).unwrap().1.pool_cpu;
    // One call at a time: the charges add up to what the pool threads used
    // (spinning is off, so idle threads use nothing between calls).
    let before = model.pool_cpu_total();
    let charged: Duration = (0..20).map(|_| run()).sum();
    let used = model.pool_cpu_total() - before;
    assert!(charged > Duration::ZERO, "the pool threads' CPU time was not counted");
    let share = charged.as_secs_f64() / used.as_secs_f64();
    assert!((0.95..=1.0).contains(&share), "sequential calls were charged {charged:?} of {used:?} the pool used");
    // Three callers at once share the pool: split among the calls in flight
    // at every start and end, the charges still add up to what it used.
    let before = model.pool_cpu_total();
    let charged: Duration = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..3).map(|_| scope.spawn(|| (0..10).map(|_| run()).sum::<Duration>())).collect();
        callers.into_iter().map(|c| c.join().unwrap()).sum()
    });
    let used = model.pool_cpu_total() - before;
    let share = charged.as_secs_f64() / used.as_secs_f64();
    // The same bound as one at a time: with three callers and two pool
    // threads on two cores, a split point can land a scheduler tick late
    // (96 % was seen on an idle machine).
    assert!((0.95..=1.0).contains(&share), "overlapping calls were charged {charged:?} of {used:?} the pool used");
}

/// Protobuf, just enough for an ONNX model whose one initializer keeps its
/// data in an external file at `location`.
fn model_with_external_data(location: &str) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut tensor = Vec::new();
    tensor.extend([0x08, 0x04, 0x10, 0x01]); // dims = [4], data_type = FLOAT
    field(&mut tensor, 8, b"w");
    for (key, value) in [("location", location), ("offset", "0"), ("length", "16")] {
        let mut entry = Vec::new();
        field(&mut entry, 1, key.as_bytes());
        field(&mut entry, 2, value.as_bytes());
        field(&mut tensor, 13, &entry);
    }
    tensor.extend([0x70, 0x01]); // data_location = EXTERNAL
    let mut graph = Vec::new();
    field(&mut graph, 2, b"g");
    field(&mut graph, 5, &tensor);
    let mut model = vec![0x08, 0x09]; // ir_version = 9
    field(&mut model, 7, &graph);
    model
}

#[test]
fn external_data_out_of_the_model_folder_is_refused_before_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/ok.bin"), [0u8; 16]).unwrap();
    let cache = ModelCache::new(CacheOptions::default());
    for (name, location) in [("absolute", "/etc/passwd"), ("parent", "../x"), ("deep", "sub/../../x")] {
        let path = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&path, model_with_external_data(location)).unwrap();
        cache.register(ModelSpec::new(name, &path));
        let err = cache.get(name).unwrap_err();
        assert_eq!(err.code, NnErrorCode::Security, "{name}: {err}");
        assert!(err.message.contains(location) && err.message.contains("must stay in the model's folder"), "{err}");
    }
    // Inside the folder: the check passes (ONNX Runtime may still refuse
    // this hand-made model, for its own reasons).
    let path = dir.path().join("inside.onnx");
    let bytes = model_with_external_data("sub/ok.bin");
    std::fs::write(&path, &bytes).unwrap();
    let spec = ModelSpec::new("inside", &path);
    assert_eq!(spec.check_external_data(&bytes), Ok(()));
    cache.register(spec);
    if let Err(err) = cache.get("inside") {
        assert_ne!(err.code, NnErrorCode::Security, "{err}");
    }
    // A model from bytes has no folder: any external data is refused.
    let spec = ModelSpec::from_bytes("guest", model_with_external_data("sub/ok.bin"));
    let err = weir_nn::LoadedModel::load(spec, &weir_nn::OnnxRuntime).unwrap_err();
    assert_eq!(err.code, NnErrorCode::Security, "{err}");
    assert!(err.message.contains("must be self-contained"), "{err}");
    // The real example models pass.
    let digits = std::fs::read(model_path("digits.onnx")).unwrap();
    assert_eq!(ModelSpec::from_bytes("digits", digits.clone()).check_external_data(&digits), Ok(()));
}

/// A run is predicted from the model's recent runs, per input byte: nothing
/// before the first, about the measured time after, more for more input —
/// what decides whether a run may stay on the calling thread.
#[test]
fn runs_are_predicted_from_recent_ones() {
    let cache = ModelCache::new(CacheOptions::default());
    cache.register(ModelSpec::new("digits", model_path("digits.onnx")));
    assert!(cache.get_loaded("digits").is_none(), "a lookup never loads");
    let model = cache.get("digits").unwrap();
    assert!(Arc::ptr_eq(&cache.get_loaded("digits").unwrap(), &model));
    assert_eq!(model.predicted_run(256), None, "no estimate before a run");
    model.observe_run(256, Duration::from_micros(20));
    let one_row = model.predicted_run(256).unwrap();
    assert!((Duration::from_micros(19)..=Duration::from_micros(21)).contains(&one_row), "{one_row:?}");
    let batch = model.predicted_run(256 * 1000).unwrap();
    assert!(batch > weir_nn::offload::INLINE_RUN, "a large batch goes to the blocking pool: {batch:?}");
    // A model that turns slow is noticed within a few runs.
    for _ in 0..8 {
        model.observe_run(256, Duration::from_millis(50));
    }
    assert!(model.predicted_run(256).unwrap() > weir_nn::offload::INLINE_RUN);
}

/// Every held-out sample of `{name}_test.json` through ONNX Runtime in one
/// batch: the label must be scikit-learn's own prediction for that sample
/// (stored by examples/models/train.py), and each class probability within
/// float32 rounding of scikit-learn's.
fn matches_scikit_learn(name: &str) {
    let text = std::fs::read_to_string(model_path(&format!("{name}_test.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = json["inputs"].as_array().unwrap();
    let features = json["features"].as_u64().unwrap() as u32;
    let x: Vec<f32> =
        rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect();
    let cache = ModelCache::new(CacheOptions::default());
    cache.register(ModelSpec::new(name, model_path(&format!("{name}.onnx"))));
    let model = cache.get(name).unwrap();
    let (outputs, _) = model.run(&[("input".into(), f32_tensor(&[rows.len() as u32, features], &x))]).unwrap();
    let labels: Vec<i64> =
        outputs[0].1.data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let expected: Vec<i64> =
        json["predictions_sklearn"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!((labels.len(), expected.len()), (rows.len(), rows.len()), "{name}: one prediction per sample");
    let differ: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] != expected[i]).collect();
    assert!(differ.is_empty(), "{name}: samples {differ:?} are labelled differently from scikit-learn");
    let probabilities: Vec<f32> =
        outputs[1].1.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let theirs: Vec<f64> = json["probabilities_sklearn"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(probabilities.len(), theirs.len(), "{name}: one probability per sample and class");
    for (i, (ours, theirs)) in probabilities.iter().zip(&theirs).enumerate() {
        assert!((*ours as f64 - theirs).abs() < 1e-4, "{name}: probability {i}: {ours} vs scikit-learn {theirs}");
    }
}

#[test]
fn digits_and_breast_cancer_match_scikit_learn_on_every_held_out_sample() {
    matches_scikit_learn("digits");
    matches_scikit_learn("breast_cancer");
}
