//! Facts about a module that the verifier establishes once and every pass and backend reads
//! instead of recomputing them: which instruction defines each value, who reads each value and
//! state, and which instructions are time-invariant.

use crate::module::{InstId, Module, Operand, ValueId};

/// Something that reads a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reader {
    /// An instruction, as one of its operands.
    Inst(InstId),
    /// The end of the step: an output or a `next` reads it after the last instruction.
    EndOfStep,
}

/// The facts of one module (see the module docs). Indices follow the module's arenas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Per value: the instruction that defines it, `None` for an input.
    pub definer: Vec<Option<InstId>>,
    /// Per value: every read of it, in instruction order (an instruction reading it twice is
    /// listed twice), end-of-step reads last.
    pub readers: Vec<Vec<Reader>>,
    /// Per state: the instructions reading it, in order.
    pub state_readers: Vec<Vec<InstId>>,
    /// Per instruction: its results depend only on inputs and constants (no state, directly or
    /// through another instruction), so they stay the same while the inputs do.
    pub invariant: Vec<bool>,
}

impl ModuleInfo {
    /// The facts of `m`. Handles out of range (in a module that does not verify) are left out,
    /// so a pass may ask about any module without panicking.
    pub fn new(m: &Module) -> Self {
        let mut definer = vec![None; m.values.len()];
        let mut readers = vec![Vec::new(); m.values.len()];
        let mut state_readers = vec![Vec::new(); m.states.len()];
        let mut value_inv = vec![false; m.values.len()];
        for &v in &m.inputs {
            if let Some(x) = value_inv.get_mut(v.index()) {
                *x = true;
            }
        }
        let mut invariant = Vec::with_capacity(m.insts.len());
        for (i, inst) in m.insts.iter().enumerate() {
            let id = InstId(i as u32);
            let mut inv = true;
            for a in &inst.args {
                match *a {
                    Operand::Value(v) => {
                        if let Some(r) = readers.get_mut(v.index()) {
                            r.push(Reader::Inst(id));
                        }
                        inv &= value_inv.get(v.index()).copied().unwrap_or(false);
                    }
                    Operand::State(s) => {
                        if let Some(r) = state_readers.get_mut(s.index()) {
                            r.push(id);
                        }
                        inv = false;
                    }
                    Operand::Const(_) => {}
                }
            }
            for r in &inst.results {
                if let Some(d) = definer.get_mut(r.index()) {
                    d.get_or_insert(id);
                    value_inv[r.index()] = inv;
                }
            }
            invariant.push(inv);
        }
        for v in m.end_of_step_values() {
            if let Some(r) = readers.get_mut(v.index()) {
                r.push(Reader::EndOfStep);
            }
        }
        ModuleInfo {
            definer,
            readers,
            state_readers,
            invariant,
        }
    }

    /// The instructions reading value `v`, in order (end-of-step reads left out).
    pub fn inst_readers(&self, v: ValueId) -> impl Iterator<Item = InstId> + '_ {
        self.readers[v.index()].iter().filter_map(|r| match r {
            Reader::Inst(i) => Some(*i),
            Reader::EndOfStep => None,
        })
    }

    /// Whether operand `o` stays the same while the inputs do: a constant, an input, or a
    /// result of a time-invariant instruction (never a state). Out-of-range handles: false.
    pub fn operand_invariant(&self, o: Operand) -> bool {
        match o {
            Operand::Const(_) => true,
            Operand::State(_) => false,
            Operand::Value(v) => match self.definer.get(v.index()) {
                Some(None) => true,
                Some(Some(d)) => self.invariant.get(d.index()).copied().unwrap_or(false),
                None => false,
            },
        }
    }

    /// Whether an output or a `next` reads value `v`.
    pub fn read_at_end(&self, v: ValueId) -> bool {
        self.readers[v.index()].contains(&Reader::EndOfStep)
    }
}
