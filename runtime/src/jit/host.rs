//! Host jobs: the instructions the generated code hands to Rust, each a call of
//! [`snnc_jit_host`] with the address of its [`Job`], whose buffers' addresses and shapes were
//! fixed when the code was generated. Dense maps and convolutions run the GEMM and event-driven
//! kernels of [`crate::linear`]; index maps (`concat`, `transpose`, `pad`, `upsample`, and
//! `gather`/`reshape` of constants) run tables built here from their attributes; batch norm,
//! softmax and `sparse` maps by computed weights run [`snnc_ir::semantics`] element by element.
//! None of them calls the interpreter.

use super::schedule::{FixedRelu, Group};
use crate::SimError;
use crate::frame::{Frame, zeros};
use crate::linear::LinearPlan;
use snnc_ir::semantics;
use snnc_ir::{Inst, Module, NeuronModel, Op, Operand};

/// A buffer of the frame: its address and how far one sample advances it (0 for a constant,
/// which every sample shares).
#[derive(Clone, Copy, Debug)]
pub(super) struct Buf {
    ptr: *const f32,
    stride: usize,
}

impl Buf {
    pub(super) fn of(f: &Frame, o: Operand) -> Self {
        Buf {
            ptr: f.operand_ptr(o),
            stride: f.sample_stride(o),
        }
    }

    /// Sample `s`'s `n` elements.
    ///
    /// # Safety
    /// The buffer must hold sample `s` (the frame sized it) and nothing may write it meanwhile.
    pub(super) unsafe fn sample<'a>(self, s: usize, n: usize) -> &'a [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(self.ptr.add(s * self.stride), n) }
    }

    /// The address of sample `s`'s first element (the caller bounds the accesses).
    pub(super) fn ptr_at(self, s: usize) -> *const f32 {
        self.ptr.wrapping_add(s * self.stride)
    }

    /// Sample `s`'s `n` elements, writable.
    ///
    /// # Safety
    /// As [`Buf::sample`], and no other slice of these elements may be alive.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn sample_mut<'a>(self, s: usize, n: usize) -> &'a mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(s * self.stride) as *mut f32, n) }
    }
}

use snnc_ir::geometry::Source;

/// What a host call computes, for the whole batch.
pub(super) enum Job {
    /// A dense map or convolution by [`LinearPlan`]: the whole batch at once when the input is
    /// per sample and the weights are a constant, else sample by sample.
    Linear {
        plan: LinearPlan,
        x: Buf,
        w: Buf,
        y: Buf,
        scratch: *mut f32,
        scratch_len: usize,
        lens: (usize, usize, usize),
    },
    /// `y[r] = args[src[r].arg][src[r].index]`, or 0 where `src[r]` is `None`.
    IndexMap {
        args: Vec<Buf>,
        src: Vec<Option<Source>>,
        y: Buf,
    },
    /// Inference batch norm along the last axis (`c` channels).
    BatchNorm {
        x: Buf,
        params: [Buf; 4],
        eps: f32,
        c: usize,
        y: Buf,
        n: usize,
    },
    /// Softmax over rows of `c`.
    Softmax { x: Buf, y: Buf, n: usize, c: usize },
    /// Elementwise product of the operands, in order.
    Mul { args: Vec<Buf>, y: Buf, n: usize },
    /// Layer normalisation over rows of `c`.
    LayerNorm {
        x: Buf,
        gamma: Buf,
        beta: Buf,
        eps: f32,
        c: usize,
        y: Buf,
        n: usize,
    },
    /// `sparse` with weights that are not a constant: `y[r] = Σ w[e] · x[col]` over the entries
    /// `(r, col)` in order.
    Sparse {
        x: Buf,
        pairs: Vec<(u32, u32)>,
        w: Buf,
        y: Buf,
        lens: (usize, usize, usize),
    },
    /// A `fixed_relu` population (scheduled by next spike step while its current is held).
    FixedRelu(FixedRelu),
    /// A fused integrate-and-fire chain, eight lanes at a time.
    Wide(super::wide::Chain),
    /// A fused max-pool circuit level, eight units at a time.
    WideLevel(super::wide::Level),
    /// `bias`/`scale` by a parameter that is not a constant, broadcast along the last axis.
    Broadcast {
        add: bool,
        x: Buf,
        p: Buf,
        y: Buf,
        n: usize,
        width: usize,
    },
}

/// Runs the job at `job` for the whole batch of `batch` samples.
///
/// # Safety
/// `job` must be a job built by [`Job::new`] for a frame that is still alive, called from the
/// generated step function (no other access to the frame meanwhile).
pub(super) unsafe extern "C" fn snnc_jit_host(job: *const Job, batch: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { (*job).run(batch as usize) }
}

impl Job {
    /// The job of instruction `inst`, if it is one the code hands to Rust. `scratch` is the
    /// engine's im2col space, grown here to what the job needs (it is allocated before any
    /// address is taken: see [`Scratch`]).
    pub(super) fn new(
        m: &Module,
        f: &Frame,
        inst: &Inst,
        scratch: &mut Scratch,
    ) -> Result<Option<Job>, SimError> {
        let buf = |o: Operand| Buf::of(f, o);
        let n_of = |o: Operand| m.operand_type(o).expect("verified").num_elements();
        let shape = |o: Operand| m.operand_type(o).expect("verified").shape.clone();
        let y = buf(Operand::Value(inst.results[0]));
        let n_out = m.value(inst.results[0]).ty.num_elements();
        let arg = |k: usize| inst.args[k];
        Ok(Some(match &inst.op {
            Op::Dense | Op::Conv(_) => {
                let Some(plan) = LinearPlan::new(&inst.op, &shape(arg(0)), &shape(arg(1))) else {
                    return Ok(None);
                };
                let whole = f.sample_stride(arg(0)) > 0 && f.sample_stride(arg(1)) == 0;
                let need = plan.scratch_len(if whole { f.batch() } else { 1 });
                scratch.reserve(need)?;
                Job::Linear {
                    plan,
                    x: buf(arg(0)),
                    w: buf(arg(1)),
                    y,
                    scratch: std::ptr::null_mut(),
                    scratch_len: need,
                    lens: (n_of(arg(0)), n_of(arg(1)), n_out),
                }
            }
            Op::Concat { .. }
            | Op::Transpose { .. }
            | Op::Pad { .. }
            | Op::Upsample { .. }
            | Op::Reshape { .. }
            | Op::Gather { .. } => Job::IndexMap {
                args: inst.args.iter().map(|&a| buf(a)).collect(),
                src: snnc_ir::geometry::index_sources(m, inst).expect("an index map"),
                y,
            },
            Op::BatchNorm { epsilon } => Job::BatchNorm {
                x: buf(arg(0)),
                params: [buf(arg(1)), buf(arg(2)), buf(arg(3)), buf(arg(4))],
                eps: *epsilon as f32,
                c: n_of(arg(1)),
                y,
                n: n_out,
            },
            Op::Mul => Job::Mul {
                args: inst.args.iter().map(|&a| buf(a)).collect(),
                y,
                n: n_out,
            },
            Op::LayerNorm { epsilon } => Job::LayerNorm {
                x: buf(arg(0)),
                gamma: buf(arg(1)),
                beta: buf(arg(2)),
                eps: *epsilon as f32,
                c: n_of(arg(1)),
                y,
                n: n_out,
            },
            Op::Softmax => Job::Softmax {
                x: buf(arg(0)),
                y,
                n: n_out,
                c: *shape(arg(0)).last().expect("verified rank >= 1"),
            },
            Op::Sparse { .. } => Job::Sparse {
                x: buf(arg(0)),
                pairs: f
                    .index_table(arg(1))
                    .chunks_exact(2)
                    .map(|p| (p[0] as u32, p[1] as u32))
                    .collect(),
                w: buf(arg(2)),
                y,
                lens: (n_of(arg(0)), n_of(arg(2)), n_out),
            },
            Op::Neuron(n) if n.model == NeuronModel::FixedRelu => {
                let groups: Vec<Group> = (0..inst.groups())
                    .map(|g| {
                        let (args, results) = inst.group(g);
                        Group {
                            j: buf(args[0]),
                            v: buf(args[1]),
                            y: buf(Operand::Value(results[0])),
                            v1: buf(Operand::Value(results[1])),
                            n: m.value(results[0]).ty.num_elements(),
                        }
                    })
                    .collect();
                let (schedulable, own_output) = schedule_facts(m, f, inst);
                Job::FixedRelu(FixedRelu::new(
                    (n.gain as f32, n.amplitude as f32, m.dt as f32),
                    groups,
                    schedulable,
                    own_output,
                ))
            }
            Op::Bias | Op::Scale => Job::Broadcast {
                add: inst.op == Op::Bias,
                x: buf(arg(0)),
                p: buf(arg(1)),
                y,
                n: n_out,
                width: n_of(arg(1)),
            },
            _ => return Ok(None),
        }))
    }

    /// Tell the job whether this step's inputs are the last step's.
    pub(super) fn set_held(&self, held: bool) {
        if let Job::FixedRelu(j) = self {
            j.held.set(held);
        }
    }

    /// Tell the job the states were reset.
    pub(super) fn reset(&self) {
        if let Job::FixedRelu(j) = self {
            j.fresh.set(true);
        }
        // No step since: nothing counted to report.
        if let Some(c) = self.count() {
            c.exact.set(false);
        }
    }

    /// The spike count the job keeps for its population, if it counts one.
    pub(super) fn count(&self) -> Option<&super::wide::Count> {
        match self {
            Job::Wide(c) => c.count.as_ref(),
            Job::WideLevel(l) => l.count.as_ref(),
            _ => None,
        }
    }

    /// Whether the job schedules a population by next spike step while the inputs are held.
    pub(super) fn schedules(&self) -> bool {
        matches!(self, Job::FixedRelu(j) if j.schedulable)
    }

    /// Point the job at the engine's scratch space (once it has its final size).
    pub(super) fn bind_scratch(&mut self, scratch: &mut Scratch) {
        if let Job::Linear { scratch: p, .. } = self {
            *p = scratch.buf.as_mut_ptr();
        }
    }

    fn run(&self, batch: usize) {
        // SAFETY (every arm): the buffers were laid out by the frame for `batch` samples, the
        // memory plan keeps an instruction's results apart from its operands, and the step
        // function runs one job at a time.
        match self {
            Job::Linear {
                plan,
                x,
                w,
                y,
                scratch,
                scratch_len,
                lens: (nx, nw, ny),
            } => unsafe {
                let scratch = std::slice::from_raw_parts_mut(*scratch, *scratch_len);
                if x.stride > 0 && w.stride == 0 {
                    let (xs, ws) = (x.sample(0, nx * batch), w.sample(0, *nw));
                    plan.run(batch, xs, ws, y.sample_mut(0, ny * batch), scratch);
                } else {
                    for s in 0..batch {
                        let (xs, ws) = (x.sample(s, *nx), w.sample(s, *nw));
                        plan.run(1, xs, ws, y.sample_mut(s, *ny), scratch);
                    }
                }
            },
            Job::IndexMap { args, src, y } => unsafe {
                for s in 0..batch {
                    let out = y.sample_mut(s, src.len());
                    for (o, from) in out.iter_mut().zip(src) {
                        *o = match from {
                            Some(Source { arg, index }) => {
                                let a = args[*arg];
                                *a.ptr.add(s * a.stride + *index)
                            }
                            None => 0.0,
                        };
                    }
                }
            },
            Job::BatchNorm {
                x,
                params,
                eps,
                c,
                y,
                n,
            } => unsafe {
                for s in 0..batch {
                    let (xs, ys) = (x.sample(s, *n), y.sample_mut(s, *n));
                    let [g, b, mu, var] = params.map(|p| p.sample(s, *c));
                    for (k, (o, &v)) in ys.iter_mut().zip(xs).enumerate() {
                        let ch = k % c;
                        *o = semantics::batch_norm(v, (g[ch], b[ch], mu[ch], var[ch]), *eps);
                    }
                }
            },
            Job::Mul { args, y, n } => unsafe {
                for s in 0..batch {
                    let ys = y.sample_mut(s, *n);
                    ys.copy_from_slice(args[0].sample(s, *n));
                    for a in &args[1..] {
                        for (o, &v) in ys.iter_mut().zip(a.sample(s, *n)) {
                            *o = semantics::mul(*o, v);
                        }
                    }
                }
            },
            Job::LayerNorm {
                x,
                gamma,
                beta,
                eps,
                c,
                y,
                n,
            } => unsafe {
                for s in 0..batch {
                    let (xs, ys) = (x.sample(s, *n), y.sample_mut(s, *n));
                    let (g, b) = (gamma.sample(s, *c), beta.sample(s, *c));
                    for (xr, yr) in xs.chunks(*c).zip(ys.chunks_mut(*c)) {
                        semantics::layer_norm_row(xr, g, b, *eps, yr);
                    }
                }
            },
            Job::Softmax { x, y, n, c } => unsafe {
                for s in 0..batch {
                    let (xs, ys) = (x.sample(s, *n), y.sample_mut(s, *n));
                    for (xr, yr) in xs.chunks(*c).zip(ys.chunks_mut(*c)) {
                        semantics::softmax_row(xr, yr);
                    }
                }
            },
            Job::Sparse {
                x,
                pairs,
                w,
                y,
                lens: (nx, nw, ny),
            } => unsafe {
                for s in 0..batch {
                    let (xs, ws, out) = (x.sample(s, *nx), w.sample(s, *nw), y.sample_mut(s, *ny));
                    out.fill(0.0);
                    for (&(r, col), &wv) in pairs.iter().zip(ws) {
                        out[r as usize] += wv * xs[col as usize];
                    }
                }
            },
            // SAFETY: as above.
            Job::FixedRelu(job) => unsafe { job.run(batch) },
            // SAFETY: as above; `Chain::detect` checked for AVX2.
            Job::Wide(chain) => unsafe { chain.run() },
            // SAFETY: as above; `Level::detect` checked for AVX2 and the index runs.
            Job::WideLevel(level) => unsafe { level.run() },
            Job::Broadcast {
                add,
                x,
                p,
                y,
                n,
                width,
            } => unsafe {
                for s in 0..batch {
                    let (xs, ps, ys) = (x.sample(s, *n), p.sample(s, *width), y.sample_mut(s, *n));
                    if *width == 0 {
                        ys.copy_from_slice(xs);
                        continue;
                    }
                    for (k, (o, &v)) in ys.iter_mut().zip(xs).enumerate() {
                        let q = ps[k % width];
                        *o = if *add { v + q } else { v * q };
                    }
                }
            },
        }
    }
}

/// Whether a `fixed_relu` instruction may be scheduled by next spike step, and whether its
/// output has a buffer of its own. Scheduling leaves the voltage behind while the current is
/// held, so it needs one group, a current that reads only inputs and constants, and a voltage
/// updated in its own place that nothing else reads (no other instruction, no output).
fn schedule_facts(m: &Module, f: &Frame, inst: &Inst) -> (bool, bool) {
    let info = f.info();
    let (v, y, v1) = (
        inst.args[1],
        Operand::Value(inst.results[0]),
        inst.results[1],
    );
    let Operand::State(sv) = v else {
        return (false, false);
    };
    let read_by_output = |o: Operand| m.outputs.iter().any(|out| out.value == o);
    let alone = info.state_readers[sv.index()].len() == 1
        && info.inst_readers(v1).next().is_none()
        && !read_by_output(v)
        && !read_by_output(Operand::Value(v1))
        && f.span(v) == f.span(Operand::Value(v1));
    let invariant_current = info.operand_invariant(inst.args[0]);
    let schedulable = inst.groups() == 1 && invariant_current && alone;
    let ys = f.span(y).expect("a value");
    let overlaps = |o: Operand| {
        f.span(o)
            .is_some_and(|r| o != y && r.start < ys.end && ys.start < r.end)
    };
    let own_output = !(0..m.values.len())
        .map(|k| Operand::Value(snnc_ir::ValueId(k as u32)))
        .chain((0..m.states.len()).map(|k| Operand::State(snnc_ir::StateId(k as u32))))
        .any(overlaps);
    (schedulable, own_output)
}

/// The im2col space the linear jobs share; sized before any job takes its address.
#[derive(Default)]
pub(super) struct Scratch {
    need: usize,
    buf: Vec<f32>,
}

impl Scratch {
    fn reserve(&mut self, n: usize) -> Result<(), SimError> {
        self.need = self.need.max(n);
        Ok(())
    }

    /// Allocate what the jobs asked for.
    pub(super) fn allocate(&mut self) -> Result<(), SimError> {
        self.buf = zeros(self.need)?;
        Ok(())
    }
}
