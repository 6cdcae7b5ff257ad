//! The reference interpreter: every op, f32, one sample at a time, straight from SPEC.md.
//!
//! Written for clarity, not speed, and independent of the JIT: dense maps and convolutions are
//! plain loops over their terms in the order SPEC.md fixes (not the GEMM and event-driven kernels
//! of [`crate::linear`], which the JIT calls and which these loops check), and every scalar
//! formula comes from [`snnc_ir::semantics`].

use crate::frame::Frame;
use crate::kernels;
use crate::window::{for_each_index, strides_of};
use crate::{Engine, SimError};
use snnc_ir::semantics::{self, AlphaCoefficients, Fold, LifParams};
use snnc_ir::{Module, NeuronModel, Op, Operand, Verified};
use std::ops::Range;

/// Runs a verified module one step at a time.
pub struct Interpreter {
    frame: Frame,
    /// Whether dense maps and convolutions fuse their multiply-adds (decided once).
    fused: bool,
}

impl Interpreter {
    /// Prepare to run `module` on minibatches of `batch` samples.
    pub fn new(module: &Verified, batch: usize) -> Result<Self, SimError> {
        Ok(Interpreter {
            frame: Frame::new(module, batch)?,
            fused: semantics::fused_multiply_add(),
        })
    }

    /// Run instruction `i` for the whole batch, one sample at a time.
    fn run_inst(&mut self, i: usize) {
        let batch = self.frame.batch();
        let base = self.frame.arena_ptr();
        let f = &self.frame;
        let m = f.module();
        let inst = &m.insts[i];
        let arg_spans: Vec<Option<Range<usize>>> = inst.args.iter().map(|&a| f.span(a)).collect();
        let out_spans: Vec<Range<usize>> = inst
            .results
            .iter()
            .map(|&r| f.span(Operand::Value(r)).expect("a value"))
            .collect();
        // SAFETY: every span lies inside the arena (the frame checked the plan), and the plan
        // never lets an instruction's results overlap each other or its operands (checked by the
        // frame) but for a state updated in place, which is copied below before any result is
        // written; so the result slices are exclusive while the operand slices are only read.
        let view = |r: &Range<usize>| unsafe {
            std::slice::from_raw_parts(base.add(r.start) as *const f32, r.len())
        };
        // An operand whose space a result reuses (a state updated in place) is read from a copy.
        let copies: Vec<Option<Vec<f32>>> = arg_spans
            .iter()
            .map(|a| {
                a.as_ref()
                    .filter(|a| out_spans.iter().any(|r| r.start < a.end && a.start < r.end))
                    .map(|a| view(a).to_vec())
            })
            .collect();
        let mut outs: Vec<&mut [f32]> = out_spans
            .iter()
            .map(|r| unsafe { std::slice::from_raw_parts_mut(base.add(r.start), r.len()) })
            .collect();
        let out_lens: Vec<usize> = inst
            .results
            .iter()
            .map(|r| m.value(*r).ty.num_elements())
            .collect();
        for b in 0..batch {
            let args: Vec<&[f32]> = inst
                .args
                .iter()
                .zip(&arg_spans)
                .zip(&copies)
                .map(|((&a, r), copy)| match (a, r) {
                    (Operand::Const(c), _) => f.constant(c),
                    (_, Some(r)) => {
                        let n = r.len() / batch;
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
            eval(f, self.fused, i, &args, &mut out_slices);
        }
    }
}

impl Engine for Interpreter {
    fn reset(&mut self, seed: u64) {
        self.frame.reset(seed);
    }

    fn step(&mut self, inputs: &[&[f32]]) {
        let held = self.frame.load_inputs(inputs);
        for i in 0..self.frame.module().insts.len() {
            if !(held && self.frame.is_invariant(i)) {
                self.run_inst(i);
            }
        }
        self.frame.finish_step();
    }

    fn output(&self, k: usize) -> &[f32] {
        self.frame.output(k)
    }

    fn module(&self) -> &Module {
        self.frame.module()
    }

    fn verified(&self) -> &snnc_ir::Verified {
        self.frame.verified()
    }
}

/// Evaluate instruction `i` on one sample; `fused`: dense and convolution terms are fused
/// multiply-adds ([`semantics::fused_multiply_add`]).
fn eval(f: &Frame, fused: bool, i: usize, args: &[&[f32]], outs: &mut [&mut [f32]]) {
    let m = f.module();
    let inst = &m.insts[i];
    let ty = |k: usize| m.operand_type(inst.args[k]).expect("verified");
    if let Some(k) = inst.op.group_arity() {
        let r = inst.op.num_results();
        for (a, o) in args.chunks(k).zip(outs.chunks_mut(r)) {
            let (out, rest) = o.split_first_mut().expect("every op has a result");
            lane_wise(&inst.op, m.dt, a, out, rest);
        }
        return;
    }
    let (out, _) = outs.split_first_mut().expect("every op has a result");
    match &inst.op {
        Op::Dense => {
            // Each row of the last axis: y = Σ_i x[i] · w[i, :], terms in order of i, a zero
            // input contributing nothing.
            let (n, k) = (ty(1).shape[0], ty(1).shape[1]);
            for (row, y) in args[0].chunks(n).zip(out.chunks_mut(k)) {
                y.fill(0.0);
                for (ii, &x) in row.iter().enumerate() {
                    if x == 0.0 {
                        continue;
                    }
                    for (yj, &w) in y.iter_mut().zip(&args[1][ii * k..(ii + 1) * k]) {
                        *yj = semantics::multiply_add(fused, x, w, *yj);
                    }
                }
            }
        }
        Op::Conv(c) => kernels::conv(args[0], &ty(0).shape, args[1], &ty(1).shape, c, fused, out),
        Op::AvgPool(p) => kernels::pool(args[0], &ty(0).shape, p, Fold::Avg, out),
        Op::MaxPool(p) => kernels::pool(args[0], &ty(0).shape, p, Fold::Max, out),
        Op::GlobalAvgPool | Op::GlobalMaxPool => {
            let fold = if matches!(inst.op, Op::GlobalMaxPool) {
                Fold::Max
            } else {
                Fold::Avg
            };
            let c = out.len();
            out.fill(fold.init());
            let positions = args[0].len() / c.max(1);
            for px in args[0].chunks(c) {
                for (y, &x) in out.iter_mut().zip(px) {
                    *y = fold.step(*y, x);
                }
            }
            out.iter_mut().for_each(|y| *y = fold.finish(*y, positions));
        }
        Op::Sparse { .. } => {
            out.fill(0.0);
            let idx = f.index_table(inst.args[1]);
            for (pair, &w) in idx.chunks(2).zip(args[2]) {
                out[pair[0] as usize] += w * args[0][pair[1] as usize];
            }
        }
        Op::Gather { .. } => {
            let idx = f.index_table(inst.args[1]);
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
                    *y = if add {
                        semantics::bias(x, p)
                    } else {
                        semantics::scale(x, p)
                    };
                }
            }
            if b.is_empty() {
                out.copy_from_slice(args[0]);
            }
        }
        Op::Add => {
            out.copy_from_slice(args[0]);
            for a in &args[1..] {
                out.iter_mut()
                    .zip(*a)
                    .for_each(|(y, &x)| *y = semantics::add(*y, x));
            }
        }
        Op::Mul => {
            out.copy_from_slice(args[0]);
            for a in &args[1..] {
                out.iter_mut()
                    .zip(*a)
                    .for_each(|(y, &x)| *y = semantics::mul(*y, x));
            }
        }
        Op::LayerNorm { epsilon } => {
            let c = args[1].len();
            for (ys, xs) in out.chunks_mut(c).zip(args[0].chunks(c)) {
                semantics::layer_norm_row(xs, args[1], args[2], *epsilon as f32, ys);
            }
        }
        Op::BatchNorm { epsilon } => {
            let c = args[1].len();
            for (ys, xs) in out.chunks_mut(c).zip(args[0].chunks(c)) {
                for k in 0..c {
                    let p = (args[1][k], args[2][k], args[3][k], args[4][k]);
                    ys[k] = semantics::batch_norm(xs[k], p, *epsilon as f32);
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
                semantics::softmax_row(xs, ys);
            }
        }
        Op::Neuron(_) | Op::Lowpass { .. } | Op::Alpha { .. } => {
            unreachable!("lane-wise ops run group by group above")
        }
    }
}

/// One group of a neuron or synapse instruction on one sample: `args` are the group's operands,
/// `out` its first result and `rest` the others (new states).
fn lane_wise(op: &Op, dt_s: f64, args: &[&[f32]], out: &mut [f32], rest: &mut [&mut [f32]]) {
    let dt = dt_s as f32;
    let j = args[0];
    match op {
        Op::Neuron(n) => match &n.model {
            NeuronModel::SpikingRelu
            | NeuronModel::SpikingLeakyRelu { .. }
            | NeuronModel::IfNeuron => {
                let params = (n.gain as f32, n.amplitude as f32, dt);
                let v_out = &mut *rest[0];
                for k in 0..out.len() {
                    (out[k], v_out[k]) =
                        semantics::spiking_step(&n.model, params, j[k], args[1][k]);
                }
            }
            NeuronModel::FixedRelu => {
                let params = (n.gain as f32, n.amplitude as f32, dt);
                let v_out = &mut *rest[0];
                for k in 0..out.len() {
                    (out[k], v_out[k]) = semantics::fixed_relu_step(params, j[k], args[1][k]);
                }
            }
            NeuronModel::LeakyIf { decay } => {
                let params = (n.gain as f32, n.amplitude as f32, dt, *decay as f32);
                let v_out = &mut *rest[0];
                for k in 0..out.len() {
                    (out[k], v_out[k]) = semantics::leaky_if_step(params, j[k], args[1][k]);
                }
            }
            NeuronModel::Lif { .. } => {
                let p = LifParams::new(n, dt_s);
                let (v_rest, r_rest) = rest.split_at_mut(1);
                let (v_out, r_out) = (&mut *v_rest[0], &mut *r_rest[0]);
                for k in 0..out.len() {
                    (out[k], v_out[k], r_out[k]) =
                        semantics::lif_step(&p, j[k], args[1][k], args[2][k]);
                }
            }
            _ => out
                .iter_mut()
                .zip(j)
                .for_each(|(y, &x)| *y = semantics::rate(n, x)),
        },
        Op::Lowpass { tau } => {
            let decay = semantics::lowpass_decay(dt_s, *tau);
            for k in 0..out.len() {
                out[k] = semantics::lowpass_step(decay, j[k], args[1][k]);
            }
        }
        Op::Alpha { tau } => {
            let c = AlphaCoefficients::new(dt_s, *tau);
            let z_out = &mut *rest[0];
            for k in 0..out.len() {
                (out[k], z_out[k]) = c.step(j[k], args[1][k], args[2][k]);
            }
        }
        _ => unreachable!("only neurons and synapses are lane-wise"),
    }
}
