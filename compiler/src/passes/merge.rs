//! `merge`: independent neuron and synapse instructions of one kind and parameters become one
//! instruction over several groups (SPEC.md, "Merged instructions"), which a runtime computes as
//! one loop over contiguous memory (the memory plan puts each position's groups back to back).
//!
//! - The merge key is the whole op with its attributes (model, gain, amplitude, time constants):
//!   everything the JIT bakes into the code it emits. Instructions with a constant operand and
//!   instructions of different time invariance (see [`snnc_ir::ModuleInfo::invariant`]) are not merged.
//! - Two instructions are independent when neither reads, directly or through other
//!   instructions, a value the other defines. Reading a state is not a dependency: it gives the
//!   value at the start of the step whatever runs before.
//! - An instruction that the JIT computes in one loop with its producer or its consumer (a
//!   lane-wise or indexed instruction of the same element count that is the value's only
//!   reader or writer: a neuron after its `bias`, an IF unit after its circuit's `sparse`) is not
//!   merged: that loop keeps the value in registers, which is worth more than a shared loop.
//! - Members of one merged instruction are pairwise independent and the contracted dependency
//!   graph is checked to stay acyclic; the instructions are then put back in an order that
//!   respects it, as close to the original as it allows (a merged instruction takes its last
//!   member's place).
//!
//! Values keep their names and types; only the instruction list changes. Outputs are bit for bit
//! those of the unmerged module (each group computes exactly what its instruction did).
//!
//! Not in the default pipeline: it moves a member's work away from its producer, which costs
//! cache locality at large batches (README, "Passes").

use super::PassError;
use snnc_ir::{Inst, InstId, Module, ModuleInfo, Op, Operand, Reader, ValueId};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What `merge` did: how many instructions went into merged ones, and how many came out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Instructions that joined a merged instruction.
    pub merged_in: usize,
    /// Merged instructions made from them.
    pub merged_out: usize,
}

/// Run the pass.
pub fn merge(m: &Module) -> Result<Module, PassError> {
    Ok(merge_with_stats(m)?.0)
}

/// Run the pass and say what it merged.
pub fn merge_with_stats(m: &Module) -> Result<(Module, MergeStats), PassError> {
    let n = m.insts.len();
    let info = ModuleInfo::new(m);
    let def: Vec<Option<usize>> = info.definer.iter().map(|d| d.map(|i| i.index())).collect();
    let deps = |inst: &Inst| -> Vec<usize> {
        inst.args
            .iter()
            .filter_map(|a| match a {
                Operand::Value(v) => def[v.index()],
                _ => None,
            })
            .collect()
    };
    // Ancestors of every instruction, as bit sets (instructions run in a topological order).
    let words = n.div_ceil(64);
    let mut anc = vec![vec![0u64; words]; n];
    for i in 0..n {
        for d in deps(&m.insts[i]) {
            if d >= i {
                return Err(PassError::ReadsLaterValue {
                    pass: "merge",
                    inst: i,
                });
            }
            let (before, rest) = anc.split_at_mut(i);
            rest[0]
                .iter_mut()
                .zip(&before[d])
                .for_each(|(a, b)| *a |= b);
            rest[0][d / 64] |= 1 << (d % 64);
        }
    }
    let reaches = |from: usize, to: usize| anc[to][from / 64] >> (from % 64) & 1 == 1;
    let independent = |i: usize, j: usize| !reaches(i, j) && !reaches(j, i);
    let (invariant, readers) = (&info.invariant, &info.readers);
    let count = |v: ValueId| m.value(v).ty.num_elements();
    // A producer and its only reader of one element count, both lane-wise or indexed, are one
    // loop in the JIT (the value stays in registers); merging either would cut that loop.
    let chained = |i: usize| {
        let inst = &m.insts[i];
        let from_producer = match inst.args[0] {
            Operand::Value(v) => def[v.index()].is_some_and(|d| {
                loop_op(&m.insts[d])
                    && readers[v.index()] == [Reader::Inst(InstId(i as u32))]
                    && count(m.insts[d].results[0]) == count(inst.results[0])
            }),
            _ => false,
        };
        let into_consumer = inst.results.iter().any(|&r| match readers[r.index()][..] {
            [Reader::Inst(j)] => {
                let j = &m.insts[j.index()];
                loop_op(j) && count(j.results[0]) == count(r)
            }
            _ => false,
        });
        from_producer || into_consumer
    };
    let mergeable = |i: usize| {
        let inst = &m.insts[i];
        inst.op.group_arity().is_some()
            && inst.groups() == 1
            && !inst.args.iter().any(|a| matches!(a, Operand::Const(_)))
            && !chained(i)
    };
    let dep_edges: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| deps(&m.insts[i]).into_iter().map(move |d| (d, i)))
        .collect();
    // Greedy: each instruction joins the first group of its key whose members it is independent
    // of and whose contraction, together with the groups formed so far, leaves no cycle (two
    // groups each feeding the other through different members would form one).
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of = vec![usize::MAX; n];
    for i in 0..n {
        let inst = &m.insts[i];
        if !mergeable(i) {
            continue;
        }
        let mut joined = false;
        for k in 0..groups.len() {
            let first = &m.insts[groups[k][0]];
            if first.op != inst.op
                || invariant[groups[k][0]] != invariant[i]
                || !groups[k].iter().all(|&j| independent(i, j))
            {
                continue;
            }
            group_of[i] = k;
            if acyclic(&dep_edges, &group_of, &groups) {
                groups[k].push(i);
                joined = true;
                break;
            }
            group_of[i] = usize::MAX;
        }
        if !joined {
            group_of[i] = groups.len();
            groups.push(vec![i]);
        }
    }
    // Nodes of the contracted graph: every instruction not merged, and one per merged group
    // (represented by its last member). Each gets the place of its last member.
    let node_of = |i: usize| match group_of[i] {
        k if k != usize::MAX && groups[k].len() > 1 => *groups[k].last().expect("not empty"),
        _ => i,
    };
    let is_node = |i: usize| node_of(i) == i;
    // Value dependencies must hold. Where it can, the order also puts every reader of a state
    // before the instruction that computes the state's next value, so the memory plan can compute
    // that value in the state's place (these edges are dropped if they would close a cycle).
    let mut edges = Vec::new();
    for i in 0..n {
        for d in deps(&m.insts[i]) {
            edges.push((node_of(d), node_of(i)));
        }
    }
    let value_edges = edges.len();
    for nx in &m.nexts {
        let Operand::Value(v) = nx.value else {
            continue;
        };
        let Some(d) = def[v.index()] else { continue };
        for (r, inst) in m.insts.iter().enumerate() {
            if inst.args.contains(&Operand::State(nx.state)) {
                edges.push((node_of(r), node_of(d)));
            }
        }
    }
    let is_node: Vec<bool> = (0..n).map(is_node).collect();
    let nodes = is_node.iter().filter(|&&x| x).count();
    let mut order = schedule(&is_node, &edges);
    if order.len() != nodes {
        order = schedule(&is_node, &edges[..value_edges]);
    }
    if order.len() != nodes {
        return Err(PassError::MergeCycle);
    }
    let mut stats = MergeStats::default();
    let mut out = m.clone();
    out.insts = order
        .into_iter()
        .map(|i| match group_of[i] {
            k if k != usize::MAX && groups[k].len() > 1 => {
                let members = &groups[k];
                stats.merged_in += members.len();
                stats.merged_out += 1;
                Inst {
                    op: m.insts[i].op.clone(),
                    args: members
                        .iter()
                        .flat_map(|&j| m.insts[j].args.clone())
                        .collect(),
                    results: members
                        .iter()
                        .flat_map(|&j| m.insts[j].results.clone())
                        .collect(),
                }
            }
            _ => m.insts[i].clone(),
        })
        .collect();
    Ok((out, stats))
}

/// Whether each result element of `inst` reads a fixed few operand elements, so a backend can
/// compute it in one loop with a producer or consumer of the same element count: the lane-wise
/// classes ([`snnc_ir::OpClass::is_lane_wise`]), `reshape`, and `sparse`/`gather` by constant
/// tables.
fn loop_op(inst: &Inst) -> bool {
    let constant = |k: usize| matches!(inst.args.get(k), Some(Operand::Const(_)));
    match inst.op {
        Op::Sparse { .. } => constant(1) && constant(2),
        Op::Gather { .. } => constant(1),
        Op::Reshape { .. } => true,
        _ => inst.op.class().is_lane_wise(),
    }
}

/// Whether contracting every group (with `group_of[i]`, the group of instruction `i` or
/// `usize::MAX`) leaves the dependency graph `edges` acyclic.
fn acyclic(edges: &[(usize, usize)], group_of: &[usize], groups: &[Vec<usize>]) -> bool {
    let n = group_of.len();
    let rep = |i: usize| match group_of[i] {
        usize::MAX => i,
        k => groups[k].first().copied().unwrap_or(i).min(i),
    };
    let is_node: Vec<bool> = (0..n).map(|i| rep(i) == i).collect();
    let contracted: Vec<(usize, usize)> = edges.iter().map(|&(a, b)| (rep(a), rep(b))).collect();
    schedule(&is_node, &contracted).len() == is_node.iter().filter(|&&x| x).count()
}

/// A topological order of the nodes (`is_node`) under `edges`, the smallest index first among
/// those ready; shorter than the node count when the edges close a cycle.
fn schedule(is_node: &[bool], edges: &[(usize, usize)]) -> Vec<usize> {
    let n = is_node.len();
    let mut edges = edges.to_vec();
    edges.retain(|(a, b)| a != b);
    edges.sort_unstable();
    edges.dedup();
    let mut preds = vec![0usize; n];
    let mut succs = vec![Vec::new(); n];
    for &(a, b) in &edges {
        preds[b] += 1;
        succs[a].push(b);
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| is_node[i] && preds[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &s in &succs[i] {
            preds[s] -= 1;
            if preds[s] == 0 {
                ready.push(Reverse(s));
            }
        }
    }
    order
}

/// The `merge` pass; its outcome says how many instructions it merged into how many.
pub struct Merge;

impl super::Pass for Merge {
    fn name(&self) -> &'static str {
        "merge"
    }

    fn run(
        &self,
        m: &Module,
        _opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        let (module, st) = merge_with_stats(m)?;
        Ok(Some(super::PassOutcome {
            module,
            detail: Some(format!(
                "merged {} neuron/synapse instructions into {}",
                st.merged_in, st.merged_out
            )),
            warnings: Vec::new(),
        }))
    }
}
