//! The board's accounting, driven with plain facts on the ride-eta graph.

use std::path::Path;

use super::*;

fn ride() -> Pipeline {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ride-eta/weir.toml");
    let manifest = weir_manifest::parse(&file, &std::fs::read_to_string(&file).unwrap()).unwrap();
    manifest.pipelines["ride"].clone()
}

fn fact(cpu_us: u64, energy_j: f64) -> Fact {
    Fact { latency_us: Some(cpu_us * 2), cpu_us, energy_j, gib_seconds: 0.5, bytes: 8, ..Fact::default() }
}

/// One whole ride: every step with 4-byte inputs, 100 µs and 0.001 J each.
fn run_ride(board: &Board) {
    let pipeline = ride();
    let mut tally = board.tally("ride").unwrap();
    for step in &pipeline.steps {
        tally.step_began(&step.name, step.inputs.iter().map(|_| 4));
        tally.step_ended(&step.name, fact(100, 0.001), "cpu-model");
    }
    tally.completed(1000, &[("eta_minutes", 8), ("fare", 8), ("accept_probability", 16)], false);
}

fn step<'a>(live: &'a LiveSnapshot, name: &str) -> &'a StepLive {
    live.pipelines[0].steps.iter().find(|s| s.step == name).unwrap()
}

fn edge<'a>(live: &'a LiveSnapshot, from: &str, to: &str) -> &'a EdgeLive {
    live.pipelines[0].edges.iter().find(|e| e.from == from && e.to == to).unwrap()
}

#[test]
fn every_step_edge_and_invocation_is_counted_once() {
    let pipeline = ride();
    let board = Board::new([&pipeline], Pricing::default());
    for _ in 0..3 {
        run_ride(&board);
    }
    let live = board.live(60);
    assert_eq!(live.pipelines[0].invocations.total_calls, 3);
    for s in &pipeline.steps {
        let figures = &step(&live, &s.name).figures;
        assert_eq!((figures.total_calls, figures.total_errors), (3, 0), "{}", s.name);
        assert_eq!(figures.cpu_us_per_call, Some(100.0));
    }
    // Two tensors from the request reach fare on distinct edges; one edge per (from, to).
    assert_eq!(edge(&live, "input:distance_km", "step:fare").figures.bytes_per_call, Some(4.0));
    assert_eq!(edge(&live, "step:eta", "step:fare").figures.total_calls, 3);
    assert_eq!(edge(&live, "step:acceptance", "output:accept_probability").figures.bytes_per_call, Some(16.0));
    // The invocation sums its steps: 4 × 100 µs.
    assert_eq!(live.pipelines[0].invocations.cpu_us_per_call, Some(400.0));
}

#[test]
fn history_is_priced_with_the_receipts_formula() {
    let pipeline = ride();
    let pricing =
        Pricing { cpu_second: 0.5, gib_second: 0.25, kwh: 3.6e6, grid_gco2e_per_kwh: 7.2e6, watts_per_core: 1.0 };
    let board = Board::new([&pipeline], pricing.clone());
    run_ride(&board);
    run_ride(&board);
    let history = board.receipts();
    let eta = history.pipelines[0].steps.iter().find(|s| s.step == "eta").unwrap();
    let (cost, gco2e): (f64, f64) =
        eta.points.iter().map(|p| (p.cost, p.gco2e)).fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    // Two calls: 200 µs of CPU, 1 GiB-s, 0.002 J — by hand: 0.0001 + 0.25 + 0.002; CO2 0.002 × 2.
    assert!((cost - (200e-6 * 0.5 + 1.0 * 0.25 + 0.002)).abs() < 1e-12, "{cost}");
    assert!((gco2e - 0.004).abs() < 1e-12, "{gco2e}");
    assert_eq!((eta.energy_methods.as_slice(), eta.modelled), (&["cpu-model"][..], true));
}

#[test]
fn a_failure_is_charged_to_its_step_and_cancellation_to_the_invocation() {
    let pipeline = ride();
    let board = Board::new([&pipeline], Pricing::default());
    // features finished, eta failed.
    let mut tally = board.tally("ride").unwrap();
    tally.step_began("features", [4, 4, 4, 12].into_iter());
    tally.step_ended("features", fact(50, 0.0005), "rapl");
    tally.step_began("eta", [24].into_iter());
    tally.failed_in(Some("eta"), "step `eta` trapped: ".to_string() + &"x".repeat(2000));
    drop(tally);
    // A second invocation is cut off (dropped without an end): counted, no step blamed.
    let mut cut = board.tally("ride").unwrap();
    cut.step_began("features", [4, 4, 4, 12].into_iter());
    drop(cut);

    let live = board.live(60);
    let invocations = &live.pipelines[0].invocations;
    assert_eq!((invocations.total_calls, invocations.total_errors), (2, 2));
    assert_eq!(invocations.cpu_us_per_call, None, "no invocation finished, so none is averaged");
    let eta = step(&live, "eta");
    assert_eq!((eta.figures.total_calls, eta.figures.total_errors, eta.figures.error_rate), (1, 1, 1.0));
    let message = &eta.last_error.as_ref().unwrap().message;
    assert!(message.starts_with("step `eta` trapped") && message.chars().count() == ERROR_CHARS, "capped");
    assert_eq!(eta.figures.cpu_us_per_call, None, "a failed call measured nothing");
    let features = step(&live, "features");
    assert_eq!((features.figures.total_calls, features.figures.total_errors), (1, 0));
    assert_eq!(features.energy_methods, ["rapl"]);
    assert!(step(&live, "acceptance").last_error.is_none());
    // Inputs that reached a step were counted on their edges, both times.
    assert_eq!(edge(&live, "input:driver", "step:features").figures.total_calls, 2);
}

#[test]
fn until_does_not_count_the_pipeline_outputs() {
    let pipeline = ride();
    let board = Board::new([&pipeline], Pricing::default());
    let mut tally = board.tally("ride").unwrap();
    tally.step_began("features", [4, 4, 4, 12].into_iter());
    tally.step_ended("features", fact(50, 0.0005), "cpu-model");
    tally.completed(300, &[("features", 24)], true);
    let live = board.live(60);
    assert!(live.pipelines[0].edges.iter().filter(|e| e.to.starts_with("output:")).all(|e| e.figures.total_calls == 0));
    assert_eq!(live.pipelines[0].invocations.total_calls, 1);
    assert!(board.tally("nope").is_none(), "an unknown pipeline is not observed");
}
