//! Clocks: wall time as Unix milliseconds, and per-thread CPU time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// The calling thread's CPU time.
pub fn thread_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The whole process's CPU time (every thread, user and system).
pub fn process_cpu_time() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The CPU time of the clock `clock` (a thread's, from `pthread_getcpuclockid`).
pub fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock id makes
    // clock_gettime fail, which is handled.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A future that adds up the CPU time its polls take, so the time follows
/// the work across worker threads and excludes time spent waiting.
pub struct CpuMetered<F> {
    inner: Pin<Box<F>>,
    cpu: Duration,
}

impl<F: Future> CpuMetered<F> {
    pub fn new(inner: F) -> Self {
        CpuMetered { inner: Box::pin(inner), cpu: Duration::ZERO }
    }
}

impl<F: Future> Future for CpuMetered<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let started = thread_cpu_time();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(started);
        self.cpu += spent;
        polled.map(|output| (output, self.cpu))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_follows_work_not_waiting() {
        let started = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let idle = thread_cpu_time() - started;
        assert!(idle < Duration::from_millis(10), "sleeping costs no CPU: {idle:?}");
        // Work until the CPU clock has advanced 20 ms (however long that
        // takes on a busy machine); a clock that does not move fails here.
        let started = thread_cpu_time();
        let wall = std::time::Instant::now();
        while thread_cpu_time() - started < Duration::from_millis(20) {
            assert!(wall.elapsed() < Duration::from_secs(20), "the thread CPU clock does not advance");
            std::hint::black_box((0..1000u64).sum::<u64>());
        }
    }
}
