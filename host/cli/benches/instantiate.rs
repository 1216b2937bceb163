//! Bench: the host's own cost of one invocation of a trivial step —
//! instantiate from `InstancePre` + call `process` + drop the store — with the
//! pooling allocator on and off, in one run. Prints p50/p99/mean per mode.
//!
//!     cargo bench -p weir --bench instantiate [-- ITERATIONS]

use std::time::{Duration, Instant};

use weir_core::{StepGrants, StepLimits, Tensor};
use weir_sandbox::{EngineOptions, Sandbox, SandboxOptions};

struct Summary {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn summarise(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Summary { p50: at(0.50), p99: at(0.99), mean }
}

fn measure(pooling: bool, iterations: usize) -> Summary {
    let options = SandboxOptions {
        engine: EngineOptions { max_instances: if pooling { 16 } else { 0 }, ..EngineOptions::default() },
        cache_dir: Some(std::env::temp_dir().join("weir-bench-cache")),
        ..SandboxOptions::default()
    };
    let runtime = Sandbox::new(options).expect("runtime");
    // WEIR_BENCH_NOOP: another build of the no-op step (another target, say).
    let noop = std::env::var("WEIR_BENCH_NOOP").unwrap_or_else(|_| weir_tests::NOOP.to_string());
    let component = runtime.load_file(noop.as_ref()).expect("noop component");
    let grants = StepGrants::default();
    let limits = StepLimits::default();
    let input = Tensor { name: "x".into(), datatype: weir_core::Datatype::Fp32, shape: vec![4], data: vec![0; 16] };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        let run = || async {
            let started = Instant::now();
            let out =
                runtime.invoke(&component, "noop", &grants, &limits, vec![input.clone()]).await.expect("noop call");
            assert_eq!(out.outputs.len(), 1);
            started.elapsed()
        };
        for _ in 0..iterations / 10 {
            run().await;
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            samples.push(run().await);
        }
        summarise(samples)
    })
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    println!("noop step, instantiate + call + drop, {iterations} iterations per mode");
    println!("{:<12} {:>10} {:>10} {:>10}", "allocator", "p50", "p99", "mean");
    let mut results = Vec::new();
    for (label, pooling) in [("pooling", true), ("on-demand", false)] {
        let s = measure(pooling, iterations);
        println!("{label:<12} {:>10.1?} {:>10.1?} {:>10.1?}", s.p50, s.p99, s.mean);
        results.push(s);
    }
    println!("on-demand / pooling p50 ratio: {:.2}", results[1].p50.as_secs_f64() / results[0].p50.as_secs_f64());
}
