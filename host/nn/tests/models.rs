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
    let mut pool_cpu = Duration::ZERO;
    for _ in 0..20 {
        let (_, timing) = model.run(&[("input".into(), f32_tensor(&[rows as u32, 64], &batch))]).unwrap();
        pool_cpu += timing.pool_cpu;
    }
    assert!(pool_cpu > Duration::ZERO, "the pool threads' CPU time was not counted");
}
