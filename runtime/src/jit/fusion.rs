//! Which instructions the JIT computes in one loop: lane-wise and indexed instructions of one
//! element count in a row, when the memory plan makes that equal to running them one by one; and
//! which of their results the loop must store.

use crate::frame::Frame;
use snnc_ir::{ConstData, Module, ModuleInfo, NeuronModel, Op, Operand, Reader};

/// How an instruction joins a fused loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lanes {
    /// Lane-wise; broadcasts a constant of this width along the last axis (`bias`/`scale`; 1 for
    /// the rest).
    Width(usize),
    /// Element `r` of a sample reads its operand at indices from a table (`gather`, and `sparse`
    /// maps whose rows all have the same terms and weights, such as max-pool circuits).
    Indexed,
}

/// A `sparse` map whose rows all have `d` terms with the same weights: per row, the columns.
pub(super) struct FixedRows {
    pub(super) d: usize,
    pub(super) weights: Vec<f32>,
    pub(super) cols: Vec<i32>,
}

/// The rows of a `sparse` instruction in that form, if they have it. Terms keep the
/// interpreter's order within each row.
pub(super) fn fixed_rows(m: &Module, inst: &snnc_ir::Inst) -> Option<FixedRows> {
    let (Operand::Const(ic), Operand::Const(wc)) = (inst.args[1], inst.args[2]) else {
        return None;
    };
    let (ConstData::I32(pairs), ConstData::F32(w)) = (&m.constant(ic).data, &m.constant(wc).data)
    else {
        return None;
    };
    let n_out = m.value(inst.results[0]).ty.num_elements();
    if n_out == 0 || w.len() % n_out != 0 {
        return None;
    }
    let d = w.len() / n_out;
    if !(1..=8).contains(&d) {
        return None;
    }
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by_key(|&e| pairs[2 * e]);
    let rows_ok = order
        .chunks_exact(d)
        .enumerate()
        .all(|(r, terms)| terms.iter().all(|&e| pairs[2 * e] as usize == r));
    let weights: Vec<f32> = order[..d].iter().map(|&e| w[e]).collect();
    let shared = order.chunks_exact(d).all(|terms| {
        terms
            .iter()
            .zip(&weights)
            .all(|(&e, &wt)| w[e].to_bits() == wt.to_bits())
    });
    (rows_ok && shared).then(|| FixedRows {
        d,
        weights,
        cols: order.iter().map(|&e| pairs[2 * e + 1]).collect(),
    })
}

/// Whether `inst` is a `gather` that keeps every element in place (a max-pool circuit's last
/// level, already in the output's order): a copy, computed lane by lane.
pub(super) fn identity_gather(m: &Module, inst: &snnc_ir::Inst) -> bool {
    let (Op::Gather { .. }, Some(&Operand::Const(c))) = (&inst.op, inst.args.get(1)) else {
        return false;
    };
    let ConstData::I32(idx) = &m.constant(c).data else {
        return false;
    };
    let n = m.operand_type(inst.args[0]).map_or(0, |t| t.num_elements());
    inst.groups() == 1
        && idx.len() == n
        && idx
            .iter()
            .enumerate()
            .all(|(k, &i)| i >= 0 && i as usize == k)
}

/// Whether the JIT computes instruction `inst` inside a fused loop, and how.
pub(super) fn elementwise_lanes(m: &Module, inst: &snnc_ir::Inst) -> Option<Lanes> {
    match &inst.op {
        Op::Gather { .. } if identity_gather(m, inst) => return Some(Lanes::Width(1)),
        Op::Gather { .. } => return Some(Lanes::Indexed),
        Op::Sparse { .. } => return fixed_rows(m, inst).map(|_| Lanes::Indexed),
        _ => {}
    }
    elementwise_width(m, inst).map(Lanes::Width)
}

/// Whether the JIT computes instruction `inst` lane by lane (so it can join a fused loop), and
/// the width of the constant it broadcasts along the last axis (`bias`/`scale`; 1 for the rest).
/// Operands that are constants of the result's size are read sample by sample (a fused loop
/// with one runs per sample).
pub(super) fn elementwise_width(m: &Module, inst: &snnc_ir::Inst) -> Option<usize> {
    if inst.groups() > 1 {
        return None;
    }
    match &inst.op {
        // Integer voltages: a host job (scheduled by next spike step where the current is held).
        Op::Neuron(n) if n.model == NeuronModel::FixedRelu => None,
        Op::Neuron(_) | Op::Lowpass { .. } | Op::Alpha { .. } | Op::Add | Op::Reshape { .. } => {
            Some(1)
        }
        Op::Bias | Op::Scale if matches!(inst.args[1], Operand::Const(_)) => {
            let n = m
                .operand_type(inst.args[1])
                .expect("verified")
                .num_elements();
            Some(n.max(1))
        }
        _ => None,
    }
}

/// Runs of consecutive lane-wise instructions that one loop can compute: the same element count,
/// the same time invariance, and `bias`/`scale` constants of one width. Returned with that width.
pub(super) fn elementwise_groups(
    m: &Module,
    f: &Frame,
    info: &ModuleInfo,
) -> Vec<(Vec<usize>, Lanes)> {
    let mut groups: Vec<(Vec<usize>, Lanes)> = Vec::new();
    let count = |i: usize| m.value(m.insts[i].results[0]).ty.num_elements();
    // Computed once: how each instruction would fuse.
    let readers = &info.readers;
    let all_lanes: Vec<Option<Lanes>> = m.insts.iter().map(|i| elementwise_lanes(m, i)).collect();
    for (i, &lanes) in all_lanes.iter().enumerate() {
        let Some(lanes) = lanes else {
            continue;
        };
        if let Some((g, gl)) = groups.last_mut() {
            let last = *g.last().expect("groups are not empty");
            let mut candidate = g.clone();
            candidate.push(i);
            let safe = fusable(m, f, (readers, &all_lanes), &candidate);
            // A copy joins lane-wise loops only: an indexed one keeps the form of a max-pool
            // circuit level, which the eight-lane loops take whole.
            let copy = |j: usize| identity_gather(m, &m.insts[j]);
            let with_indexed = *gl == Lanes::Indexed || lanes == Lanes::Indexed;
            let joined = match (*gl, lanes) {
                _ if with_indexed && (copy(i) || g.iter().any(|&j| copy(j))) => None,
                (Lanes::Width(a), Lanes::Width(b)) if a == 1 || b == 1 || a == b => {
                    Some(Lanes::Width(a.max(b)))
                }
                (Lanes::Indexed, Lanes::Width(1))
                | (Lanes::Width(1), Lanes::Indexed)
                | (Lanes::Indexed, Lanes::Indexed) => Some(Lanes::Indexed),
                _ => None,
            };
            if let Some(joined) = joined
                && last + 1 == i
                && count(last) == count(i)
                && f.is_invariant(last) == f.is_invariant(i)
                && safe
            {
                g.push(i);
                *gl = joined;
                continue;
            }
        }
        groups.push((vec![i], lanes));
    }
    groups
}

/// Whether one loop may compute `group`. The memory plan lets a result reuse the space of an
/// operand whose last reader has run, which assumes instructions run one after another. In one
/// loop, element `k` of every instruction runs before element `k + 1` of any, so a result the loop
/// stores must not overlap an operand the loop reads unless both occupy exactly the same span
/// (then element `k` is read before it is written); and an indexed read, which may look at any
/// element, must not overlap a stored result at all.
/// `readers[v]`: the reads of value `v`; `lanes[i]`: how instruction `i` joins a fused loop.
fn fusable(
    m: &Module,
    f: &Frame,
    (readers, lanes): (&[Vec<Reader>], &[Option<Lanes>]),
    group: &[usize],
) -> bool {
    let in_group = |v: snnc_ir::ValueId| group.iter().any(|&j| m.insts[j].results.contains(&v));
    let read_outside = |v: snnc_ir::ValueId| {
        readers[v.index()].iter().any(|r| match r {
            Reader::Inst(j) => !group.contains(&j.index()),
            Reader::EndOfStep => true,
        })
    };
    let stored: Vec<std::ops::Range<usize>> = group
        .iter()
        .flat_map(|&j| m.insts[j].results.iter().copied())
        .filter(|&r| read_outside(r))
        .filter_map(|r| f.span(Operand::Value(r)))
        .collect();
    group.iter().all(|&j| {
        let inst = &m.insts[j];
        let indexed = lanes[j] == Some(Lanes::Indexed);
        inst.args.iter().enumerate().all(|(k, &a)| {
            if matches!(a, Operand::Value(v) if in_group(v)) && !(indexed && k == 0) {
                return true;
            }
            if indexed && k == 0 && matches!(a, Operand::Value(v) if in_group(v)) {
                return false;
            }
            let Some(q) = f.span(a) else { return true };
            stored.iter().all(|r| {
                let disjoint = r.end <= q.start || q.end <= r.start;
                disjoint || (!(indexed && k == 0) && *r == q)
            })
        })
    })
}

/// Which values the generated code must store: those read outside the fused loop that computes
/// them (by another instruction, a `next` or an output).
pub(super) fn stored_values(info: &ModuleInfo, groups: &[(Vec<usize>, Lanes)]) -> Vec<bool> {
    let mut group_of = vec![None; info.invariant.len()];
    for (k, (g, _)) in groups.iter().enumerate() {
        for &i in g {
            group_of[i] = Some(k);
        }
    }
    // A value no group defines is written by its own kernel anyway.
    info.readers
        .iter()
        .zip(&info.definer)
        .map(|(readers, def)| {
            let home = def.and_then(|d| group_of[d.index()]);
            readers.iter().any(|r| match r {
                Reader::EndOfStep => true,
                Reader::Inst(j) => group_of[j.index()].is_none() || group_of[j.index()] != home,
            })
        })
        .collect()
}
