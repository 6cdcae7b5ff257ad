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
//! (a differential test runs both on the same module).

use super::fusion::Lanes;
use crate::frame::Frame;
use snnc_ir::{Module, NeuronModel, Op, Operand};

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

/// A fused chain run eight lanes at a time (see the module docs).
pub(super) struct Chain {
    lowpass: Option<Lowpass>,
    affine: Option<Affine>,
    population: Population,
    /// Elements over the whole batch.
    total: usize,
}

// SAFETY: the pointers address the engine's own frame (see `JitEngine`'s `Send`).
unsafe impl Send for Chain {}

impl Chain {
    /// The chain computing fused group `group`, if it has one of the supported forms and the
    /// CPU has AVX2. `stored[v]`: value `v` is read outside the group.
    pub(super) fn detect(
        m: &Module,
        f: &Frame,
        (group, lanes): (&[usize], Lanes),
        stored: &[bool],
    ) -> Option<Chain> {
        if std::env::var_os("SNNC_NO_WIDE").is_some() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            return None;
        }
        #[cfg(not(target_arch = "x86_64"))]
        return None;
        let Lanes::Width(w) = lanes else { return None };
        let ptr = |o: Operand| f.operand_ptr(o);
        let out = |r: snnc_ir::ValueId| stored[r.index()].then(|| ptr(Operand::Value(r)) as *mut f32);
        // Every operand in memory is a value or state of the result's size (a constant of that
        // size would be read per sample), and a step reads the previous one's result directly.
        let n = m.value(m.insts[group[0]].results[0]).ty.num_elements();
        let per_sample = |o: Operand| {
            !matches!(o, Operand::Const(_))
                && m.operand_type(o).is_some_and(|t| t.num_elements() == n)
        };
        let src = |o: Operand, prev: Option<snnc_ir::ValueId>| match o {
            Operand::Value(v) if Some(v) == prev => Some(Src::Chain),
            o if per_sample(o) => Some(Src::Mem(ptr(o))),
            _ => None,
        };
        let insts: Vec<&snnc_ir::Inst> = group.iter().map(|&i| &m.insts[i]).collect();
        let (head, last) = insts.split_at(insts.len() - 1);
        let mut prev = None;
        let mut lowpass = None;
        let mut affine = None;
        match head {
            [] => {}
            [lp, af] => {
                let Op::Lowpass { tau } = lp.op else {
                    return None;
                };
                if !(per_sample(lp.args[0]) && per_sample(lp.args[1])) {
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
                if !(width == 1 || (width == w && w % 8 == 0 && n % w == 0)) {
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
            }
            _ => return None,
        }
        let nr = last[0];
        let Op::Neuron(neuron) = &nr.op else {
            return None;
        };
        let integrate_and_fire = match neuron.model {
            NeuronModel::SpikingRelu => false,
            NeuronModel::IfNeuron => true,
            _ => return None,
        };
        if nr.args.len() != 2 || !per_sample(nr.args[1]) {
            return None;
        }
        let (g, a, dt) = (neuron.gain as f32, neuron.amplitude as f32, m.dt as f32);
        let population = Population {
            j: src(nr.args[0], prev)?,
            v: ptr(nr.args[1]),
            integrate_and_fire,
            g,
            dt,
            height: a / dt,
            y: out(nr.results[0]),
            v1: out(nr.results[1]),
        };
        // Without a broadcast constant the whole batch is one run of elements; with one, rows of
        // its width.
        if affine.is_none() && w != 1 {
            return None;
        }
        Some(Chain {
            lowpass,
            affine,
            population,
            total: n * f.batch(),
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
        }
    }

    /// The chain's elements `[k, k + 8)`, reading the broadcast constant from element `c`.
    ///
    /// # Safety
    /// AVX2; `k + 8` within every buffer, `c + 8` within the constant (or width 1).
    #[inline(always)]
    unsafe fn chunk(r: Regs, k: usize, c: usize) {
        // SAFETY (every access): guaranteed by the caller; unaligned loads and stores.
        unsafe {
            let load = |p: *const f32| _mm256_loadu_ps(p.add(k));
            let store = |p: Option<*mut f32>, v: __m256| {
                if let Some(p) = p {
                    _mm256_storeu_ps(p.add(k), v);
                }
            };
            let mut prev = _mm256_setzero_ps();
            if let Some((x, s, decay, rest, out)) = r.lowpass {
                let (x, s) = (load(x), load(s));
                prev = _mm256_add_ps(_mm256_mul_ps(decay, s), _mm256_mul_ps(rest, x));
                store(out, prev);
            }
            let read = |s: Src, prev: __m256| match s {
                Src::Chain => prev,
                Src::Mem(p) => load(p),
            };
            if let Some((x, p, scalar, add, out)) = r.affine {
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
            let zero = _mm256_setzero_ps();
            let x = _mm256_mul_ps(r.g, read(r.j, prev));
            // `max(x, 0)` as the generated code selects it: `x > 0 ? x : +0`.
            let relu = |x: __m256| _mm256_blendv_ps(zero, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero));
            let drive = if r.integrate_and_fire { x } else { relu(x) };
            let v = _mm256_add_ps(load(r.v), _mm256_mul_ps(drive, r.dt));
            let floor = _mm256_floor_ps(v);
            let spikes = if r.integrate_and_fire {
                relu(floor)
            } else {
                floor
            };
            store(r.y, _mm256_mul_ps(r.height, spikes));
            store(r.v1, _mm256_sub_ps(v, spikes));
        }
    }

    /// # Safety
    /// As [`Chain::run`].
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run(ch: &Chain) {
        let width = ch.affine.map_or(1, |a| a.width);
        let r = regs(ch);
        let total = ch.total;
        // SAFETY: `detect` made every buffer `total` long; rows of a broadcast constant's
        // width (a multiple of 8) tile the batch.
        unsafe {
            if width > 1 {
                for row in (0..total).step_by(width) {
                    for c in (0..width).step_by(8) {
                        chunk(r, row + c, c);
                    }
                }
                return;
            }
            let whole = total / 8 * 8;
            for k in (0..whole).step_by(8) {
                chunk(r, k, 0);
            }
            if whole < total {
                tail(ch, whole);
            }
        }
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
                lowpass: match ch.lowpass {
                    Some(lp) => Some(super::Lowpass {
                        x: pads.get(lp.x),
                        s: pads.get(lp.s),
                        decay: lp.decay,
                        out: pads.out(lp.out),
                    }),
                    None => None,
                },
                affine: match ch.affine {
                    Some(af) => Some(super::Affine {
                        x: pads.src(af.x),
                        out: pads.out(af.out),
                        ..af
                    }),
                    None => None,
                },
                population: super::Population {
                    j: pads.src(ch.population.j),
                    v: pads.get(ch.population.v),
                    y: pads.out(ch.population.y),
                    v1: pads.out(ch.population.v1),
                    ..ch.population
                },
                total: 8,
            }
        };
        // SAFETY: every buffer of `local` is an eight-lane copy; a width-1 constant is read
        // once.
        unsafe { chunk(regs(&local), 0, 0) };
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
#[cfg(test)]
mod timing {
    #[test]
    #[ignore]
    fn wide_timing() {
        let n = 10816;
        let j: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 3.0).collect();
        let text = "module @m dt=0.001\ninput %j : f32[10816]\nstate $v : f32[10816] = zeros\n\n%s, %v1 = spiking_relu %j, $v {gain=100, amplitude=0.01} : f32[10816], f32[10816]\nnext $v = %v1\noutput \"s\" = %s\n";
        let m = snnc_ir::verify(snnc_ir::parse(text).unwrap(), snnc_ir::Target::Any).unwrap();
        let mut sim = crate::Simulator::new(&m, crate::Backend::Jit, 1).unwrap();
        for _ in 0..3 {
            sim.step_flat(&[&j]).unwrap();
            let t = std::time::Instant::now();
            for _ in 0..20000 { sim.step_flat(&[&j]).unwrap(); }
            eprintln!("step {} ns", t.elapsed().as_nanos() / 20000);
        }
    }
}
