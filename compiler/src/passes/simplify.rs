//! `simplify`: afterwards the module has no dead instructions, states or constants (nothing that
//! cannot reach an output or a live state's `next`), no identity ops (a reshape or transpose that
//! changes nothing, a bias of zeros, a scale by ones), no reshape of a reshape, and no two
//! instructions computing the same op on the same operands, and no `reshape`, `bias`, `scale`,
//! `add` or `gather` whose operands are all constants (folded, in the interpreter's f32 operation
//! order, so outputs are bit-for-bit unchanged; `dense` is not folded, since the runtime's kernel
//! uses fused multiply-adds where the CPU has them).

use super::rewrite::Rewriter;
use super::{PassError, build_err};
use snnc_ir::{ConstData, Inst, Module, ModuleInfo, Op, Operand, semantics};
use std::collections::HashMap;

/// Which instructions, states and constants can reach an output (or a live state's `next`).
fn liveness(m: &Module) -> (Vec<bool>, Vec<bool>, Vec<bool>) {
    let def: Vec<Option<usize>> = ModuleInfo::new(m)
        .definer
        .iter()
        .map(|d| d.map(|i| i.index()))
        .collect();
    let mut live_inst = vec![false; m.insts.len()];
    let mut live_state = vec![false; m.states.len()];
    let mut live_const = vec![false; m.constants.len()];
    let mut work: Vec<Operand> = m.outputs.iter().map(|o| o.value).collect();
    let next_of: HashMap<usize, Operand> =
        m.nexts.iter().map(|n| (n.state.index(), n.value)).collect();
    while let Some(o) = work.pop() {
        match o {
            Operand::Value(v) => {
                if let Some(i) = def[v.index()]
                    && !live_inst[i]
                {
                    live_inst[i] = true;
                    work.extend(m.insts[i].args.iter().copied());
                }
            }
            Operand::State(s) => {
                if !live_state[s.index()] {
                    live_state[s.index()] = true;
                    if let Some(&v) = next_of.get(&s.index()) {
                        work.push(v);
                    }
                }
            }
            Operand::Const(c) => live_const[c.index()] = true,
        }
    }
    (live_inst, live_state, live_const)
}

fn all_equal(d: &ConstData, x: f32) -> bool {
    matches!(d, ConstData::F32(v) if v.iter().all(|&y| y == x))
}

/// The value of an instruction whose operands are all constants, for the ops folded here.
fn fold(m: &Module, inst: &Inst) -> Option<Vec<f32>> {
    let arg = |k: usize| match inst.args.get(k) {
        Some(Operand::Const(c)) => Some(&m.constant(*c).data),
        _ => None,
    };
    let f = |k: usize| match arg(k) {
        Some(ConstData::F32(v)) => Some(v.as_slice()),
        _ => None,
    };
    let out_len = m.value(inst.results[0]).ty.num_elements();
    Some(match &inst.op {
        Op::Reshape { .. } => f(0)?.to_vec(),
        Op::Bias | Op::Scale => {
            let (x, p) = (f(0)?, f(1)?);
            let w = p.len().max(1);
            x.iter()
                .enumerate()
                .map(|(i, &v)| {
                    if inst.op == Op::Bias {
                        semantics::bias(v, p[i % w])
                    } else {
                        semantics::scale(v, p[i % w])
                    }
                })
                .collect()
        }
        Op::Add => {
            let mut acc = f(0)?.to_vec();
            for k in 1..inst.args.len() {
                acc.iter_mut()
                    .zip(f(k)?)
                    .for_each(|(a, &b)| *a = semantics::add(*a, b));
            }
            acc
        }
        Op::Gather { .. } => {
            let (x, idx) = (f(0)?, arg(1)?);
            let ConstData::I32(idx) = idx else {
                return None;
            };
            idx.iter()
                .map(|&i| x.get(i as usize).copied())
                .collect::<Option<_>>()?
        }
        _ => return None,
    })
    .filter(|v: &Vec<f32>| v.len() == out_len)
}

/// Run the pass, repeating it until nothing more changes (collapsing a reshape chain can leave
/// the inner reshape dead for the next round).
pub fn simplify(m: &Module) -> Result<Module, PassError> {
    let mut cur = simplify_once(m)?;
    for _ in 0..8 {
        let next = simplify_once(&cur)?;
        if next.insts.len() == cur.insts.len() && next.states.len() == cur.states.len() {
            return Ok(next);
        }
        cur = next;
    }
    Ok(cur)
}

fn simplify_once(m: &Module) -> Result<Module, PassError> {
    let (live_inst, live_state, live_const) = liveness(m);
    let mut rw = Rewriter::keeping(m, &live_const, &live_state);
    let mut seen: HashMap<String, Vec<snnc_ir::ValueId>> = HashMap::new();
    // The original source of each (new) reshape result, to collapse reshape chains.
    let mut reshape_source: HashMap<snnc_ir::ValueId, Operand> = HashMap::new();
    for (i, inst) in m.insts.iter().enumerate() {
        if !live_inst[i] {
            continue;
        }
        let args: Vec<Operand> = inst.args.iter().map(|&a| rw.map(a)).collect();
        let arg_ty = |k: usize| m.operand_type(inst.args[k]).expect("verified").clone();
        let result_ty = rw.old_value(inst.results[0]).ty.clone();
        // Identity ops forward their input.
        let identity = match &inst.op {
            Op::Reshape { .. } => arg_ty(0) == result_ty,
            Op::Transpose { perm } => perm.iter().enumerate().all(|(a, &p)| a == p),
            Op::Bias | Op::Scale => match inst.args[1] {
                Operand::Const(c) => all_equal(
                    &m.constant(c).data,
                    if inst.op == Op::Bias { 0.0 } else { 1.0 },
                ),
                _ => false,
            },
            _ => false,
        };
        if identity {
            rw.set(inst.results[0], args[0]);
            continue;
        }
        if let Some(data) = fold(m, inst) {
            let name = rw.old_value(inst.results[0]).name.clone();
            let c = rw.fresh_constant(&name, &result_ty.shape, data);
            rw.set(inst.results[0], Operand::Const(c));
            continue;
        }
        let mut op = inst.op.clone();
        let mut args = args;
        if let (Op::Reshape { .. }, Operand::Value(v)) = (&op, args[0])
            && let Some(&src) = reshape_source.get(&v)
        {
            args[0] = src;
            if rw
                .b
                .module()
                .operand_type(src)
                .is_some_and(|t| t.shape == result_ty.shape)
            {
                rw.set(inst.results[0], src);
                continue;
            }
        }
        let key = format!("{op:?}|{args:?}");
        if let Some(prev) = seen.get(&key) {
            for (r, p) in inst.results.iter().zip(prev.clone()) {
                rw.set(*r, Operand::Value(p));
            }
            continue;
        }
        let names: Vec<String> = inst
            .results
            .iter()
            .map(|r| rw.old_value(*r).name.clone())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let new =
            rw.b.op_named(std::mem::replace(&mut op, Op::Add), &args, &refs)
                .map_err(|e| build_err("simplify", e))?;
        if let Inst {
            op: Op::Reshape { .. },
            ..
        } = inst
        {
            reshape_source.insert(new[0], args[0]);
        }
        for (r, n) in inst.results.iter().zip(&new) {
            rw.set(*r, Operand::Value(*n));
        }
        seen.insert(key, new);
    }
    Ok(rw.finish())
}

/// The `simplify` pass.
pub struct Simplify;

impl super::Pass for Simplify {
    fn name(&self) -> &'static str {
        "simplify"
    }

    fn run(
        &self,
        m: &Module,
        _opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        Ok(Some(simplify(m)?.into()))
    }
}

/// Apply `round` until it reports no change (at most 16 rounds), then `simplify` away what the
/// rounds left dead.
pub fn to_fixed_point(
    m: &Module,
    round: impl Fn(&Module) -> Result<(Module, bool), PassError>,
) -> Result<Module, PassError> {
    let mut cur = m.clone();
    for _ in 0..16 {
        let (next, changed) = round(&cur)?;
        cur = next;
        if !changed {
            break;
        }
    }
    simplify(&cur)
}
