//! `lower-maxpool`: max pooling as a neural circuit.
//!
//! After this pass (mode `neural`) no `max_pool` or `global_max_pool` is left. Each pooling window
//! of `k` cells becomes a balanced tree of `k − 1` units in `⌈log2 k⌉` levels built from
//! `max(a, b) = b + relu(a − b)` — an identity for all real `a`, `b`, so the rate circuit equals
//! `max_pool` to float rounding whatever the sign of its inputs. Each level is one `sparse` map
//! with ±1 weights (the units' currents `a − b`), one population of units, a `gather` of the `b`
//! operands and an `add`; cells left unpaired at a level pass through by `gather` and `concat`.
//! Padding cells are never in a window, so padding never wins.
//!
//! The units are rate `relu`s, unless the pool reads a spiking population (spike height `A/dt`):
//! then they are `if_neuron`s (integrate-and-fire, reset by subtraction, **no floor** on the
//! membrane) with gain `1/A` and amplitude `A`, so one input spike moves a unit's voltage by one,
//! and their initial voltage is 0.5. With no synapse inside the circuit, the cumulative output
//! spike count of each window tracks the maximum of its inputs' cumulative counts (error O(1/T)).
//!
//! The tree is built per window, not axis by axis: for the usual non-overlapping windows that
//! costs the same number of units (3 for 2×2) and keeps every window's tree independent; for
//! overlapping windows a separable reduction would share units between windows (future work).
//!
//! Mode `avg` replaces max pooling with average pooling (NengoDL's `max_to_avg_pool`; it changes
//! the network's function). Mode `keep` leaves the exact op (not valid for the neural target).

use super::options::MaxPoolMode;
use super::rewrite::Rewriter;
use super::{PassError, build_err};
use snnc_ir::geometry::WindowAxis;
use snnc_ir::{Module, Neuron, NeuronModel, Op, Operand, PoolAttrs, StateInit, ValueId};

/// The input cells (flat indices) of every output element of a pool, in output order.
pub fn pool_windows(
    in_shape: &[usize],
    attrs: Option<&PoolAttrs>,
) -> Result<Vec<Vec<u32>>, snnc_ir::geometry::WindowError> {
    let d = in_shape.len() - 1;
    let c = in_shape[d];
    let spatial: Vec<WindowAxis> = match attrs {
        Some(p) => (0..d)
            .map(|i| WindowAxis::new(in_shape[i], p.pool[i], p.strides[i], 1, p.padding))
            .collect::<Result<_, _>>()?,
        None => (0..d)
            .map(|i| WindowAxis::new(in_shape[i], in_shape[i], 1, 1, snnc_ir::Padding::Valid))
            .collect::<Result<_, _>>()?,
    };
    let outs: Vec<usize> = spatial.iter().map(|a| a.output).collect();
    let n_pos: usize = outs.iter().product();
    let mut windows = Vec::with_capacity(n_pos * c);
    let mut o = vec![0usize; d];
    for _ in 0..n_pos {
        // All taps of this output position.
        let mut taps: Vec<usize> = vec![0];
        for (ax, a) in spatial.iter().enumerate() {
            let mut next = Vec::new();
            for &base in &taps {
                for k in 0..a.window {
                    if let Some(i) = a.source(o[ax], k) {
                        next.push(base * a.input + i);
                    }
                }
            }
            taps = next;
        }
        for ch in 0..c {
            windows.push(taps.iter().map(|&p| (p * c + ch) as u32).collect());
        }
        for ax in (0..d).rev() {
            o[ax] += 1;
            if o[ax] < outs[ax] {
                break;
            }
            o[ax] = 0;
        }
    }
    Ok(windows)
}

/// Run the pass.
pub fn lower_maxpool(m: &Module, mode: MaxPoolMode) -> Result<Module, PassError> {
    let mut rw = Rewriter::new(m);
    // Which values are spike trains, and their amplitude.
    let mut spike_amplitude: Vec<Option<f64>> = vec![None; m.values.len()];
    for inst in &m.insts {
        if let Op::Neuron(n) = &inst.op
            && n.model.is_spiking()
        {
            for g in 0..inst.groups() {
                spike_amplitude[inst.group(g).1[0].index()] = Some(n.amplitude);
            }
        }
    }
    for inst in &m.insts {
        let attrs = match &inst.op {
            Op::MaxPool(p) => Some(p.clone()),
            Op::GlobalMaxPool => None,
            _ => {
                rw.copy(inst).map_err(|e| build_err("lower-maxpool", e))?;
                continue;
            }
        };
        let name = rw.old_value(inst.results[0]).name.clone();
        match mode {
            MaxPoolMode::Keep => {
                rw.copy(inst).map_err(|e| build_err("lower-maxpool", e))?;
            }
            MaxPoolMode::Avg => {
                let op = match attrs {
                    Some(p) => Op::AvgPool(p),
                    None => Op::GlobalAvgPool,
                };
                let x = rw.map(inst.args[0]);
                let v =
                    rw.b.op1(op, &[x], &name)
                        .map_err(|e| build_err("lower-maxpool", e))?;
                rw.set(inst.results[0], Operand::Value(v));
            }
            MaxPoolMode::Neural => {
                let x = inst.args[0];
                let in_shape = m.operand_type(x).expect("verified").shape.clone();
                let out_shape = rw.old_value(inst.results[0]).ty.shape.clone();
                let amplitude = match x {
                    Operand::Value(v) => spike_amplitude[v.index()],
                    _ => None,
                };
                let windows = pool_windows(&in_shape, attrs.as_ref()).map_err(|source| {
                    PassError::Window {
                        pass: "lower-maxpool",
                        source,
                    }
                })?;
                let xm = rw.map(x);
                let y = build_circuit(&mut rw, xm, windows, &out_shape, &name, amplitude)
                    .map_err(|e| build_err("lower-maxpool", e))?;
                rw.set(inst.results[0], Operand::Value(y));
            }
        }
    }
    Ok(rw.finish())
}

/// Build the ±1 ReLU tree over `windows` (flat indices into `x`) and return the pooled value.
fn build_circuit(
    rw: &mut Rewriter,
    x: Operand,
    mut windows: Vec<Vec<u32>>,
    out_shape: &[usize],
    name: &str,
    spike_amplitude: Option<f64>,
) -> Result<ValueId, snnc_ir::BuildError> {
    let b = &mut rw.b;
    let mut s = x;
    let mut level = 0;
    while windows.iter().any(|w| w.len() > 1) {
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut unpaired: Vec<u32> = Vec::new();
        let mut new_windows = Vec::with_capacity(windows.len());
        // Indices into the next level: pairs first, then the unpaired cells. Units are numbered
        // chunk-major (every window's first pair, then every window's second pair, ...), so
        // neighbouring units belong to neighbouring windows — for channels-last pooling, the same
        // window position in consecutive channels — and read consecutive elements, which a
        // runtime can load as one vector.
        let mut slots: Vec<Vec<(bool, u32)>> = vec![Vec::new(); windows.len()];
        let chunks = windows
            .iter()
            .map(|w| w.len().div_ceil(2))
            .max()
            .unwrap_or(0);
        for k in 0..chunks {
            for (w, slot) in windows.iter().zip(&mut slots) {
                match w.get(2 * k..(2 * k + 2).min(w.len())) {
                    Some(&[a, bb]) => {
                        slot.push((true, pairs.len() as u32));
                        pairs.push((a, bb));
                    }
                    Some(&[a]) => {
                        slot.push((false, unpaired.len() as u32));
                        unpaired.push(a);
                    }
                    _ => {}
                }
            }
        }
        let p = pairs.len();
        for slot in slots {
            new_windows.push(
                slot.into_iter()
                    .map(|(paired, i)| if paired { i } else { p as u32 + i })
                    .collect(),
            );
        }
        let prefix = format!("{name}.l{level}");
        // Unit j's current: +1·s[a_j] − 1·s[b_j], as (row, column) entries.
        let idx: Vec<i32> = pairs
            .iter()
            .enumerate()
            .flat_map(|(j, &(a, bb))| [j as i32, a as i32, j as i32, bb as i32])
            .collect();
        let w: Vec<f32> = (0..p).flat_map(|_| [1.0, -1.0]).collect();
        let idx_c = b.constant_i32(&format!("{prefix}.idx"), &[2 * p, 2], idx);
        let w_c = b.constant_f32(&format!("{prefix}.w"), &[2 * p], w);
        let current = b.op1(
            Op::Sparse { shape: vec![p] },
            &[s, idx_c.into(), w_c.into()],
            &format!("{prefix}.j"),
        )?;
        let units = match spike_amplitude {
            None => b.op1(
                Op::Neuron(Neuron {
                    model: NeuronModel::Relu,
                    gain: 1.0,
                    amplitude: 1.0,
                }),
                &[current.into()],
                &format!("{prefix}.u"),
            )?,
            Some(a) => {
                let v = b.state(
                    &format!("{prefix}.v"),
                    &[p],
                    StateInit::Uniform {
                        lo: 0.5,
                        hi: 0.5,
                        seed: 0,
                    },
                );
                let op = Op::Neuron(Neuron {
                    model: NeuronModel::IfNeuron,
                    gain: 1.0 / a,
                    amplitude: a,
                });
                let r = b.op_named(
                    op,
                    &[current.into(), v.into()],
                    &[&format!("{prefix}.u"), &format!("{prefix}.v1")],
                )?;
                b.next(v, r[1]);
                b.output_of_kind(
                    &format!("{}{prefix}.u", super::pass::SPIKE_OUTPUT_PREFIX),
                    r[0],
                    snnc_ir::OutputKind::Spikes {
                        population: format!("{prefix}.u"),
                        amplitude: a,
                    },
                );
                r[0]
            }
        };
        let b_idx: Vec<i32> = pairs.iter().map(|&(_, bb)| bb as i32).collect();
        let b_idx_c = b.constant_i32(&format!("{prefix}.b_idx"), &[p], b_idx);
        let base = b.op1(
            Op::Gather { shape: vec![p] },
            &[s, b_idx_c.into()],
            &format!("{prefix}.b"),
        )?;
        let mut next = b.op1(
            Op::Add,
            &[base.into(), units.into()],
            &format!("{prefix}.max"),
        )?;
        if !unpaired.is_empty() {
            let q = unpaired.len();
            let pass_c = b.constant_i32(
                &format!("{prefix}.pass_idx"),
                &[q],
                unpaired.iter().map(|&i| i as i32).collect(),
            );
            let pass = b.op1(
                Op::Gather { shape: vec![q] },
                &[s, pass_c.into()],
                &format!("{prefix}.pass"),
            )?;
            next = b.op1(
                Op::Concat { axis: 0 },
                &[next.into(), pass.into()],
                &format!("{prefix}.out"),
            )?;
        }
        s = Operand::Value(next);
        windows = new_windows;
        level += 1;
    }
    let final_idx: Vec<i32> = windows.iter().map(|w| w[0] as i32).collect();
    let n = final_idx.len();
    let c = b.constant_i32(&format!("{name}.out_idx"), &[n], final_idx);
    b.op1(
        Op::Gather {
            shape: out_shape.to_vec(),
        },
        &[s, c.into()],
        name,
    )
}

/// The `lower-maxpool` pass, in the options' max-pool mode.
pub struct LowerMaxPool;

impl super::Pass for LowerMaxPool {
    fn name(&self) -> &'static str {
        "lower-maxpool"
    }

    fn run(
        &self,
        m: &Module,
        opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        Ok(Some(lower_maxpool(m, opts.max_pool)?.into()))
    }
}
