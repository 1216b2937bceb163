//! How long each GPU has been busy with this process's inferences: what the
//! NVML energy meter divides a device's joules by, so that each step gets
//! the device's energy in proportion to its share of the busy time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// GPUs counted; inferences on higher indexes are not (nor is their energy read).
pub const MAX_DEVICES: usize = 16;

static BUSY_NANOS: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];

/// Count `busy` of inference time on GPU `index`.
pub fn record(index: u32, busy: Duration) {
    if let Some(counter) = BUSY_NANOS.get(index as usize) {
        counter.fetch_add(u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// GPU `index`'s busy time so far.
pub fn busy(index: u32) -> Duration {
    BUSY_NANOS.get(index as usize).map_or(Duration::ZERO, |c| Duration::from_nanos(c.load(Ordering::Relaxed)))
}
