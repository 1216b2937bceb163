//! Shapley values of a set function `v` over `n` features, from a budget of
//! evaluations. A [`Plan`] says which coalitions to evaluate; after the
//! caller evaluated them, [`Plan::solve`] turns the values into
//! attributions. Pure arithmetic: the caller decides what "evaluate" means
//! (here: replaying sandboxed steps with some inputs at their baseline).
//!
//! - exact: every coalition (2^n evaluations), the textbook formula;
//! - KernelSHAP (Lundberg & Lee 2017): coalitions drawn from the Shapley
//!   kernel, in complementary pairs, and a least-squares fit constrained to
//!   sum to `v(all) - v(none)`; exact for additive functions;
//! - permutation sampling (Štrumbelj & Kononenko 2014): marginal
//!   contributions along random orders and their reverses, with a standard
//!   error per feature.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The most features an exact enumeration takes (2^12 evaluations).
pub const MAX_EXACT_FEATURES: usize = 12;

/// The most features a sampled method attributes: KernelSHAP's fit holds
/// an n × n system (n² memory, n³ time to solve) and every coalition is n
/// flags, so n is bounded here, not only by the budget.
pub const MAX_FEATURES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Exact when every coalition fits the budget, KernelSHAP otherwise.
    Auto,
    Exact,
    KernelShap,
    Permutation,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Exact => "exact",
            Method::KernelShap => "kernel_shap",
            Method::Permutation => "permutation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "exact Shapley values of {features} features need 2^{features} = {needed} evaluations, over the budget of \
         {budget} (or the limit of 2^{MAX_EXACT_FEATURES}); use `kernel_shap` or `permutation`, or raise `budget`"
    )]
    ExactTooBig { features: usize, needed: u128, budget: usize },
    #[error("a budget of {budget} evaluations is too small for {features} features with `{method}`: it needs at least {needed}")]
    BudgetTooSmall { method: &'static str, features: usize, budget: usize, needed: usize },
    #[error("{features} features are over the limit of {MAX_FEATURES} one explanation attributes")]
    TooManyFeatures { features: usize },
}

/// Which coalitions to evaluate, and how to turn their values into attributions.
#[derive(Debug, Clone)]
pub struct Plan {
    n: usize,
    method: Method,
    /// Distinct coalitions; index 0 is the empty one, index 1 the full one.
    coalitions: Vec<Vec<bool>>,
    /// For permutation sampling: each order, as coalition indices of its prefixes (0..=n).
    orders: Vec<(Vec<usize>, Vec<usize>)>,
    /// For KernelSHAP: how often each coalition was drawn (its weight in the fit).
    draws: Vec<f64>,
}

/// Attributions that sum to `full - empty`.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub attributions: Vec<f64>,
    /// `v` with every feature at its baseline.
    pub empty: f64,
    /// `v` with every feature at its value.
    pub full: f64,
    /// Standard errors of the estimates (permutation sampling only).
    pub std_errors: Option<Vec<f64>>,
    pub method: Method,
}

/// A small deterministic generator (SplitMix64): the same seed, the same plan.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

struct Coalitions {
    list: Vec<Vec<bool>>,
    index: HashMap<Vec<bool>, usize>,
    draws: Vec<f64>,
}

impl Coalitions {
    fn new(n: usize) -> Self {
        let mut set = Coalitions { list: Vec::new(), index: HashMap::new(), draws: Vec::new() };
        set.add(vec![false; n]);
        set.add(vec![true; n]);
        set
    }

    fn add(&mut self, coalition: Vec<bool>) -> usize {
        if let Some(&i) = self.index.get(&coalition) {
            self.draws[i] += 1.0;
            return i;
        }
        self.draws.push(1.0);
        self.list.push(coalition.clone());
        self.index.insert(coalition, self.list.len() - 1);
        self.list.len() - 1
    }
}

impl Plan {
    /// Plan the evaluations for `n` features within `budget` (which counts
    /// the empty and the full coalition).
    pub fn new(method: Method, n: usize, budget: usize, seed: u64) -> Result<Plan, PlanError> {
        if n > MAX_FEATURES {
            return Err(PlanError::TooManyFeatures { features: n });
        }
        let exact_fits = n <= MAX_EXACT_FEATURES && (1usize << n) <= budget;
        let method = match method {
            Method::Auto if exact_fits => Method::Exact,
            Method::Auto => Method::KernelShap,
            other => other,
        };
        let mut set = Coalitions::new(n);
        let mut orders = Vec::new();
        let mut random = Random(seed);
        match method {
            Method::Exact => {
                if !exact_fits {
                    return Err(PlanError::ExactTooBig { features: n, needed: 1u128 << n.min(127), budget });
                }
                for bits in 0..(1usize << n) {
                    set.add((0..n).map(|i| bits >> i & 1 == 1).collect());
                }
            }
            Method::KernelShap => {
                // The fit has n - 1 free unknowns: ask for twice as many rows.
                let needed = 2 * n + 2;
                if budget < needed {
                    return Err(PlanError::BudgetTooSmall { method: "kernel_shap", features: n, budget, needed });
                }
                if n >= 2 {
                    kernel_coalitions(&mut set, n, budget, &mut random);
                }
            }
            Method::Permutation => {
                // One order and its reverse share the two ends: 2n evaluations per pair.
                let needed = 2 * n.max(1) + 2;
                if budget < needed {
                    return Err(PlanError::BudgetTooSmall { method: "permutation", features: n, budget, needed });
                }
                let pairs = ((budget - 2) / (2 * n.max(1))).max(1);
                for _ in 0..pairs {
                    let mut order: Vec<usize> = (0..n).collect();
                    random.shuffle(&mut order);
                    for order in [order.clone(), order.into_iter().rev().collect()] {
                        let mut member = vec![false; n];
                        let mut prefixes = vec![0];
                        for &i in &order {
                            member[i] = true;
                            prefixes.push(set.add(member.clone()));
                        }
                        orders.push((order, prefixes));
                    }
                }
            }
            Method::Auto => unreachable!("resolved above"),
        }
        Ok(Plan { n, method, coalitions: set.list, orders, draws: set.draws })
    }

    /// The method the plan uses (`auto` resolved).
    pub fn method(&self) -> Method {
        self.method
    }

    /// The coalitions to evaluate: `true` = the feature takes its value,
    /// `false` = its baseline.
    pub fn coalitions(&self) -> &[Vec<bool>] {
        &self.coalitions
    }

    /// Attributions from `values[i] = v(coalitions()[i])`.
    pub fn solve(&self, values: &[f64]) -> Solution {
        assert_eq!(values.len(), self.coalitions.len(), "one value per coalition");
        // With no features the two ends are one coalition.
        let (empty, full) = (values[0], values.get(1).copied().unwrap_or(values[0]));
        let n = self.n;
        let (attributions, std_errors) = match self.method {
            _ if n == 0 => (Vec::new(), None),
            _ if n == 1 => (vec![full - empty], None),
            Method::Exact => (self.exact(values), None),
            Method::Permutation => {
                let (mean, se) = self.permutation(values);
                (mean, Some(se))
            }
            _ => (self.kernel(values), None),
        };
        Solution { attributions, empty, full, std_errors, method: self.method }
    }

    fn exact(&self, values: &[f64]) -> Vec<f64> {
        let n = self.n;
        // weight(|S|) = |S|! (n - |S| - 1)! / n!
        let factorial = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
        let weights: Vec<f64> = (0..n).map(|s| factorial(s) * factorial(n - s - 1) / factorial(n)).collect();
        let value_of: HashMap<&[bool], f64> =
            self.coalitions.iter().map(Vec::as_slice).zip(values.iter().copied()).collect();
        let mut phi = vec![0.0; n];
        for (coalition, &v) in self.coalitions.iter().zip(values) {
            let size = coalition.iter().filter(|&&m| m).count();
            for i in 0..n {
                if coalition[i] {
                    continue;
                }
                let mut with = coalition.clone();
                with[i] = true;
                phi[i] += weights[size] * (value_of[with.as_slice()] - v);
            }
        }
        phi
    }

    fn permutation(&self, values: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        let mut samples = vec![Vec::new(); n];
        // Contributions of an order and its reverse are averaged first (antithetic pairs).
        for pair in self.orders.chunks(2) {
            let mut sum = vec![0.0; n];
            for (order, prefixes) in pair {
                for (k, &i) in order.iter().enumerate() {
                    sum[i] += values[prefixes[k + 1]] - values[prefixes[k]];
                }
            }
            for i in 0..n {
                samples[i].push(sum[i] / pair.len() as f64);
            }
        }
        let mean: Vec<f64> = samples.iter().map(|s| s.iter().sum::<f64>() / s.len() as f64).collect();
        let se = samples
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                if s.len() < 2 {
                    return f64::NAN;
                }
                let var = s.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (s.len() - 1) as f64;
                (var / s.len() as f64).sqrt()
            })
            .collect();
        (mean, se)
    }

    /// Least squares `v(S) - v(∅) ≈ Σ_{i∈S} φ_i` over the sampled
    /// coalitions (drawn from the kernel, so equally weighted), with
    /// `Σ φ_i = v(all) - v(∅)` imposed by eliminating the last feature.
    fn kernel(&self, values: &[f64]) -> Vec<f64> {
        let n = self.n;
        let (empty, full) = (values[0], values[1]);
        let total = full - empty;
        let m = n - 1;
        let mut normal = vec![vec![0.0; m]; m];
        let mut rhs = vec![0.0; m];
        // Coalitions were drawn from the kernel: each weighs as often as it was drawn.
        for ((coalition, &v), &weight) in self.coalitions.iter().zip(values).zip(&self.draws).skip(2) {
            let last = if coalition[n - 1] { 1.0 } else { 0.0 };
            let row: Vec<f64> = (0..m).map(|i| if coalition[i] { 1.0 } else { 0.0 } - last).collect();
            let y = v - empty - last * total;
            for a in 0..m {
                if row[a] == 0.0 {
                    continue;
                }
                rhs[a] += weight * row[a] * y;
                for b in 0..m {
                    normal[a][b] += weight * row[a] * row[b];
                }
            }
        }
        // A whisper of ridge keeps a rank-deficient sample solvable.
        for (a, row) in normal.iter_mut().enumerate() {
            row[a] += 1e-9;
        }
        let mut phi = solve_linear(normal, rhs);
        let rest: f64 = phi.iter().sum();
        phi.push(total - rest);
        phi
    }
}

/// Coalitions drawn from the Shapley kernel: a size `s` with probability
/// ∝ (n-1) / (s (n-s)), then a uniform subset of that size, each with its
/// complement.
fn kernel_coalitions(set: &mut Coalitions, n: usize, budget: usize, random: &mut Random) {
    let sizes: Vec<f64> = (1..n).map(|s| (n - 1) as f64 / (s * (n - s)) as f64).collect();
    let total: f64 = sizes.iter().sum();
    let distinct = if n < 63 { (1u64 << n) - 2 } else { u64::MAX } as usize;
    let mut draws = 0usize;
    while set.list.len() + 1 < budget && set.list.len() - 2 < distinct && draws < budget * 20 {
        draws += 1;
        let mut pick = random.unit() * total;
        let mut size = n - 1;
        for (k, w) in sizes.iter().enumerate() {
            if pick < *w {
                size = k + 1;
                break;
            }
            pick -= w;
        }
        let mut order: Vec<usize> = (0..n).collect();
        random.shuffle(&mut order);
        let mut coalition = vec![false; n];
        for &i in &order[..size] {
            coalition[i] = true;
        }
        let complement = coalition.iter().map(|m| !m).collect();
        set.add(coalition);
        set.add(complement);
    }
}

/// Gaussian elimination with partial pivoting (the system is small and
/// symmetric positive definite).
fn solve_linear(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-300 {
            continue;
        }
        for row in col + 1..n {
            let f = a[row][col] / p;
            if f == 0.0 {
                continue;
            }
            let (upper, lower) = a.split_at_mut(row);
            for (target, pivot_value) in lower[0][col..].iter_mut().zip(&upper[col][col..]) {
                *target -= f * pivot_value;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = if a[row][row].abs() < 1e-300 { 0.0 } else { (b[row] - s) / a[row][row] };
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluate(plan: &Plan, f: impl Fn(&[bool]) -> f64) -> Solution {
        let values: Vec<f64> = plan.coalitions().iter().map(|c| f(c)).collect();
        plan.solve(&values)
    }

    fn linear(weights: &[f64]) -> impl Fn(&[bool]) -> f64 + '_ {
        move |c: &[bool]| 0.5 + c.iter().zip(weights).filter(|(m, _)| **m).map(|(_, w)| w).sum::<f64>()
    }

    #[test]
    fn every_method_is_exact_on_an_additive_function() {
        let weights: Vec<f64> = (0..8).map(|i| (i as f64 - 3.5) * 0.7).collect();
        for method in [Method::Exact, Method::KernelShap, Method::Permutation] {
            let plan = Plan::new(method, 8, 256, 7).unwrap();
            let solution = evaluate(&plan, linear(&weights));
            for (got, want) in solution.attributions.iter().zip(&weights) {
                assert!((got - want).abs() < 1e-6, "{method:?}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn kernel_shap_is_exact_on_thirty_additive_features_from_a_budget() {
        let weights: Vec<f64> = (0..30).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
        let plan = Plan::new(Method::KernelShap, 30, 200, 1).unwrap();
        assert!(plan.coalitions().len() <= 200);
        let solution = evaluate(&plan, linear(&weights));
        for (got, want) in solution.attributions.iter().zip(&weights) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn interactions_are_split_as_shapley_says() {
        // v = x0 * x1 (both at 1 vs baseline 0) + 2 x2: φ = (0.5, 0.5, 2).
        let f = |c: &[bool]| if c[0] && c[1] { 1.0 } else { 0.0 } + if c[2] { 2.0 } else { 0.0 };
        let exact = evaluate(&Plan::new(Method::Exact, 3, 8, 0).unwrap(), f);
        assert_eq!(exact.attributions, vec![0.5, 0.5, 2.0]);
        let kernel = evaluate(&Plan::new(Method::KernelShap, 3, 64, 0).unwrap(), f);
        for (got, want) in kernel.attributions.iter().zip([0.5, 0.5, 2.0]) {
            assert!((got - want).abs() < 1e-6, "{:?}", kernel.attributions);
        }
        let sampled = evaluate(&Plan::new(Method::Permutation, 3, 200, 3).unwrap(), f);
        let sum: f64 = sampled.attributions.iter().sum();
        assert!((sum - 3.0).abs() < 1e-9, "efficiency holds per order");
        assert!(sampled.std_errors.is_some());
    }

    #[test]
    fn kernel_shap_gives_a_dummy_feature_nothing_when_most_coalitions_are_drawn() {
        // f = x0 x1 x2 with x3 a dummy: Shapley gives (1/3, 1/3, 1/3, 0).
        let f = |c: &[bool]| if c[0] && c[1] && c[2] { 1.0 } else { 0.0 };
        let kernel = evaluate(&Plan::new(Method::KernelShap, 4, 15, 3).unwrap(), f);
        assert!(kernel.attributions[3].abs() < 0.05, "{:?}", kernel.attributions);
    }

    #[test]
    fn budgets_are_checked() {
        assert!(matches!(Plan::new(Method::Exact, 13, 1 << 20, 0), Err(PlanError::ExactTooBig { .. })));
        assert!(matches!(Plan::new(Method::Exact, 5, 16, 0), Err(PlanError::ExactTooBig { .. })));
        assert!(matches!(Plan::new(Method::KernelShap, 30, 20, 0), Err(PlanError::BudgetTooSmall { .. })));
        let many = MAX_FEATURES + 1;
        assert!(matches!(Plan::new(Method::Permutation, many, 8192, 0), Err(PlanError::TooManyFeatures { .. })));
        assert_eq!(Plan::new(Method::Auto, 4, 16, 0).unwrap().method(), Method::Exact);
        assert_eq!(Plan::new(Method::Auto, 5, 16, 0).unwrap().method(), Method::KernelShap);
        for n in [2, 6, 30] {
            assert!(Plan::new(Method::Permutation, n, 300, 0).unwrap().coalitions().len() <= 300);
        }
    }
}
