//! Probes: what a user asks to record at every step, by Keras layer or IR name (`snnc run
//! --probe`, the Python package's `probes=`), resolved on a compiled module.
//!
//! `NAME` alone is a spiking population's spikes (recorded as counts per step), else the value
//! `%NAME` (a Keras layer's output has the layer's name), else the state `$NAME`. A suffix picks
//! another view of a layer: `NAME:spikes`, `NAME:value` (the value even for a population: spike
//! heights `amplitude/dt`), `NAME:voltage` (a spiking population's membrane voltage after the
//! step), `NAME:input` (the current a population's neurons receive) and `NAME:synapse` (the state
//! after the step of the synapse nearest upstream of the population, i.e. the filtered input it
//! reads next step). A value probe is an `output probe` of the module; a spike probe reads the
//! population's spike output, so probing adds no instruction and changes no result.

use snnc_ir::{Module, Op, OpClass, Operand, Output, OutputKind};
use thiserror::Error;

/// What a probe records.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeKind {
    /// Spike counts per step and neuron of a population, read from the module's spike output
    /// number `output` (each element is `count · amplitude / dt`).
    Spikes {
        /// The population.
        population: String,
        /// The spike output's index in the module's outputs.
        output: usize,
    },
    /// A value or state, recorded as float32 from the module's probe output `output`.
    Value {
        /// The probe output's index in the module's outputs.
        output: usize,
    },
}

/// One probe resolved on a module.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The probe as given (the key it is recorded under).
    pub name: String,
    /// What it records.
    pub kind: ProbeKind,
    /// Per-sample shape.
    pub shape: Vec<usize>,
}

/// Why a probe could not be resolved.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProbeError {
    /// A suffix that is not a view.
    #[error(
        "probe `{0}`: unknown view; use NAME or NAME:VIEW with VIEW one of spikes, value, voltage, input, synapse"
    )]
    View(String),
    /// Nothing of that name.
    #[error(
        "probe `{probe}`: no layer, population, value or state is named `{name}` in the compiled network (names you can probe: {hint}; `snnc dump` lists every value and state)"
    )]
    Unknown {
        /// The probe.
        probe: String,
        /// The name looked up.
        name: String,
        /// Some names that exist.
        hint: String,
    },
    /// A view that needs a neuron population.
    #[error("probe `{probe}`: `{name}` is not {what} (populations: {populations})")]
    NotPopulation {
        /// The probe.
        probe: String,
        /// The name looked up.
        name: String,
        /// What it needed to be.
        what: &'static str,
        /// The populations there are.
        populations: String,
    },
    /// `:synapse` on a population without one.
    #[error(
        "probe `{probe}`: population `{name}` reads no synapse (none is upstream of its input)"
    )]
    NoSynapse {
        /// The probe.
        probe: String,
        /// The population.
        name: String,
    },
    /// A probe named like an output.
    #[error(
        "probe `{0}`: the model already has an output of that name (record outputs at every step with --all-steps)"
    )]
    Clash(String),
    /// A probe named like a population's spike output.
    #[error(
        "probe `{probe}`: that is population `{population}`'s spike output; probe `{population}` for its spikes per step"
    )]
    SpikeOutput {
        /// The probe.
        probe: String,
        /// The population.
        population: String,
    },
    /// The same probe twice.
    #[error("probe `{0}` is given twice")]
    Twice(String),
}

/// The neuron instruction computing population (first result) `name`: `(inst, group)`.
fn neuron_of(m: &Module, name: &str) -> Option<(usize, usize)> {
    let name = name.strip_prefix('%').unwrap_or(name);
    m.insts.iter().enumerate().find_map(|(i, inst)| {
        if !matches!(inst.op, Op::Neuron(_)) {
            return None;
        }
        (0..inst.groups()).find_map(|g| {
            let (_, results) = inst.group(g);
            let first = results.first()?;
            (m.value(*first).name == name).then_some((i, g))
        })
    })
}

/// The nearest synapse upstream of `from` through lane-wise ops and index maps: the value it
/// gives its state for the next step.
fn synapse_upstream(m: &Module, from: Operand) -> Option<Operand> {
    let definer = snnc_ir::ModuleInfo::new(m).definer;
    // Breadth first: the synapse fewest ops away.
    let mut stack = std::collections::VecDeque::from([from]);
    let mut seen = vec![false; m.values.len() + m.states.len()];
    while let Some(o) = stack.pop_front() {
        match o {
            Operand::State(s) => {
                if std::mem::replace(&mut seen[m.values.len() + s.index()], true) {
                    continue;
                }
                if let Some(next) = m.nexts.iter().find(|n| n.state == s) {
                    stack.push_back(next.value);
                }
            }
            Operand::Value(v) => {
                if std::mem::replace(&mut seen[v.index()], true) {
                    continue;
                }
                let Some(i) = definer.get(v.index()).copied().flatten() else {
                    continue;
                };
                let inst = &m.insts[i.index()];
                match inst.op.class() {
                    OpClass::Synapse => return Some(o),
                    OpClass::LaneWise | OpClass::IndexMap => {
                        stack.extend(inst.args.iter().copied());
                    }
                    _ => {}
                }
            }
            Operand::Const(_) => {}
        }
    }
    None
}

/// The populations of `m`, in spike-output order.
pub fn populations(m: &Module) -> Vec<&str> {
    m.outputs
        .iter()
        .filter_map(|o| match &o.kind {
            OutputKind::Spikes { population, .. } => Some(population.as_str()),
            _ => None,
        })
        .collect()
}

/// Names worth suggesting: populations, then values named after a Keras layer (no `.` inside).
fn hint(m: &Module) -> String {
    let mut names: Vec<&str> = populations(m);
    let outputs: Vec<&str> = m.outputs.iter().map(|o| o.name.as_str()).collect();
    for v in &m.values {
        if !v.name.contains('.')
            && !names.contains(&v.name.as_str())
            && !outputs.contains(&v.name.as_str())
        {
            names.push(&v.name);
        }
    }
    let more = names.len() > 24;
    names.truncate(24);
    let mut s = names.join(", ");
    if more {
        s.push_str(", …");
    }
    s
}

/// The spike probes among `probes`, as `snnc_runtime::dataset::RunSpec::spike_probes` takes
/// them: `(name, spike output index)`.
pub fn spike_probes(probes: &[Probe]) -> Vec<(String, usize)> {
    probes
        .iter()
        .filter_map(|p| match &p.kind {
            ProbeKind::Spikes { output, .. } => Some((p.name.clone(), *output)),
            ProbeKind::Value { .. } => None,
        })
        .collect()
}

/// Add `probes` (in the syntax of the module docs) to `m`: value probes become `output probe`
/// outputs named as given; returns the module and each probe resolved, in order.
pub fn add_probes(mut m: Module, probes: &[String]) -> Result<(Module, Vec<Probe>), ProbeError> {
    let mut out = Vec::with_capacity(probes.len());
    for (k, p) in probes.iter().enumerate() {
        if probes[..k].contains(p) {
            return Err(ProbeError::Twice(p.clone()));
        }
        if let Some(o) = m.outputs.iter().find(|o| o.name == *p) {
            return Err(match &o.kind {
                OutputKind::Spikes { population, .. } => ProbeError::SpikeOutput {
                    probe: p.clone(),
                    population: population.clone(),
                },
                _ => ProbeError::Clash(p.clone()),
            });
        }
        let (name, view) = match p.rsplit_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (p.as_str(), None),
        };
        let spike_output = m.outputs.iter().position(
            |o| matches!(&o.kind, OutputKind::Spikes { population, .. } if population == name),
        );
        let not_population = |what| ProbeError::NotPopulation {
            probe: p.clone(),
            name: name.into(),
            what,
            populations: populations(&m).join(", "),
        };
        let plain = |m: &Module| -> Option<Operand> {
            if let Some(n) = name.strip_prefix('$') {
                return m.find_state(n).map(Operand::State);
            }
            let n = name.strip_prefix('%').unwrap_or(name);
            m.find_value(n)
                .map(Operand::Value)
                .or_else(|| m.find_state(n).map(Operand::State))
        };
        let operand = match view {
            None | Some("spikes") if spike_output.is_some() => None,
            Some("spikes") => return Err(not_population("a spiking population")),
            None | Some("value") => Some(plain(&m).ok_or_else(|| ProbeError::Unknown {
                probe: p.clone(),
                name: name.into(),
                hint: hint(&m),
            })?),
            Some("voltage") => {
                let (i, g) =
                    neuron_of(&m, name).ok_or_else(|| not_population("a spiking population"))?;
                let (_, results) = m.insts[i].group(g);
                match results.get(1) {
                    Some(&v) => Some(Operand::Value(v)),
                    None => return Err(not_population("a spiking population (it has no voltage)")),
                }
            }
            Some("input") => {
                let (i, g) =
                    neuron_of(&m, name).ok_or_else(|| not_population("a neuron population"))?;
                Some(m.insts[i].group(g).0[0])
            }
            Some("synapse") => {
                let (i, g) =
                    neuron_of(&m, name).ok_or_else(|| not_population("a neuron population"))?;
                let j = m.insts[i].group(g).0[0];
                Some(
                    synapse_upstream(&m, j).ok_or_else(|| ProbeError::NoSynapse {
                        probe: p.clone(),
                        name: name.into(),
                    })?,
                )
            }
            Some(_) => return Err(ProbeError::View(p.clone())),
        };
        let probe = match operand {
            None => {
                let output = spike_output.expect("matched above");
                Probe {
                    name: p.clone(),
                    kind: ProbeKind::Spikes {
                        population: name.into(),
                        output,
                    },
                    shape: m
                        .operand_type(m.outputs[output].value)
                        .map(|t| t.shape.clone())
                        .unwrap_or_default(),
                }
            }
            Some(o) => {
                m.outputs.push(Output {
                    name: p.clone(),
                    value: o,
                    kind: OutputKind::Probe,
                });
                Probe {
                    name: p.clone(),
                    kind: ProbeKind::Value {
                        output: m.outputs.len() - 1,
                    },
                    shape: m
                        .operand_type(o)
                        .map(|t| t.shape.clone())
                        .unwrap_or_default(),
                }
            }
        };
        out.push(probe);
    }
    Ok((m, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "module @m dt=0.001
input %x : f32[2]
state $d.v : f32[2] = zeros
state $d.syn : f32[2] = zeros
const @w : f32[2,2] = [1, 0, 0, 1]
%d.dense = dense %x, @w : f32[2]
%d.f = lowpass %d.dense, $d.syn {tau=0.005} : f32[2]
next $d.syn = %d.f
%d.b = scale $d.syn, @w.s : f32[2]
%d, %d.v1 = spiking_relu %d.b, $d.v {amplitude=0.5} : f32[2], f32[2]
next $d.v = %d.v1
output spikes \"spikes/d\" = %d {population=\"d\", amplitude=0.5}
output \"y\" = %d.dense
";

    fn module() -> Module {
        snnc_ir::parse(&NET.replace("@w.s", "@s").replace(
            "const @w : f32[2,2] = [1, 0, 0, 1]",
            "const @w : f32[2,2] = [1, 0, 0, 1]\nconst @s : f32[] = [2]",
        ))
        .unwrap()
    }

    fn resolve(p: &str) -> Result<(Module, Vec<Probe>), ProbeError> {
        add_probes(module(), &[p.to_string()])
    }

    fn probed(p: &str) -> String {
        let (m, probes) = resolve(p).unwrap();
        snnc_ir::verify(m.clone(), snnc_ir::Target::Any).unwrap();
        match &probes[0].kind {
            ProbeKind::Spikes { population, .. } => format!("spikes of {population}"),
            ProbeKind::Value { output } => m.operand_name(m.outputs[*output].value),
        }
    }

    #[test]
    fn views_resolve_to_the_right_operands() {
        assert_eq!(probed("d"), "spikes of d");
        assert_eq!(probed("d:spikes"), "spikes of d");
        assert_eq!(probed("d:value"), "%d");
        assert_eq!(probed("d:voltage"), "%d.v1");
        assert_eq!(probed("d:input"), "%d.b");
        assert_eq!(probed("d:synapse"), "%d.f");
        assert_eq!(probed("d.dense"), "%d.dense");
        assert_eq!(probed("d.syn"), "$d.syn");
        assert_eq!(probed("$d.syn"), "$d.syn");
    }

    #[test]
    fn bad_probes_name_what_exists() {
        let e = resolve("nope").unwrap_err().to_string();
        assert!(
            e.contains("no layer, population, value or state is named `nope`"),
            "{e}"
        );
        assert!(e.contains("d, x"), "{e}");
        let e = resolve("x:voltage").unwrap_err().to_string();
        assert!(
            e.contains("`x` is not a spiking population (populations: d)"),
            "{e}"
        );
        assert!(matches!(resolve("d:colour"), Err(ProbeError::View(_))));
        assert!(matches!(resolve("y"), Err(ProbeError::Clash(_))));
        let twice = add_probes(module(), &["d".into(), "d".into()]);
        assert!(matches!(twice, Err(ProbeError::Twice(_))));
    }
}
