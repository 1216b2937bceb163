use std::path::Path;

use super::*;

fn example(name: &str) -> Pipeline {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).join("weir.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let manifest = weir_manifest::parse(&file, &text).unwrap();
    manifest.pipelines.into_values().next().unwrap()
}

fn node<'a>(graph: &'a GraphLayout, id: &str) -> &'a Node {
    graph.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
}

fn overlap(a: &Node, b: &Node) -> bool {
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
}

/// Whether two edges' segments cross (their polylines, ignoring shared ends).
fn crossings(graph: &GraphLayout) -> usize {
    type Point = (f64, f64);
    let segments: Vec<(Point, Point, usize)> =
        graph.edges.iter().enumerate().flat_map(|(i, e)| e.points.windows(2).map(move |w| (w[0], w[1], i))).collect();
    let cross = |a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)| {
        let side = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| (q.0 - p.0) * (r.1 - p.1) - (q.1 - p.1) * (r.0 - p.0);
        side(a, b, c) * side(a, b, d) < 0.0 && side(c, d, a) * side(c, d, b) < 0.0
    };
    let mut count = 0;
    for (i, s) in segments.iter().enumerate() {
        for t in &segments[i + 1..] {
            if s.2 != t.2 && cross(s.0, s.1, t.0, t.1) {
                count += 1;
            }
        }
    }
    count
}

fn check_drawable(graph: &GraphLayout) {
    for (i, a) in graph.nodes.iter().enumerate() {
        assert!(a.x >= 0.0 && a.y >= 0.0 && a.x + a.width <= graph.width && a.y + a.height <= graph.height, "{a:?}");
        for b in &graph.nodes[i + 1..] {
            assert!(!overlap(a, b), "{} overlaps {}", a.id, b.id);
        }
    }
    for edge in &graph.edges {
        let (from, to) = (node(graph, &edge.from), node(graph, &edge.to));
        assert_eq!(edge.points.first().unwrap().0, from.x + from.width, "{edge:?} leaves its source's right side");
        assert_eq!(edge.points.last().unwrap().0, to.x, "{edge:?} enters its target's left side");
        assert!(edge.points.windows(2).all(|w| w[0].0 < w[1].0), "{edge:?} runs left to right");
    }
}

#[test]
fn ride_eta_fans_out_and_joins_with_the_fewest_crossings() {
    let graph = layout(&example("ride-eta"));
    check_drawable(&graph);
    let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    for id in [
        "input:distance_km",
        "input:hour",
        "input:congestion",
        "input:driver",
        "step:features",
        "step:eta",
        "step:acceptance",
        "step:fare",
        "output:eta_minutes",
        "output:fare",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // Every tensor route is on one edge: 4 into features, 2 fan-out, 3 into fare, outputs.
    let routes: usize = graph.edges.iter().map(|e| e.tensors.len()).sum();
    let declared = example("ride-eta");
    let expected = declared.steps.iter().map(|s| s.inputs.len()).sum::<usize>() + declared.outputs.len();
    assert_eq!(routes, expected);
    let fare_eta = graph.edges.iter().find(|e| e.from == "step:eta" && e.to == "step:fare").unwrap();
    assert_eq!(fare_eta.tensors, ["variable as eta_minutes"]);
    // The request's distance skips the feature and model columns: it bends.
    let skip = graph.edges.iter().find(|e| e.from == "input:distance_km" && e.to == "step:fare").unwrap();
    assert_eq!(skip.points.len(), 4, "{skip:?}");
    // Columns: inputs, features, models, fare, outputs.
    // A column's nodes share a centre line.
    let x = |id| node(&graph, id).x + node(&graph, id).width / 2.0;
    assert!(x("input:hour") < x("step:features") && x("step:features") < x("step:eta"));
    assert_eq!(x("step:eta"), x("step:acceptance"));
    assert!(x("step:eta") < x("step:fare") && x("step:fare") < x("output:fare"));
    assert_eq!(node(&graph, "step:eta").models, ["eta"]);
    // One crossing is the fewest any drawing in columns allows: distance and
    // congestion each feed both features and fare. If their waypoints pass
    // features on one side, one input's edge to features crosses the other's
    // waypoint; if on opposite sides, the model steps lie between them and
    // acceptance's edge to its output must cross one on its way out.
    assert_eq!(crossings(&graph), 1, "{:#?}", graph.edges);
}

#[test]
fn digits_is_a_chain() {
    let graph = layout(&example("digits"));
    check_drawable(&graph);
    let steps: Vec<&Node> = graph.nodes.iter().filter(|n| n.kind == NodeKind::Step).collect();
    assert_eq!(steps.len(), 3);
    assert!(steps.windows(2).all(|w| w[0].x < w[1].x));
    assert_eq!(crossings(&graph), 0);
}

#[test]
fn a_large_pipeline_is_laid_out_quickly_and_drawably() {
    // 120 steps in 12 chains of 10 that each read a request input and the
    // previous step: every column 12 nodes high, plus long edges.
    let mut text = String::from("[components.c]\nsource = \"c.wasm\"\n[pipelines.big]\n");
    for chain in 0..12 {
        text.push_str(&format!("[[pipelines.big.inputs]]\nname = \"in{chain}\"\ndatatype = \"FP32\"\nshape = [-1]\n"));
    }
    for chain in 0..12 {
        for link in 0..10 {
            let from = if link == 0 { format!("input.in{chain}") } else { format!("s{chain}_{}.y", link - 1) };
            text.push_str(&format!(
                "[[pipelines.big.steps]]\nname = \"s{chain}_{link}\"\ncomponent = \"c\"\ninputs = [\"x={from}\", \"input.in{}\"]\n",
                (chain + 1) % 12
            ));
        }
    }
    text.push_str("[pipelines.big.outputs]\n");
    for chain in 0..12 {
        text.push_str(&format!("out{chain} = \"s{chain}_9.y\"\n"));
    }
    let manifest = weir_manifest::parse(Path::new("/nowhere/weir.toml"), &text).unwrap();
    let started = std::time::Instant::now();
    let graph = layout(&manifest.pipelines["big"]);
    check_drawable(&graph);
    assert_eq!(graph.nodes.len(), 12 + 120 + 12);
    // Generous for a debug build on a shared machine; the searches are skipped here.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}
