//! `spikify`: NengoDL's conversion options on a rate module.
//!
//! After this pass every ReLU-family rate neuron (`relu`, `leaky_relu`) is its spiking twin
//! (`spiking_relu`, `spiking_leaky_relu`; or `if_neuron`/`lif` for `relu` with `relu_neuron`) with gain × s and amplitude ÷ s (`scale_firing_rates`,
//! global or per layer), a voltage state initialised to U(0,1) (Nengo's default) or a fixed value,
//! and — with a synapse — a lowpass filter on its output whose state every reader reads (the
//! one-step delay NengoDL's synapse has; output probes read it too). Other rate neurons (sigmoid,
//! tanh, LIF rate) stay rate neurons, as in NengoDL.
//!
//! Max pooling of a spiking population: with [`MaxPoolMode::Neural`] the pool reads the raw
//! spikes and the synapse moves after the pool (the circuit `lower-maxpool` builds has no synapse
//! inside); with [`MaxPoolMode::Keep`] the pool reads raw spikes and nothing is filtered after it
//! (what NengoDL's TensorNode fallback does); with [`MaxPoolMode::Avg`] it reads filtered spikes
//! like any linear map. Each spiking population's raw spikes are also a spike output
//! (`output spikes "spikes/<population>" = ...`, SPEC.md), for spike counting.

use super::options::{InitialVoltage, MaxPoolMode, SpikeOptions, Swap};
use super::pass::SPIKE_OUTPUT_PREFIX;
use super::rewrite::Rewriter;
use super::{PassError, build_err};
use snnc_ir::{
    Module, ModuleInfo, Neuron, NeuronModel, Op, Operand, OutputKind, Reader, StateInit, ValueId,
};

/// Run the pass.
pub fn spikify(m: &Module, opts: &SpikeOptions) -> Result<Module, PassError> {
    Ok(spikify_with_warnings(m, opts)?.0)
}

/// Run the pass; also returns its warnings (a scale on a neuron without an amplitude changes its
/// output, as NengoDL warns).
pub fn spikify_with_warnings(
    m: &Module,
    opts: &SpikeOptions,
) -> Result<(Module, Vec<String>), PassError> {
    let mut rw = Rewriter::new(m);
    let mut warnings = Vec::new();
    // Old values that are spike trains → their raw (unfiltered) spikes in the new module.
    let mut raw: Vec<Option<Operand>> = vec![None; m.values.len()];
    let mut population = 0u64;
    // Every population name the options could address (to warn about names that match none):
    // neurons take scales and synapses, pools (their circuits follow their input's scale) only
    // synapses.
    let mut named: Vec<String> = Vec::new();
    let mut pools: Vec<String> = Vec::new();
    let err = |e| build_err("spikify", e);
    // Values some reader takes filtered: everything except pools that read raw spikes.
    let raw_reader = |op: &Op| {
        matches!(op, Op::MaxPool(_) | Op::GlobalMaxPool) && opts.max_pool != MaxPoolMode::Avg
    };
    let info = ModuleInfo::new(m);
    let filtered_readers: Vec<bool> = info
        .readers
        .iter()
        .map(|readers| {
            readers.iter().any(|r| match r {
                Reader::Inst(i) => !raw_reader(&m.insts[i.index()].op),
                Reader::EndOfStep => true,
            })
        })
        .collect();
    for inst in &m.insts {
        match &inst.op {
            Op::Neuron(n)
                if opts.spiking
                    && matches!(n.model, NeuronModel::Relu | NeuronModel::LeakyRelu { .. }) =>
            {
                let (name, s) = population_scale(&rw, inst, opts)?;
                named.push(name.clone());
                let model = match n.model {
                    NeuronModel::LeakyRelu { negative_slope } => {
                        NeuronModel::SpikingLeakyRelu { negative_slope }
                    }
                    _ => match opts.relu_neuron {
                        Swap::SpikingRelu => NeuronModel::SpikingRelu,
                        Swap::If => NeuronModel::IfNeuron,
                        Swap::Lif => NeuronModel::Lif {
                            tau_rc: 0.02,
                            tau_ref: 0.002,
                            min_voltage: 0.0,
                        },
                    },
                };
                let shape = rw.old_value(inst.results[0]).ty.shape.clone();
                let init = match opts.initial_voltage {
                    InitialVoltage::Uniform => StateInit::Uniform {
                        lo: 0.0,
                        hi: 1.0,
                        seed: population,
                    },
                    InitialVoltage::Fixed(v) => StateInit::Uniform {
                        lo: v,
                        hi: v,
                        seed: 0,
                    },
                };
                population += 1;
                let v = rw.b.state(&format!("{name}.v"), &shape, init);
                let amplitude = n.amplitude / s;
                let op = Op::Neuron(Neuron {
                    model,
                    gain: n.gain * s,
                    amplitude,
                });
                let j = rw.map(inst.args[0]);
                let mut args = vec![j, v.into()];
                let mut names = vec![name.clone(), format!("{name}.v1")];
                let mut states = vec![v];
                if let Op::Neuron(Neuron {
                    model: NeuronModel::Lif { .. },
                    ..
                }) = op
                {
                    let r = rw.b.state(&format!("{name}.ref"), &shape, StateInit::Zeros);
                    args.push(r.into());
                    names.push(format!("{name}.ref1"));
                    states.push(r);
                }
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let r = rw.b.op_named(op, &args, &refs).map_err(err)?;
                for (st, nv) in states.iter().zip(&r[1..]) {
                    rw.b.next(*st, *nv);
                }
                rw.b.output_of_kind(
                    &format!("{SPIKE_OUTPUT_PREFIX}{name}"),
                    r[0],
                    OutputKind::Spikes {
                        population: name.clone(),
                        amplitude,
                    },
                );
                raw[inst.results[0].index()] = Some(Operand::Value(r[0]));
                let synapse = opts
                    .synapse_for(&name)
                    .filter(|_| filtered_readers[inst.results[0].index()]);
                let read = filtered(&mut rw, r[0], &name, synapse).map_err(err)?;
                rw.set(inst.results[0], read);
            }
            Op::Neuron(n) if !n.model.is_spiking() && n.model.is_nengo_type() => {
                // A rate population: NengoDL's gain × s on its input and amplitude ÷ s on its
                // output (Nengo's Sigmoid and Tanh have no amplitude, so only the gain changes
                // and so does the output), and the synapse on what reads it.
                let (name, s) = population_scale(&rw, inst, opts)?;
                named.push(name.clone());
                let has_amplitude = !matches!(n.model, NeuronModel::Sigmoid | NeuronModel::Tanh);
                if !has_amplitude && s != 1.0 {
                    warnings.push(format!(
                        "`{name}` ({}) has no amplitude to divide by the firing-rate scale {s}; \
                         scaling changes its output (as in NengoDL)",
                        n.model.name()
                    ));
                }
                let op = Op::Neuron(Neuron {
                    model: n.model.clone(),
                    gain: n.gain * s,
                    amplitude: if has_amplitude {
                        n.amplitude / s
                    } else {
                        n.amplitude
                    },
                });
                let j = rw.map(inst.args[0]);
                let y = rw.b.op1(op, &[j], &name).map_err(err)?;
                raw[inst.results[0].index()] = Some(Operand::Value(y));
                let synapse = opts
                    .synapse_for(&name)
                    .filter(|_| filtered_readers[inst.results[0].index()]);
                let read = filtered(&mut rw, y, &name, synapse).map_err(err)?;
                rw.set(inst.results[0], read);
            }
            Op::MaxPool(_) | Op::GlobalMaxPool if opts.max_pool != MaxPoolMode::Avg => {
                let source = match inst.args[0] {
                    Operand::Value(v) => raw[v.index()],
                    _ => None,
                };
                let Some(spikes) = source else {
                    rw.copy(inst).map_err(err)?;
                    continue;
                };
                let name = rw.old_value(inst.results[0]).name.clone();
                pools.push(name.clone());
                let y = rw.b.op1(inst.op.clone(), &[spikes], &name).map_err(err)?;
                let read = if opts.max_pool == MaxPoolMode::Neural {
                    raw[inst.results[0].index()] = Some(Operand::Value(y));
                    let synapse = opts
                        .synapse_for(&name)
                        .filter(|_| filtered_readers[inst.results[0].index()]);
                    filtered(&mut rw, y, &name, synapse).map_err(err)?
                } else {
                    Operand::Value(y)
                };
                rw.set(inst.results[0], read);
            }
            _ => {
                rw.copy(inst).map_err(err)?;
            }
        }
    }
    let addressed = |names: &[String], wanted: &str| {
        names
            .iter()
            .any(|n| n == wanted || n.split('.').next() == Some(wanted))
    };
    let with_pools: Vec<String> = named.iter().chain(&pools).cloned().collect();
    for (what, wanted, names) in [
        (
            "firing-rate scales",
            opts.layer_scales
                .iter()
                .map(|(l, _)| l.as_str())
                .collect::<Vec<_>>(),
            &named,
        ),
        (
            "synapses",
            opts.layer_synapses
                .iter()
                .map(|(l, _)| l.as_str())
                .collect(),
            &with_pools,
        ),
    ] {
        let unknown: Vec<String> = wanted
            .into_iter()
            .filter(|l| !addressed(names, l))
            .map(|l| format!("`{l}`"))
            .collect();
        if !unknown.is_empty() {
            warnings.push(format!(
                "per-layer {what} for {} name no layer they apply to and do nothing; they apply to: {}",
                unknown.join(", "),
                names.join(", ")
            ));
        }
    }
    Ok((rw.finish(), warnings))
}

/// The name of the population `inst` computes and its firing-rate scale, checked: one group
/// (merged instructions convert after spikify) and a positive finite scale.
fn population_scale(
    rw: &Rewriter,
    inst: &snnc_ir::Inst,
    opts: &SpikeOptions,
) -> Result<(String, f64), PassError> {
    let name = rw.old_value(inst.results[0]).name.clone();
    if inst.groups() > 1 {
        return Err(PassError::MergedBeforeSpikify {
            name,
            groups: inst.groups(),
        });
    }
    let s = opts.scale_for(&name);
    if !(s > 0.0 && s.is_finite()) {
        return Err(PassError::BadScale { name, scale: s });
    }
    Ok((name, s))
}

/// What readers of a spike train read: the state of a lowpass on it, or the spikes themselves.
fn filtered(
    rw: &mut Rewriter,
    spikes: ValueId,
    name: &str,
    synapse: Option<f64>,
) -> Result<Operand, snnc_ir::BuildError> {
    let Some(tau) = synapse else {
        return Ok(Operand::Value(spikes));
    };
    let shape = rw.b.module().value(spikes).ty.shape.clone();
    let syn = rw.b.state(&format!("{name}.syn"), &shape, StateInit::Zeros);
    let y = rw.b.op1(
        Op::Lowpass { tau },
        &[spikes.into(), syn.into()],
        &format!("{name}.filtered"),
    )?;
    rw.b.next(syn, y);
    Ok(Operand::State(syn))
}

/// The `spikify` pass (acts only with spiking options).
pub struct Spikify;

impl super::Pass for Spikify {
    fn name(&self) -> &'static str {
        "spikify"
    }

    fn run(
        &self,
        m: &Module,
        opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        let Some(s) = &opts.spiking else {
            return Ok(None);
        };
        let mut s = s.clone();
        s.max_pool = opts.max_pool;
        let (module, warnings) = spikify_with_warnings(m, &s)?;
        Ok(Some(super::PassOutcome {
            module,
            detail: None,
            warnings,
        }))
    }
}
