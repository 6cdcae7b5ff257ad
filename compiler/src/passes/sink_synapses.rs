//! `sink-synapses`: a lowpass synapse moves below the linear maps that read it, so that they read
//! the spikes themselves (mostly zeros, which the dense and convolution kernels skip) and the
//! synapse filters their output — the order Nengo builds a connection in (transform, then
//! synapse).
//!
//! A lowpass is linear and time-invariant and starts from zero, so for a linear map `L`,
//! `L(lowpass(x)) = lowpass(L(x))` at every step; the one-step delay of reading the synapse
//! through its state is kept by reading the new synapse through its state too. Concretely, for
//!
//! ```text
//! %f = lowpass %x, $s {tau}        next $s = %f        %y = L $s, consts...
//! ```
//!
//! where `$s` starts at zeros, is no output, and `%f` has no reader but the `next`, each such `L`
//! becomes
//!
//! ```text
//! %y = L %x, consts...   %y.filtered = lowpass %y, $y.syn {tau}   next $y.syn = %y.filtered
//! ```
//!
//! and the readers of `%y` read `$y.syn`. `L` is `dense`, `conv`, `sparse` (their weights
//! constant), `scale` by a constant, `avg_pool`, `global_avg_pool` or an index map (`reshape`,
//! `transpose`, `pad`, `gather`, `upsample`). It moves when it is a dense map or a convolution
//! (whose kernels skip zero inputs) or when its result is no larger than its input (a smaller
//! synapse). The pass repeats until nothing moves (a reshape moves first, then the dense that
//! reads it), then drops what became dead. The synapse left behind disappears when every reader
//! moved.
//!
//! The outputs equal the original module's in real arithmetic. In f32 they differ by rounding
//! (the map now sums spikes, the synapse filters sums), so spike trains can differ after many
//! steps; accuracy does not change measurably (README, "Passes").

use super::rewrite::Rewriter;
use super::{PassError, build_err};
use snnc_ir::{Module, ModuleInfo, Op, Operand, Reader, StateId, StateInit};

/// Run the pass to a fixed point, then drop what it left dead.
pub fn sink_synapses(m: &Module) -> Result<Module, PassError> {
    super::simplify::to_fixed_point(m, sink_once)
}

fn sink_once(m: &Module) -> Result<(Module, bool), PassError> {
    let err = |e| build_err("sink-synapses", e);
    let info = ModuleInfo::new(m);
    let state_output = |s: StateId| m.outputs.iter().any(|o| o.value == Operand::State(s));
    // Per lowpass instruction that qualifies: the readers of its state that move below it.
    let mut moves: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut moving = vec![false; m.insts.len()];
    for nx in &m.nexts {
        let Operand::Value(f) = nx.value else {
            continue;
        };
        let Some(d) = m.insts.iter().position(|i| i.results.contains(&f)) else {
            continue;
        };
        let syn = &m.insts[d];
        let s = nx.state;
        let is_own_lowpass = matches!(syn.op, Op::Lowpass { .. })
            && syn.groups() == 1
            && syn.args[1] == Operand::State(s)
            && matches!(syn.args[0], Operand::Value(_));
        if !is_own_lowpass
            || m.state(s).init != StateInit::Zeros
            || state_output(s)
            || info.readers[f.index()] != [Reader::EndOfStep]
        {
            continue;
        }
        let movable: Vec<usize> = info.state_readers[s.index()]
            .iter()
            .map(|i| i.index())
            .filter(|&r| r != d && !moving[r])
            .filter(|&r| {
                let inst = &m.insts[r];
                let consts = inst.args[1..]
                    .iter()
                    .all(|a| matches!(a, Operand::Const(_)));
                let n_in = m.state(s).ty.num_elements();
                let n_out = m.value(inst.results[0]).ty.num_elements();
                inst.op.is_linear()
                    && inst.args[0] == Operand::State(s)
                    && consts
                    && (matches!(inst.op, Op::Dense | Op::Conv(_)) || n_out <= n_in)
            })
            .collect();
        if movable.is_empty() {
            continue;
        }
        for &r in &movable {
            moving[r] = true;
        }
        moves.push((d, movable));
    }
    if moves.is_empty() {
        return Ok((m.clone(), false));
    }
    let mut rw = Rewriter::new(m);
    // The moved maps' results are read through their new synapses' states from the start.
    let mut new_states = Vec::new();
    for (d, movable) in &moves {
        for &r in movable {
            let y = m.insts[r].results[0];
            let name = format!("{}.syn", m.value(y).name);
            let st = rw.fresh_state(&name, &m.value(y).ty.shape, StateInit::Zeros);
            rw.set(y, Operand::State(st));
            new_states.push((*d, r, st));
        }
    }
    for (i, inst) in m.insts.iter().enumerate() {
        if moving[i] {
            continue;
        }
        rw.copy(inst).map_err(err)?;
        for &(_, r, st) in new_states.iter().filter(|(d, _, _)| *d == i) {
            let map = &m.insts[r];
            let y = map.results[0];
            let name = m.value(y).name.clone();
            let mut args = vec![rw.map(inst.args[0])];
            args.extend(map.args[1..].iter().map(|&a| rw.map(a)));
            let raw = rw.b.op1(map.op.clone(), &args, &name).map_err(err)?;
            let filtered =
                rw.b.op1(
                    inst.op.clone(),
                    &[Operand::Value(raw), Operand::State(st)],
                    &format!("{name}.filtered"),
                )
                .map_err(err)?;
            rw.b.next(st, filtered);
        }
    }
    Ok((rw.finish(), true))
}

/// The `sink-synapses` pass.
pub struct SinkSynapses;

impl super::Pass for SinkSynapses {
    fn name(&self) -> &'static str {
        "sink-synapses"
    }

    fn run(
        &self,
        m: &Module,
        _opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        Ok(Some(sink_synapses(m)?.into()))
    }
}
