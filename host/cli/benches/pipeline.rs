//! Bench: what one more step costs in a pipeline. Runs a chain of 1, 2 and 4
//! no-op steps through the dataflow executor (in process, no HTTP) and
//! reports p50 per chain and the cost per extra step, in one run; then what
//! the console's live board adds to a 4-step invocation (the same executor
//! with and without it as an observer, in alternating blocks).
//!
//!     cargo bench -p weir --bench pipeline [-- ITERATIONS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_core::{Datatype, Tensor};
use weir_executor::{Executor, RunOptions};
use weir_manifest::parse;
use weir_sandbox::{Sandbox, SandboxOptions};

fn manifest(max_chain: usize) -> String {
    let mut text = format!("[components.noop]\nsource = \"{}\"\n", weir_tests::NOOP);
    for length in [1, 2, max_chain] {
        for i in 0..length {
            let input = if i == 0 { "input.x".to_string() } else { format!("s{}.x", i - 1) };
            text.push_str(&format!(
                "[[pipelines.chain{length}.steps]]\nname = \"s{i}\"\ncomponent = \"noop\"\ninputs = [\"{input}\"]\n"
            ));
        }
        text.push_str(&format!("[pipelines.chain{length}.outputs]\nx = \"s{}.x\"\n", length - 1));
    }
    text
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5_000);
    let manifest = parse(std::path::Path::new("bench.toml"), &manifest(4)).expect("bench manifest");
    let runtime = Sandbox::new(SandboxOptions {
        cache_dir: Some(std::env::temp_dir().join("weir-bench-cache")),
        ..SandboxOptions::default()
    })
    .unwrap();
    let runtime = Arc::new(runtime);
    let board = weir_console::Board::new(manifest.pipelines.values(), weir_core::Pricing::default());
    let watched = Executor::new(runtime.clone(), manifest.clone()).with_observer(Arc::new(board));
    let executor = Executor::new(runtime, manifest);
    // A digits-sized tensor: 64 FP32 values.
    let x = Tensor { name: "x".into(), datatype: Datatype::Fp32, shape: vec![1, 64], data: vec![0; 256] };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("no-op chains through the executor, p50 over {iterations} invocations");
    let mut p50s = Vec::new();
    for length in [1usize, 2, 4] {
        let name = format!("chain{length}");
        let mut samples: Vec<Duration> = tokio.block_on(async {
            let mut samples = Vec::with_capacity(iterations);
            for i in 0..iterations + iterations / 10 {
                let started = Instant::now();
                executor.run(&name, vec![x.clone()], &RunOptions::default()).await.unwrap();
                if i >= iterations / 10 {
                    samples.push(started.elapsed());
                }
            }
            samples
        });
        samples.sort();
        let p50 = samples[samples.len() / 2];
        println!("{length} step(s): p50 {p50:.1?}, p99 {:.1?}", samples[samples.len() * 99 / 100]);
        p50s.push((length, p50));
    }
    let per_step = (p50s[2].1.as_secs_f64() - p50s[0].1.as_secs_f64()) / 3.0;
    println!("cost of one extra no-op step: {:.1}µs (from 1 to 4 steps)", per_step * 1e6);

    // The board: blocks of each executor in turn, so drift hits both alike.
    let block = |executor: &Executor| {
        tokio.block_on(async {
            let mut samples: Vec<Duration> = Vec::with_capacity(iterations / 10);
            for _ in 0..iterations / 10 {
                let started = Instant::now();
                executor.run("chain4", vec![x.clone()], &RunOptions::default()).await.unwrap();
                samples.push(started.elapsed());
            }
            samples
        })
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..20 {
        let (first, second) = if round % 2 == 0 { (&watched, &executor) } else { (&executor, &watched) };
        let (a, b) = (block(first), block(second));
        let (on, off) = if round % 2 == 0 { (a, b) } else { (b, a) };
        with.extend(on);
        without.extend(off);
    }
    with.sort();
    without.sort();
    let (on, off) = (with[with.len() / 2], without[without.len() / 2]);
    println!(
        "the console's board on a 4-step invocation: p50 {on:.1?} with, {off:.1?} without: {:+.2}µs ({:+.1} %)",
        (on.as_secs_f64() - off.as_secs_f64()) * 1e6,
        (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
    );
}
