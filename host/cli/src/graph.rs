//! A pipeline drawn as a graph, in DOT (Graphviz) and Mermaid, so a user can
//! see the dataflow: request inputs, steps, the tensors on every edge, and
//! the pipeline's outputs.

use std::fmt::Write;

use weir_manifest::{Pipeline, Source};

/// Node id of a source in either syntax.
fn node(source: &Source) -> String {
    match source {
        Source::Input(name) => format!("in_{}", sanitize(name)),
        Source::Step { step, .. } => format!("step_{}", sanitize(step)),
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

pub fn to_dot(pipeline: &Pipeline) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{\n  rankdir=LR;", pipeline.name);
    for name in pipeline.request_inputs() {
        let _ = writeln!(out, "  in_{} [label=\"input {name}\", shape=invhouse];", sanitize(name));
    }
    for step in &pipeline.steps {
        let models = if step.grants.nn.models.is_empty() {
            String::new()
        } else {
            format!("\\nmodels: {}", step.grants.nn.models.join(", "))
        };
        let _ = writeln!(
            out,
            "  step_{} [label=\"{}\\n({}){models}\", shape=box];",
            sanitize(&step.name),
            step.name,
            step.component
        );
        for route in &step.inputs {
            let _ = writeln!(
                out,
                "  {} -> step_{} [label=\"{}\"];",
                node(&route.source),
                sanitize(&step.name),
                route.label()
            );
        }
    }
    for route in &pipeline.outputs {
        let _ = writeln!(out, "  out_{} [label=\"output {}\", shape=house];", sanitize(&route.name), route.name);
        let _ =
            writeln!(out, "  {} -> out_{} [label=\"{}\"];", node(&route.source), sanitize(&route.name), route.label());
    }
    out.push_str("}\n");
    out
}

pub fn to_mermaid(pipeline: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    for name in pipeline.request_inputs() {
        let _ = writeln!(out, "  in_{}[/\"input {name}\"/]", sanitize(name));
    }
    for step in &pipeline.steps {
        let _ = writeln!(out, "  step_{}[\"{} ({})\"]", sanitize(&step.name), step.name, step.component);
        for route in &step.inputs {
            let _ = writeln!(out, "  {} -->|{}| step_{}", node(&route.source), route.label(), sanitize(&step.name));
        }
    }
    for route in &pipeline.outputs {
        let _ = writeln!(out, "  out_{}[\\\"output {}\"\\]", sanitize(&route.name), route.name);
        let _ = writeln!(out, "  {} -->|{}| out_{}", node(&route.source), route.label(), sanitize(&route.name));
    }
    out
}
