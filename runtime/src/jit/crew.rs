//! Threads that take one step together: part 0 of the step runs on the engine's thread, parts
//! 1.. on the crew's, each in its own generated function, and they meet at a [`Barrier`] that the
//! generated code calls wherever one part may read what another wrote.
//!
//! Between steps the crew's threads spin for a while (a step of a run follows the last within
//! microseconds), then sleep until the next step wakes them.

use std::hint::spin_loop;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a crew thread spins for the next step before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(200);

/// A barrier for the parts of a step, called by the generated code.
#[repr(C, align(64))]
pub(super) struct Barrier {
    arrived: AtomicUsize,
    parties: usize,
    // On a cache line of its own: the waiting parts read it while arrivals write `arrived`.
    generation: Generation,
}

#[repr(align(64))]
struct Generation(AtomicUsize);

impl Barrier {
    pub(super) fn new(parties: usize) -> Self {
        Barrier {
            arrived: AtomicUsize::new(0),
            parties,
            generation: Generation(AtomicUsize::new(0)),
        }
    }
}

/// Wait until every part of the step has arrived.
///
/// # Safety
/// `b` must point to a live [`Barrier`].
pub(super) unsafe extern "C" fn snnc_jit_barrier(b: *const Barrier) {
    // SAFETY: guaranteed by the caller.
    let b = unsafe { &*b };
    let generation = b.generation.0.load(Ordering::Acquire);
    if b.arrived.fetch_add(1, Ordering::AcqRel) + 1 == b.parties {
        // The last to arrive opens it (and sets it up for the next time first).
        b.arrived.store(0, Ordering::Relaxed);
        b.generation
            .0
            .store(generation.wrapping_add(1), Ordering::Release);
        return;
    }
    let mut spins = 0u32;
    while b.generation.0.load(Ordering::Acquire) == generation {
        if spins < 1 << 14 {
            spins += 1;
            spin_loop();
        } else {
            // Another process has the core the other part needs.
            std::thread::yield_now();
        }
    }
}

/// What the engine tells its crew.
struct Orders {
    /// Bumped once per step.
    step: AtomicU64,
    /// The step's `held` argument (written before `step`).
    held: AtomicBool,
    stop: AtomicBool,
}

/// The threads running parts 1.. of every step.
pub(super) struct Crew {
    orders: Arc<Orders>,
    threads: Vec<JoinHandle<()>>,
}

/// A part's step function, sent to its thread.
struct Part(unsafe extern "C" fn(u64));

impl Crew {
    /// Start one thread per function (parts 1.. of the step, in order).
    pub(super) fn start(parts: Vec<unsafe extern "C" fn(u64)>) -> std::io::Result<Crew> {
        let orders = Arc::new(Orders {
            step: AtomicU64::new(0),
            held: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::with_capacity(parts.len());
        for (k, f) in parts.into_iter().enumerate() {
            let (mine, f) = (Arc::clone(&orders), Part(f));
            let t = std::thread::Builder::new()
                .name(format!("snnc-step-part{}", k + 1))
                .spawn(move || {
                    let f = f;
                    let mut seen = 0;
                    while let Some(held) = mine.next(&mut seen) {
                        // SAFETY: the engine bumps `step` only while it runs part 0 of a step,
                        // which returns after this part has (the last barrier), and keeps the
                        // code and the memory it touches alive until the crew is stopped.
                        unsafe { (f.0)(u64::from(held)) };
                    }
                });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Stop the ones already started.
                    drop(Crew { orders, threads });
                    return Err(e);
                }
            }
        }
        Ok(Crew { orders, threads })
    }

    /// Start a step on every crew thread (the caller then runs part 0).
    pub(super) fn go(&self, held: bool) {
        self.orders.held.store(held, Ordering::Relaxed);
        self.orders.step.fetch_add(1, Ordering::Release);
        for t in &self.threads {
            t.thread().unpark();
        }
    }
}

impl Orders {
    /// Wait for the step after `seen`: its `held`, or `None` when told to stop.
    fn next(&self, seen: &mut u64) -> Option<bool> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let step = self.step.load(Ordering::Acquire);
            if step != *seen {
                *seen = step;
                return Some(self.held.load(Ordering::Relaxed));
            }
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN_BEFORE_SLEEP {
                spin_loop();
            } else {
                std::thread::park_timeout(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.orders.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            t.thread().unpark();
            // A crew thread cannot panic (it runs generated code and atomics).
            let _ = t.join();
        }
    }
}
