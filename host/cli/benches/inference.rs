//! Bench: model inference through weir vs the floor, in one run.
//!
//!     python3 examples/models/train.py --big --out target/bench-models   # once, for the ~1 ms model
//!     cargo bench -p weir --bench inference [-- ITERATIONS]
//!
//! 1. Direct in-process ONNX Runtime `Session::run` (the floor) vs the same
//!    inference through the `classify` step, a fresh instance per call:
//!    p50 of each, the ratio and the difference; digits MLP and the big MLP.
//! 2. Throughput of two concurrent callers on one model vs one caller.
//! 3. Model load through weir's cache vs ONNX Runtime session creation alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use weir_core::{Datatype, StepGrants, StepLimits, Tensor};
use weir_nn::{CacheOptions, ModelCache, ModelGrants, ModelSpec};
use weir_sandbox::{Sandbox, SandboxOptions, StepComponent};

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/models")
}

fn sample_row() -> Vec<f32> {
    let text = std::fs::read_to_string(models_dir().join("digits_test.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["inputs"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn floor(path: &Path, row: &[f32], iterations: usize) -> Duration {
    let mut session = Session::builder().unwrap().with_intra_threads(1).unwrap().commit_from_file(path).unwrap();
    let run = |session: &mut Session| {
        let input = OrtTensor::<f32>::from_array((vec![(row.len() / 64) as i64, 64], row.to_vec())).unwrap();
        let started = Instant::now();
        let outputs = session.run(ort::inputs!["input" => input]).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(outputs.len(), 2);
        elapsed
    };
    (0..iterations / 10).for_each(|_| {
        run(&mut session);
    });
    p50((0..iterations).map(|_| run(&mut session)).collect())
}

struct Setup {
    runtime: Arc<Sandbox>,
    classify: Arc<StepComponent>,
}

fn setup(models: &[(&str, &Path)]) -> Setup {
    let runtime = Sandbox::new(SandboxOptions {
        cache_dir: Some(std::env::temp_dir().join("weir-bench-cache")),
        ..SandboxOptions::default()
    })
    .unwrap();
    for (name, path) in models {
        runtime.register_model(ModelSpec::new(*name, *path));
    }
    let classify = Arc::new(runtime.load_file(weir_tests::CLASSIFY.as_ref()).unwrap());
    Setup { runtime: Arc::new(runtime), classify }
}

fn grants(model: &str) -> StepGrants {
    StepGrants {
        config: vec![("model".into(), model.into())],
        nn: ModelGrants { models: vec![model.into()], load_model_bytes: false },
        ..StepGrants::default()
    }
}

/// `rows` is one or more 64-pixel rows, concatenated.
fn input(rows: &[f32]) -> Tensor {
    let shape = vec![(rows.len() / 64) as u64, 64];
    Tensor {
        name: "x".into(),
        datatype: Datatype::Fp32,
        shape,
        data: rows.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

async fn through_weir(setup: &Setup, model: &str, row: &[f32], iterations: usize) -> Duration {
    let (grants, limits) = (grants(model), StepLimits::default());
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let started = Instant::now();
        let out = setup.runtime.invoke(&setup.classify, "classify", &grants, &limits, vec![input(row)]).await.unwrap();
        if i >= iterations / 10 {
            samples.push(started.elapsed());
        }
        assert_eq!(out.outputs.len(), 2);
    }
    p50(samples)
}

/// Calls per second with `callers` concurrent callers, each making `calls`.
fn throughput(setup: &Setup, row: &[f32], callers: usize, calls: usize) -> f64 {
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(callers).enable_all().build().unwrap();
    let started = Instant::now();
    tokio.block_on(async {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (runtime, classify, row) = (setup.runtime.clone(), setup.classify.clone(), row.to_vec());
                tokio::spawn(async move {
                    let (grants, limits) = (grants("digits_big"), StepLimits::default());
                    for _ in 0..calls {
                        runtime.invoke(&classify, "classify", &grants, &limits, vec![input(&row)]).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    (callers * calls) as f64 / started.elapsed().as_secs_f64()
}

fn load_times(path: &Path, rounds: usize) -> (Duration, Duration) {
    let session_only = p50((0..rounds)
        .map(|_| {
            let started = Instant::now();
            let session = Session::builder().unwrap().with_intra_threads(1).unwrap().commit_from_file(path).unwrap();
            let elapsed = started.elapsed();
            drop(session);
            elapsed
        })
        .collect());
    let through_cache = p50((0..rounds)
        .map(|_| {
            let cache = ModelCache::new(CacheOptions::default());
            cache.register(ModelSpec::new("m", path));
            let started = Instant::now();
            let model = cache.get("m").unwrap();
            let elapsed = started.elapsed();
            drop(model);
            elapsed
        })
        .collect());
    (session_only, through_cache)
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5_000);
    let library = weir_nn::library::init().expect("ONNX Runtime (run scripts/setup.sh)");
    println!("ONNX Runtime {} at {}", library.version, library.path.display());
    let row = sample_row();
    let digits = models_dir().join("digits.onnx");
    let big = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-models/digits_big.onnx");
    let mut models = vec![("digits", digits.as_path())];
    if big.is_file() {
        models.push(("digits_big", big.as_path()));
    } else {
        println!(
            "(no {}: run `python3 examples/models/train.py --big --out target/bench-models` for the ~1 ms model)",
            big.display()
        );
    }
    let setup = setup(&models);
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    println!("\n1. one inference, p50 over {iterations} calls (classify: fresh instance per call)");
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>8} {:>12}",
        "model", "batch", "ORT direct", "via weir", "ratio", "difference"
    );
    // The big model on a batch of 8 rows is the ~1 ms inference.
    let cases: Vec<(&str, &Path, usize)> = models
        .iter()
        .flat_map(|(name, path)| {
            if *name == "digits_big" {
                vec![(*name, *path, 1), (*name, *path, 8)]
            } else {
                vec![(*name, *path, 1)]
            }
        })
        .collect();
    for (name, path, batch) in cases {
        let n = if name == "digits_big" { iterations / 5 } else { iterations };
        let rows: Vec<f32> = row.iter().copied().cycle().take(64 * batch).collect();
        let direct = floor(path, &rows, n);
        let weir = tokio.block_on(through_weir(&setup, name, &rows, n));
        println!(
            "{name:<12} {batch:>5} {:>12.1?} {:>12.1?} {:>8.2} {:>+10.1}µs",
            direct,
            weir,
            weir.as_secs_f64() / direct.as_secs_f64(),
            (weir.as_secs_f64() - direct.as_secs_f64()) * 1e6
        );
    }

    if models.len() > 1 {
        // Long enough to be stable: each measurement is ~1 s of digits_big
        // calls per caller, one and two callers interleaved over 5 rounds.
        let calls = (iterations / 2).max(500);
        let mut rounds: Vec<(f64, f64)> =
            (0..5).map(|_| (throughput(&setup, &row, 1, calls), throughput(&setup, &row, 2, calls))).collect();
        rounds.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
        let (one, two) = rounds[2];
        let (low, high) = (rounds[0].1 / rounds[0].0, rounds[4].1 / rounds[4].0);
        println!(
            "\n2. digits_big through classify, {calls} calls per caller, 5 interleaved rounds: median 1 caller {one:.0}/s, \
             2 callers {two:.0}/s, ratio {:.2} (range {low:.2}-{high:.2})",
            two / one
        );
    }

    let rounds = 30;
    println!("\n3. model load, p50 of {rounds}");
    for (name, path) in &models {
        let (session, cache) = load_times(path, rounds);
        println!(
            "{name:<12} ORT session {session:>10.2?}  weir cache {cache:>10.2?}  ratio {:.2}",
            cache.as_secs_f64() / session.as_secs_f64()
        );
    }
}
