//! Max-pool circuit levels in the JIT, event-driven: a level updates only the units whose
//! inputs are not all zero.
//!
//! A level of the circuit `lower-maxpool` builds is four instructions in a row:
//!
//! ```text
//! %j = sparse %x, @idx, @w         ; per unit, a fixed number of terms with fixed weights
//! %u, %v1 = if_neuron %j, $v        ; next $v = %v1, computed in place
//! %b = gather %x, @b_idx
//! %max = add %b, %u                 ; or add %u, %b
//! ```
//!
//! A unit none of whose inputs (its `sparse` terms and its `gather` element) is non-zero gets
//! `j = ±0` (finite weights), so its voltage gains `±0` and stays what it was, and it emits
//! nothing while `v < 1`; its `max` is `±0`. Every step leaves every voltage below 1 (the IF
//! unit subtracts `⌊v⌋` when `v ≥ 1`), so after one full step the rule holds for good: a step
//! finds the non-zero inputs (a scan of `x`, or the list the level before made), updates the units
//! that read them, and writes zeros elsewhere (SPEC.md §2.2). The first step after a reset
//! updates every unit.

use super::host::Buf;
use snnc_ir::NeuronModel;
use snnc_ir::semantics;
use std::cell::{Cell, RefCell};

/// One circuit level as a host job.
pub(super) struct CircuitLevel {
    /// The level's input (spikes, or the level before's `max`).
    pub(super) x: Buf,
    pub(super) n_x: usize,
    /// Units.
    pub(super) rows: usize,
    /// Terms per unit, their weights, and per unit its `d` input columns.
    pub(super) weights: Vec<f32>,
    pub(super) cols: Vec<u32>,
    /// Per unit, the input its `gather` reads.
    pub(super) b_idx: Vec<u32>,
    /// Gain, amplitude, step of the IF units.
    pub(super) params: (f32, f32, f32),
    /// The `add` reads `u` first.
    pub(super) u_first: bool,
    pub(super) v: Buf,
    pub(super) u: Buf,
    pub(super) max: Buf,
    /// Per input element, the units that read it: `readers[start[c]..start[c+1]]`.
    start: Vec<u32>,
    readers: Vec<u32>,
    /// What made the input, when it keeps a list of the input's non-zero elements.
    pub(super) source: Option<Source>,
    /// Set by a reset: the next step updates every unit.
    pub(super) fresh: Cell<bool>,
    state: RefCell<Work>,
}

/// A job whose output is a level's input and which lists that output's non-zero elements.
#[derive(Clone, Copy)]
pub(super) enum Source {
    /// The level before (its non-zero `max` outputs).
    Level(*const CircuitLevel),
    /// A scheduled `fixed_relu` population (the units that spiked, on scheduled steps).
    Neurons(*const super::schedule::FixedRelu),
}

/// Per-step work space.
#[derive(Default)]
struct Work {
    /// Per sample: the units whose `max` is non-zero after this step (read by the next level).
    nonzero: Vec<Vec<u32>>,
    /// Units touched this step, and a mark per unit.
    touched: Vec<u32>,
    mark: Vec<bool>,
    /// Non-zero inputs of the sample at hand.
    active: Vec<u32>,
    /// The sample's updated units: (unit, u, max).
    results: Vec<(u32, f32, f32)>,
}

impl CircuitLevel {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        (x, n_x): (Buf, usize),
        (weights, cols, b_idx): (Vec<f32>, Vec<u32>, Vec<u32>),
        params: (f32, f32, f32),
        u_first: bool,
        (v, u, max): (Buf, Buf, Buf),
        source: Option<Source>,
    ) -> Self {
        let rows = b_idx.len();
        let d = weights.len();
        // Count each unit once per input it reads, even if it reads it twice.
        let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(rows * (d + 1));
        for r in 0..rows {
            for t in 0..d {
                pairs.push((cols[r * d + t], r as u32));
            }
            pairs.push((b_idx[r], r as u32));
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut start = vec![0u32; n_x + 1];
        for &(c, _) in &pairs {
            start[c as usize + 1] += 1;
        }
        for c in 0..n_x {
            start[c + 1] += start[c];
        }
        let readers = pairs.iter().map(|&(_, r)| r).collect();
        CircuitLevel {
            x,
            n_x,
            rows,
            weights,
            cols,
            b_idx,
            params,
            u_first,
            v,
            u,
            max,
            start,
            readers,
            source,
            fresh: Cell::new(true),
            state: RefCell::new(Work {
                mark: vec![false; rows],
                ..Default::default()
            }),
        }
    }

    /// Unit `r`'s full update on sample `s`, exactly as the four instructions compute it: the
    /// new voltage is written, `(u, max)` returned (the memory plan may place them over `x`,
    /// which later units still read, so they are written after every unit is computed).
    ///
    /// # Safety
    /// As [`CircuitLevel::run`].
    #[inline]
    unsafe fn unit(&self, s: usize, r: usize, x: &[f32]) -> (f32, f32) {
        let d = self.weights.len();
        let mut j = 0.0f32;
        for t in 0..d {
            j += self.weights[t] * x[self.cols[r * d + t] as usize];
        }
        // SAFETY: guaranteed by the caller; the voltage is this level's alone.
        let vp = unsafe { (self.v.ptr_at(s) as *mut f32).add(r) };
        let (u, v1) =
            semantics::spiking_step(&NeuronModel::IfNeuron, self.params, j, unsafe { *vp });
        let b = x[self.b_idx[r] as usize];
        let m = if self.u_first {
            semantics::add(u, b)
        } else {
            semantics::add(b, u)
        };
        // SAFETY: guaranteed by the caller (a state never shares memory with a value).
        unsafe { *vp = v1 };
        (u, m)
    }

    /// One step of the whole batch.
    ///
    /// # Safety
    /// The buffers must be laid out by the frame for `batch` samples, the results apart from
    /// the input, and nothing else may touch them during the call; `source`, when set, must be a
    /// level of the same engine that ran earlier in this step.
    pub(super) unsafe fn run(&self, batch: usize) {
        let mut w = self.state.borrow_mut();
        let w = &mut *w;
        w.nonzero.resize_with(batch, Vec::new);
        let fresh = self.fresh.replace(false);
        for s in 0..batch {
            // SAFETY: guaranteed by the caller.
            let x = unsafe { self.x.sample(s, self.n_x) };
            let nonzero = &mut w.nonzero[s];
            nonzero.clear();
            w.results.clear();
            if fresh {
                for r in 0..self.rows {
                    // SAFETY: guaranteed by the caller.
                    let (u, m) = unsafe { self.unit(s, r, x) };
                    w.results.push((r as u32, u, m));
                }
            } else {
                // The non-zero inputs: the list of the job that made them, or a scan.
                w.active.clear();
                let active = &mut w.active;
                // SAFETY: guaranteed by the caller (the source ran earlier in this step).
                match self.source {
                    Some(Source::Level(p)) => {
                        active.extend_from_slice(&unsafe { &*p }.state.borrow().nonzero[s])
                    }
                    Some(Source::Neurons(p)) => unsafe { &*p }.with_spiked(s, |list| match list {
                        Some(list) => active.extend_from_slice(list),
                        None => scan_nonzero(x, active),
                    }),
                    None => scan_nonzero(x, active),
                }
                w.touched.clear();
                for &c in &w.active {
                    let c = c as usize;
                    for &r in &self.readers[self.start[c] as usize..self.start[c + 1] as usize] {
                        if !w.mark[r as usize] {
                            w.mark[r as usize] = true;
                            w.touched.push(r);
                        }
                    }
                }
                for &r in &w.touched {
                    w.mark[r as usize] = false;
                    // SAFETY: guaranteed by the caller.
                    let (u, m) = unsafe { self.unit(s, r as usize, x) };
                    w.results.push((r, u, m));
                }
            }
            // `x` is not read past this point: the outputs may overwrite it.
            // SAFETY: guaranteed by the caller.
            let (u, max) = unsafe {
                (
                    self.u.sample_mut(s, self.rows),
                    self.max.sample_mut(s, self.rows),
                )
            };
            if !fresh {
                u.fill(0.0);
                max.fill(0.0);
            }
            for &(r, ur, m) in &w.results {
                u[r as usize] = ur;
                max[r as usize] = m;
                if m != 0.0 || m.is_nan() {
                    nonzero.push(r);
                }
            }
        }
    }
}

/// Push the indices of `x`'s non-zero elements (NaN counts as non-zero) onto `out`, checking
/// blocks of 16 at once.
fn scan_nonzero(x: &[f32], out: &mut Vec<u32>) {
    let mut blocks = x.chunks_exact(16);
    let mut base = 0u32;
    for block in &mut blocks {
        // Bits without the sign: zero exactly for ±0.
        if block.iter().fold(0u32, |acc, v| acc | (v.to_bits() << 1)) != 0 {
            for (k, v) in block.iter().enumerate() {
                if *v != 0.0 || v.is_nan() {
                    out.push(base + k as u32);
                }
            }
        }
        base += 16;
    }
    for (k, v) in blocks.remainder().iter().enumerate() {
        if *v != 0.0 || v.is_nan() {
            out.push(base + k as u32);
        }
    }
}

/// A circuit level found in the module: its four instructions start at `first`.
pub(super) struct Found {
    pub(super) first: usize,
    /// The input operand (to chain levels: a level whose input is another's `max`).
    pub(super) x: snnc_ir::Operand,
    /// The level's `max` value.
    pub(super) max: snnc_ir::Operand,
}

/// The circuit levels of `m` that the JIT runs event-driven: four consecutive instructions of the
/// shape in the module docs, with finite weights and IF parameters, a voltage computed in its own
/// place that nothing else reads, and `j` and `b` read by nothing outside the level.
pub(super) fn find_levels(m: &snnc_ir::Module, f: &crate::frame::Frame) -> Vec<Found> {
    use snnc_ir::{Op, Operand, Reader};
    let info = f.info();
    let only_read_by = |v: snnc_ir::ValueId, i: usize| {
        info.readers[v.index()] == [Reader::Inst(snnc_ir::InstId(i as u32))]
            && !m.outputs.iter().any(|o| o.value == Operand::Value(v))
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= m.insts.len() {
        let [sp, nu, ga, ad] = [
            &m.insts[i],
            &m.insts[i + 1],
            &m.insts[i + 2],
            &m.insts[i + 3],
        ];
        let ok = (|| {
            let (Op::Sparse { .. }, Op::Neuron(n), Op::Gather { .. }, Op::Add) =
                (&sp.op, &nu.op, &ga.op, &ad.op)
            else {
                return None;
            };
            let x = sp.args[0];
            let Operand::Value(_) = x else { return None };
            let fr = super::fusion::fixed_rows(m, sp)?;
            let (j, u, v1, b, max) = (
                sp.results[0],
                nu.results[0],
                *nu.results.get(1)?,
                ga.results[0],
                ad.results[0],
            );
            let finite = |x: f64| x.is_finite();
            let good_neuron = n.model == NeuronModel::IfNeuron
                && nu.groups() == 1
                && finite(n.gain)
                && finite(n.amplitude)
                && m.dt.is_finite()
                && nu.args[0] == Operand::Value(j);
            let Operand::State(vs) = *nu.args.get(1)? else {
                return None;
            };
            let alone = info.state_readers[vs.index()].len() == 1
                && info.inst_readers(v1).next().is_none()
                && !m
                    .outputs
                    .iter()
                    .any(|o| o.value == Operand::State(vs) || o.value == Operand::Value(v1))
                && f.span(Operand::State(vs)) == f.span(Operand::Value(v1));
            let add_args = [Operand::Value(b), Operand::Value(u)];
            let adds = ad.args.len() == 2
                && (ad.args[..] == add_args[..] || ad.args[..] == [add_args[1], add_args[0]]);
            let ok = good_neuron
                && alone
                && ga.args[0] == x
                && adds
                && only_read_by(j, i + 1)
                && only_read_by(b, i + 3)
                && fr.weights.iter().all(|w| w.is_finite())
                && m.value(u).ty.num_elements() == m.value(b).ty.num_elements()
                && m.value(j).ty.num_elements() == m.value(b).ty.num_elements();
            ok.then_some(Found {
                first: i,
                x,
                max: Operand::Value(max),
            })
        })();
        match ok {
            Some(level) => {
                found.push(level);
                i += 4;
            }
            None => i += 1,
        }
    }
    found
}

/// The job of a level [`find_levels`] found; `source` is the level whose `max` it reads, if any.
pub(super) fn build(
    m: &snnc_ir::Module,
    f: &crate::frame::Frame,
    level: &Found,
    source: Option<Source>,
) -> CircuitLevel {
    use snnc_ir::{ConstData, Op, Operand};
    let i = level.first;
    let [sp, nu, ga, ad] = [
        &m.insts[i],
        &m.insts[i + 1],
        &m.insts[i + 2],
        &m.insts[i + 3],
    ];
    let fr = super::fusion::fixed_rows(m, sp).expect("found levels have fixed rows");
    let b_idx: Vec<u32> = match ga.args[1] {
        Operand::Const(c) => match &m.constant(c).data {
            ConstData::I32(v) => v.iter().map(|&k| k as u32).collect(),
            _ => unreachable!("verified gather indices"),
        },
        _ => unreachable!("verified gather indices"),
    };
    let Op::Neuron(n) = &nu.op else {
        unreachable!("found levels have a neuron")
    };
    let buf = |o: Operand| Buf::of(f, o);
    let n_x = m.operand_type(level.x).expect("verified").num_elements();
    CircuitLevel::new(
        (buf(level.x), n_x),
        (
            fr.weights,
            fr.cols.iter().map(|&c| c as u32).collect(),
            b_idx,
        ),
        (n.gain as f32, n.amplitude as f32, m.dt as f32),
        ad.args[0] == Operand::Value(nu.results[0]),
        (
            buf(nu.args[1]),
            buf(Operand::Value(nu.results[0])),
            buf(level.max),
        ),
        source,
    )
}
