//! A pipeline's dataflow graph laid out left to right for drawing: request
//! inputs in the first column, each step one column after the last step it
//! reads from, the pipeline's outputs in the last. Rows within a column are
//! ordered to reduce crossings (barycentre sweeps, as Sugiyama-style layouts
//! do); an edge that skips columns bends through a waypoint in each column it
//! crosses, so fan-outs and joins (ride-eta) stay readable. Computed here, so
//! the page needs no layout library.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use weir_manifest::{Pipeline, Source};

const NODE_HEIGHT: f64 = 84.0;
const ROW_GAP: f64 = 28.0;
const COLUMN_GAP: f64 = 110.0;
const MARGIN: f64 = 20.0;
/// Approximate width of one label character at the page's font size.
const CHAR_WIDTH: f64 = 7.5;
/// Steps show three lines of live figures; inputs and outputs only a name.
const MIN_WIDTH: f64 = 180.0;
const MIN_END_WIDTH: f64 = 110.0;
const SWEEPS: usize = 8;
/// Rounds of neighbour swaps after the sweeps (each only while it helps).
const TRANSPOSE_PASSES: usize = 8;
/// Up to this many slots (nodes and waypoints), orders are searched beyond the sweeps.
const SEARCHED_SLOTS: usize = 60;
/// Up to this many request inputs, sweeps start from every order of them (6! = 720).
const PERMUTED_INPUTS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Input,
    Step,
    Output,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// `input:NAME`, `step:NAME` or `output:NAME` (what live figures key on).
    pub id: String,
    pub kind: NodeKind,
    pub name: String,
    /// The step's component (steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The models the step may use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Every tensor flowing from one node to another, drawn as one edge.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `tensor` or `tensor as name-the-reader-sees`, one per tensor.
    pub tensors: Vec<String>,
    /// Whether any of them is marked sensitive (its data is never shown).
    pub sensitive: bool,
    /// From the source's right side to the target's left side, through a
    /// waypoint in every column in between.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphLayout {
    pub pipeline: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
}

/// The node a source's tensor comes from.
pub fn source_node(source: &Source) -> String {
    match source {
        Source::Input(name) => format!("input:{name}"),
        Source::Step { step, .. } => format!("step:{step}"),
    }
}

/// A node or a waypoint of a long edge, in its column.
struct Slot {
    /// Index into the nodes, or `None` for a waypoint.
    node: Option<usize>,
    /// Slots in the previous and next column this one is joined to.
    left: Vec<usize>,
    right: Vec<usize>,
}

pub fn layout(pipeline: &Pipeline) -> GraphLayout {
    let (mut nodes, columns_of) = nodes_of(pipeline);
    let edges = edges_of(pipeline);
    let column_count = columns_of.iter().max().map_or(1, |c| c + 1);

    // Slots per column: the nodes, then a waypoint per column an edge crosses.
    let mut columns: Vec<Vec<Slot>> = (0..column_count).map(|_| Vec::new()).collect();
    let mut slot_of = vec![(0, 0); nodes.len()];
    for (index, &c) in columns_of.iter().enumerate() {
        slot_of[index] = (c, columns[c].len());
        columns[c].push(Slot { node: Some(index), left: Vec::new(), right: Vec::new() });
    }
    let mut routes: Vec<Vec<(usize, usize)>> = Vec::new();
    // Every route names a step or an input (the manifest checker sees to
    // it); an edge whose end is not a node would be left out, not a panic.
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let ends: Vec<Option<(usize, usize)>> =
        edges.iter().map(|e| Some((*index.get(e.from.as_str())?, *index.get(e.to.as_str())?))).collect();
    let edges: Vec<Edge> = edges.into_iter().zip(&ends).filter(|(_, ends)| ends.is_some()).map(|(e, _)| e).collect();
    for (from, to) in ends.into_iter().flatten() {
        let (from, to) = (slot_of[from], slot_of[to]);
        let mut route = vec![from];
        for (c, column) in columns.iter_mut().enumerate().take(to.0).skip(from.0 + 1) {
            route.push((c, column.len()));
            column.push(Slot { node: None, left: Vec::new(), right: Vec::new() });
        }
        route.push(to);
        for pair in route.windows(2) {
            columns[pair[0].0][pair[0].1].right.push(pair[1].1);
            columns[pair[1].0][pair[1].1].left.push(pair[0].1);
        }
        routes.push(route);
    }

    let order = order_rows(&columns);
    // Column x: after the widest slot of every earlier column.
    let widths: Vec<f64> = columns
        .iter()
        .map(|slots| slots.iter().filter_map(|s| s.node.map(|n| nodes[n].width)).fold(MIN_END_WIDTH, f64::max))
        .collect();
    let mut xs = Vec::with_capacity(column_count);
    let mut x = MARGIN;
    for width in &widths {
        xs.push(x);
        x += width + COLUMN_GAP;
    }
    let tallest = order.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let height = tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP + 2.0 * MARGIN;
    // Row y of every slot, each column centred vertically.
    let mut ys: Vec<Vec<f64>> = columns.iter().map(|slots| vec![0.0; slots.len()]).collect();
    for (c, rows) in order.iter().enumerate() {
        let top = (height - (rows.len() as f64 * (NODE_HEIGHT + ROW_GAP) - ROW_GAP)) / 2.0;
        for (row, &slot) in rows.iter().enumerate() {
            ys[c][slot] = top + row as f64 * (NODE_HEIGHT + ROW_GAP);
        }
    }
    for (index, node) in nodes.iter_mut().enumerate() {
        let (c, slot) = slot_of[index];
        node.x = xs[c] + (widths[c] - node.width) / 2.0;
        node.y = ys[c][slot];
    }
    let edges = edges
        .into_iter()
        .zip(routes)
        .map(|(edge, route)| {
            let last = route.len() - 1;
            let points = route
                .iter()
                .enumerate()
                .map(|(i, &(c, slot))| {
                    let y = ys[c][slot] + NODE_HEIGHT / 2.0;
                    let x = match i {
                        0 => xs[c] + (widths[c] + nodes[columns[c][slot].node.unwrap_or(0)].width) / 2.0,
                        i if i == last => xs[c] + (widths[c] - nodes[columns[c][slot].node.unwrap_or(0)].width) / 2.0,
                        _ => xs[c] + widths[c] / 2.0,
                    };
                    (x, y)
                })
                .collect();
            Edge { points, ..edge }
        })
        .collect();
    let edges = spread_ports(edges);
    GraphLayout {
        pipeline: pipeline.name.clone(),
        description: pipeline.description.clone(),
        nodes,
        edges,
        width: x - COLUMN_GAP + MARGIN,
        height,
    }
}

/// Edges meeting at one side of a node leave or enter at ports spread down
/// that side (in the order of where they come from or go to), so their
/// labels do not sit on each other.
fn spread_ports(mut edges: Vec<Edge>) -> Vec<Edge> {
    for incoming in [false, true] {
        let mut by_node: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, edge) in edges.iter().enumerate() {
            by_node.entry(if incoming { &edge.to } else { &edge.from }).or_default().push(i);
        }
        let mut moves = Vec::new();
        for (_, mut members) in by_node {
            // Order by the y of the neighbouring point, then spread.
            let neighbour = |i: usize| {
                let points = &edges[i].points;
                if incoming {
                    points[points.len() - 2].1
                } else {
                    points[1].1
                }
            };
            members.sort_by(|&a, &b| neighbour(a).total_cmp(&neighbour(b)));
            let count = members.len() as f64;
            for (k, &i) in members.iter().enumerate() {
                let points = &edges[i].points;
                let centre = if incoming { points[points.len() - 1].1 } else { points[0].1 };
                let top = centre - NODE_HEIGHT / 2.0;
                moves.push((i, top + NODE_HEIGHT * (k as f64 + 1.0) / (count + 1.0)));
            }
        }
        for (i, y) in moves {
            let points = &mut edges[i].points;
            let end = if incoming { points.len() - 1 } else { 0 };
            points[end].1 = y;
        }
    }
    edges
}

/// The nodes, with the column of each.
fn nodes_of(pipeline: &Pipeline) -> (Vec<Node>, Vec<usize>) {
    let node = |kind, name: &str, component: Option<String>, models: Vec<String>| {
        let longest = models.iter().map(|m| m.len() + 8).chain([name.len(), component.as_ref().map_or(0, String::len)]);
        let least = if kind == NodeKind::Step { MIN_WIDTH } else { MIN_END_WIDTH };
        let width = (longest.max().unwrap_or(0) as f64 * CHAR_WIDTH + 24.0).max(least);
        let prefix = match kind {
            NodeKind::Input => "input",
            NodeKind::Step => "step",
            NodeKind::Output => "output",
        };
        Node {
            id: format!("{prefix}:{name}"),
            kind,
            name: name.to_string(),
            component,
            models,
            x: 0.0,
            y: 0.0,
            width,
            height: NODE_HEIGHT,
        }
    };
    let mut nodes = Vec::new();
    let mut columns = Vec::new();
    for name in pipeline.request_inputs() {
        nodes.push(node(NodeKind::Input, name, None, Vec::new()));
        columns.push(0);
    }
    // Steps come in a topological order: every source's column is known.
    let mut step_column: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &pipeline.steps {
        let c = 1 + step
            .inputs
            .iter()
            .map(|r| match &r.source {
                Source::Input(_) => 0,
                Source::Step { step, .. } => step_column.get(step.as_str()).copied().unwrap_or(0),
            })
            .max()
            .unwrap_or(0);
        step_column.insert(&step.name, c);
        nodes.push(node(NodeKind::Step, &step.name, Some(step.component.clone()), step.grants.nn.models.clone()));
        columns.push(c);
    }
    let last = 1 + step_column.values().copied().max().unwrap_or(0);
    for output in &pipeline.outputs {
        nodes.push(node(NodeKind::Output, &output.name, None, Vec::new()));
        columns.push(last);
    }
    (nodes, columns)
}

/// Edges grouped by (from, to), in the order routes are declared.
fn edges_of(pipeline: &Pipeline) -> Vec<Edge> {
    let mut edges: Vec<Edge> = Vec::new();
    let routes = pipeline
        .steps
        .iter()
        .flat_map(|s| s.inputs.iter().map(move |r| (r, format!("step:{}", s.name))))
        .chain(pipeline.outputs.iter().map(|r| (r, format!("output:{}", r.name))));
    for (route, to) in routes {
        let from = source_node(&route.source);
        let label = route.label();
        let sensitive = pipeline.sensitive.contains(&route.source);
        match edges.iter_mut().find(|e| e.from == from && e.to == to) {
            Some(edge) => {
                edge.tensors.push(label);
                edge.sensitive |= sensitive;
            }
            None => edges.push(Edge { from, to, tensors: vec![label], sensitive, points: Vec::new() }),
        }
    }
    edges
}

/// Row order of each column's slots: start from declaration order, sweep
/// right and left placing each slot at the mean row of its neighbours in
/// the column just fixed, then swap neighbours in a column while that
/// removes crossings (the "transpose" step of dot's ordering).
fn order_rows(columns: &[Vec<Slot>]) -> Vec<Vec<usize>> {
    let declared: Vec<Vec<usize>> = columns.iter().map(|slots| (0..slots.len()).collect()).collect();
    // Sweeps settle in a local optimum that depends on where they start:
    // start from every order of the request's inputs when they are few.
    let mut best = (crossings(columns, &declared), declared.clone());
    // The searches below are for graphs people read; a huge one gets the sweeps alone.
    let small = columns.iter().map(Vec::len).sum::<usize>() <= SEARCHED_SLOTS;
    let inputs = declared.first().cloned().unwrap_or_default();
    let starts = if small { permutations(inputs) } else { vec![inputs] };
    for first in starts {
        if best.0 == 0 {
            break;
        }
        let mut start = declared.clone();
        if let Some(column) = start.first_mut() {
            *column = first;
        }
        let candidate = sweep(columns, start);
        if candidate.0 < best.0 {
            best = candidate;
        }
    }
    let (mut count, mut order) = best;
    for _ in 0..if small { TRANSPOSE_PASSES } else { 0 } {
        let mut improved = false;
        for c in 0..order.len() {
            for i in 1..order[c].len() {
                order[c].swap(i - 1, i);
                let swapped = crossings(columns, &order);
                if swapped < count {
                    count = swapped;
                    improved = true;
                } else {
                    order[c].swap(i - 1, i);
                }
            }
        }
        if !improved || count == 0 {
            break;
        }
    }
    order
}

/// Every order of `items` when there are at most [`PERMUTED_INPUTS`], else
/// the given order and its reverse.
fn permutations(items: Vec<usize>) -> Vec<Vec<usize>> {
    if items.len() > PERMUTED_INPUTS {
        let reversed = items.iter().rev().copied().collect();
        return vec![items, reversed];
    }
    let mut all = vec![Vec::new()];
    for item in items {
        all = all
            .into_iter()
            .flat_map(|partial: Vec<usize>| {
                (0..=partial.len()).map(move |at| {
                    let mut next = partial.clone();
                    next.insert(at, item);
                    next
                })
            })
            .collect();
    }
    all
}

/// Barycentre sweeps from `order`; the best order seen, with its crossings.
fn sweep(columns: &[Vec<Slot>], mut order: Vec<Vec<usize>>) -> (usize, Vec<Vec<usize>>) {
    let mut best = (crossings(columns, &order), order.clone());
    for sweep in 0..SWEEPS {
        let rightwards = sweep % 2 == 0;
        let visit: Vec<usize> = if rightwards {
            (1..columns.len()).collect()
        } else {
            (0..columns.len().saturating_sub(1)).rev().collect()
        };
        for c in visit {
            let fixed = ranks(&order[if rightwards { c - 1 } else { c + 1 }]);
            let current = ranks(&order[c]);
            let key = |slot: usize| {
                let neighbours = if rightwards { &columns[c][slot].left } else { &columns[c][slot].right };
                if neighbours.is_empty() {
                    current[slot] as f64
                } else {
                    neighbours.iter().map(|&n| fixed[n] as f64).sum::<f64>() / neighbours.len() as f64
                }
            };
            // A stable sort keeps the current order among equals.
            order[c].sort_by(|&a, &b| key(a).total_cmp(&key(b)));
        }
        let count = crossings(columns, &order);
        if count < best.0 {
            best = (count, order.clone());
        }
    }
    best
}

/// Each slot's row, from a column's order.
fn ranks(order: &[usize]) -> Vec<usize> {
    let mut rank = vec![0; order.len()];
    for (row, &slot) in order.iter().enumerate() {
        rank[slot] = row;
    }
    rank
}

/// Pairs of edges that cross between neighbouring columns.
fn crossings(columns: &[Vec<Slot>], order: &[Vec<usize>]) -> usize {
    let mut total = 0;
    for c in 1..columns.len() {
        let (left, right) = (ranks(&order[c - 1]), ranks(&order[c]));
        let edges: Vec<(usize, usize)> = columns[c - 1]
            .iter()
            .enumerate()
            .flat_map(|(slot, s)| s.right.iter().map(move |&to| (slot, to)))
            .map(|(from, to)| (left[from], right[to]))
            .collect();
        for (i, a) in edges.iter().enumerate() {
            total += edges[i + 1..].iter().filter(|b| (a.0 < b.0 && a.1 > b.1) || (a.0 > b.0 && a.1 < b.1)).count();
        }
    }
    total
}

#[cfg(test)]
mod tests;
