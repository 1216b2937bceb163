//! A canary's gate: the challenger's share moves up stage by stage while
//! the stated criteria hold over each stage's runs, and drops to nothing the
//! moment one fails. Every verdict carries the figures that caused it.

use std::time::{Duration, Instant};

use serde::Serialize;
use weir_manifest::experiments::{Gate, QualityBound};

use crate::stats::{micros, quantile, Run};

/// Slack for bounds computed in floating point (0.1 × 20 is not quite 2).
const EPSILON: f64 = 1e-9;

/// Latencies kept per stage for its p99 (a stage judged on more runs keeps the newest).
const STAGE_SAMPLES: usize = 100_000;

/// What one stage has seen of the challenger.
#[derive(Debug, Default)]
struct Stage {
    runs: u64,
    errors: u64,
    /// Served runs' latencies (what callers felt), and shadow runs' apart.
    served_us: Vec<u64>,
    shadow_us: Vec<u64>,
    compared: u64,
    agreed: u64,
    /// Feedback on the bound's output: invocations, elements, correct, summed error.
    feedback: u64,
    feedback_elements: u64,
    feedback_correct: u64,
    feedback_abs_error: f64,
}

/// The figures a verdict was reached on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageFigures {
    pub percent: f64,
    pub runs: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Over served runs when the stage had any, else over shadow runs.
    pub p99_ms: Option<f64>,
    pub compared: u64,
    pub agreement: Option<f64>,
    /// Invocations of the challenger given feedback in this stage, and
    /// their accuracy or mean absolute error (the gate's feedback bound).
    pub feedback: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_value: Option<f64>,
    pub seconds: f64,
}

/// What the gate decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Advance {
        to: f64,
    },
    Promote,
    /// Criteria that failed, each with its figure and bound.
    Rollback {
        failed: Vec<String>,
    },
}

/// A canary in progress.
#[derive(Debug)]
pub struct Canary {
    gate: Gate,
    stage: usize,
    since: Instant,
    seen: Stage,
}

impl Canary {
    pub fn new(gate: Gate) -> Canary {
        Canary { gate, stage: 0, since: Instant::now(), seen: Stage::default() }
    }

    /// The challenger's share of traffic now, in percent.
    pub fn percent(&self) -> f64 {
        self.gate.stages[self.stage]
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn run(&mut self, run: &Run, shadow: bool) {
        self.seen.runs += 1;
        self.seen.errors += u64::from(!run.ok);
        let samples = if shadow { &mut self.seen.shadow_us } else { &mut self.seen.served_us };
        if run.ok && samples.len() < STAGE_SAMPLES {
            samples.push(micros(run.wall));
        }
    }

    pub fn compared(&mut self, agreed: bool) {
        self.seen.compared += 1;
        self.seen.agreed += u64::from(agreed);
    }

    /// Feedback on one invocation the challenger answered (its score for
    /// the bound's output; other outputs are ignored).
    pub fn feedback(&mut self, score: &weir_observe::feedback::Score) {
        // Only scores of the bound's output and kind: accuracy needs labels, an error numbers.
        let Some(bound) = self.gate.feedback.as_ref().filter(|f| f.output == score.output) else { return };
        let kind_fits = match bound.metric {
            QualityBound::MinAccuracy(_) => score.correct.is_some(),
            QualityBound::MaxMae(_) => score.abs_error_sum.is_some(),
        };
        if !kind_fits {
            return;
        }
        self.seen.feedback += 1;
        self.seen.feedback_elements += score.elements;
        self.seen.feedback_correct += score.correct.unwrap_or(0);
        self.seen.feedback_abs_error += score.abs_error_sum.unwrap_or(0.0);
    }

    pub fn figures(&self) -> StageFigures {
        let seen = &self.seen;
        let mut latencies = if seen.served_us.is_empty() { seen.shadow_us.clone() } else { seen.served_us.clone() };
        latencies.sort_unstable();
        StageFigures {
            percent: self.percent(),
            runs: seen.runs,
            errors: seen.errors,
            error_rate: if seen.runs == 0 { 0.0 } else { seen.errors as f64 / seen.runs as f64 },
            p99_ms: quantile(&latencies, 0.99).map(|us| us as f64 / 1000.0),
            compared: seen.compared,
            agreement: (seen.compared > 0).then(|| seen.agreed as f64 / seen.compared as f64),
            feedback: seen.feedback,
            feedback_value: (seen.feedback_elements > 0).then(|| match self.gate.feedback.as_ref().map(|f| f.metric) {
                Some(QualityBound::MaxMae(_)) => seen.feedback_abs_error / seen.feedback_elements as f64,
                _ => seen.feedback_correct as f64 / seen.feedback_elements as f64,
            }),
            seconds: self.since.elapsed().as_secs_f64(),
        }
    }

    /// Judge the stage, if it has seen enough (or already failed beyond
    /// recovery); moves to the next stage on `Advance`.
    pub fn judge(&mut self) -> Option<(Verdict, StageFigures)> {
        let figures = self.figures();
        let gate = &self.gate;
        // Errors past what the stage's minimum allows fail it at once: the
        // rate cannot come back under the bound, so waiting only sends
        // more traffic to a bad challenger.
        {
            let max = gate.max_error_rate;
            let allowed = max * figures.runs.max(gate.min_requests) as f64;
            if figures.errors as f64 > allowed + EPSILON {
                let failed = vec![format!(
                    "error rate {:.4} > {max} ({} of {} runs failed)",
                    figures.error_rate, figures.errors, figures.runs
                )];
                return Some((Verdict::Rollback { failed }, figures));
            }
        }
        // Likewise disagreements past what the agreement bound allows.
        if let Some(a) = &gate.agreement {
            let allowed = (1.0 - a.min) * figures.compared.max(gate.min_requests) as f64;
            let disagreed = figures.compared - self.seen.agreed;
            if disagreed as f64 > allowed + EPSILON {
                let failed = vec![format!(
                    "agreement on `{}` cannot reach {}: {disagreed} of {} compared disagreed",
                    a.output, a.min, figures.compared
                )];
                return Some((Verdict::Rollback { failed }, figures));
            }
        }
        let enough = figures.runs >= gate.min_requests && self.since.elapsed() >= gate.min_duration;
        // Agreement is judged on as many comparisons as runs are required
        // (they arrive later than runs: the copy runs after the answer).
        let compared_enough = gate.agreement.as_ref().is_none_or(|_| figures.compared >= gate.min_requests);
        let feedback_enough = gate.feedback.as_ref().is_none_or(|f| figures.feedback >= f.min_feedback);
        if !enough || !compared_enough || !feedback_enough {
            return None;
        }
        let mut failed = Vec::new();
        if let Some(max) = gate.max_p99 {
            let bound = max.as_secs_f64() * 1000.0;
            match figures.p99_ms {
                Some(p99) if p99 > bound => failed.push(format!("p99 {p99:.3} ms > {bound:.3} ms")),
                Some(_) => {}
                None => failed.push(format!("no run succeeded to measure p99 against {bound:.3} ms")),
            }
        }
        if let (Some(a), Some(agreement)) = (&gate.agreement, figures.agreement) {
            if agreement + EPSILON < a.min {
                failed.push(format!(
                    "agreement on `{}` {agreement:.4} < {} ({} of {} compared)",
                    a.output, a.min, self.seen.agreed, figures.compared
                ));
            }
        }
        if let (Some(f), Some(value)) = (&gate.feedback, figures.feedback_value) {
            match f.metric {
                QualityBound::MinAccuracy(min) if value + EPSILON < min => failed.push(format!(
                    "accuracy on `{}` from feedback {value:.4} < {min} ({} invocations)",
                    f.output, figures.feedback
                )),
                QualityBound::MaxMae(max) if value.is_nan() || value > max + EPSILON => failed.push(format!(
                    "mean absolute error on `{}` from feedback {value:.4} > {max} ({} invocations)",
                    f.output, figures.feedback
                )),
                _ => {}
            }
        }
        let verdict = if !failed.is_empty() {
            Verdict::Rollback { failed }
        } else if self.stage + 1 == gate.stages.len() {
            Verdict::Promote
        } else {
            self.stage += 1;
            self.since = Instant::now();
            self.seen = Stage::default();
            Verdict::Advance { to: self.percent() }
        };
        Some((verdict, figures))
    }

    /// Time spent in the current stage.
    pub fn stage_age(&self) -> Duration {
        self.since.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_manifest::experiments::Agreement;

    fn gate() -> Gate {
        Gate {
            stages: vec![10.0, 50.0, 100.0],
            min_requests: 10,
            min_duration: Duration::ZERO,
            max_p99: Some(Duration::from_millis(50)),
            max_error_rate: 0.1,
            agreement: Some(Agreement { output: "eta".into(), tolerance: 0.5, min: 0.9 }),
            feedback: None,
        }
    }

    fn run(ok: bool, ms: u64) -> Run {
        Run { ok, wall: Duration::from_millis(ms), steps: 1, cpu: Duration::ZERO, cost: 0.0 }
    }

    #[test]
    fn a_good_challenger_moves_through_every_stage_to_promotion() {
        let mut canary = Canary::new(gate());
        for expected in [Verdict::Advance { to: 50.0 }, Verdict::Advance { to: 100.0 }, Verdict::Promote] {
            for i in 0..10 {
                assert_eq!(canary.judge(), None, "judged before the stage's minimum, run {i}");
                canary.run(&run(true, 5), i % 2 == 0);
                canary.compared(true);
            }
            assert_eq!(canary.judge().map(|(v, _)| v), Some(expected));
        }
    }

    #[test]
    fn disagreement_rolls_back_with_its_figures() {
        let mut canary = Canary::new(Gate { min_requests: 20, ..gate() });
        // 20 runs at 90% agreement pass the bound exactly; one fewer agreeing fails it.
        for i in 0..20 {
            canary.run(&run(true, 5), false);
            canary.compared(i >= 2);
            assert_eq!(canary.judge().map(|(v, _)| v).filter(|_| i < 19), None, "judged early at run {i}");
        }
        let mut canary = Canary::new(Gate { min_requests: 20, ..gate() });
        for i in 0..3 {
            canary.run(&run(true, 5), false);
            canary.compared(false);
            let judged = canary.judge();
            if i < 2 {
                assert_eq!(judged, None, "2 disagreements are within 10% of 20");
                continue;
            }
            let (verdict, figures) = judged.unwrap();
            let Verdict::Rollback { failed } = verdict else { panic!("{verdict:?}") };
            assert!(failed[0].contains("cannot reach 0.9: 3 of 3 compared disagreed"), "{failed:?}");
            assert_eq!((figures.runs, figures.compared, figures.agreement), (3, 3, Some(0.0)));
        }
    }

    #[test]
    fn agreement_waits_for_as_many_comparisons_as_runs() {
        let mut canary = Canary::new(gate());
        for _ in 0..10 {
            canary.run(&run(true, 5), false);
        }
        for i in 0..9 {
            canary.compared(true);
            assert_eq!(canary.judge(), None, "judged on {} comparisons", i + 1);
        }
        canary.compared(true);
        assert_eq!(canary.judge().map(|(v, _)| v), Some(Verdict::Advance { to: 50.0 }));
    }

    #[test]
    fn a_challenger_with_no_successful_run_fails_a_latency_bound() {
        let only_latency = Gate { agreement: None, max_error_rate: 1.0, ..gate() };
        let mut canary = Canary::new(only_latency);
        for _ in 0..10 {
            canary.run(&run(false, 5), false);
        }
        let (verdict, _) = canary.judge().unwrap();
        assert!(
            matches!(&verdict, Verdict::Rollback { failed } if failed[0].starts_with("no run succeeded")),
            "{verdict:?}"
        );
    }

    #[test]
    fn feedback_below_the_accuracy_bound_rolls_back_once_enough_has_come() {
        use weir_manifest::experiments::FeedbackBound;
        let bound = FeedbackBound { output: "label".into(), metric: QualityBound::MinAccuracy(0.9), min_feedback: 4 };
        let mut canary = Canary::new(Gate { agreement: None, feedback: Some(bound), ..gate() });
        for _ in 0..10 {
            canary.run(&run(true, 5), false);
        }
        let score = |correct| weir_observe::feedback::Score {
            output: "label".into(),
            elements: 1,
            correct: Some(correct),
            abs_error_sum: None,
        };
        for i in 0..3 {
            canary.feedback(&score(u64::from(i == 0)));
            assert_eq!(canary.judge(), None, "waits for 4 feedbacks");
        }
        // Feedback on another output does not count.
        canary.feedback(&weir_observe::feedback::Score { output: "other".into(), ..score(1) });
        assert_eq!(canary.judge(), None);
        canary.feedback(&score(1));
        let (verdict, figures) = canary.judge().unwrap();
        assert!(
            matches!(&verdict, Verdict::Rollback { failed } if failed[0].starts_with("accuracy on `label` from feedback 0.5000 < 0.9")),
            "{verdict:?}"
        );
        assert_eq!((figures.feedback, figures.feedback_value), (4, Some(0.5)));
    }

    #[test]
    fn errors_beyond_recovery_roll_back_before_the_minimum() {
        let mut canary = Canary::new(gate());
        canary.run(&run(false, 5), false);
        assert_eq!(canary.judge(), None, "1 error in 10 allowed runs is within 10%");
        canary.run(&run(false, 5), false);
        let (verdict, figures) = canary.judge().unwrap();
        assert!(matches!(verdict, Verdict::Rollback { .. }));
        assert_eq!(figures.runs, 2);
    }

    #[test]
    fn slow_served_runs_fail_the_latency_bound() {
        let mut canary = Canary::new(gate());
        for _ in 0..10 {
            canary.run(&run(true, 80), false);
            canary.run(&run(true, 1), true);
            canary.compared(true);
        }
        let (verdict, figures) = canary.judge().unwrap();
        assert!(
            matches!(&verdict, Verdict::Rollback { failed } if failed[0].starts_with("p99 80.000 ms")),
            "{verdict:?}"
        );
        assert_eq!(figures.p99_ms, Some(80.0));
    }
}
