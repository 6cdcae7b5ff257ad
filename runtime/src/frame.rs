//! The simulation frame both backends run on: one arena laid out by the module's memory plan,
//! the constants, the outputs that are not values, and the step's bookkeeping (reset, loading
//! inputs and detecting held ones, applying the `next`s).
//!
//! Buffers are batch-major: a value or state of `n` elements per sample occupies `n · batch`
//! floats, sample `b` at `[b·n, (b+1)·n)`; constants are stored once. The arena is allocated once
//! and never moves, so generated code may bake its addresses in.

use crate::SimError;
use crate::rng::uniform_fill;
use snnc_ir::{
    ConstData, MemoryPlan, Module, Operand, OutputKind, StateInit, TensorType, Verified,
};
use std::ops::Range;

/// The memory of one simulation of a verified module on a minibatch.
pub struct Frame {
    module: Verified,
    batch: usize,
    plan: MemoryPlan,
    /// Every value and state, placed by `plan` (spans scaled by the batch size).
    arena: Vec<f32>,
    /// Outputs that read a state or a constant, copied at the end of each step (outputs of values
    /// are read from the value buffers, which hold until the next step).
    outputs: Vec<Vec<f32>>,
    /// The invariant instructions' results match the inputs in the input buffers.
    invariant_valid: bool,
    /// One sample's draws of each `uniform` state (by state index) and the reset seed they were
    /// drawn for: resets with the same seed (every minibatch of a data set) copy them.
    drawn: Vec<Option<(u64, Vec<f32>)>>,
    /// Per `next`: the engine writes its value over the state during the step (see
    /// [`Frame::next_in_place`]), so the end of the step copies nothing.
    nexts_in_place: Vec<bool>,
}

/// Whether `a` and `b` hold the same bits (one `memcmp`, not a loop that stops at the first
/// difference, which does not vectorise).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    let bytes = |x: &[f32]| {
        // SAFETY: any f32 is four initialised bytes; the slice covers exactly `x`.
        unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
    };
    bytes(a) == bytes(b)
}

/// A buffer of `n` zeros, or [`SimError::TooLarge`] when it cannot be allocated.
pub(crate) fn zeros(n: usize) -> Result<Vec<f32>, SimError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| SimError::TooLarge)?;
    v.resize(n, 0.0);
    Ok(v)
}

impl Frame {
    /// Lay out `module` for minibatches of `batch` samples and reset it with seed 0.
    pub fn new(module: &Verified, batch: usize) -> Result<Self, SimError> {
        if batch == 0 {
            return Err(SimError::ZeroBatch);
        }
        if !module.is_runnable() {
            return Err(SimError::MissingConstantData);
        }
        let m: &Module = module;
        let batched = |n: usize| n.checked_mul(batch).ok_or(SimError::TooLarge);
        let plan = MemoryPlan::new(module);
        check_plan(m, &plan)?;
        let arena = zeros(batched(plan.size)?)?;
        let outputs = m
            .outputs
            .iter()
            .map(|o| match o.value {
                Operand::Value(_) => Ok(Vec::new()),
                _ => zeros(batched(
                    m.operand_type(o.value)
                        .map(TensorType::num_elements)
                        .unwrap_or(0),
                )?),
            })
            .collect::<Result<_, _>>()?;
        let mut frame = Frame {
            module: module.clone(),
            batch,
            plan,
            arena,
            outputs,
            invariant_valid: false,
            drawn: vec![None; m.states.len()],
            nexts_in_place: vec![false; m.nexts.len()],
        };
        frame.reset(0);
        Ok(frame)
    }

    /// The module laid out, with the verifier's facts.
    pub fn verified(&self) -> &Verified {
        &self.module
    }

    /// The module laid out.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The minibatch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The verifier's facts about the module.
    pub fn info(&self) -> &snnc_ir::ModuleInfo {
        self.module.info()
    }

    /// Whether instruction `i` depends only on inputs and constants.
    pub fn is_invariant(&self, i: usize) -> bool {
        self.module.info().invariant[i]
    }

    /// Where a value or state lives in the arena, for the whole batch; `None` for constants.
    pub fn span(&self, o: Operand) -> Option<Range<usize>> {
        self.plan
            .span(o)
            .map(|r| r.start * self.batch..r.end * self.batch)
    }

    /// Elements of one sample of `o` a buffer of the whole batch advances by: the element count
    /// for values and states, 0 for constants (stored once).
    pub fn sample_stride(&self, o: Operand) -> usize {
        match o {
            Operand::Const(_) => 0,
            _ => self
                .module
                .operand_type(o)
                .map_or(0, TensorType::num_elements),
        }
    }

    /// The whole batch of a value or state, or a constant's one copy.
    pub fn whole(&self, o: Operand) -> &[f32] {
        match (o, self.span(o)) {
            (Operand::Const(c), _) => self.constant(c),
            (_, Some(r)) => &self.arena[r],
            (_, None) => unreachable!("values and states have spans"),
        }
    }

    /// The data of an `i32` constant (empty for anything else).
    pub fn index_table(&self, o: Operand) -> &[i32] {
        match o {
            Operand::Const(c) => match &self.module.constant(c).data {
                ConstData::I32(v) => v,
                _ => &[],
            },
            _ => &[],
        }
    }

    /// The data of an `f32` constant.
    pub fn constant(&self, c: snnc_ir::ConstId) -> &[f32] {
        f32_data(&self.module, c)
    }

    /// Address of the buffer behind an operand (values and states hold the whole batch).
    pub fn operand_ptr(&self, o: Operand) -> *const f32 {
        self.whole(o).as_ptr()
    }

    /// Address of an `i32` constant's data.
    pub fn index_ptr(&self, o: Operand) -> *const i32 {
        self.index_table(o).as_ptr()
    }

    /// The start of the arena, writable. Generated code and the interpreter write results
    /// through it; the arena never moves.
    pub fn arena_ptr(&mut self) -> *mut f32 {
        self.arena.as_mut_ptr()
    }

    /// Set every state to its initial value for reset seed `seed`.
    pub fn reset(&mut self, seed: u64) {
        for (k, s) in self.module.states.iter().enumerate() {
            let n = s.ty.num_elements();
            let r = self.plan.states[k].start * self.batch..self.plan.states[k].end * self.batch;
            let buf = &mut self.arena[r];
            match &s.init {
                StateInit::Zeros => buf.fill(0.0),
                StateInit::Uniform { lo, hi, seed: own } => {
                    let first = &mut buf[..n];
                    match &mut self.drawn[k] {
                        Some((s, v)) if *s == seed => first.copy_from_slice(v),
                        slot => {
                            uniform_fill(first, *lo, *hi, *own, seed);
                            *slot = Some((seed, first.to_vec()));
                        }
                    }
                    let (first, rest) = buf.split_at_mut(n);
                    rest.chunks_mut(n.max(1))
                        .for_each(|c| c.copy_from_slice(&first[..c.len()]));
                }
                StateInit::Const(c) => replicate(f32_data(&self.module, *c), buf),
            }
        }
    }

    /// Copy this step's inputs into their buffers.
    ///
    /// Returns true when every input equals what the buffers already held and the time-invariant
    /// instructions have run on it: their results still hold, and this step may skip them.
    pub fn load_inputs(&mut self, inputs: &[&[f32]]) -> bool {
        let mut same = self.invariant_valid;
        for (k, &v) in self.module.inputs.iter().enumerate() {
            let r = self.span(Operand::Value(v)).expect("a value");
            let buf = &mut self.arena[r];
            // Bitwise, so a NaN input counts as unchanged when it is the same NaN.
            if same && same_bits(buf, inputs[k]) {
                continue;
            }
            same = false;
            buf.copy_from_slice(inputs[k]);
        }
        self.invariant_valid = true;
        same
    }

    /// Say that the engine computes `next` number `k`'s value over its state during the step
    /// (having read every element of the state it needs first), so that
    /// [`Frame::finish_step`] leaves that state alone. Only for a `next` of a value that nothing
    /// else reads, to a state that no output and no other `next` reads.
    pub fn next_in_place(&mut self, k: usize) {
        self.nexts_in_place[k] = true;
    }

    /// Keep the outputs that read states (as they were at the start of the step) or constants,
    /// then apply every `next` at once. State buffers are overwritten in place.
    pub fn finish_step(&mut self) {
        for k in 0..self.module.outputs.len() {
            match self.module.outputs[k].value {
                o @ Operand::State(_) => {
                    let r = self.span(o).expect("a state");
                    self.outputs[k].copy_from_slice(&self.arena[r]);
                }
                Operand::Const(c) => replicate(f32_data(&self.module, c), &mut self.outputs[k]),
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
        for (nx, &done) in self.module.nexts.iter().zip(&self.nexts_in_place) {
            if done {
                continue;
            }
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
                Operand::Const(c) => replicate(f32_data(&self.module, c), &mut self.arena[dst]),
            }
        }
    }

    /// Output `k` as of the last step, for the whole batch.
    pub fn output(&self, k: usize) -> &[f32] {
        match self.module.outputs[k].value {
            o @ Operand::Value(_) => self.whole(o),
            Operand::State(_) | Operand::Const(_) => &self.outputs[k],
        }
    }

    /// The kind of output `k`.
    pub fn output_kind(&self, k: usize) -> &OutputKind {
        &self.module.outputs[k].kind
    }
}

/// Both backends write an instruction's results while reading its operands, in one arena:
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
                // before writing them.
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

/// The data of `f32` constant `c`, read in place from the module (`Frame::new` checked that
/// every constant holds its data).
fn f32_data(m: &Module, c: snnc_ir::ConstId) -> &[f32] {
    match &m.constant(c).data {
        ConstData::F32(v) => v,
        _ => &[],
    }
}

/// Fill a batch buffer with copies of one sample.
pub(crate) fn replicate(sample: &[f32], buf: &mut [f32]) {
    buf.chunks_mut(sample.len().max(1))
        .for_each(|ch| ch.copy_from_slice(&sample[..ch.len()]));
}
