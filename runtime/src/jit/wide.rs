//! Eight-lane loops for the commonest fused chains of integrate-and-fire populations.
//!
//! Cranelift 0.135 emits vectors of at most 128 bits, and a fused neuron update is bound by its
//! floating-point operations: about as many per four lanes as an AVX2 loop spends on eight. Where
//! the CPU has AVX2, a fused group that is exactly
//!
//! - a `spiking_relu` or `if_neuron` population, or
//! - `lowpass`, then `bias` (or `scale`) by a constant, then such a population (what
//!   `sink-synapses` leaves after every dense or convolution layer),
//!
//! runs as a host job doing the same chain eight lanes at a time: the same f32 operations in the
//! same order as [`super::lanes`] (no fused multiply-adds, the same select for `max(x, 0)`, the
//! same `roundps` floor), loading each operand and storing each result kept outside the chain at
//! the same point of the chain as the generated loop does, so the two agree bit for bit
//! (a differential test runs both on the same module). So does a max-pool circuit level whose
//! index tables move runs of eight elements ([`Level`]). A population whose spikes are a spike
//! output can also count them as it goes ([`Count`]).

use super::fusion::Lanes;
use crate::frame::Frame;
use snnc_ir::{Module, NeuronModel, Op, Operand};
use std::cell::{Cell, RefCell};

/// Whether the CPU runs the eight-lane loops.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether operand `o` is a result of one of the instructions `group` that the generated loop
/// would keep in a register only (not stored): such a value must come from the chain itself.
fn unstored_in_group(m: &Module, group: &[usize], stored: &[bool], o: Operand) -> bool {
    let Operand::Value(v) = o else { return false };
    !stored[v.index()] && group.iter().any(|&i| m.insts[i].results.contains(&v))
}

/// Where an operand of a chain step comes from.
#[derive(Clone, Copy, Debug)]
enum Src {
    /// The result of the chain's previous step.
    Chain,
    /// A buffer of the frame, laid out for the whole batch.
    Mem(*const f32),
}

/// A `lowpass` step: `decay · s + (1 − decay) · x`.
#[derive(Clone, Copy, Debug)]
struct Lowpass {
    x: *const f32,
    s: *const f32,
    decay: f32,
    out: Option<*mut f32>,
}

/// A `bias` (`add`) or `scale` step by a constant of `width` elements broadcast along the last
/// axis (1: one value for every element).
#[derive(Clone, Copy, Debug)]
struct Affine {
    x: Src,
    p: *const f32,
    width: usize,
    add: bool,
    out: Option<*mut f32>,
}

/// The population: current, voltage, and where its spikes and new voltage go.
#[derive(Clone, Copy, Debug)]
struct Population {
    j: Src,
    v: *const f32,
    /// `if_neuron` (no rectified drive; the count is floored at zero) or `spiking_relu`.
    integrate_and_fire: bool,
    /// Gain, step, spike height (`amplitude / dt`).
    g: f32,
    dt: f32,
    height: f32,
    y: Option<*mut f32>,
    v1: Option<*mut f32>,
}

impl Population {
    /// The population instruction `nr` computes, if it is a `spiking_relu` or `if_neuron` on a
    /// current from `j` and a voltage in the frame `f`, storing the results `stored` marks.
    fn of(
        (m, f, stored): (&Module, &Frame, &[bool]),
        nr: &snnc_ir::Inst,
        j: Src,
    ) -> Option<Population> {
        let ptr = |o: Operand| f.operand_ptr(o);
        let out =
            |r: snnc_ir::ValueId| stored[r.index()].then(|| ptr(Operand::Value(r)) as *mut f32);
        let Op::Neuron(neuron) = &nr.op else {
            return None;
        };
        let integrate_and_fire = match neuron.model {
            NeuronModel::SpikingRelu => false,
            NeuronModel::IfNeuron => true,
            _ => return None,
        };
        if nr.args.len() != 2 {
            return None;
        }
        let (g, a, dt) = (neuron.gain as f32, neuron.amplitude as f32, m.dt as f32);
        Some(Population {
            j,
            v: ptr(nr.args[1]),
            integrate_and_fire,
            g,
            dt,
            height: a / dt,
            y: out(nr.results[0]),
            v1: out(nr.results[1]),
        })
    }
}

/// The spikes (and synaptic operations) of a population whose spikes are a spike output,
/// counted by its loop while they are in registers, for [`crate::Engine::tally`].
///
/// The loop adds the spike counts `n` (before they are scaled to the spike height), which is
/// what counting the output afterwards finds: `round(height · n · dt / amplitude)` is `n` while
/// `|n| < 2²¹` (the height and its product carry relative errors of a few 2⁻²⁴). Per lane it sums
/// the counts and their products with the fan-outs in f32, which is exact when no count is
/// negative and the sums stay below 2²¹ and 2²⁴ (checked when the sample is done, see the
/// loop's `finish`): then the totals equal the element-by-element count. A step that fails the
/// check reports nothing, and the caller counts the output itself.
pub(super) struct Count {
    /// The spike output these spikes are.
    pub(super) output: usize,
    /// Per element of a sample, its fan-out (16 bits: the loop streams them every step), or
    /// zeros where they are not known (`fan_known` false): the loop has one shape either way.
    fan: Vec<u16>,
    fan_known: bool,
    /// Set by the engine: count on the next steps.
    pub(super) on: Cell<bool>,
    /// Per sample: spikes and synaptic operations of the last step, and whether it passed the
    /// check.
    pub(super) last: RefCell<Vec<(f64, f64)>>,
    pub(super) exact: Cell<bool>,
}

impl Count {
    /// A count of output `output`'s spikes, made by a loop over `n` elements per sample (a
    /// multiple of 8). `fan`: the fan-out of each element, kept if they are whole numbers below
    /// 2¹⁶.
    fn new(output: usize, n: usize, fan: Option<&[f64]>, (a, dt): (f32, f32)) -> Option<Count> {
        // The argument needs a normal, finite spike height that stays finite for counts up to
        // 2²¹ (else a count of 0 or n can be NaN, infinite or zero once scaled).
        let height = a / dt;
        let normal = a.is_normal() && dt.is_normal() && height.is_normal();
        if !n.is_multiple_of(8) || !normal || !(height * (1 << 21) as f32).is_finite() {
            return None;
        }
        let fan = fan
            .filter(|f| {
                f.len() == n
                    && f.iter()
                        .all(|&x| (0.0..65536.0).contains(&x) && x.fract() == 0.0)
            })
            .map(|f| f.iter().map(|&x| x as u16).collect::<Vec<u16>>());
        Some(Count {
            output,
            fan_known: fan.is_some(),
            fan: fan.unwrap_or_else(|| vec![0; n]),
            on: Cell::new(false),
            last: RefCell::new(Vec::new()),
            exact: Cell::new(false),
        })
    }

    /// Per sample: the last step's spikes and, with `synops`, synaptic operations, if counted
    /// exactly on it (and synaptic operations counted at all).
    pub(super) fn tally(&self, synops: bool, out: &mut dyn FnMut(usize, f64, Option<f64>)) -> bool {
        if !self.on.get() || !self.exact.get() || (synops && !self.fan_known) {
            return false;
        }
        for (s, &(c, o)) in self.last.borrow().iter().enumerate() {
            out(s, c, synops.then_some(o));
        }
        true
    }
}

/// The count a loop over `n` elements per sample can keep of the spike output whose value is
/// `v` (the first such output; another reading the same value is counted from its buffer), with
/// the fan-outs `fan` gives.
fn spike_output<'f>(
    m: &Module,
    fan: &dyn Fn() -> Option<&'f snnc_ir::fanout::FanOut>,
    (v, n): (snnc_ir::ValueId, usize),
    population: &Population,
) -> Option<Count> {
    let k = m.outputs.iter().position(|o| {
        o.value == Operand::Value(v) && matches!(o.kind, snnc_ir::OutputKind::Spikes { .. })
    })?;
    let fan = fan();
    let scale = (population.height * population.dt, population.dt);
    Count::new(k, n, fan.map(|f| f.of(Operand::Value(v))), scale)
}

/// A fused chain run eight lanes at a time (see the module docs).
pub(super) struct Chain {
    lowpass: Option<Lowpass>,
    affine: Option<Affine>,
    population: Population,
    /// Elements over the whole batch, and per sample.
    total: usize,
    n: usize,
    pub(super) count: Option<Count>,
    /// The `next` (by index) whose value the chain writes straight into its state: the frame
    /// skips its copy at the end of the step (see [`synapse_in_place`]).
    pub(super) next_in_place: Option<usize>,
}

// SAFETY: the pointers address the engine's own frame (see `JitEngine`'s `Send`).
unsafe impl Send for Chain {}

/// Whether a chain's synapse and affine have the `SYN_BIAS` shape (`x86::SYN_BIAS`): the
/// synapse's result stored, and a bias of the synapse's state over the constant's width, not
/// stored. The one test of it, for the loop's shape and for writing the synapse in place.
fn syn_bias(lowpass: Option<&Lowpass>, affine: Option<&Affine>) -> bool {
    match (lowpass, affine) {
        (Some(lp), Some(af)) => {
            lp.out.is_some()
                && matches!(af.x, Src::Mem(x) if x == lp.s)
                && af.width != 1
                && af.add
                && af.out.is_none()
        }
        _ => false,
    }
}

/// Whether the chain `lp` (a `lowpass`) then `af` (its bias) may write the synapse's new value
/// over its state, and the `next` that copies it there otherwise.
///
/// After `sink-synapses` a population's bias reads the synapse's state (last step's value) while
/// the lowpass computes the next one, so the memory plan cannot put that value in the state's
/// place (the bias reads the state after the lowpass wrote it) and the frame copies it at the end
/// of every step. In the eight-lane loop both read the state's elements `[k, k + 8)` once, into a
/// register, before the new values are stored, so writing them over the state is exact when
/// nothing else sees either: the state is read by these two instructions only and by no output
/// or other `next`, and the new value only by its `next`.
fn synapse_in_place(
    m: &Module,
    info: &snnc_ir::ModuleInfo,
    (lp, af): (usize, usize),
) -> Option<usize> {
    let (lp_id, af_id) = (lp, af);
    let (lp, af) = (&m.insts[lp], &m.insts[af]);
    let Operand::State(st) = lp.args[1] else {
        return None;
    };
    let value = lp.results[0];
    let state = Operand::State(st);
    let nexts: Vec<usize> = (0..m.nexts.len())
        .filter(|&k| m.nexts[k].value == Operand::Value(value) || m.nexts[k].value == state)
        .collect();
    let [k] = nexts[..] else { return None };
    let only_next = info.readers[value.index()].len() == 1;
    let readers = &info.state_readers[st.index()];
    let ours = readers.len() == 2 && readers[0].index() == lp_id && readers[1].index() == af_id;
    let no_output = m
        .outputs
        .iter()
        .all(|o| o.value != state && o.value != Operand::Value(value));
    (m.nexts[k].state == st
        && m.nexts[k].value == Operand::Value(value)
        && af.args[0] == state
        && only_next
        && ours
        && no_output)
        .then_some(k)
}

impl Chain {
    /// The chain computing fused group `group`, if it has one of the supported forms and the
    /// CPU has AVX2. `stored[v]`: value `v` is read outside the group.
    pub(super) fn detect<'f>(
        m: &Module,
        f: &Frame,
        (group, lanes): (&[usize], Lanes),
        stored: &[bool],
        fan: &dyn Fn() -> Option<&'f snnc_ir::fanout::FanOut>,
    ) -> Option<Chain> {
        let Lanes::Width(w) = lanes else { return None };
        if !has_avx2() {
            return None;
        }
        let ptr = |o: Operand| f.operand_ptr(o);
        let out =
            |r: snnc_ir::ValueId| stored[r.index()].then(|| ptr(Operand::Value(r)) as *mut f32);
        // Every operand in memory is a value or state of the result's size (a constant of that
        // size would be read per sample), and a step reads the previous one's result directly.
        let n = m.value(m.insts[group[0]].results[0]).ty.num_elements();
        let per_sample = |o: Operand| {
            !matches!(o, Operand::Const(_))
                && m.operand_type(o).is_some_and(|t| t.num_elements() == n)
        };
        // An operand is the previous step's result (in a register), or in memory: a value or
        // state of the result's size that the generated loop would have stored by then.
        let in_memory = |o: Operand| per_sample(o) && !unstored_in_group(m, group, stored, o);
        let src = |o: Operand, prev: Option<snnc_ir::ValueId>| match o {
            Operand::Value(v) if Some(v) == prev => Some(Src::Chain),
            o if in_memory(o) => Some(Src::Mem(ptr(o))),
            _ => None,
        };
        let insts: Vec<&snnc_ir::Inst> = group.iter().map(|&i| &m.insts[i]).collect();
        let (head, last) = insts.split_at(insts.len() - 1);
        let mut prev = None;
        let mut lowpass = None;
        let mut affine = None;
        let mut next_in_place = None;
        match head {
            [] => {}
            [lp, af] => {
                let Op::Lowpass { tau } = lp.op else {
                    return None;
                };
                if !(in_memory(lp.args[0]) && in_memory(lp.args[1])) {
                    return None;
                }
                lowpass = Some(Lowpass {
                    x: ptr(lp.args[0]),
                    s: ptr(lp.args[1]),
                    decay: snnc_ir::semantics::lowpass_decay(m.dt, tau),
                    out: out(lp.results[0]),
                });
                prev = Some(lp.results[0]);
                let (Op::Bias | Op::Scale) = af.op else {
                    return None;
                };
                let Operand::Const(_) = af.args[1] else {
                    return None;
                };
                let width = m.operand_type(af.args[1])?.num_elements();
                if !(width == 1 || (width == w && w.is_multiple_of(8) && n.is_multiple_of(w))) {
                    return None;
                }
                affine = Some(Affine {
                    x: src(af.args[0], prev)?,
                    p: ptr(af.args[1]),
                    width,
                    add: af.op == Op::Bias,
                    out: out(af.results[0]),
                });
                prev = Some(af.results[0]);
                // The loop takes the bias's input from the synapse's load only in the
                // `SYN_BIAS` shape.
                if syn_bias(lowpass.as_ref(), affine.as_ref())
                    && let Some(k) = synapse_in_place(m, f.info(), (group[0], group[1]))
                {
                    let lp = lowpass.as_mut().expect("set above");
                    lp.out = Some(lp.s as *mut f32);
                    next_in_place = Some(k);
                }
            }
            _ => return None,
        }
        let nr = last[0];
        let population = Population::of((m, f, stored), nr, src(*nr.args.first()?, prev)?)?;
        if !in_memory(nr.args[1]) {
            return None;
        }
        // Without a broadcast constant the whole batch is one run of elements; with one, rows of
        // its width.
        if affine.is_none() && w != 1 {
            return None;
        }
        Some(Chain {
            lowpass,
            affine,
            total: n * f.batch(),
            n,
            count: spike_output(m, fan, (nr.results[0], n), &population),
            population,
            next_in_place,
        })
    }

    /// Run the chain over the whole batch.
    ///
    /// # Safety
    /// The buffers must be the frame's, laid out for the batch the chain was built for, with
    /// nothing else touching them during the call; the CPU must have AVX2 (`detect` checked).
    pub(super) unsafe fn run(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: guaranteed by the caller.
        unsafe {
            x86::run(self)
        }
    }
}

/// A max-pool circuit level (`lower-maxpool`) as a fused group, eight units at a time: a
/// `sparse` map whose rows share their `d` weights, then an `if_neuron` (or `spiking_relu`)
/// population on it, then optionally a `gather` and an `add` of the gathered value and the
/// spikes. Every index table must move runs of eight consecutive elements (so a chunk of eight
/// units reads one vector per term): true of the circuits' tables when the channels come in
/// multiples of eight.
pub(super) struct Level {
    /// Per sample: units, and the elements of the sparse map's and the gather's operands.
    n: usize,
    x: (*const f32, usize),
    /// Per term, its weight.
    weights: Vec<f32>,
    /// Per chunk of eight units, side by side: each term's column for the chunk's first unit,
    /// then the gather's element for it (0 without a gather).
    starts: Vec<u32>,
    /// Where the map's sum goes, if anything else reads it.
    j: Option<*mut f32>,
    population: Population,
    /// The gather: operand, per-sample stride, result.
    gather: Option<(*const f32, usize, Option<*mut f32>)>,
    /// The add: gathered value first or not, and its result.
    add: Option<(bool, Option<*mut f32>)>,
    batch: usize,
    pub(super) count: Option<Count>,
}

// SAFETY: as for `Chain`.
unsafe impl Send for Level {}

/// Per chunk of eight rows, the first index, if every chunk's indices run in steps of one:
/// `at(r)` is row `r`'s index.
fn runs_of_eight(rows: usize, at: impl Fn(usize) -> i32) -> Option<Vec<u32>> {
    (0..rows / 8)
        .map(|q| {
            let first = at(8 * q);
            ((0..8).all(|l| at(8 * q + l) == first + l as i32) && first >= 0)
                .then_some(first as u32)
        })
        .collect()
}

impl Level {
    /// The level computing fused group `group`, if it has that form (see the type's docs) and
    /// the CPU has AVX2.
    pub(super) fn detect<'f>(
        m: &Module,
        f: &Frame,
        (group, lanes): (&[usize], Lanes),
        stored: &[bool],
        fan: &dyn Fn() -> Option<&'f snnc_ir::fanout::FanOut>,
    ) -> Option<Level> {
        if lanes != Lanes::Indexed || !has_avx2() {
            return None;
        }
        let insts: Vec<&snnc_ir::Inst> = group.iter().map(|&i| &m.insts[i]).collect();
        let ptr = |o: Operand| f.operand_ptr(o);
        let out =
            |r: snnc_ir::ValueId| stored[r.index()].then(|| ptr(Operand::Value(r)) as *mut f32);
        let n = m.value(insts[0].results[0]).ty.num_elements();
        if !n.is_multiple_of(8) || insts.len() < 2 {
            return None;
        }
        let per_sample = |o: Operand| {
            !matches!(o, Operand::Const(_))
                && m.operand_type(o).is_some_and(|t| t.num_elements() == n)
                && !unstored_in_group(m, group, stored, o)
        };
        // The map.
        let sp = insts[0];
        if !matches!(sp.op, Op::Sparse { .. }) || matches!(sp.args[0], Operand::Const(_)) {
            return None;
        }
        let fr = super::fusion::fixed_rows(m, sp)?;
        let terms = (0..fr.d)
            .map(|t| {
                runs_of_eight(n, |r| fr.cols[r * fr.d + t]).map(|starts| (fr.weights[t], starts))
            })
            .collect::<Option<Vec<_>>>()?;
        let x = (ptr(sp.args[0]), f.sample_stride(sp.args[0]));
        // The population on it.
        let nr = insts[1];
        let population = Population::of((m, f, stored), nr, Src::Chain)?;
        if nr.args[0] != Operand::Value(sp.results[0]) || !per_sample(nr.args[1]) {
            return None;
        }
        let mut gather = None;
        let mut gather_starts = None;
        let mut add = None;
        match &insts[2..] {
            [] => {}
            [ga, rest @ ..] => {
                if !matches!(ga.op, Op::Gather { .. })
                    || matches!(ga.args[0], Operand::Const(_))
                    || unstored_in_group(m, group, stored, ga.args[0])
                {
                    return None;
                }
                let Operand::Const(ic) = ga.args[1] else {
                    return None;
                };
                let snnc_ir::ConstData::I32(idx) = &m.constant(ic).data else {
                    return None;
                };
                if idx.len() != n {
                    return None;
                }
                gather_starts = Some(runs_of_eight(n, |r| idx[r])?);
                let b = ga.results[0];
                gather = Some((ptr(ga.args[0]), f.sample_stride(ga.args[0]), out(b)));
                match rest {
                    [] => {}
                    [ad] => {
                        let (u, bv) = (Operand::Value(nr.results[0]), Operand::Value(b));
                        let b_first = match ad.args[..] {
                            [p, q] if ad.op == Op::Add && p == bv && q == u => true,
                            [p, q] if ad.op == Op::Add && p == u && q == bv => false,
                            _ => return None,
                        };
                        add = Some((b_first, out(ad.results[0])));
                    }
                    _ => return None,
                }
            }
        }
        let d = terms.len();
        let mut starts = Vec::with_capacity(n / 8 * (d + 1));
        for q in 0..n / 8 {
            starts.extend(terms.iter().map(|(_, st)| st[q]));
            starts.push(gather_starts.as_ref().map_or(0, |st| st[q]));
        }
        Some(Level {
            n,
            x,
            weights: terms.iter().map(|(w, _)| *w).collect(),
            starts,
            j: out(sp.results[0]),
            population,
            gather,
            add,
            batch: f.batch(),
            count: spike_output(m, fan, (nr.results[0], n), &population),
        })
    }

    /// Run the level over the whole batch.
    ///
    /// # Safety
    /// As [`Chain::run`].
    pub(super) unsafe fn run(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: guaranteed by the caller.
        unsafe {
            x86::run_level(self)
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Chain, Src};
    use std::arch::x86_64::*;

    /// A chain's parameters as vectors, and its buffers, copied out of the job so that the loop
    /// keeps them in registers (stores through the buffers could otherwise alias the job).
    #[derive(Clone, Copy)]
    struct Regs {
        lowpass: Option<(*const f32, *const f32, __m256, __m256, Option<*mut f32>)>,
        affine: Option<(Src, *const f32, bool, bool, Option<*mut f32>)>,
        j: Src,
        v: *const f32,
        integrate_and_fire: bool,
        g: __m256,
        dt: __m256,
        height: __m256,
        y: Option<*mut f32>,
        v1: Option<*mut f32>,
        /// [`super::syn_bias`] of the chain.
        syn_bias: bool,
    }

    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2")]
    fn regs(ch: &Chain) -> Regs {
        let p = ch.population;
        Regs {
            lowpass: ch.lowpass.map(|lp| {
                (
                    lp.x,
                    lp.s,
                    _mm256_set1_ps(lp.decay),
                    _mm256_set1_ps(1.0 - lp.decay),
                    lp.out,
                )
            }),
            affine: ch
                .affine
                .map(|af| (af.x, af.p, af.width == 1, af.add, af.out)),
            j: p.j,
            v: p.v,
            integrate_and_fire: p.integrate_and_fire,
            g: _mm256_set1_ps(p.g),
            dt: _mm256_set1_ps(p.dt),
            height: _mm256_set1_ps(p.height),
            y: p.y,
            v1: p.v1,
            syn_bias: super::syn_bias(ch.lowpass.as_ref(), ch.affine.as_ref()),
        }
    }

    /// [`chunk`]'s shape bit: the chain starts with a `lowpass`.
    const LOWPASS: u8 = 1;
    /// [`chunk`]'s shape bit: the chain has a `bias` or `scale`.
    const AFFINE: u8 = 2;
    /// [`chunk`]'s shape bit: the population is integrate-and-fire.
    const IF: u8 = 4;
    /// [`chunk`]'s shape bit: the population's current is the chain's previous result.
    const J_CHAIN: u8 = 8;
    /// [`chunk`]'s shape bit: the spikes are stored.
    const STORE_Y: u8 = 16;
    /// [`chunk`]'s shape bit: the new voltage is stored.
    const STORE_V1: u8 = 32;
    /// [`chunk`]'s shape bit, with `LOWPASS | AFFINE`: the synapse's result is stored (it is
    /// its state's next value, possibly over the state: `synapse_in_place`) and the affine is a
    /// bias of the synapse's state (after `sink-synapses`), over the constant's width, not
    /// stored — the chain converted networks give every population after the first, whose loop
    /// then tests nothing per chunk and takes the state from the synapse's load.
    const SYN_BIAS: u8 = 64;

    /// The shape bits of a chain (see [`chunk`]).
    fn shape(r: &Regs) -> u8 {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        bit(r.lowpass.is_some(), LOWPASS)
            | bit(r.affine.is_some(), AFFINE)
            | bit(r.integrate_and_fire, IF)
            | bit(matches!(r.j, Src::Chain), J_CHAIN)
            | bit(r.y.is_some(), STORE_Y)
            | bit(r.v1.is_some(), STORE_V1)
            | bit(r.syn_bias, SYN_BIAS)
    }

    /// `f::<S>` for the shape bits `s`: a loop per shape, so that none tests the shape bits per
    /// chunk (and a counting loop keeps its sums in registers). Whether a synapse's or an
    /// affine's result is stored, and what the affine reads, are still tested per chunk: they
    /// are the same on every chunk, so those branches are always predicted.
    macro_rules! by_shape {
        ($s:expr, $f:ident($($arg:expr),*)) => {
            match $s {
                0 => $f::<0>($($arg),*),
                1 => $f::<1>($($arg),*),
                2 => $f::<2>($($arg),*),
                3 => $f::<3>($($arg),*),
                4 => $f::<4>($($arg),*),
                5 => $f::<5>($($arg),*),
                6 => $f::<6>($($arg),*),
                7 => $f::<7>($($arg),*),
                8 => $f::<8>($($arg),*),
                9 => $f::<9>($($arg),*),
                10 => $f::<10>($($arg),*),
                11 => $f::<11>($($arg),*),
                12 => $f::<12>($($arg),*),
                13 => $f::<13>($($arg),*),
                14 => $f::<14>($($arg),*),
                15 => $f::<15>($($arg),*),
                16 => $f::<16>($($arg),*),
                17 => $f::<17>($($arg),*),
                18 => $f::<18>($($arg),*),
                19 => $f::<19>($($arg),*),
                20 => $f::<20>($($arg),*),
                21 => $f::<21>($($arg),*),
                22 => $f::<22>($($arg),*),
                23 => $f::<23>($($arg),*),
                24 => $f::<24>($($arg),*),
                25 => $f::<25>($($arg),*),
                26 => $f::<26>($($arg),*),
                27 => $f::<27>($($arg),*),
                28 => $f::<28>($($arg),*),
                29 => $f::<29>($($arg),*),
                30 => $f::<30>($($arg),*),
                31 => $f::<31>($($arg),*),
                32 => $f::<32>($($arg),*),
                33 => $f::<33>($($arg),*),
                34 => $f::<34>($($arg),*),
                35 => $f::<35>($($arg),*),
                36 => $f::<36>($($arg),*),
                37 => $f::<37>($($arg),*),
                38 => $f::<38>($($arg),*),
                39 => $f::<39>($($arg),*),
                40 => $f::<40>($($arg),*),
                41 => $f::<41>($($arg),*),
                42 => $f::<42>($($arg),*),
                43 => $f::<43>($($arg),*),
                44 => $f::<44>($($arg),*),
                45 => $f::<45>($($arg),*),
                46 => $f::<46>($($arg),*),
                47 => $f::<47>($($arg),*),
                48 => $f::<48>($($arg),*),
                49 => $f::<49>($($arg),*),
                50 => $f::<50>($($arg),*),
                51 => $f::<51>($($arg),*),
                52 => $f::<52>($($arg),*),
                53 => $f::<53>($($arg),*),
                54 => $f::<54>($($arg),*),
                55 => $f::<55>($($arg),*),
                56 => $f::<56>($($arg),*),
                57 => $f::<57>($($arg),*),
                58 => $f::<58>($($arg),*),
                59 => $f::<59>($($arg),*),
                60 => $f::<60>($($arg),*),
                61 => $f::<61>($($arg),*),
                62 => $f::<62>($($arg),*),
                63 => $f::<63>($($arg),*),
                // `SYN_BIAS` (with `LOWPASS | AFFINE`) and any of the population's four bits.
                67 => $f::<67>($($arg),*),
                71 => $f::<71>($($arg),*),
                75 => $f::<75>($($arg),*),
                79 => $f::<79>($($arg),*),
                83 => $f::<83>($($arg),*),
                87 => $f::<87>($($arg),*),
                91 => $f::<91>($($arg),*),
                95 => $f::<95>($($arg),*),
                99 => $f::<99>($($arg),*),
                103 => $f::<103>($($arg),*),
                107 => $f::<107>($($arg),*),
                111 => $f::<111>($($arg),*),
                115 => $f::<115>($($arg),*),
                119 => $f::<119>($($arg),*),
                123 => $f::<123>($($arg),*),
                127 => $f::<127>($($arg),*),
                // `shape` sets `SYN_BIAS` only with `LOWPASS | AFFINE`.
                s => unreachable!("chain shape {s}"),
            }
        };
    }

    /// The chain's elements `[k, k + 8)`, reading the broadcast constant from element `c`; `S`
    /// is the chain's [`shape`].
    ///
    /// # Safety
    /// AVX2; `S == shape(&r)`; `k + 8` within every buffer, `c + 8` within the constant (or
    /// width 1).
    #[inline(always)]
    unsafe fn chunk<const S: u8>(r: Regs, k: usize, c: usize) -> __m256 {
        // SAFETY (every access): guaranteed by the caller; unaligned loads and stores.
        unsafe {
            let load = |p: *const f32| _mm256_loadu_ps(p.add(k));
            let store = |p: Option<*mut f32>, v: __m256| {
                if let Some(p) = p {
                    _mm256_storeu_ps(p.add(k), v);
                }
            };
            let mut prev = _mm256_setzero_ps();
            let mut state = prev;
            if S & LOWPASS != 0 {
                let Some((x, s, decay, rest, out)) = r.lowpass else {
                    std::hint::unreachable_unchecked()
                };
                let (x, s) = (load(x), load(s));
                state = s;
                prev = _mm256_add_ps(_mm256_mul_ps(decay, s), _mm256_mul_ps(rest, x));
                if S & SYN_BIAS != 0 {
                    // Possibly over the state (`synapse_in_place`), which is in `state` now.
                    _mm256_storeu_ps(out.unwrap_unchecked().add(k), prev);
                } else {
                    store(out, prev);
                }
            }
            let read = |s: Src, prev: __m256| match s {
                Src::Chain => prev,
                Src::Mem(p) => load(p),
            };
            if S & AFFINE != 0 {
                let Some((x, p, scalar, add, out)) = r.affine else {
                    std::hint::unreachable_unchecked()
                };
                if S & SYN_BIAS != 0 {
                    // A bias of the synapse's state, as loaded before the synapse's result was
                    // stored, over the constant's width, not stored (`shape`).
                    prev = _mm256_add_ps(state, _mm256_loadu_ps(p.add(c)));
                } else {
                    let x = read(x, prev);
                    let p = if scalar {
                        _mm256_set1_ps(*p)
                    } else {
                        _mm256_loadu_ps(p.add(c))
                    };
                    prev = if add {
                        _mm256_add_ps(x, p)
                    } else {
                        _mm256_mul_ps(x, p)
                    };
                    store(out, prev);
                }
            }
            let j = if S & J_CHAIN != 0 {
                prev
            } else {
                let Src::Mem(p) = r.j else {
                    std::hint::unreachable_unchecked()
                };
                load(p)
            };
            let (spikes, v) = update(j, load(r.v), (r.g, r.dt), S & IF != 0);
            if S & STORE_Y != 0 {
                let Some(y) = r.y else {
                    std::hint::unreachable_unchecked()
                };
                _mm256_storeu_ps(y.add(k), _mm256_mul_ps(r.height, spikes));
            }
            if S & STORE_V1 != 0 {
                let Some(v1) = r.v1 else {
                    std::hint::unreachable_unchecked()
                };
                _mm256_storeu_ps(v1.add(k), _mm256_sub_ps(v, spikes));
            }
            spikes
        }
    }

    /// Eight units' step, as the generated loops do it: from current `j` and voltage `v`, the
    /// spike counts and the voltage before they are taken off (`v − spikes` is the new voltage).
    /// `if_neuron` integrates the signed drive and floors its counts at zero; `spiking_relu`
    /// rectifies the drive.
    ///
    /// # Safety
    /// AVX2 (inlined into an AVX2 function).
    #[inline(always)]
    unsafe fn update(
        j: __m256,
        v: __m256,
        (g, dt): (__m256, __m256),
        integrate_and_fire: bool,
    ) -> (__m256, __m256) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            let zero = _mm256_setzero_ps();
            // `max(x, 0)` as the generated code selects it: `x > 0 ? x : +0`.
            let relu = |x: __m256| _mm256_blendv_ps(zero, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero));
            let x = _mm256_mul_ps(g, j);
            let drive = if integrate_and_fire { x } else { relu(x) };
            let v = _mm256_add_ps(v, _mm256_mul_ps(drive, dt));
            let floor = _mm256_floor_ps(v);
            let spikes = if integrate_and_fire {
                relu(floor)
            } else {
                floor
            };
            (spikes, v)
        }
    }

    /// One sample's sums as its loop goes (see [`super::Count`]): per lane, the spike counts
    /// and their products with the fan-outs, in f32, and the OR of the counts (whose sign bit
    /// says whether one was negative).
    #[derive(Clone, Copy)]
    struct Tallier {
        spikes: __m256,
        synops: __m256,
        signs: __m256,
    }

    impl Tallier {
        #[inline(always)]
        fn new() -> Tallier {
            // SAFETY: called only from AVX2 functions, into which it is inlined.
            unsafe {
                Tallier {
                    spikes: _mm256_setzero_ps(),
                    synops: _mm256_setzero_ps(),
                    signs: _mm256_setzero_ps(),
                }
            }
        }

        /// Add a chunk's counts `n`, with the chunk's fan-outs at `fan`.
        ///
        /// # Safety
        /// AVX2 (inlined into an AVX2 function); `fan` holds eight elements.
        #[inline(always)]
        #[must_use]
        unsafe fn add(self, n: __m256, fan: *const u16) -> Tallier {
            // SAFETY: guaranteed by the caller.
            unsafe {
                let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(fan as *const __m128i));
                let p = _mm256_mul_ps(n, _mm256_cvtepi32_ps(wide));
                Tallier {
                    signs: _mm256_or_ps(self.signs, n),
                    spikes: _mm256_add_ps(self.spikes, n),
                    synops: _mm256_add_ps(self.synops, p),
                }
            }
        }

        /// The sample's spikes and synaptic operations, and whether they are exact.
        ///
        /// With no count negative (no sign bit in their OR), every partial sum of a lane is at
        /// most its final sum. So final lane sums below 2²¹ (spikes) and 2²⁴ (synaptic
        /// operations) — which NaN and infinities fail — mean every count is below 2²¹, every
        /// product and partial sum a whole number below 2²⁴, all exact in f32.
        ///
        /// # Safety
        /// AVX2 (inlined into an AVX2 function).
        #[inline(always)]
        unsafe fn finish(self) -> (f64, f64, bool) {
            // SAFETY: guaranteed by the caller; a vector of eight f32 lanes is an array of them.
            unsafe {
                let s: [f32; 8] = std::mem::transmute(self.spikes);
                let o: [f32; 8] = std::mem::transmute(self.synops);
                let ok = _mm256_movemask_ps(self.signs) == 0
                    && s.iter().all(|&x| x < (1 << 21) as f32)
                    && o.iter().all(|&x| x < (1 << 24) as f32);
                // Whole numbers: exact in any order.
                let sum = |l: [f32; 8]| l.iter().map(|&x| f64::from(x)).sum();
                (sum(s), sum(o), ok)
            }
        }
    }

    /// Run the chain sample by sample, counting each sample's spikes.
    ///
    /// # Safety
    /// As [`Chain::run`]; `count` is the chain's, whose `n` is a multiple of 8.
    #[target_feature(enable = "avx2")]
    unsafe fn run_counting(ch: &Chain, count: &super::Count) {
        let r = regs(ch);
        // SAFETY: guaranteed by the caller; `S` is the chain's shape.
        unsafe { by_shape!(shape(&r), count_loop(ch, r, count)) }
    }

    /// [`run_counting`] for the chain's shape `S`.
    ///
    /// # Safety
    /// As [`run_counting`]; `S == shape(&r)`, `r == regs(ch)`.
    #[inline(never)]
    #[target_feature(enable = "avx2")]
    unsafe fn count_loop<const S: u8>(ch: &Chain, r: Regs, count: &super::Count) {
        let width = ch.affine.map_or(1, |a| a.width);
        let n = ch.n;
        let fan = count.fan.as_ptr();
        // A width-1 constant: the whole sample is one row.
        let row_len = if width > 1 { width } else { n };
        let mut last = count.last.borrow_mut();
        last.clear();
        let mut exact = true;
        // SAFETY: as in `run`; the fan-outs hold `n` elements.
        unsafe {
            for base in (0..ch.total).step_by(n) {
                let mut t = Tallier::new();
                // Chunks of eight elements in rows of the constant's width (the rows tile the
                // sample: its size is a multiple of the width); `c` is the element in the row.
                for row in (base..base + n).step_by(row_len) {
                    for c in (0..row_len).step_by(8) {
                        let spikes = chunk::<S>(r, row + c, if width > 1 { c } else { 0 });
                        t = t.add(spikes, fan.add(row + c - base));
                    }
                }
                let (spikes, synops, ok) = t.finish();
                last.push((spikes, synops));
                exact &= ok;
            }
        }
        count.exact.set(exact);
    }

    /// # Safety
    /// As [`Chain::run`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run(ch: &Chain) {
        if let Some(count) = &ch.count {
            if count.on.get() {
                // SAFETY: guaranteed by the caller.
                return unsafe { run_counting(ch, count) };
            }
            // Nothing counted on this step.
            count.exact.set(false);
        }
        let r = regs(ch);
        // SAFETY: guaranteed by the caller; `S` is the chain's shape.
        unsafe { by_shape!(shape(&r), plain_loop(ch, r)) }
    }

    /// [`run`]'s loop without counting, for the chain's shape `S`.
    ///
    /// # Safety
    /// As [`Chain::run`]; `S == shape(&r)`, `r == regs(ch)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn plain_loop<const S: u8>(ch: &Chain, r: Regs) {
        let width = ch.affine.map_or(1, |a| a.width);
        let total = ch.total;
        // SAFETY: `detect` made every buffer `total` long; rows of a broadcast constant's
        // width (a multiple of 8) tile the batch.
        unsafe {
            if width > 1 {
                for row in (0..total).step_by(width) {
                    for c in (0..width).step_by(8) {
                        let _ = chunk::<S>(r, row + c, c);
                    }
                }
                return;
            }
            let whole = total / 8 * 8;
            for k in (0..whole).step_by(8) {
                let _ = chunk::<S>(r, k, 0);
            }
            if whole < total {
                tail(ch, whole);
            }
        }
    }

    /// [`level_loop`]'s shape bit: the units are integrate-and-fire.
    const L_IF: u16 = 1;
    /// [`level_loop`]'s shape bit: the current is stored.
    const L_J: u16 = 2;
    /// [`level_loop`]'s shape bit: the spikes are stored.
    const L_Y: u16 = 4;
    /// [`level_loop`]'s shape bit: the new voltage is stored.
    const L_V1: u16 = 8;
    /// [`level_loop`]'s shape bit: a `gather` follows.
    const L_GATHER: u16 = 16;
    /// [`level_loop`]'s shape bit: the gather's result is stored.
    const L_B: u16 = 32;
    /// [`level_loop`]'s shape bit: an `add` of the gather's result and the spikes follows and is
    /// stored.
    const L_ADD: u16 = 64;
    /// [`level_loop`]'s shape bit: the gather's result is the add's first operand.
    const L_B_FIRST: u16 = 128;
    /// [`level_loop`]'s shape bit: this step counts the spikes.
    const L_COUNT: u16 = 256;
    /// [`level_loop`]'s shape for any level: every part tested as the loop goes.
    const L_ANY: u16 = u16::MAX;

    /// The shape of a level on this step (see [`level_loop`]).
    fn level_shape(l: &super::Level) -> u16 {
        let bit = |on: bool, b: u16| if on { b } else { 0 };
        let p = &l.population;
        let add = l.add.filter(|a| a.1.is_some());
        bit(p.integrate_and_fire, L_IF)
            | bit(l.j.is_some(), L_J)
            | bit(p.y.is_some(), L_Y)
            | bit(p.v1.is_some(), L_V1)
            | bit(l.gather.is_some(), L_GATHER)
            | bit(l.gather.is_some_and(|g| g.2.is_some()), L_B)
            | bit(add.is_some(), L_ADD)
            | bit(add.is_some_and(|a| a.0), L_B_FIRST)
            | bit(l.count.as_ref().is_some_and(|c| c.on.get()), L_COUNT)
    }

    /// The level shapes with a loop of their own: what the max-pool circuits lower to (a level
    /// whose gather result is stored, and one that adds it to the spikes), counting or not.
    const LEVEL_SHAPES: [u16; 4] = {
        let common = L_IF | L_Y | L_V1 | L_GATHER;
        [
            common | L_B,
            common | L_ADD | L_B_FIRST,
            common | L_B | L_COUNT,
            common | L_ADD | L_B_FIRST | L_COUNT,
        ]
    };

    /// # Safety
    /// As [`super::Level::run`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run_level(l: &super::Level) {
        macro_rules! by_terms {
            ($s:expr) => {
                match l.weights.len() {
                    1 => level_loop::<1, { $s }>(l),
                    2 => level_loop::<2, { $s }>(l),
                    3 => level_loop::<3, { $s }>(l),
                    4 => level_loop::<4, { $s }>(l),
                    5 => level_loop::<5, { $s }>(l),
                    6 => level_loop::<6, { $s }>(l),
                    7 => level_loop::<7, { $s }>(l),
                    _ => level_loop::<8, { $s }>(l),
                }
            };
        }
        // SAFETY: guaranteed by the caller; each loop's shape is the level's (or any).
        unsafe {
            match level_shape(l) {
                s if s == LEVEL_SHAPES[0] => by_terms!(LEVEL_SHAPES[0]),
                s if s == LEVEL_SHAPES[1] => by_terms!(LEVEL_SHAPES[1]),
                s if s == LEVEL_SHAPES[2] => by_terms!(LEVEL_SHAPES[2]),
                s if s == LEVEL_SHAPES[3] => by_terms!(LEVEL_SHAPES[3]),
                _ => by_terms!(L_ANY),
            }
        }
    }

    /// [`run_level`] for `D` terms per unit (`detect` allows 1 to 8) and the level's shape `S`
    /// ([`level_shape`]) or [`L_ANY`], so that a loop of a known shape tests nothing per chunk.
    ///
    /// # Safety
    /// As [`super::Level::run`]; `S` is `level_shape(l)` or `L_ANY`.
    #[inline(never)]
    #[target_feature(enable = "avx2")]
    unsafe fn level_loop<const D: usize, const S: u16>(l: &super::Level) {
        // Whether the level has `bit`: known from `S`, or `runtime` for any shape.
        let has = |bit: u16, runtime: bool| if S == L_ANY { runtime } else { S & bit != 0 };
        let p = l.population;
        let (g, dt, height) = (
            _mm256_set1_ps(p.g),
            _mm256_set1_ps(p.dt),
            _mm256_set1_ps(p.height),
        );
        let zero = _mm256_setzero_ps();
        let weights: [__m256; D] = std::array::from_fn(|t| _mm256_set1_ps(l.weights[t]));
        let (xb, x_stride) = l.x;
        let integrate_and_fire = has(L_IF, p.integrate_and_fire);
        let j_out = l.j.filter(|_| has(L_J, true));
        let y_out = p.y.filter(|_| has(L_Y, true));
        let v1_out = p.v1.filter(|_| has(L_V1, true));
        let gather = l.gather.filter(|_| has(L_GATHER, true));
        let b_out = gather.and_then(|g| g.2).filter(|_| has(L_B, true));
        let add = l
            .add
            .and_then(|(first, o)| Some((first, o?)))
            .filter(|_| has(L_ADD, true));
        let b_first = add.is_some_and(|a| has(L_B_FIRST, a.0));
        let n = l.n;
        if let Some(c) = &l.count {
            // Set again below if this step counts.
            c.exact.set(false);
        }
        let count = l.count.as_ref().filter(|c| has(L_COUNT, c.on.get()));
        let fan = count.map(|c| c.fan.as_ptr());
        let mut last = count.map(|c| c.last.borrow_mut());
        if let Some(last) = last.as_mut() {
            last.clear();
        }
        let mut exact = true;
        // Each `Option` below is `Some` exactly where `S` has its bit (or is tested per chunk
        // for any shape).
        let some = |o: Option<*mut f32>| -> *mut f32 {
            // SAFETY: called only where the shape says the buffer is there.
            unsafe { o.unwrap_unchecked() }
        };
        // SAFETY (every access): `detect` checked that chunk `q`'s eight indices of every table
        // run from its start, within the operands (the verifier bounds every index), and the
        // frame laid out every buffer for the batch.
        unsafe {
            for s in 0..l.batch {
                let xs = xb.add(s * x_stride);
                let mut tally = Tallier::new();
                for (q, st) in l.starts.chunks_exact(D + 1).enumerate() {
                    let k = s * n + 8 * q;
                    let mut acc = zero;
                    for t in 0..D {
                        let xv = _mm256_loadu_ps(xs.add(st[t] as usize));
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(weights[t], xv));
                    }
                    if has(L_J, j_out.is_some()) {
                        _mm256_storeu_ps(some(j_out).add(k), acc);
                    }
                    let v_in = _mm256_loadu_ps(p.v.add(k));
                    let (spikes, v) = update(acc, v_in, (g, dt), integrate_and_fire);
                    if has(L_COUNT, fan.is_some()) {
                        let fan = fan.unwrap_unchecked();
                        tally = tally.add(spikes, fan.add(8 * q));
                    }
                    let u = _mm256_mul_ps(height, spikes);
                    if has(L_Y, y_out.is_some()) {
                        _mm256_storeu_ps(some(y_out).add(k), u);
                    }
                    if has(L_V1, v1_out.is_some()) {
                        _mm256_storeu_ps(some(v1_out).add(k), _mm256_sub_ps(v, spikes));
                    }
                    if !has(L_GATHER, gather.is_some()) {
                        continue;
                    }
                    let (gx, stride, _) = gather.unwrap_unchecked();
                    let b = _mm256_loadu_ps(gx.add(s * stride + st[D] as usize));
                    if has(L_B, b_out.is_some()) {
                        _mm256_storeu_ps(some(b_out).add(k), b);
                    }
                    if has(L_ADD, add.is_some()) {
                        let sum = if b_first {
                            _mm256_add_ps(b, u)
                        } else {
                            _mm256_add_ps(u, b)
                        };
                        _mm256_storeu_ps(add.unwrap_unchecked().1.add(k), sum);
                    }
                }
                if let Some(last) = last.as_mut() {
                    let (spikes, synops, ok) = tally.finish();
                    last.push((spikes, synops));
                    exact &= ok;
                }
            }
        }
        if let Some(c) = count {
            c.exact.set(exact);
        }
    }

    /// One chunk of a chain, for [`tail`].
    ///
    /// # Safety
    /// As [`chunk`] with `k` and `c` 0.
    #[target_feature(enable = "avx2")]
    unsafe fn tail_chunk<const S: u8>(r: Regs) {
        // SAFETY: guaranteed by the caller.
        let _ = unsafe { chunk::<S>(r, 0, 0) };
    }

    /// Eight-lane copies of elements `[k, total)` of the buffers a chain's tail touches, one
    /// per address.
    struct Pads {
        k: usize,
        n: usize,
        /// At most nine buffers: lowpass input, state and result; affine input and result;
        /// current, voltage, spikes and new voltage.
        pads: [(*const f32, [f32; 8]); 9],
        used: usize,
    }

    impl Pads {
        /// The copy of the buffer at `p` (made on first use).
        ///
        /// # Safety
        /// `p` must hold `k + n` elements.
        unsafe fn get(&mut self, p: *const f32) -> *mut f32 {
            let used = self.used;
            if let Some((_, b)) = self.pads[..used].iter_mut().find(|(q, _)| *q == p) {
                return b.as_mut_ptr();
            }
            let slot = &mut self.pads[used];
            slot.0 = p;
            // SAFETY: guaranteed by the caller.
            unsafe { std::ptr::copy_nonoverlapping(p.add(self.k), slot.1.as_mut_ptr(), self.n) };
            self.used += 1;
            slot.1.as_mut_ptr()
        }

        /// # Safety
        /// As [`Pads::get`].
        unsafe fn src(&mut self, s: Src) -> Src {
            match s {
                Src::Chain => Src::Chain,
                // SAFETY: guaranteed by the caller.
                Src::Mem(p) => Src::Mem(unsafe { self.get(p) }),
            }
        }

        /// # Safety
        /// As [`Pads::get`].
        unsafe fn out(&mut self, o: Option<*mut f32>) -> Option<*mut f32> {
            // SAFETY: guaranteed by the caller.
            o.map(|p| unsafe { self.get(p) })
        }
    }

    /// The last `total − k` (fewer than 8) elements, through eight-lane copies, so that they
    /// take the same instructions as the rest. Buffers at one address share one copy, so a
    /// result written in its operand's place is read back as the full loop would.
    ///
    /// # Safety
    /// As [`Chain::run`].
    #[target_feature(enable = "avx2")]
    unsafe fn tail(ch: &Chain, k: usize) {
        let mut pads = Pads {
            k,
            n: ch.total - k,
            pads: [(std::ptr::null(), [0.0; 8]); 9],
            used: 0,
        };
        // SAFETY (every `pads` call): each buffer holds `total` elements.
        let local = unsafe {
            Chain {
                lowpass: ch.lowpass.map(|lp| super::Lowpass {
                    x: pads.get(lp.x),
                    s: pads.get(lp.s),
                    decay: lp.decay,
                    out: pads.out(lp.out),
                }),
                affine: ch.affine.map(|af| super::Affine {
                    x: pads.src(af.x),
                    out: pads.out(af.out),
                    ..af
                }),
                population: super::Population {
                    j: pads.src(ch.population.j),
                    v: pads.get(ch.population.v),
                    y: pads.out(ch.population.y),
                    v1: pads.out(ch.population.v1),
                    ..ch.population
                },
                total: 8,
                n: 8,
                count: None,
                next_in_place: None,
            }
        };
        // SAFETY: every buffer of `local` is an eight-lane copy; a width-1 constant is read
        // once; the shape is the chain's.
        unsafe {
            let r = regs(&local);
            by_shape!(shape(&r), tail_chunk(r));
        }
        let stored = [
            ch.lowpass.and_then(|lp| lp.out),
            ch.affine.and_then(|af| af.out),
            ch.population.y,
            ch.population.v1,
        ];
        for p in stored.into_iter().flatten() {
            // SAFETY: `p` holds `total` elements; its copy was made above.
            unsafe {
                let copy = pads.get(p);
                std::ptr::copy_nonoverlapping(copy, p.add(k), pads.n);
            }
        }
    }
}
