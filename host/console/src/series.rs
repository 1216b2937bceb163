//! Time series in fixed slots (a ring of the last N slots of S seconds) with
//! a log-scale latency histogram per slot: constant memory per step however
//! much traffic comes, and quantiles over any recent window.

use std::collections::VecDeque;

/// Histogram buckets: bucket `i` holds durations up to 2^(i/4) µs (±19%);
/// the last, 2^(127/4) µs ≈ 49 minutes, also holds anything longer.
const BUCKETS: usize = 128;

fn bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    ((micros as f64).log2() * 4.0).ceil().min((BUCKETS - 1) as f64) as usize
}

fn bucket_upper_micros(index: usize) -> f64 {
    (index as f64 / 4.0).exp2()
}

/// What happened in one slot.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// Unix seconds / slot length.
    pub index: u64,
    pub calls: u64,
    pub errors: u64,
    pub cold_starts: u64,
    pub cpu_us: u64,
    pub energy_j: f64,
    pub gib_seconds: f64,
    pub bytes: u64,
    latency: Vec<u32>,
}

impl Slot {
    pub fn record_latency(&mut self, micros: u64) {
        if self.latency.is_empty() {
            self.latency = vec![0; BUCKETS];
        }
        self.latency[bucket(micros)] += 1;
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    slot_secs: u64,
    capacity: usize,
    slots: VecDeque<Slot>,
}

impl Series {
    pub fn new(slot_secs: u64, capacity: usize) -> Series {
        Series { slot_secs: slot_secs.max(1), capacity: capacity.max(1), slots: VecDeque::new() }
    }

    pub fn slot_secs(&self) -> u64 {
        self.slot_secs
    }

    /// The slot for `now` (Unix seconds), made when time moved on; the
    /// oldest beyond the capacity go.
    pub fn at(&mut self, now_secs: u64) -> &mut Slot {
        let index = now_secs / self.slot_secs;
        if self.slots.back().is_none_or(|last| last.index < index) {
            self.slots.push_back(Slot { index, ..Slot::default() });
            while self.slots.len() > self.capacity {
                self.slots.pop_front();
            }
        }
        // A clock stepping back lands in the newest slot (there is one: made above if none).
        let newest = self.slots.len() - 1;
        &mut self.slots[newest]
    }

    /// Slots that began within the last `window_secs` before `now_secs`.
    pub fn recent(&self, now_secs: u64, window_secs: u64) -> impl Iterator<Item = &Slot> {
        let first = now_secs.saturating_sub(window_secs.saturating_sub(1)).div_ceil(self.slot_secs);
        self.slots.iter().filter(move |slot| slot.index >= first)
    }

    pub fn all(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }
}

/// Quantiles of the latencies in `slots` (upper bounds of their buckets, in
/// µs); `None` without any.
pub fn quantiles<'a>(slots: impl Iterator<Item = &'a Slot>, qs: &[f64]) -> Vec<Option<f64>> {
    let mut merged = vec![0u64; BUCKETS];
    for slot in slots {
        for (total, &count) in merged.iter_mut().zip(&slot.latency) {
            *total += u64::from(count);
        }
    }
    let total: u64 = merged.iter().sum();
    qs.iter()
        .map(|&q| {
            if total == 0 {
                return None;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            merged
                .iter()
                .position(|&count| {
                    seen += count;
                    seen >= rank
                })
                .map(bucket_upper_micros)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_within_a_bucket_of_the_truth() {
        let mut series = Series::new(1, 60);
        // 1..=1000 µs, one each: p50 = 500, p99 = 990.
        for micros in 1..=1000 {
            series.at(100).record_latency(micros);
        }
        let q = quantiles(series.recent(100, 10), &[0.5, 0.99]);
        let (p50, p99) = (q[0].unwrap(), q[1].unwrap());
        assert!((500.0..=500.0 * 1.19).contains(&p50), "{p50}");
        assert!((990.0..=990.0 * 1.19).contains(&p99), "{p99}");
        assert_eq!(quantiles(series.recent(200, 10), &[0.5]), [None], "an old slot is out of the window");
    }

    #[test]
    fn the_ring_keeps_its_capacity_and_windows_select_by_time() {
        let mut series = Series::new(10, 3);
        for t in [0, 5, 10, 25, 30, 41] {
            series.at(t).calls += 1;
        }
        let kept: Vec<(u64, u64)> = series.all().map(|s| (s.index, s.calls)).collect();
        assert_eq!(kept, [(2, 1), (3, 1), (4, 1)], "slots 0 and 1 fell out");
        let recent: u64 = series.recent(41, 15).map(|s| s.calls).sum();
        assert_eq!(recent, 2, "slots starting at 30 and 40");
        // A clock that steps back does not open a slot in the past.
        series.at(12).calls += 1;
        assert_eq!(series.all().last().unwrap().calls, 2);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}
