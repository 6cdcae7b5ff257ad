//! `fuse`: folds cheap linear steps into the linear map next to them, so each step of a
//! simulation does less work. Afterwards no instruction below is left that could be folded:
//!
//! - a `scale` of a `dense` or `conv` result, per output channel → the map's weights scaled per
//!   output column;
//! - a `scale` of a `dense` or `conv` input, per input channel → the weights scaled per input row
//!   (exact for zero padding too: a padded zero scaled is still zero);
//! - `bias` of a `bias`, `scale` of a `scale` with constants of one shape → one op;
//! - `dense` of a `dense` → one `dense` with the product matrix, when that needs fewer
//!   multiply-adds.
//!
//! The value that was folded away must have no other reader. The results equal the unfused
//! module's in real arithmetic; in f32 they differ by rounding (the differential tests allow
//! 1e-5 relative). Weights are combined in f64 and rounded once.

use super::rewrite::Rewriter;
use super::{PassError, build_err};
use snnc_ir::{ConstData, Module, ModuleInfo, Op, Operand, TensorType, ValueId};
use std::collections::HashMap;

/// How one instruction is rewritten in a round.
enum Plan {
    /// Dropped: its only reader absorbs it.
    Skip,
    /// Emitted as `op(args)` with weights `w`, named after this instruction's result.
    Emit {
        op: Op,
        args: Vec<Operand>,
        w: Vec<f32>,
        w_shape: Vec<usize>,
    },
}

/// Run the pass to a fixed point, then drop what it left dead.
pub fn fuse(m: &Module) -> Result<Module, PassError> {
    super::simplify::to_fixed_point(m, fuse_once)
}

fn f32_const(m: &Module, o: Operand) -> Option<(&[f32], &TensorType)> {
    match o {
        Operand::Const(c) => match &m.constant(c).data {
            ConstData::F32(v) => Some((v, &m.constant(c).ty)),
            _ => None,
        },
        _ => None,
    }
}

/// Which instruction defines each value, and how many reads (instructions, nexts, outputs) it
/// has, from the module's facts.
fn defs_and_uses(m: &Module) -> (Vec<Option<usize>>, Vec<usize>) {
    let info = ModuleInfo::new(m);
    let def = info.definer.iter().map(|d| d.map(|i| i.index())).collect();
    let uses = info.readers.iter().map(Vec::len).collect();
    (def, uses)
}

/// A scale constant as one factor per channel of the last axis: a scalar or a vector of `c`.
fn per_channel(s: &[f32], st: &TensorType, c: usize) -> Option<Vec<f32>> {
    match st.shape[..] {
        [] => Some(vec![s[0]; c]),
        [n] if n == c => Some(s.to_vec()),
        _ => None,
    }
}

/// Scale the weights of a dense or conv map per output channel (`out == true`) or per input
/// channel.
fn scale_weights(op: &Op, w: &[f32], w_shape: &[usize], s: &[f32], out: bool) -> Vec<f32> {
    let cout = *w_shape.last().expect("weights have rank >= 2");
    let cin_g = w_shape[w_shape.len() - 2];
    let groups = match op {
        Op::Conv(c) => c.groups,
        _ => 1,
    };
    let cout_g = cout / groups;
    w.iter()
        .enumerate()
        .map(|(e, &x)| {
            let co = e % cout;
            let k = if out {
                co
            } else {
                (co / cout_g) * cin_g + (e / cout) % cin_g
            };
            (x as f64 * s[k] as f64) as f32
        })
        .collect()
}

fn fuse_once(m: &Module) -> Result<(Module, bool), PassError> {
    let (def, uses) = defs_and_uses(m);
    let mut plans: HashMap<usize, Plan> = HashMap::new();
    // The single-reader instruction defining operand `o`, if any.
    let sole_def = |o: Operand| -> Option<usize> {
        match o {
            Operand::Value(v) if uses[v.index()] == 1 => def[v.index()],
            _ => None,
        }
    };
    let ty = |o: Operand| m.operand_type(o).expect("verified");
    for (i, inst) in m.insts.iter().enumerate() {
        if plans.contains_key(&i) {
            continue;
        }
        let Some(j) = inst.args.first().and_then(|&a| sole_def(a)) else {
            continue;
        };
        if plans.contains_key(&j) {
            continue;
        }
        let inner = &m.insts[j];
        let linear = |op: &Op| matches!(op, Op::Dense | Op::Conv(_));
        let plan = match (&inst.op, &inner.op) {
            // scale(linear(x, W), s) with s per output channel.
            (Op::Scale, op) if linear(op) => {
                let (Some((s, st)), Some((w, wt))) =
                    (f32_const(m, inst.args[1]), f32_const(m, inner.args[1]))
                else {
                    continue;
                };
                let Some(s) = per_channel(s, st, *wt.shape.last().expect("rank >= 2")) else {
                    continue;
                };
                Plan::Emit {
                    op: op.clone(),
                    args: vec![inner.args[0]],
                    w: scale_weights(op, w, &wt.shape, &s, true),
                    w_shape: wt.shape.clone(),
                }
            }
            // bias(bias(x, a), b) and scale(scale(x, a), b).
            (Op::Bias, Op::Bias) | (Op::Scale, Op::Scale) => {
                let (Some((a, at)), Some((b, bt))) =
                    (f32_const(m, inner.args[1]), f32_const(m, inst.args[1]))
                else {
                    continue;
                };
                if at.shape != bt.shape {
                    continue;
                }
                let add = inst.op == Op::Bias;
                Plan::Emit {
                    op: inst.op.clone(),
                    args: vec![inner.args[0]],
                    w: a.iter()
                        .zip(b)
                        .map(|(&x, &y)| {
                            let (x, y) = (x as f64, y as f64);
                            (if add { x + y } else { x * y }) as f32
                        })
                        .collect(),
                    w_shape: at.shape.clone(),
                }
            }
            // linear(scale(x, s), W) with s per input channel.
            (op, Op::Scale) if linear(op) => {
                let (Some((s, st)), Some((w, wt))) =
                    (f32_const(m, inner.args[1]), f32_const(m, inst.args[1]))
                else {
                    continue;
                };
                let cin = *ty(inner.args[0]).shape.last().expect("rank >= 1");
                let Some(s) = per_channel(s, st, cin) else {
                    continue;
                };
                Plan::Emit {
                    op: op.clone(),
                    args: vec![inner.args[0]],
                    w: scale_weights(op, w, &wt.shape, &s, false),
                    w_shape: wt.shape.clone(),
                }
            }
            // dense(dense(x, A), B) → dense(x, A·B) when that is cheaper.
            (Op::Dense, Op::Dense) => {
                let (Some((a, at)), Some((b, bt))) =
                    (f32_const(m, inner.args[1]), f32_const(m, inst.args[1]))
                else {
                    continue;
                };
                let (n_in, n_mid, n_out) = (at.shape[0], at.shape[1], bt.shape[1]);
                if n_in * n_out >= n_in * n_mid + n_mid * n_out {
                    continue;
                }
                let mut w = vec![0f32; n_in * n_out];
                for r in 0..n_in {
                    for c in 0..n_out {
                        let sum: f64 = (0..n_mid)
                            .map(|k| a[r * n_mid + k] as f64 * b[k * n_out + c] as f64)
                            .sum();
                        w[r * n_out + c] = sum as f32;
                    }
                }
                Plan::Emit {
                    op: Op::Dense,
                    args: vec![inner.args[0]],
                    w,
                    w_shape: vec![n_in, n_out],
                }
            }
            _ => continue,
        };
        plans.insert(j, Plan::Skip);
        plans.insert(i, plan);
    }
    if plans.is_empty() {
        return Ok((m.clone(), false));
    }
    let mut rw = Rewriter::new(m);
    for (i, inst) in m.insts.iter().enumerate() {
        match plans.remove(&i) {
            None => {
                rw.copy(inst).map_err(|e| build_err("fuse", e))?;
            }
            Some(Plan::Skip) => {}
            Some(Plan::Emit {
                op,
                args,
                w,
                w_shape,
            }) => {
                let r: ValueId = inst.results[0];
                let name = rw.old_value(r).name.clone();
                let c = rw.fresh_constant(&format!("{name}.fused"), &w_shape, w);
                let mut new_args: Vec<Operand> = args.iter().map(|&a| rw.map(a)).collect();
                new_args.push(Operand::Const(c));
                let v =
                    rw.b.op1(op, &new_args, &name)
                        .map_err(|e| build_err("fuse", e))?;
                rw.set(r, Operand::Value(v));
            }
        }
    }
    Ok((rw.finish(), true))
}

/// The `fuse` pass.
pub struct Fuse;

impl super::Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(
        &self,
        m: &Module,
        _opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        Ok(Some(fuse(m)?.into()))
    }
}
