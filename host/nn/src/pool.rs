//! ONNX Runtime's intra-op threads, created by weir (through ort's
//! `ThreadManager`) so that their CPU time can be read and charged to the
//! calls they work for. With `threads = 1` there are none: the calling
//! thread does all the work and its own CPU clock already counts it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ort::environment::{ThreadManager, ThreadWorker};

/// The CPU clocks of one session's pool threads, and the calls using them.
#[derive(Default)]
pub struct PoolThreads {
    clocks: Mutex<Vec<libc::clockid_t>>,
    ledger: Mutex<Ledger>,
}

/// Who is owed what: at every call's start and end, the pool CPU used since
/// the last such event is split evenly among the calls in flight. So the
/// charges add up exactly to the pool's CPU time while any call ran, however
/// the calls overlap; what the pool uses with no call in flight (nothing,
/// with spinning off) is charged to no one.
#[derive(Default)]
struct Ledger {
    cpu_at_last_event: Duration,
    next_call: u64,
    in_flight: Vec<(u64, Duration)>,
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
    pub fn cpu(&self) -> Duration {
        self.clocks().iter().map(|&clock| weir_core::clock::cpu_clock(clock)).sum()
    }

    /// Split the CPU used since the last event among the calls in flight.
    fn settle(&self, ledger: &mut Ledger) {
        let now = self.cpu();
        let used = now.saturating_sub(ledger.cpu_at_last_event);
        ledger.cpu_at_last_event = now;
        let calls = ledger.in_flight.len() as u32;
        if calls > 0 {
            for (_, owed) in &mut ledger.in_flight {
                *owed += used / calls;
            }
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start metering one call.
    pub fn begin(self: &Arc<Self>) -> PoolCall {
        let mut ledger = self.ledger();
        self.settle(&mut ledger);
        let id = ledger.next_call;
        ledger.next_call += 1;
        ledger.in_flight.push((id, Duration::ZERO));
        PoolCall { pool: self.clone(), id }
    }
}

/// One call being metered (see [`Ledger`]).
pub struct PoolCall {
    pool: Arc<PoolThreads>,
    id: u64,
}

impl PoolCall {
    /// The pool CPU time charged to this call.
    pub fn finish(self) -> Duration {
        let mut ledger = self.pool.ledger();
        self.pool.settle(&mut ledger);
        let at = ledger.in_flight.iter().position(|(id, _)| *id == self.id);
        at.map(|at| ledger.in_flight.swap_remove(at).1).unwrap_or_default()
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
