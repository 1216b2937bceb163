//! ONNX Runtime's intra-op threads, created by weir (through ort's
//! `ThreadManager`) so that their CPU time can be read and charged to the
//! calls they work for. With `threads = 1` there are none: the calling
//! thread does all the work and its own CPU clock already counts it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ort::environment::{ThreadManager, ThreadWorker};

/// The CPU clocks of one session's pool threads.
#[derive(Default)]
pub struct PoolThreads {
    clocks: Mutex<Vec<libc::clockid_t>>,
    in_flight: AtomicUsize,
}

impl PoolThreads {
    fn clocks(&self) -> std::sync::MutexGuard<'_, Vec<libc::clockid_t>> {
        self.clocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Threads in the pool now.
    pub fn len(&self) -> usize {
        self.clocks().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// CPU time all pool threads have used so far.
    fn cpu(&self) -> Duration {
        self.clocks().iter().map(|&clock| weir_core::clock::cpu_clock(clock)).sum()
    }

    /// Start metering one call.
    pub fn begin(self: &Arc<Self>) -> PoolCall {
        let overlap = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        PoolCall { pool: self.clone(), start: self.cpu(), overlap }
    }
}

/// One call being metered. Calls that overlap on one session share its pool,
/// so the pool's CPU time during a call is split evenly among them (an
/// apportionment, exact when calls do not overlap).
pub struct PoolCall {
    pool: Arc<PoolThreads>,
    start: Duration,
    overlap: usize,
}

impl PoolCall {
    /// The pool CPU time charged to this call.
    pub fn finish(self) -> Duration {
        let used = self.pool.cpu().saturating_sub(self.start);
        let overlap = self.overlap.max(self.pool.in_flight.load(Ordering::Acquire)).max(1);
        self.pool.in_flight.fetch_sub(1, Ordering::AcqRel);
        used / overlap as u32
    }
}

/// Creates ONNX Runtime's pool threads, recording each one's CPU clock
/// before `create` returns (so no call can miss a thread that started late).
pub struct MeteredThreads(pub Arc<PoolThreads>);

/// A pool thread and the clock it is known by.
pub struct PoolThread {
    handle: std::thread::JoinHandle<()>,
    pool: Arc<PoolThreads>,
    clock: Option<libc::clockid_t>,
}

impl ThreadManager for MeteredThreads {
    type Thread = PoolThread;

    fn create(&mut self, worker: ThreadWorker) -> ort::Result<Self::Thread> {
        use std::os::unix::thread::JoinHandleExt;
        let handle = std::thread::Builder::new()
            .name("weir-ort".into())
            .spawn(move || worker.work())
            .map_err(|e| ort::Error::new(format!("cannot start an ONNX Runtime thread: {e}")))?;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive until joined, so its pthread_t is valid.
        let clock = (unsafe { libc::pthread_getcpuclockid(handle.as_pthread_t(), &mut clock) } == 0).then_some(clock);
        if let Some(clock) = clock {
            self.0.clocks().push(clock);
        }
        Ok(PoolThread { handle, pool: self.0.clone(), clock })
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        if let Some(clock) = thread.clock {
            thread.pool.clocks().retain(|&c| c != clock);
        }
        thread.handle.join().map_err(|_| ort::Error::new("an ONNX Runtime thread panicked"))
    }
}
