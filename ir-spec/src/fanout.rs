//! Synaptic fan-out: how many weighted connections each element of a value or state drives, so
//! that a population's spikes can be turned into **synaptic operations** (spikes × fan-out, the
//! energy figure neuromorphic papers report).
//!
//! An element's fan-out is the number of non-zero weights it is multiplied by in `dense`, `conv`
//! and `sparse` maps, plus one per window of an average or max pooling and per element of a
//! neuron population that reads it with no weights in between. It is found by following the
//! element through the ops that carry it unweighted to those readers: index maps (`reshape`,
//! `gather`, `transpose`, `upsample`, `pad`, `concat`), `bias`, `scale`, `add`, `batch_norm`,
//! synapses (`lowpass`, `alpha`: their input, not their own state) and `next` (on to whatever
//! reads the state). A neuron's state operands, `softmax` and outputs add nothing. SPEC.md §2.1
//! states the same rule.

use crate::geometry::{WindowAxis, for_each_index, index_sources, strides_of};
use crate::module::{ConstData, Module, Operand};
use crate::ops::{Op, OpClass};

/// Fan-out per element of every value and state of a module (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct FanOut {
    /// Per value, per element (flat, per sample).
    pub values: Vec<Vec<f64>>,
    /// Per state, per element.
    pub states: Vec<Vec<f64>>,
}

/// Which side of the module an operand reaches.
#[derive(Clone, Copy)]
enum Node {
    Value(usize),
    State(usize),
}

fn node(o: Operand) -> Option<Node> {
    match o {
        Operand::Value(v) => Some(Node::Value(v.index())),
        Operand::State(s) => Some(Node::State(s.index())),
        Operand::Const(_) => None,
    }
}

fn numel(m: &Module, o: Operand) -> usize {
    m.operand_type(o).map_or(0, |t| t.shape.iter().product())
}

/// Data of an `f32` constant operand, if it is one.
fn const_f32(m: &Module, o: Operand) -> Option<&[f32]> {
    match o {
        Operand::Const(c) => match &m.constant(c).data {
            ConstData::F32(v) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

fn const_i32(m: &Module, o: Operand) -> Option<&[i32]> {
    match o {
        Operand::Const(c) => match &m.constant(c).data {
            ConstData::I32(v) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

/// Non-zero weights per row of a `[rows, cols]` matrix given flat (all `cols` if not a constant).
fn nonzero_per_row(w: Option<&[f32]>, rows: usize, cols: usize) -> Vec<f64> {
    match w {
        Some(w) => (0..rows)
            .map(|r| {
                w[r * cols..(r + 1) * cols]
                    .iter()
                    .filter(|&&x| x != 0.0)
                    .count() as f64
            })
            .collect(),
        None => vec![cols as f64; rows],
    }
}

/// Window axes of a convolution or pooling over `in_shape` (`[s..., c]`), or `None` if the
/// geometry does not fit (a module that does not verify).
fn axes(
    in_shape: &[usize],
    window: &[usize],
    strides: &[usize],
    dilation: &[usize],
    padding: crate::geometry::Padding,
) -> Option<Vec<WindowAxis>> {
    let spatial = in_shape.len().checked_sub(1)?;
    (0..spatial)
        .map(|a| {
            WindowAxis::new(
                in_shape[a],
                *window.get(a)?,
                *strides.get(a).unwrap_or(&1),
                *dilation.get(a).unwrap_or(&1),
                padding,
            )
            .ok()
        })
        .collect()
}

/// For every (output position, tap) pair whose input cell is inside the input, call
/// `f(input_position_flat, tap_flat)`.
fn each_window_cell(ax: &[WindowAxis], window: &[usize], mut f: impl FnMut(usize, usize)) {
    let out: Vec<usize> = ax.iter().map(|a| a.output).collect();
    let in_strides = strides_of(&ax.iter().map(|a| a.input).collect::<Vec<_>>());
    for_each_index(&out, |_, o| {
        for_each_index(window, |tap, k| {
            let mut at = 0;
            for (d, a) in ax.iter().enumerate() {
                match a.source(o[d], k[d]) {
                    Some(i) => at += i * in_strides[d],
                    None => return,
                }
            }
            f(at, tap);
        });
    });
}

/// The contribution of the weighted reader `op` of operand `k` (sized `n`) that does not depend
/// on any other fan-out, or `None` if `op` passes the element on.
fn local(m: &Module, inst: &crate::module::Inst, k: usize) -> Option<Vec<f64>> {
    let x = inst.args[k];
    let n = numel(m, x);
    let shape = &m.operand_type(x)?.shape;
    let mut fan = vec![0.0; n];
    match &inst.op {
        Op::Dense if k == 0 => {
            let rows = *shape.last().unwrap_or(&1);
            let cols = numel(m, inst.args[1]) / rows.max(1);
            let nz = nonzero_per_row(const_f32(m, inst.args[1]), rows, cols);
            for (e, f) in fan.iter_mut().enumerate() {
                *f = nz[e % rows.max(1)];
            }
        }
        Op::Conv(c) if k == 0 => {
            let kshape = &m.operand_type(inst.args[1])?.shape;
            let (cin, cout) = (*shape.last()?, *kshape.last()?);
            let cin_g = kshape[kshape.len().checked_sub(2)?];
            let window = &kshape[..kshape.len() - 2];
            let groups = c.groups.max(1);
            let cout_g = cout / groups;
            let taps: usize = window.iter().product();
            // Non-zero weights per (tap, input channel) into that channel's group.
            let w = const_f32(m, inst.args[1]);
            let mut nz = vec![0.0; taps * cin];
            for tap in 0..taps {
                for ci in 0..cin {
                    let g = ci / cin_g.max(1);
                    let row = (tap * cin_g + ci % cin_g.max(1)) * cout;
                    nz[tap * cin + ci] = match w {
                        Some(w) => w[row + g * cout_g..row + (g + 1) * cout_g]
                            .iter()
                            .filter(|&&x| x != 0.0)
                            .count() as f64,
                        None => cout_g as f64,
                    };
                }
            }
            let ax = axes(shape, window, &c.strides, &c.dilation, c.padding)?;
            each_window_cell(&ax, window, |at, tap| {
                for ci in 0..cin {
                    fan[at * cin + ci] += nz[tap * cin + ci];
                }
            });
        }
        Op::Sparse { .. } if k == 0 => {
            let idx = const_i32(m, inst.args[1])?;
            let w = const_f32(m, inst.args[2]);
            for (e, pair) in idx.chunks_exact(2).enumerate() {
                let nonzero = w.is_none_or(|w| w.get(e).is_some_and(|&x| x != 0.0));
                if let Some(f) = fan.get_mut(pair[1] as usize)
                    && nonzero
                {
                    *f += 1.0;
                }
            }
        }
        Op::AvgPool(p) | Op::MaxPool(p) => {
            let c = *shape.last()?;
            let ax = axes(shape, &p.pool, &p.strides, &[], p.padding)?;
            each_window_cell(&ax, &p.pool, |at, _| {
                for ci in 0..c {
                    fan[at * c + ci] += 1.0;
                }
            });
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool => fan.fill(1.0),
        Op::Neuron(_) => {
            // A population reads its input current unweighted; its states add nothing.
            let per = inst.args.len() / inst.groups().max(1);
            if k.is_multiple_of(per.max(1)) {
                fan.fill(1.0);
            }
        }
        Op::Softmax => {}
        Op::Dense | Op::Conv(_) | Op::Sparse { .. } => {}
        Op::Lowpass { .. } | Op::Alpha { .. } => {
            // Only the synapse's input passes on (below); its own state adds nothing.
            let per = inst.args.len() / inst.groups().max(1);
            if k.is_multiple_of(per.max(1)) {
                return None;
            }
        }
        _ => return None,
    }
    Some(fan)
}

/// Add to `target` (the fan-out of operand `k` of instruction `i`, an unweighted reader) what
/// the instruction's results pass back, from the results' fan-outs in `values`.
fn pass_back(m: &Module, i: usize, k: usize, values: &[Vec<f64>], target: &mut [f64]) {
    let inst = &m.insts[i];
    if let Some(src) = index_sources(m, inst) {
        let Some(out) = inst.results.first().and_then(|r| values.get(r.index())) else {
            return;
        };
        for (o, s) in src.iter().enumerate() {
            if let Some(s) = s
                && s.arg == k
                && let (Some(t), Some(f)) = (target.get_mut(s.index), out.get(o))
            {
                *t += f;
            }
        }
        return;
    }
    // Lane-wise pass-through: the result of the same group, element by element.
    let per = inst.args.len() / inst.groups().max(1);
    let (_, results) = inst.group(k / per.max(1));
    let Some(r) = results.first() else { return };
    let passes_on = matches!(inst.op.class(), OpClass::Synapse)
        || matches!(
            inst.op,
            Op::Bias | Op::Scale | Op::Add | Op::BatchNorm { .. }
        ) && (k == 0 || matches!(inst.op, Op::Add));
    if passes_on && let Some(out) = values.get(r.index()) {
        target.iter_mut().zip(out).for_each(|(t, f)| *t += f);
    }
}

impl FanOut {
    /// The fan-out of every value and state of `m`, which should verify (operands that do not
    /// resolve count zero; nothing panics on a module that does not).
    pub fn new(m: &Module) -> Self {
        let zero = |n: usize| vec![0.0; n];
        let mut base_v: Vec<Vec<f64>> = m
            .values
            .iter()
            .map(|v| zero(v.ty.shape.iter().product()))
            .collect();
        let mut base_s: Vec<Vec<f64>> = m
            .states
            .iter()
            .map(|s| zero(s.ty.shape.iter().product()))
            .collect();
        // The part that does not depend on other fan-outs: weighted readers.
        let mut passes = Vec::new();
        for (i, inst) in m.insts.iter().enumerate() {
            for k in 0..inst.args.len() {
                let Some(nd) = node(inst.args[k]) else {
                    continue;
                };
                match local(m, inst, k) {
                    Some(f) => {
                        let base = match nd {
                            Node::Value(v) => base_v.get_mut(v),
                            Node::State(s) => base_s.get_mut(s),
                        };
                        if let Some(b) = base {
                            b.iter_mut().zip(&f).for_each(|(b, f)| *b += f);
                        }
                    }
                    None => passes.push((i, k)),
                }
            }
        }
        // Unweighted readers pass their result's fan-out back, `next` a state's. One sweep in
        // reverse instruction order settles every value (an instruction's results are complete
        // before its operands are visited: values are SSA in order) given the states' fan-outs
        // of the pass before; the states are then summed from the settled values. Repeat until
        // the states settle: one pass per state along the longest chain of states, plus one.
        // (A value that feeds itself through a state and a pass-through op, an accumulator, has
        // no finite fan-out; the passes stop after one per state plus two.)
        let mut states = base_s.clone();
        let mut values = base_v.clone();
        // Each pass's buffers are reset from the base ones rather than cloned anew: the values
        // hold every element of the step, and fresh allocations each pass cost page faults.
        let mut new_v = base_v.clone();
        let mut new_s = base_s.clone();
        for _ in 0..m.states.len() + 2 {
            for (n, b) in new_v.iter_mut().zip(&base_v) {
                n.copy_from_slice(b);
            }
            for nx in &m.nexts {
                if let Some(Node::Value(v)) = node(nx.value)
                    && let (Some(t), Some(f)) = (new_v.get_mut(v), states.get(nx.state.index()))
                {
                    t.iter_mut().zip(f).for_each(|(t, f)| *t += f);
                }
            }
            for &(i, k) in passes.iter().rev() {
                if let Some(Node::Value(v)) = node(m.insts[i].args[k]) {
                    let mut target = std::mem::take(&mut new_v[v]);
                    pass_back(m, i, k, &new_v, &mut target);
                    new_v[v] = target;
                }
            }
            for (n, b) in new_s.iter_mut().zip(&base_s) {
                n.copy_from_slice(b);
            }
            for &(i, k) in &passes {
                if let Some(Node::State(st)) = node(m.insts[i].args[k]) {
                    pass_back(m, i, k, &new_v, &mut new_s[st]);
                }
            }
            std::mem::swap(&mut values, &mut new_v);
            if new_s == states {
                break;
            }
            std::mem::swap(&mut states, &mut new_s);
        }
        FanOut { values, states }
    }

    /// The fan-out of an operand's elements (empty for a constant).
    pub fn of(&self, o: Operand) -> &[f64] {
        match node(o) {
            Some(Node::Value(v)) => self.values.get(v).map_or(&[], |f| f),
            Some(Node::State(s)) => self.states.get(s).map_or(&[], |f| f),
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense map of three inputs onto two outputs; input 2 drives neither.
    const DENSE: &str = "module @m dt=0.001
input %x : f32[3]
const @w : f32[3,2] = [1, 0, 2, 3, 0, 0]
%y = dense %x, @w : f32[2]
output \"y\" = %y
";

    fn fan(text: &str, value: &str) -> Vec<f64> {
        let m = crate::parse(text).unwrap();
        crate::verify(m.clone(), crate::Target::Any).unwrap();
        let f = FanOut::new(&m);
        f.of(Operand::Value(m.find_value(value).unwrap())).to_vec()
    }

    /// A verified module computes its fan-outs once, for itself and every clone (each
    /// simulator keeps a clone), and they are `FanOut::new`'s.
    #[test]
    fn a_verified_module_shares_its_fan_outs_with_its_clones() {
        let v = crate::verify(crate::parse(DENSE).unwrap(), crate::Target::Any).unwrap();
        let c = v.clone();
        assert!(std::ptr::eq(c.fan_out(), v.fan_out()));
        assert_eq!(*v.fan_out(), FanOut::new(&v));
    }

    #[test]
    fn dense_counts_nonzero_weights_per_input() {
        assert_eq!(fan(DENSE, "x"), vec![1.0, 2.0, 0.0]);
    }

    #[test]
    fn conv_edges_drive_fewer_outputs() {
        // 1-D, 4 cells, kernel 3 valid: outputs 0,1 read cells 0..2 and 1..3; two output
        // channels, all weights non-zero.
        let t = "module @m dt=0.001
input %x : f32[4,1]
const @k : f32[3,1,2] = [1, 1, 1, 1, 1, 1]
%y = conv %x, @k {strides=[1], padding=valid} : f32[2,2]
output \"y\" = %y
";
        assert_eq!(fan(t, "x"), vec![2.0, 4.0, 4.0, 2.0]);
    }

    #[test]
    fn long_unweighted_chains_pass_fan_out_all_the_way() {
        // Four reshapes between the spikes and the weights, one state: the fan-out must reach
        // the spikes whatever the chain's length.
        let t = "module @m dt=0.001
input %x : f32[4]
state $v : f32[4] = zeros
const @w : f32[4,3] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
%s, %v1 = spiking_relu %x, $v : f32[4], f32[4]
next $v = %v1
%a = reshape %s : f32[2,2]
%b = reshape %a : f32[4,1]
%c = reshape %b : f32[1,4]
%d = reshape %c : f32[4]
%y = dense %d, @w : f32[3]
output \"y\" = %y
";
        assert_eq!(fan(t, "s"), vec![3.0, 3.0, 3.0, 2.0]);
    }

    #[test]
    fn index_maps_synapses_and_states_pass_fan_out_on() {
        // %s spikes → gather (reverses, drops element 0 twice) → lowpass → next $f; $f → dense.
        let t = "module @m dt=0.001
input %x : f32[3]
state $v : f32[3] = zeros
state $f : f32[3] = zeros
const @idx : i32[3] = [2, 1, 1]
const @w : f32[3,1] = [1, 10, 100]
%s, %v1 = spiking_relu %x, $v : f32[3], f32[3]
next $v = %v1
%g = gather %s, @idx : f32[3]
%f1 = lowpass %g, $f {tau=0.005} : f32[3]
next $f = %f1
%y = dense $f, @w : f32[1]
output \"y\" = %y
";
        // $f's elements each drive one weight; %s[1] reaches $f[1] and $f[2], %s[2] reaches $f[0].
        assert_eq!(fan(t, "s"), vec![0.0, 2.0, 1.0]);
        // The neuron reads %x unweighted.
        assert_eq!(fan(t, "x"), vec![1.0, 1.0, 1.0]);
    }
}
