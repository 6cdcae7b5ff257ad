//! The reference interpreter: every op, f32, one sample at a time, straight from SPEC.md.

use crate::kernels::{self, for_each_index, strides_of};
use crate::linear::LinearPlan;
use crate::rng::uniform_fill;
use crate::{Engine, SimError};
use ndarray::{ArrayView1, ArrayView2};
use snnc_ir::{
    ConstData, MemoryPlan, Module, NeuronModel, Op, Operand, StateInit, TensorType, Verified,
    time_invariant,
};
use std::ops::Range;

/// Runs a verified module one step at a time.
pub struct Interpreter {
    module: Module,
    batch: usize,
    consts_f32: Vec<Vec<f32>>,
    consts_i32: Vec<Vec<i32>>,
    /// Every value and state, placed by `plan` (spans scaled by the batch size).
    arena: Vec<f32>,
    plan: MemoryPlan,
    outputs: Vec<Vec<f32>>,
    /// Per instruction: the discretised coefficients of an `alpha` synapse.
    alpha: Vec<Option<crate::synapse::AlphaCoefficients>>,
    /// Per instruction: the GEMM plan of a dense map or convolution with constant weights.
    linear: Vec<Option<LinearPlan>>,
    /// im2col space shared by every convolution.
    scratch: Vec<f32>,
    /// Per instruction: its results depend only on inputs and constants.
    invariant: Vec<bool>,
    /// The invariant instructions' results match the inputs in the input buffers.
    invariant_valid: bool,
}

fn operand_len(m: &Module, o: Operand) -> usize {
    m.operand_type(o).map(TensorType::num_elements).unwrap_or(0)
}

impl Interpreter {
    /// Prepare to run `module` on minibatches of `batch` samples.
    pub fn new(module: &Verified, batch: usize) -> Result<Self, SimError> {
        if !module.is_runnable() {
            return Err(SimError::MissingConstantData);
        }
        let m: Module = (**module).clone();
        let mut consts_f32 = Vec::new();
        let mut consts_i32 = Vec::new();
        for c in &m.constants {
            match &c.data {
                ConstData::F32(v) => {
                    consts_f32.push(v.clone());
                    consts_i32.push(Vec::new());
                }
                ConstData::I32(v) => {
                    consts_f32.push(Vec::new());
                    consts_i32.push(v.clone());
                }
                ConstData::External { .. } => return Err(SimError::MissingConstantData),
            }
        }
        let alloc = |n: usize| -> Result<Vec<f32>, SimError> {
            let total = n.checked_mul(batch).ok_or(SimError::TooLarge)?;
            let mut v = Vec::new();
            v.try_reserve_exact(total).map_err(|_| SimError::TooLarge)?;
            v.resize(total, 0.0);
            Ok(v)
        };
        let plan = MemoryPlan::new(&m);
        check_plan(&m, &plan)?;
        let arena = alloc(plan.size)?;
        let outputs = m
            .outputs
            .iter()
            .map(|o| match o.value {
                Operand::Value(_) => Ok(Vec::new()),
                _ => alloc(operand_len(&m, o.value)),
            })
            .collect::<Result<_, _>>()?;
        let alpha = m
            .insts
            .iter()
            .map(|i| match i.op {
                Op::Alpha { tau } => Some(crate::synapse::AlphaCoefficients::new(m.dt, tau)),
                _ => None,
            })
            .collect();
        let linear: Vec<Option<LinearPlan>> = m
            .insts
            .iter()
            .map(|i| match (i.args.first(), i.args.get(1)) {
                (
                    Some(&x @ (Operand::Value(_) | Operand::State(_))),
                    Some(&w @ Operand::Const(_)),
                ) => {
                    let shape = |o| {
                        m.operand_type(o)
                            .map(|t| t.shape.clone())
                            .unwrap_or_default()
                    };
                    LinearPlan::new(&i.op, &shape(x), &shape(w))
                }
                _ => None,
            })
            .collect();
        let scratch_len = linear
            .iter()
            .flatten()
            .map(|p| p.scratch_len(batch))
            .max()
            .unwrap_or(0);
        let mut scratch = Vec::new();
        scratch
            .try_reserve_exact(scratch_len)
            .map_err(|_| SimError::TooLarge)?;
        scratch.resize(scratch_len, 0.0);
        let invariant = time_invariant(&m);
        let mut it = Interpreter {
            module: m,
            batch,
            consts_f32,
            consts_i32,
            arena,
            plan,
            outputs,
            alpha,
            linear,
            scratch,
            invariant,
            invariant_valid: false,
        };
        it.reset(0);
        Ok(it)
    }

    /// Where a value or state lives in the arena, for the whole batch.
    pub(crate) fn span(&self, o: Operand) -> Option<Range<usize>> {
        self.plan
            .span(o)
            .map(|r| r.start * self.batch..r.end * self.batch)
    }

    /// The whole batch of a value or state, or a constant's one copy.
    fn whole(&self, o: Operand) -> &[f32] {
        match (o, self.span(o)) {
            (Operand::Const(c), _) => &self.consts_f32[c.index()],
            (_, Some(r)) => &self.arena[r],
            (_, None) => unreachable!("values and states have spans"),
        }
    }

    fn index_table(&self, o: Operand) -> &[i32] {
        match o {
            Operand::Const(c) => &self.consts_i32[c.index()],
            _ => &[],
        }
    }
}

impl Interpreter {
    /// Copy this step's inputs into their buffers.
    ///
    /// Returns true when every input equals what the buffers already held and the time-invariant
    /// instructions have run on it: their results still hold, and this step may skip them.
    pub(crate) fn load_inputs(&mut self, inputs: &[&[f32]]) -> bool {
        let mut same = self.invariant_valid;
        for (k, &v) in self.module.inputs.iter().enumerate() {
            let r = self.span(Operand::Value(v)).expect("a value");
            let buf = &mut self.arena[r];
            // Bitwise, so a NaN input counts as unchanged when it is the same NaN.
            if same
                && buf
                    .iter()
                    .zip(inputs[k])
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            {
                continue;
            }
            same = false;
            buf.copy_from_slice(inputs[k]);
        }
        self.invariant_valid = true;
        same
    }

    /// Whether instruction `i` depends only on inputs and constants.
    pub(crate) fn is_invariant(&self, i: usize) -> bool {
        self.invariant[i]
    }

    /// Run instruction `i` for the whole batch. The arena never moves (the JIT relies on it).
    pub(crate) fn run_inst(&mut self, i: usize) {
        let inst = &self.module.insts[i];
        let arena = std::mem::take(&mut self.arena);
        let base = arena.as_ptr() as *mut f32;
        let arg_spans: Vec<Option<Range<usize>>> =
            inst.args.iter().map(|&a| self.span(a)).collect();
        let out_spans: Vec<Range<usize>> = inst
            .results
            .iter()
            .map(|&r| self.span(Operand::Value(r)).expect("a value"))
            .collect();
        // An operand whose space a result reuses (a state updated in place) is read from a copy.
        let copies: Vec<Option<Vec<f32>>> = arg_spans
            .iter()
            .map(|a| {
                a.as_ref()
                    .filter(|a| out_spans.iter().any(|r| r.start < a.end && a.start < r.end))
                    .map(|a| arena[a.clone()].to_vec())
            })
            .collect();
        // SAFETY: every span lies inside the arena (the plan sizes it), and the plan never lets an
        // instruction's results overlap each other or its operands (checked in `check_plan`) but
        // for the in-place states copied above, so the result slices are exclusive while the
        // operand slices read here are only read.
        let view = |r: &Range<usize>| unsafe {
            std::slice::from_raw_parts(base.add(r.start) as *const f32, r.len())
        };
        let mut outs: Vec<&mut [f32]> = out_spans
            .iter()
            .map(|r| unsafe { std::slice::from_raw_parts_mut(base.add(r.start), r.len()) })
            .collect();
        if let Some(plan) = &self.linear[i] {
            let x = view(arg_spans[0].as_ref().expect("plans read a value or state"));
            let Operand::Const(w) = inst.args[1] else {
                unreachable!("plans are only made for constant weights")
            };
            let w = &self.consts_f32[w.index()];
            plan.run(self.batch, x, w, outs[0], &mut self.scratch);
        } else {
            let out_lens: Vec<usize> = inst
                .results
                .iter()
                .map(|r| self.module.value(*r).ty.num_elements())
                .collect();
            for b in 0..self.batch {
                let args: Vec<&[f32]> = inst
                    .args
                    .iter()
                    .zip(&arg_spans)
                    .zip(&copies)
                    .map(|((&a, r), copy)| match (a, r) {
                        (Operand::Const(c), _) => self.consts_f32[c.index()].as_slice(),
                        (_, Some(r)) => {
                            let n = r.len() / self.batch;
                            match copy {
                                Some(c) => &c[b * n..(b + 1) * n],
                                None => &view(r)[b * n..(b + 1) * n],
                            }
                        }
                        (_, None) => unreachable!("values and states have spans"),
                    })
                    .collect();
                let mut out_slices: Vec<&mut [f32]> = outs
                    .iter_mut()
                    .zip(&out_lens)
                    .map(|(o, &n)| &mut o[b * n..(b + 1) * n])
                    .collect();
                eval(self, i, &args, &mut out_slices);
            }
        }
        drop(outs);
        self.arena = arena;
    }

    /// Keep the outputs that read states (as they were at the start of the step; outputs of values
    /// are read from the value buffers, which hold until the next step), then apply every `next`
    /// at once. State buffers are overwritten in place.
    pub(crate) fn finish_step(&mut self) {
        for k in 0..self.module.outputs.len() {
            match self.module.outputs[k].value {
                o @ Operand::State(_) => {
                    let r = self.span(o).expect("a state");
                    self.outputs[k].copy_from_slice(&self.arena[r]);
                }
                Operand::Const(c) => replicate(&self.consts_f32[c.index()], &mut self.outputs[k]),
                Operand::Value(_) => {}
            }
        }
        // A next that reads a state must see it before any next overwrites it.
        let staged: Vec<Vec<f32>> = self
            .module
            .nexts
            .iter()
            .filter(|nx| matches!(nx.value, Operand::State(_)))
            .map(|nx| self.whole(nx.value).to_vec())
            .collect();
        let mut staged = staged.into_iter();
        for nx in &self.module.nexts {
            let dst = self.span(Operand::State(nx.state)).expect("a state");
            match nx.value {
                o @ Operand::Value(_) => {
                    let src = self.span(o).expect("a value");
                    if src != dst {
                        self.arena.copy_within(src, dst.start);
                    }
                }
                Operand::State(_) => {
                    let v = staged.next().expect("staged above");
                    self.arena[dst].copy_from_slice(&v);
                }
                Operand::Const(c) => replicate(&self.consts_f32[c.index()], &mut self.arena[dst]),
            }
        }
    }

    /// The batch size.
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// Address of the buffer behind an operand (values and states hold the whole batch).
    pub(crate) fn operand_ptr(&self, o: Operand) -> *const f32 {
        self.whole(o).as_ptr()
    }

    /// Address of an `i32` constant's data.
    pub(crate) fn index_ptr(&self, o: Operand) -> *const i32 {
        match o {
            Operand::Const(c) => self.consts_i32[c.index()].as_ptr(),
            _ => std::ptr::null(),
        }
    }
}

impl Engine for Interpreter {
    fn reset(&mut self, seed: u64) {
        for (k, s) in self.module.states.iter().enumerate() {
            let n = s.ty.num_elements();
            let r = self.plan.states[k].start * self.batch..self.plan.states[k].end * self.batch;
            let buf = &mut self.arena[r];
            match &s.init {
                StateInit::Zeros => buf.fill(0.0),
                StateInit::Uniform { lo, hi, seed: own } => {
                    uniform_fill(&mut buf[..n], *lo, *hi, *own, seed);
                    let (first, rest) = buf.split_at_mut(n);
                    rest.chunks_mut(n.max(1))
                        .for_each(|c| c.copy_from_slice(&first[..c.len()]));
                }
                StateInit::Const(c) => replicate(&self.consts_f32[c.index()], buf),
            }
        }
    }

    fn step(&mut self, inputs: &[&[f32]]) {
        let held = self.load_inputs(inputs);
        for i in 0..self.module.insts.len() {
            if !(held && self.invariant[i]) {
                self.run_inst(i);
            }
        }
        self.finish_step();
    }

    fn output(&self, k: usize) -> &[f32] {
        match self.module.outputs[k].value {
            o @ Operand::Value(_) => self.whole(o),
            Operand::State(_) | Operand::Const(_) => &self.outputs[k],
        }
    }

    fn module(&self) -> &Module {
        &self.module
    }
}

/// The interpreter writes an instruction's results while reading its operands, in one arena:
/// refuse a plan that lets them overlap or leaves a span outside the arena.
fn check_plan(m: &Module, plan: &MemoryPlan) -> Result<(), SimError> {
    let bad = |what: String| Err(SimError::MemoryPlan(what));
    let all = plan.values.iter().chain(&plan.states);
    if let Some(r) = all.clone().find(|r| r.end > plan.size) {
        return bad(format!("span {r:?} outside an arena of {}", plan.size));
    }
    for inst in &m.insts {
        for (k, &res) in inst.results.iter().enumerate() {
            let r = &plan.values[res.index()];
            let others = inst.results[k + 1..]
                .iter()
                .map(|&o| Operand::Value(o))
                .chain(inst.args.iter().copied());
            for o in others {
                // A value computed in its state's place reads the state's elements one by one
                // before writing them (the interpreter copies the state first).
                let in_place = plan.in_place[res.index()] && matches!(o, Operand::State(_));
                if let Some(q) = plan.span(o)
                    && r.start < q.end
                    && q.start < r.end
                    && !(in_place && q == *r)
                {
                    return bad(format!("result {r:?} overlaps operand {q:?}"));
                }
            }
        }
    }
    Ok(())
}

/// A sigmoid neuron's output for input current `x` (the JIT calls this too).
pub(crate) extern "C" fn sigmoid(x: f32, g: f32, a: f32) -> f32 {
    a / (1.0 + (-g * x).exp())
}

/// A tanh neuron's output for input current `x` (the JIT calls this too).
pub(crate) extern "C" fn tanh(x: f32, g: f32, a: f32) -> f32 {
    a * (g * x).tanh()
}

/// A LIF rate neuron's output for input current `x` (the JIT calls this too).
pub(crate) extern "C" fn lif_rate(x: f32, g: f32, a: f32, rc: f32, rf: f32) -> f32 {
    let jj = g * x - 1.0;
    if jj > 0.0 {
        a / (rf + rc * (1.0 / jj).ln_1p())
    } else {
        0.0
    }
}

/// Fill a batch buffer with copies of one sample.
fn replicate(sample: &[f32], buf: &mut [f32]) {
    buf.chunks_mut(sample.len().max(1))
        .for_each(|ch| ch.copy_from_slice(&sample[..ch.len()]));
}

/// Evaluate instruction `i` on one sample.
fn eval(it: &Interpreter, i: usize, args: &[&[f32]], outs: &mut [&mut [f32]]) {
    let m = &it.module;
    let inst = &m.insts[i];
    let ty = |k: usize| m.operand_type(inst.args[k]).expect("verified");
    if let Some(k) = inst.op.group_arity() {
        let r = inst.op.num_results();
        for (a, o) in args.chunks(k).zip(outs.chunks_mut(r)) {
            let (out, rest) = o.split_first_mut().expect("every op has a result");
            lane_wise(&inst.op, (m.dt, it.alpha[i]), a, out, rest);
        }
        return;
    }
    let (out, _) = outs.split_first_mut().expect("every op has a result");
    match &inst.op {
        Op::Dense => {
            let (n, k) = (ty(1).shape[0], ty(1).shape[1]);
            let w = ArrayView2::from_shape((n, k), args[1]).expect("verified");
            for (row, y) in args[0].chunks(n).zip(out.chunks_mut(k)) {
                let r = ArrayView1::from(row).dot(&w);
                y.copy_from_slice(r.as_slice().expect("contiguous"));
            }
        }
        Op::Conv(c) => kernels::conv(args[0], &ty(0).shape, args[1], &ty(1).shape, c, out),
        Op::AvgPool(p) => kernels::pool(args[0], &ty(0).shape, p, false, out),
        Op::MaxPool(p) => kernels::pool(args[0], &ty(0).shape, p, true, out),
        Op::GlobalAvgPool | Op::GlobalMaxPool => {
            let c = out.len();
            let is_max = matches!(inst.op, Op::GlobalMaxPool);
            out.fill(if is_max { f32::NEG_INFINITY } else { 0.0 });
            let positions = args[0].len() / c.max(1);
            for px in args[0].chunks(c) {
                for (y, &x) in out.iter_mut().zip(px) {
                    *y = if is_max { y.max(x) } else { *y + x };
                }
            }
            if !is_max {
                out.iter_mut().for_each(|y| *y /= positions as f32);
            }
        }
        Op::Sparse { .. } => {
            out.fill(0.0);
            let idx = it.index_table(inst.args[1]);
            for (pair, &w) in idx.chunks(2).zip(args[2]) {
                out[pair[0] as usize] += w * args[0][pair[1] as usize];
            }
        }
        Op::Gather { .. } => {
            let idx = it.index_table(inst.args[1]);
            for (y, &j) in out.iter_mut().zip(idx) {
                *y = args[0][j as usize];
            }
        }
        Op::Bias | Op::Scale => {
            let b = args[1];
            let add = matches!(inst.op, Op::Bias);
            for chunk in out
                .chunks_mut(b.len().max(1))
                .zip(args[0].chunks(b.len().max(1)))
            {
                for ((y, &x), &p) in chunk.0.iter_mut().zip(chunk.1).zip(b) {
                    *y = if add { x + p } else { x * p };
                }
            }
            if b.is_empty() {
                out.copy_from_slice(args[0]);
            }
        }
        Op::Add => {
            out.copy_from_slice(args[0]);
            for a in &args[1..] {
                out.iter_mut().zip(*a).for_each(|(y, &x)| *y += x);
            }
        }
        Op::BatchNorm { epsilon } => {
            let c = args[1].len();
            for (ys, xs) in out.chunks_mut(c).zip(args[0].chunks(c)) {
                for k in 0..c {
                    let (gamma, beta, mean, var) = (args[1][k], args[2][k], args[3][k], args[4][k]);
                    ys[k] = gamma * (xs[k] - mean) / (var + *epsilon as f32).sqrt() + beta;
                }
            }
        }
        Op::Concat { axis } => {
            let out_shape = &m.value(inst.results[0]).ty.shape;
            let outer: usize = out_shape[..*axis].iter().product();
            let inner: usize = out_shape[axis + 1..].iter().product();
            let mut pos = 0;
            for o in 0..outer {
                for (k, a) in args.iter().enumerate() {
                    let len = ty(k).shape[*axis] * inner;
                    out[pos..pos + len].copy_from_slice(&a[o * len..(o + 1) * len]);
                    pos += len;
                }
            }
        }
        Op::Reshape { .. } => out.copy_from_slice(args[0]),
        Op::Transpose { perm } => {
            let in_strides = strides_of(&ty(0).shape);
            let out_shape = &m.value(inst.results[0]).ty.shape;
            for_each_index(out_shape, |flat, idx| {
                let src: usize = idx.iter().zip(perm).map(|(&i, &p)| i * in_strides[p]).sum();
                out[flat] = args[0][src];
            });
        }
        Op::Pad { pads } => {
            let in_shape = &ty(0).shape;
            let out_strides = strides_of(&m.value(inst.results[0]).ty.shape);
            out.fill(0.0);
            for_each_index(in_shape, |flat, idx| {
                let dst: usize = idx
                    .iter()
                    .zip(pads)
                    .zip(&out_strides)
                    .map(|((&i, p), s)| (i + p[0]) * s)
                    .sum();
                out[dst] = args[0][flat];
            });
        }
        Op::Upsample { factors } => {
            let in_strides = strides_of(&ty(0).shape);
            let out_shape = &m.value(inst.results[0]).ty.shape;
            for_each_index(out_shape, |flat, idx| {
                let src: usize = idx
                    .iter()
                    .enumerate()
                    .map(|(a, &i)| {
                        (if a < factors.len() { i / factors[a] } else { i }) * in_strides[a]
                    })
                    .sum();
                out[flat] = args[0][src];
            });
        }
        Op::Softmax => {
            let c = *ty(0).shape.last().expect("verified rank >= 1");
            for (ys, xs) in out.chunks_mut(c).zip(args[0].chunks(c)) {
                let mx = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for (y, &x) in ys.iter_mut().zip(xs) {
                    *y = (x - mx).exp();
                    sum += *y;
                }
                ys.iter_mut().for_each(|y| *y /= sum);
            }
        }
        Op::Neuron(_) | Op::Lowpass { .. } | Op::Alpha { .. } => {
            unreachable!("lane-wise ops run group by group above")
        }
    }
}

/// One group of a neuron or synapse instruction on one sample: `args` are the group's operands,
/// `out` its first result and `rest` the others (new states). `alpha`: the coefficients of an
/// `alpha` synapse.
fn lane_wise(
    op: &Op,
    (dt_s, alpha): (f64, Option<crate::synapse::AlphaCoefficients>),
    args: &[&[f32]],
    out: &mut [f32],
    rest: &mut [&mut [f32]],
) {
    let dt = dt_s as f32;
    match op {
        Op::Neuron(n) => {
            let (g, a) = (n.gain as f32, n.amplitude as f32);
            let j = args[0];
            match &n.model {
                NeuronModel::Relu => out
                    .iter_mut()
                    .zip(j)
                    .for_each(|(y, &x)| *y = a * (g * x).max(0.0)),
                NeuronModel::LeakyRelu { negative_slope } => {
                    let s = *negative_slope as f32;
                    out.iter_mut().zip(j).for_each(|(y, &x)| {
                        let x = g * x;
                        *y = a * if x < 0.0 { s * x } else { x };
                    })
                }
                NeuronModel::Sigmoid => out
                    .iter_mut()
                    .zip(j)
                    .for_each(|(y, &x)| *y = sigmoid(x, g, a)),
                NeuronModel::Tanh => out.iter_mut().zip(j).for_each(|(y, &x)| *y = tanh(x, g, a)),
                NeuronModel::LifRate { tau_rc, tau_ref } => {
                    let (rc, rf) = (*tau_rc as f32, *tau_ref as f32);
                    out.iter_mut()
                        .zip(j)
                        .for_each(|(y, &x)| *y = lif_rate(x, g, a, rc, rf));
                }
                NeuronModel::SpikingRelu
                | NeuronModel::SpikingLeakyRelu { .. }
                | NeuronModel::IfNeuron => {
                    let v_out = &mut *rest[0];
                    for k in 0..out.len() {
                        let x = g * j[k];
                        let (drive, count) = match &n.model {
                            NeuronModel::SpikingRelu => (x.max(0.0), f32::floor as fn(f32) -> f32),
                            NeuronModel::SpikingLeakyRelu { negative_slope } => (
                                if x > 0.0 {
                                    x
                                } else {
                                    *negative_slope as f32 * x
                                },
                                f32::trunc as fn(f32) -> f32,
                            ),
                            _ => (x, (|v: f32| v.floor().max(0.0)) as fn(f32) -> f32),
                        };
                        let v = args[1][k] + drive * dt;
                        let spikes = count(v);
                        out[k] = a / dt * spikes;
                        v_out[k] = v - spikes;
                    }
                }
                NeuronModel::Lif {
                    tau_rc,
                    tau_ref,
                    min_voltage,
                } => {
                    let (rc, rf, vmin) = (*tau_rc as f32, *tau_ref as f32, *min_voltage as f32);
                    let (v_rest, r_rest) = rest.split_at_mut(1);
                    let (v_out, r_out) = (&mut *v_rest[0], &mut *r_rest[0]);
                    for k in 0..out.len() {
                        let x = g * j[k];
                        let r = args[2][k] - dt;
                        let delta_t = (dt - r).clamp(0.0, dt);
                        let mut v = args[1][k];
                        v -= (x - v) * (-delta_t / rc).exp_m1();
                        let spiked = v > 1.0;
                        out[k] = if spiked { a / dt } else { 0.0 };
                        if spiked {
                            let t_spike = dt + rc * (-(v - 1.0) / (x - 1.0)).ln_1p();
                            v_out[k] = 0.0;
                            r_out[k] = rf + t_spike;
                        } else {
                            v_out[k] = v.max(vmin);
                            r_out[k] = r;
                        }
                    }
                }
            }
        }
        Op::Lowpass { tau } => {
            let decay = (-dt_s / tau).exp() as f32;
            for k in 0..out.len() {
                out[k] = decay * args[1][k] + (1.0 - decay) * args[0][k];
            }
        }
        Op::Alpha { .. } => {
            let c = alpha.expect("computed for every alpha");
            let z_out = &mut *rest[0];
            for k in 0..out.len() {
                let (u, y, z) = (args[0][k], args[1][k], args[2][k]);
                out[k] = c.yz * z + c.yy * y + c.yu * u;
                z_out[k] = c.zz * z + c.zy * y + c.zu * u;
            }
        }
        _ => unreachable!("only neurons and synapses are lane-wise"),
    }
}
