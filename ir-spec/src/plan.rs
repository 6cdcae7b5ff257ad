//! Memory planning: every value and state of a module gets a place in one `f32` arena.
//!
//! States come first, in declaration order (merged groups' states first, see below) and back to back, and live for the whole simulation.
//! Inputs and the results of time-invariant instructions (those that read only inputs and
//! constants, see [`crate::ModuleInfo::invariant`]) live for the whole simulation too: a runtime may skip
//! recomputing them while the inputs stay the same. Every other value lives from the instruction
//! that defines it to its last reader (outputs and `next` sources to the end of the step), and
//! values whose lifetimes do not overlap share space. An instruction's results never share with
//! its operands, so kernels may read operands while writing results — with one exception: a
//! value that becomes a state's next value is computed in the state's own place ("in place", so
//! the step ends without copying it) when nothing reads the state after the instruction that
//! defines the value, neither an output nor another state's `next` reads the state, and that
//! instruction either does not read the state or is lane-wise (a neuron or a synapse: element
//! `k` of the result depends only on element `k` of the state, read before it is written) and
//! reads it once, in the group that defines the value.
//!
//! A merged instruction (a neuron or synapse computing several groups) gets each operand and
//! result position's groups back to back, in group order, so a runtime can run it as one loop:
//! its states are placed first, and its values are allocated as one block living from the first
//! member's definition to the last member's last reader. A value or state named by two such
//! positions keeps the first; a value computed in its state's place follows the state.
//!
//! Offsets and lengths are per sample; a runtime running `batch` samples at once multiplies both
//! by `batch` and keeps each buffer's samples back to back.

use crate::module::Operand;
use crate::ops::OpClass;
use crate::verify::Verified;
use std::fmt;
use std::ops::Range;

/// Where each value and state lives, in elements per sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Per value (by index): its span in the arena.
    pub values: Vec<Range<usize>>,
    /// Per state (by index): its span in the arena.
    pub states: Vec<Range<usize>>,
    /// Arena length per sample.
    pub size: usize,
    /// What the values and states would need without sharing.
    pub unshared: usize,
    /// Per value: it is computed in the place of the state it becomes at the end of the step.
    pub in_place: Vec<bool>,
    names: Vec<(String, bool)>,
}

impl MemoryPlan {
    /// Plan a verified module's memory.
    pub fn new(m: &Verified) -> Self {
        let info = m.info();
        let n_insts = m.insts.len();
        let forever = n_insts + 1;
        // Lifetimes in positions: 0 is the start of the step, instruction i runs at i + 1, the
        // outputs are read and the nexts applied at n + 1.
        let mut start = vec![0usize; m.values.len()];
        let mut end = vec![0usize; m.values.len()];
        let invariant = &info.invariant;
        for &v in &m.inputs {
            end[v.index()] = forever;
        }
        for (i, inst) in m.insts.iter().enumerate() {
            // A time-invariant result keeps its elements from one step to the next (a runtime may
            // skip recomputing it), so it shares with nothing, before or after it in the step.
            for r in &inst.results {
                start[r.index()] = if invariant[i] { 0 } else { i + 1 };
                end[r.index()] = if invariant[i] { forever } else { i + 1 };
            }
            for a in &inst.args {
                if let Operand::Value(v) = a {
                    end[v.index()] = end[v.index()].max(i + 1);
                }
            }
        }
        for v in m.end_of_step_values() {
            end[v.index()] = forever;
        }
        let mut values = vec![0..0; m.values.len()];
        // Merged instructions (several groups) want each operand and result position's groups
        // back to back: `blocks` lists them per position, in group order.
        let mut state_blocks: Vec<Vec<usize>> = Vec::new();
        let mut value_blocks: Vec<Vec<usize>> = Vec::new();
        for inst in m.insts.iter().filter(|i| i.groups() > 1) {
            let (k, r) = (
                inst.args.len() / inst.groups(),
                inst.results.len() / inst.groups(),
            );
            for p in 0..k {
                let column = (0..inst.groups()).map(|g| inst.args[g * k + p]);
                if let Some(ids) = column
                    .clone()
                    .map(|a| match a {
                        Operand::State(s) => Some(s.index()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                {
                    state_blocks.push(ids);
                } else if let Some(ids) = column
                    .map(|a| match a {
                        Operand::Value(v) => Some(v.index()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                {
                    value_blocks.push(ids);
                }
            }
            for q in 0..r {
                value_blocks.push(
                    (0..inst.groups())
                        .map(|g| inst.results[g * r + q].index())
                        .collect(),
                );
            }
        }
        // States: merged blocks first (a state joins the first block that names it, and a block
        // with a state placed already is not kept together), then the rest in declaration order.
        let mut placed = vec![false; m.states.len()];
        let mut state_order = Vec::with_capacity(m.states.len());
        for block in &state_blocks {
            let mut seen = block.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() == block.len() && block.iter().all(|&s| !placed[s]) {
                for &s in block {
                    placed[s] = true;
                    state_order.push(s);
                }
            }
        }
        state_order.extend((0..m.states.len()).filter(|&s| !placed[s]));
        let mut states = vec![0..0; m.states.len()];
        let mut offset = 0;
        for s in state_order {
            let n = m.states[s].ty.num_elements();
            states[s] = offset..offset + n;
            offset += n;
        }
        let state_end = offset;
        // Values computed in their state's place.
        let mut in_place = vec![false; m.values.len()];
        let last_reader: Vec<Option<usize>> = info
            .state_readers
            .iter()
            .map(|r| r.last().map(|i| i.index()))
            .collect();
        let state_outputs: Vec<bool> = (0..m.states.len())
            .map(|s| {
                m.outputs
                    .iter()
                    .any(|o| o.value == Operand::State(crate::StateId(s as u32)))
            })
            .collect();
        let mut next_count = vec![0usize; m.values.len()];
        // States some `next` reads: they must keep their value until the end of the step.
        let mut next_reads = vec![false; m.states.len()];
        for nx in &m.nexts {
            match nx.value {
                Operand::Value(v) => next_count[v.index()] += 1,
                Operand::State(t) => next_reads[t.index()] = true,
                Operand::Const(_) => {}
            }
        }
        for nx in &m.nexts {
            let (Operand::Value(v), s) = (nx.value, nx.state.index()) else {
                continue;
            };
            let Some(d) = info.definer[v.index()].map(|i| i.index()) else {
                continue;
            };
            let inst = &m.insts[d];
            let reads_state = inst.args.contains(&Operand::State(nx.state));
            let lane_wise = matches!(inst.op.class(), OpClass::Neuron | OpClass::Synapse);
            // In a merged instruction another group could read the state at other elements:
            // every read of the state must be in the group that defines the value.
            let group = inst
                .results
                .iter()
                .position(|&r| r == v)
                .map_or(0, |k| k / (inst.results.len() / inst.groups()).max(1));
            let per_group = inst.args.len() / inst.groups().max(1);
            let reads_in_group = inst
                .args
                .iter()
                .enumerate()
                .filter(|&(_, &a)| a == Operand::State(nx.state))
                .all(|(k, _)| k / per_group.max(1) == group);
            let reads_once = inst
                .args
                .iter()
                .filter(|&&a| a == Operand::State(nx.state))
                .count()
                <= 1;
            let ok = reads_once
                && reads_in_group
                && !state_outputs[s]
                && !next_reads[s]
                && !invariant[d]
                && next_count[v.index()] == 1
                && m.values[v.index()].ty.num_elements() == m.states[s].ty.num_elements()
                && last_reader[s].is_none_or(|r| r < d || (r == d && lane_wise))
                && (!reads_state || lane_wise);
            if ok {
                in_place[v.index()] = true;
                values[v.index()] = states[s].clone();
            }
        }
        // Units of allocation: merged blocks (a value joins the first block that names it; a
        // block with a value computed in place or taken already stays apart) and single values.
        let mut unit_of = vec![None::<usize>; m.values.len()];
        let mut units: Vec<Vec<usize>> = Vec::new();
        for block in value_blocks {
            let mut seen = block.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() == block.len()
                && block.iter().all(|&v| !in_place[v] && unit_of[v].is_none())
            {
                for &v in &block {
                    unit_of[v] = Some(units.len());
                }
                units.push(block);
            }
        }
        for v in 0..m.values.len() {
            if !in_place[v] && unit_of[v].is_none() {
                unit_of[v] = Some(units.len());
                units.push(vec![v]);
            }
        }
        // First fit, in order of definition, among the blocks still live. A unit lives from
        // its first member's definition to its last member's last reader.
        let span_of = |u: &[usize]| {
            let s = u.iter().map(|&v| start[v]).min().unwrap_or(0);
            let e = u.iter().map(|&v| end[v]).max().unwrap_or(0);
            (s, e)
        };
        let mut live: Vec<(Range<usize>, usize)> = Vec::new();
        let mut size = state_end;
        units.sort_by_key(|u| (span_of(u).0, u[0]));
        for unit in &units {
            let (u_start, u_end) = span_of(unit);
            let n: usize = unit.iter().map(|&v| m.values[v].ty.num_elements()).sum();
            live.retain(|(_, e)| *e >= u_start);
            live.sort_by_key(|(r, _)| r.start);
            let mut at = state_end;
            for (r, _) in &live {
                if r.start >= at + n {
                    break;
                }
                at = at.max(r.end);
            }
            let mut o = at;
            for &v in unit {
                let len = m.values[v].ty.num_elements();
                values[v] = o..o + len;
                o += len;
            }
            size = size.max(at + n);
            live.push((at..at + n, u_end));
        }
        let unshared = state_end + m.values.iter().map(|v| v.ty.num_elements()).sum::<usize>();
        let names = m
            .states
            .iter()
            .map(|s| (s.name.clone(), true))
            .chain(m.values.iter().map(|v| (v.name.clone(), false)))
            .collect();
        MemoryPlan {
            values,
            states,
            size,
            unshared,
            in_place,
            names,
        }
    }

    /// The span of a value or state operand (`None` for constants).
    pub fn span(&self, o: Operand) -> Option<Range<usize>> {
        match o {
            Operand::Value(v) => Some(self.values[v.index()].clone()),
            Operand::State(s) => Some(self.states[s.index()].clone()),
            Operand::Const(_) => None,
        }
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "arena: {} f32 per sample ({} without sharing)",
            self.size, self.unshared
        )?;
        for ((name, is_state), r) in self
            .names
            .iter()
            .zip(self.states.iter().chain(&self.values))
        {
            let sigil = if *is_state { '$' } else { '%' };
            writeln!(f, "{sigil}{name}: [{}, {})", r.start, r.end)?;
        }
        Ok(())
    }
}
