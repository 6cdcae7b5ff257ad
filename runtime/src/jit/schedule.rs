//! `fixed_relu` populations in the JIT: stepped element by element when their current changes,
//! and scheduled by next spike step while it is held.
//!
//! A `fixed_relu` voltage is an integer (units of 2⁻²⁴ of the threshold, see
//! [`snnc_ir::semantics::fixed_relu_step`]), so under a drive `q` held from a voltage `V₀` the
//! count after `k` steps is exactly `⌊(V₀ + k·q) / 2²⁴⌋`, and the next step on which it grows is
//! `⌈((c+1)·2²⁴ − V₀) / q⌉`. While the module's inputs are held and the population's current
//! reads only inputs and constants, a step visits only the units due to spike on it: a timing
//! wheel of [`WHEEL`] buckets keyed by step holds the units due within that many steps, and a
//! list holds the rest, swept into the wheel once per turn. The voltages in the frame stay at
//! their values at the start of the held stretch and are brought up to date when it ends (the
//! inputs change), which is why scheduling needs the voltage to be read by nothing but the
//! population itself (SPEC.md, "Skipping work exactly").

use super::host::Buf;
use snnc_ir::semantics::{self, FIXED_ONE};
use std::cell::{Cell, RefCell};

/// Buckets of the timing wheel (steps ahead it holds).
const WHEEL: usize = 256;

/// Held steps after which the voltages are brought up to date and the schedule rebuilt, so that
/// `V₀ + k·q` stays far inside `i64`.
const REBASE: u64 = 1 << 31;

/// One group of a `fixed_relu` instruction: current, voltage, output, new voltage.
#[derive(Clone, Copy)]
pub(super) struct Group {
    pub(super) j: Buf,
    pub(super) v: Buf,
    pub(super) y: Buf,
    pub(super) v1: Buf,
    pub(super) n: usize,
}

/// A `fixed_relu` instruction as a host job.
pub(super) struct FixedRelu {
    /// Gain, amplitude, step.
    pub(super) params: (f32, f32, f32),
    pub(super) groups: Vec<Group>,
    /// The current is time-invariant and the voltage read by nothing but this instruction (one
    /// group, computed in place): held steps may be scheduled.
    pub(super) schedulable: bool,
    /// No other value shares the output's buffer: a scheduled step clears only the last
    /// step's spikes.
    pub(super) own_output: bool,
    /// Set by the engine before each step: the inputs are the last step's.
    pub(super) held: Cell<bool>,
    /// Set by a reset: the next step runs element by element.
    pub(super) fresh: Cell<bool>,
    per_sample: RefCell<Vec<Wheel>>,
}

/// The schedule of one sample.
#[derive(Default)]
struct Wheel {
    /// Per unit: the voltage at the start of the held stretch (in `[0, 2²⁴)`, units of 2⁻²⁴)
    /// and the drive per step (at most 2³⁰), side by side so that a unit costs one cache line.
    units: Vec<(u32, u32)>,
    /// Held steps since the stretch began.
    k: u64,
    /// Units due on step `d`, in bucket `d % WHEEL` (only for `d < k + WHEEL`).
    buckets: Vec<Vec<u32>>,
    /// Units due later: (step, unit).
    far: Vec<(u64, u32)>,
    /// Units that spiked on the last step (their outputs are cleared on the next).
    spiked: Vec<u32>,
    /// The last step wrote every unit's output (it stepped them all).
    written: bool,
    /// Scratch for a stretch's start: the units with a drive.
    driven: Vec<u32>,
}

impl Wheel {
    /// Schedule unit `i`, whose count after step `k` is `c`, for its next spike.
    fn schedule(&mut self, i: usize, c: i64) {
        let (v0, q) = self.units[i];
        let (v0, q) = (i64::from(v0), i64::from(q));
        if q == 0 {
            return;
        }
        let need = (c + 1) * FIXED_ONE - v0;
        // ⌈need / q⌉: a floating estimate, made exact in integers (a division of i64s costs
        // several times as much, and a stretch's start schedules every unit).
        let mut due = (need as f64 / q as f64) as i64;
        while due * q < need {
            due += 1;
        }
        while (due - 1) * q >= need {
            due -= 1;
        }
        debug_assert!(due as u64 > self.k);
        let due = due as u64;
        if due - self.k < WHEEL as u64 {
            self.buckets[due as usize % WHEEL].push(i as u32);
        } else {
            self.far.push((due, i as u32));
        }
    }

    /// Step every unit once from voltages `v` on currents `j`, writing outputs `y` and new
    /// voltages `v1` (`fixed_relu_step`'s arithmetic), and start a stretch from there.
    ///
    /// # Safety
    /// `v`, `j`, `y` and `v1` must hold `n` elements; `v1` may be `v` (read before written).
    unsafe fn step_and_start(
        &mut self,
        (g, a, dt): (f32, f32, f32),
        n: usize,
        (j, v): (*const f32, *const f32),
        (y, v1): (*mut f32, *mut f32),
    ) {
        self.units.clear();
        self.units.reserve(n);
        self.k = 0;
        self.buckets.resize_with(WHEEL, Vec::new);
        self.buckets.iter_mut().for_each(Vec::clear);
        self.far.clear();
        self.spiked.clear();
        self.written = true;
        let height = a / dt;
        // Two passes: stepping every unit without a branch on its data, listing the units with
        // a drive as it goes; then scheduling those (a unit without one never spikes).
        let mut driven = std::mem::take(&mut self.driven);
        driven.clear();
        driven.resize(n, 0);
        let mut listed = 0;
        for i in 0..n {
            // SAFETY: guaranteed by the caller.
            let (ji, vi) = unsafe { (*j.add(i), *v.add(i)) };
            let (count, rest, q) = semantics::fixed_relu_integers((g, dt), ji, vi);
            // SAFETY: guaranteed by the caller.
            unsafe {
                *y.add(i) = height * count as f32;
                *v1.add(i) = rest as f32 / FIXED_ONE as f32;
            }
            // In range: `rest` in [0, 2²⁴), `q` at most 2³⁰.
            self.units.push((rest as u32, q as u32));
            driven[listed] = i as u32;
            listed += usize::from(q != 0);
        }
        for &i in &driven[..listed] {
            self.schedule(i as usize, 0);
        }
        self.driven = driven;
    }

    /// Write the voltages as stepping would have left them after the stretch's `k` steps.
    fn bring_up_to_date(&self, v: &mut [f32]) {
        let k = self.k as i64;
        for (o, &(v0, q)) in v.iter_mut().zip(&self.units) {
            let total = i64::from(v0) + k * i64::from(q);
            *o = (total & (FIXED_ONE - 1)) as f32 / FIXED_ONE as f32;
        }
    }
}

impl FixedRelu {
    pub(super) fn new(
        params: (f32, f32, f32),
        groups: Vec<Group>,
        schedulable: bool,
        own_output: bool,
    ) -> Self {
        FixedRelu {
            params,
            groups,
            schedulable,
            own_output,
            held: Cell::new(false),
            fresh: Cell::new(true),
            per_sample: RefCell::new(Vec::new()),
        }
    }

    /// One step of the whole batch.
    ///
    /// # Safety
    /// The buffers must be laid out by the frame for `batch` samples, with the results apart
    /// from the operands except a voltage updated in its own place, and nothing else may touch
    /// them during the call.
    pub(super) unsafe fn run(&self, batch: usize) {
        let (g, a, dt) = self.params;
        let mut wheels = self.per_sample.borrow_mut();
        let scheduled = self.schedulable && !self.fresh.get() && wheels.len() == batch;
        if scheduled && self.held.get() && wheels.iter().all(|w| w.k + 1 < REBASE) {
            let grp = self.groups[0];
            let height = a / dt;
            for (s, w) in wheels.iter_mut().enumerate() {
                // SAFETY: guaranteed by the caller.
                let y = unsafe { grp.y.sample_mut(s, grp.n) };
                if self.own_output && !w.written {
                    w.spiked.iter().for_each(|&i| y[i as usize] = 0.0);
                } else {
                    y.fill(0.0);
                }
                w.written = false;
                w.spiked.clear();
                w.k += 1;
                let k = w.k;
                if k % WHEEL as u64 == 0 {
                    let mut far = std::mem::take(&mut w.far);
                    far.retain(|&(due, i)| {
                        let soon = due < k + WHEEL as u64;
                        if soon {
                            w.buckets[due as usize % WHEEL].push(i);
                        }
                        !soon
                    });
                    w.far = far;
                }
                let mut due = std::mem::take(&mut w.buckets[k as usize % WHEEL]);
                for &i in &due {
                    let u = i as usize;
                    let (v0, q) = w.units[u];
                    let (v0, q) = (i64::from(v0), i64::from(q));
                    let c = (v0 + k as i64 * q) >> 24;
                    let before = (v0 + (k as i64 - 1) * q) >> 24;
                    y[u] = height * (c - before) as f32;
                    w.spiked.push(i);
                    w.schedule(u, c);
                }
                // Every new due step is later than this one and within the wheel's reach, so
                // nothing went into this bucket meanwhile: give it back its allocation.
                due.clear();
                w.buckets[k as usize % WHEEL] = due;
            }
            return;
        }
        if scheduled {
            // The stretch ends: bring the voltages up to date before stepping.
            let grp = self.groups[0];
            for (s, w) in wheels.iter().enumerate() {
                // SAFETY: guaranteed by the caller; the voltage is this instruction's alone.
                w.bring_up_to_date(unsafe { grp.v.sample_mut(s, grp.n) });
            }
        }
        self.fresh.set(false);
        if self.schedulable {
            let grp = self.groups[0];
            wheels.resize_with(batch, Wheel::default);
            for (s, w) in wheels.iter_mut().enumerate() {
                // SAFETY: guaranteed by the caller (the voltage is updated in its own place).
                unsafe {
                    w.step_and_start(
                        self.params,
                        grp.n,
                        (grp.j.ptr_at(s), grp.v.ptr_at(s)),
                        (grp.y.ptr_at(s) as *mut f32, grp.v1.ptr_at(s) as *mut f32),
                    );
                }
            }
            return;
        }
        for grp in &self.groups {
            for s in 0..batch {
                // SAFETY: guaranteed by the caller. A voltage updated in place is read at each
                // element before it is written.
                unsafe {
                    let j = grp.j.sample(s, grp.n);
                    let y = grp.y.sample_mut(s, grp.n);
                    let (vp, v1p) = (grp.v.ptr_at(s), grp.v1.ptr_at(s) as *mut f32);
                    for k in 0..grp.n {
                        let (out, v1) = semantics::fixed_relu_step((g, a, dt), j[k], *vp.add(k));
                        y[k] = out;
                        *v1p.add(k) = v1;
                    }
                }
            }
        }
    }
}
