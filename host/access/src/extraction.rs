//! A detector of model-extraction traffic: an attacker copying a model
//! probes it with many near-identical inputs (small steps around a point,
//! a grid), which honest callers rarely send. Per (key, pipeline) the last
//! `WINDOW` queries are kept as coarse fingerprints (each value quantised
//! relative to the input's largest); when more than `THRESHOLD` of them
//! repeat an earlier fingerprint, the key is throttled on that pipeline for
//! `COOLDOWN` and the event is reported.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Queries looked at, per key and pipeline.
pub const WINDOW: usize = 128;
/// Share of repeated fingerprints in a full window that marks extraction.
pub const THRESHOLD: f64 = 0.5;
/// How long a flagged key is refused on that pipeline.
pub const COOLDOWN: Duration = Duration::from_secs(60);
/// Levels each value is quantised to (relative to the largest value).
const LEVELS: f64 = 8.0;

#[derive(Default)]
struct History {
    seen: VecDeque<u64>,
    until: Option<Instant>,
}

/// What the detector says about one query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Fine,
    /// Flagged by this query: report it.
    Flagged,
    /// Still cooling down from an earlier flag: refuse for this long.
    Throttled(Duration),
}

#[derive(Default)]
pub struct ExtractionDetector {
    histories: Mutex<HashMap<(String, String), History>>,
}

/// A coarse fingerprint of float values: near-identical inputs share it.
pub fn fingerprint(values: &[f64]) -> u64 {
    let largest = values.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    values.len().hash(&mut hasher);
    for value in values {
        ((value / largest * LEVELS).round() as i32).hash(&mut hasher);
    }
    hasher.finish()
}

impl ExtractionDetector {
    /// Record a query by `key` on `pipeline` with this fingerprint.
    pub fn observe(&self, key: &str, pipeline: &str, print: u64) -> Verdict {
        let mut all = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        let history = all.entry((key.to_string(), pipeline.to_string())).or_default();
        let now = Instant::now();
        if let Some(until) = history.until {
            if now < until {
                return Verdict::Throttled(until - now);
            }
            (history.until, history.seen) = (None, VecDeque::new());
        }
        if history.seen.len() == WINDOW {
            history.seen.pop_front();
        }
        history.seen.push_back(print);
        if history.seen.len() < WINDOW {
            return Verdict::Fine;
        }
        let mut distinct = std::collections::HashSet::with_capacity(WINDOW);
        let repeats = history.seen.iter().filter(|p| !distinct.insert(**p)).count();
        if repeats as f64 > THRESHOLD * WINDOW as f64 {
            history.until = Some(now + COOLDOWN);
            return Verdict::Flagged;
        }
        Verdict::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn probing_around_a_point_is_flagged_and_varied_traffic_is_not() {
        let detector = ExtractionDetector::default();
        // Honest: varied inputs.
        for i in 0..(3 * WINDOW) {
            let values: Vec<f64> = (0..64u64).map(|j| (splitmix(i as u64 * 64 + j) % 17) as f64).collect();
            assert_eq!(detector.observe("honest", "p", fingerprint(&values)), Verdict::Fine, "query {i}");
        }
        // An attacker nudging one pixel of one input at a time.
        let base: Vec<f64> = (0..64).map(|j| (j % 17) as f64).collect();
        let verdicts: Vec<Verdict> = (0..WINDOW)
            .map(|i| {
                let mut probe = base.clone();
                probe[i % 64] += 0.01 * (i as f64);
                detector.observe("thief", "p", fingerprint(&probe))
            })
            .collect();
        assert_eq!(verdicts.last(), Some(&Verdict::Flagged), "{verdicts:?}");
        assert!(matches!(detector.observe("thief", "p", fingerprint(&base)), Verdict::Throttled(_)));
        assert_eq!(detector.observe("thief", "other", fingerprint(&base)), Verdict::Fine, "per pipeline");
    }
}
