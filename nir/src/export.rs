//! Export: a converted snnc module as a NIR graph.
//!
//! The module is taken **before** `lower-maxpool` (the CLI runs the pipeline without that pass):
//! each `max_pool` is written here as the same integrate-and-fire circuit the pass builds, but
//! out of NIR's own primitives — `Conv2d` maps with ±1 weights (`groups=1`), `IF` nodes, and the
//! edge sums NIR defines — instead of snnc's `sparse` and `gather` tables.
//!
//! Conventions of the exported graph (SPEC.md, "NIR"):
//! - data is channels first (`(C, H, W)`), kernels `(C_out, C_in, kH, kW)`; a `Dense` after a
//!   `Flatten` has its columns permuted from snnc's channels-last order;
//! - a spike is an event of size 1: a spiking population's spike height `amplitude/dt` is folded
//!   into the weights of every map that reads it (or a `Scale` node where nothing can absorb it);
//! - an `IF` node of snnc's neuron with gain `g` and initial voltage `v0` has `r = g`,
//!   `v_threshold = 1 − v0` and `v_reset = −v0`, and its metadata records `reset = "subtract"`
//!   with `reset_amount = 1`: a consumer stepping with the recorded `dt` from `v = 0` reproduces
//!   snnc's spikes while no unit needs two spikes in one step;
//! - a lowpass synapse is an `LI` node whose time constant is chosen so that forward Euler with
//!   `dt` decays by exactly snnc's factor `e^(−dt/τ)` per step.

use crate::{Field, Graph, NirError, Node, Primitive};
use snnc_ir::geometry::WindowAxis;
use snnc_ir::{
    ConstData, Inst, Module, NeuronModel, Op, Operand, OutputKind, Padding, PoolAttrs, StateInit,
};
use std::collections::{HashMap, HashSet};

/// A graph and what the export could not carry exactly.
#[derive(Clone, Debug)]
pub struct Exported {
    /// The NIR graph.
    pub graph: Graph,
    /// Warnings, each naming the layer it concerns.
    pub warnings: Vec<String>,
}

/// How a value's elements sit in NIR relative to snnc.
#[derive(Clone, Debug, PartialEq)]
enum Layout {
    /// Rank 1: the same order. Rank ≥ 2: channels first (snnc is channels last).
    Std,
    /// Rank 1: NIR element `i` is snnc element `perm[i]` (after a `Flatten`).
    Perm(Vec<u32>),
}

/// An snnc value as NIR sees it: the sum of the outputs of `sources`, times `scale`.
#[derive(Clone, Debug)]
struct Val {
    sources: Vec<String>,
    scale: f32,
    shape: Vec<usize>,
    layout: Layout,
    /// The amplitude of the spiking population this value is the output of (or a max of).
    spikes: Option<f64>,
}

/// The passes an export leaves out of the pipeline: `lower-maxpool` (max pooling exports as NIR's
/// own circuit) and `fixed-neurons` (NIR's `IF` steps a float voltage, as `spiking_relu` does).
pub const SKIPPED_PASSES: &[&str] = &["lower-maxpool", "fixed-neurons"];

/// Export a module (compiled without `lower-maxpool`) as a NIR graph.
pub fn export(m: &Module) -> Result<Exported, NirError> {
    let mut ex = Exporter {
        m,
        graph: Graph::default(),
        vals: HashMap::new(),
        state_vals: HashMap::new(),
        names: HashSet::new(),
        biasable: HashMap::new(),
        warnings: Vec::new(),
        warned: HashSet::new(),
    };
    ex.run()?;
    ex.graph
        .metadata
        .insert("dt".into(), Field::scalar(m.dt as f32));
    ex.graph.metadata.insert(
        "producer".into(),
        Field::Text(format!("snnc {}", env!("CARGO_PKG_VERSION"))),
    );
    ex.graph
        .metadata
        .insert("source_module".into(), Field::Text(m.name.clone()));
    Ok(Exported {
        graph: ex.graph,
        warnings: ex.warnings,
    })
}

struct Exporter<'m> {
    m: &'m Module,
    graph: Graph,
    vals: HashMap<u32, Val>,
    state_vals: HashMap<u32, Val>,
    names: HashSet<String>,
    /// Nodes whose `bias` a following `bias` op may still set: node → number of channels.
    biasable: HashMap<String, usize>,
    warnings: Vec<String>,
    warned: HashSet<&'static str>,
}

/// The NIR shape of an snnc shape: channels first from rank 2 on.
fn nir_shape(shape: &[usize]) -> Vec<usize> {
    match shape.len() {
        0 | 1 => shape.to_vec(),
        r => std::iter::once(shape[r - 1])
            .chain(shape[..r - 1].iter().copied())
            .collect(),
    }
}

/// For each NIR flat index, the snnc flat index of the same element (channels first vs last).
fn std_perm(shape: &[usize]) -> Vec<u32> {
    let n: usize = shape.iter().product();
    if shape.len() < 2 {
        return (0..n as u32).collect();
    }
    let c = shape[shape.len() - 1];
    let sp = n / c.max(1);
    let mut perm = Vec::with_capacity(n);
    for ch in 0..c {
        for p in 0..sp {
            perm.push((p * c + ch) as u32);
        }
    }
    perm
}

/// A `Flatten` of every axis of `input_type` (NIR's indices leave out the batch axis).
fn flatten(input_type: &[usize]) -> Primitive {
    Primitive::new(
        "Flatten",
        [
            ("input_type", ints(input_type)),
            ("start_dim", Field::int(0)),
            ("end_dim", Field::int(-1)),
        ],
    )
}

fn ints(v: &[usize]) -> Field {
    Field::ints(&v.iter().map(|&x| x as i64).collect::<Vec<_>>())
}

impl Val {
    /// Map per-element data in snnc order to NIR order.
    fn to_nir(&self, data: &[f32]) -> Vec<f32> {
        match &self.layout {
            Layout::Std if self.shape.len() < 2 => data.to_vec(),
            Layout::Std => std_perm(&self.shape)
                .iter()
                .map(|&i| data[i as usize])
                .collect(),
            Layout::Perm(p) => p.iter().map(|&i| data[i as usize]).collect(),
        }
    }

    fn nir_shape(&self) -> Vec<usize> {
        match self.layout {
            Layout::Std => nir_shape(&self.shape),
            Layout::Perm(_) => self.shape.clone(),
        }
    }
}

impl<'m> Exporter<'m> {
    fn err(&self, inst: &Inst, message: impl Into<String>) -> NirError {
        NirError::Export {
            value: self.m.value(inst.results[0]).name.clone(),
            op: inst.op.name().to_string(),
            message: message.into(),
        }
    }

    fn warn_once(&mut self, key: &'static str, message: String) {
        if self.warned.insert(key) {
            self.warnings.push(message);
        }
    }

    /// A fresh node name derived from an snnc name (NIR addresses nested nodes with `.`).
    fn fresh(&mut self, wanted: &str) -> String {
        let base: String = wanted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    fn add_node(&mut self, wanted: &str, p: Primitive, inputs: &[String]) -> String {
        let name = self.fresh(wanted);
        for s in inputs {
            self.graph.edges.push((s.clone(), name.clone()));
            self.biasable.remove(s);
        }
        self.graph.nodes.insert(name.clone(), Node::Prim(p));
        name
    }

    fn operand(&self, inst: &Inst, o: Operand) -> Result<Val, NirError> {
        let found = match o {
            Operand::Value(v) => self.vals.get(&v.0),
            Operand::State(s) => self.state_vals.get(&s.0),
            Operand::Const(_) => None,
        };
        found.cloned().ok_or_else(|| {
            self.err(
                inst,
                format!(
                    "reads {}, which is not a network value NIR can carry (a constant or a state that is not a synapse's)",
                    self.m.operand_name(o)
                ),
            )
        })
    }

    fn constant(&self, inst: &Inst, o: Operand) -> Result<(&'m [f32], &'m [usize]), NirError> {
        if let Operand::Const(c) = o {
            let k = self.m.constant(c);
            if let ConstData::F32(d) = &k.data {
                return Ok((d, &k.ty.shape));
            }
        }
        Err(self.err(
            inst,
            format!(
                "operand {} must be an f32 constant with its data",
                self.m.operand_name(o)
            ),
        ))
    }

    fn set(&mut self, v: snnc_ir::ValueId, val: Val) {
        self.vals.insert(v.0, val);
    }

    fn run(&mut self) -> Result<(), NirError> {
        let m = self.m;
        for &v in &m.inputs {
            let shape = m.value(v).ty.shape.clone();
            let name = self.fresh(&m.value(v).name);
            self.graph.nodes.insert(
                name.clone(),
                Node::Prim(Primitive::new(
                    "Input",
                    [("shape", ints(&nir_shape(&shape)))],
                )),
            );
            self.set(
                v,
                Val {
                    sources: vec![name],
                    scale: 1.0,
                    shape,
                    layout: Layout::Std,
                    spikes: None,
                },
            );
        }
        for inst in &m.insts {
            self.inst(inst)?;
        }
        for out in &m.outputs {
            if out.kind != OutputKind::Value {
                continue;
            }
            let val = match out.value {
                Operand::Value(v) => self.vals.get(&v.0).cloned(),
                Operand::State(s) => self.state_vals.get(&s.0).cloned(),
                Operand::Const(_) => None,
            }
            .ok_or_else(|| NirError::Export {
                value: out.name.clone(),
                op: "output".into(),
                message: "reads a value NIR cannot carry".into(),
            })?;
            let sources = self.unscaled(&val, &out.name);
            let shape = val.nir_shape();
            self.add_node(
                &out.name,
                Primitive::new("Output", [("shape", ints(&shape))]),
                &sources,
            );
        }
        Ok(())
    }

    /// The sources of `val` in its own units (scale 1): a `Scale` node is inserted when needed.
    fn unscaled(&mut self, val: &Val, name: &str) -> Vec<String> {
        if val.scale == 1.0 {
            return val.sources.clone();
        }
        let n: usize = val.shape.iter().product();
        let shape = val.nir_shape();
        let node = self.add_node(
            &format!("{name}_scale"),
            Primitive::new(
                "Scale",
                [("scale", Field::float(&shape, vec![val.scale; n]))],
            ),
            &val.sources,
        );
        vec![node]
    }

    fn inst(&mut self, inst: &Inst) -> Result<(), NirError> {
        let m = self.m;
        let name = m.value(inst.results[0]).name.clone();
        match &inst.op {
            Op::Conv(attrs) => {
                let x = self.operand(inst, inst.args[0])?;
                let (k, kshape) = self.constant(inst, inst.args[1])?;
                let d = x.shape.len() - 1;
                if !(1..=2).contains(&d) || x.layout != Layout::Std {
                    return Err(self.err(inst, "NIR has Conv1d and Conv2d: 1 or 2 spatial axes"));
                }
                let cin = x.shape[d];
                let cout = kshape[d + 1];
                let groups = attrs.groups;
                let cin_g = kshape[d];
                let cout_g = cout / groups;
                let taps: usize = kshape[..d].iter().product();
                // TensorFlow's `same` puts an odd cell of padding after; NIR's padding is
                // symmetric. Pad one more before as well and give the kernel a leading zero tap on
                // that axis: the windows then cover the same cells.
                let mut pads = Vec::new();
                let mut lead = Vec::new();
                for (ax, &k) in kshape[..d].iter().enumerate() {
                    let w = WindowAxis::new(
                        x.shape[ax],
                        k,
                        attrs.strides[ax],
                        attrs.dilation[ax],
                        attrs.padding,
                    )
                    .map_err(|e| self.err(inst, e.to_string()))?;
                    let total = ((w.output - 1) * w.stride + (w.window - 1) * w.dilation + 1)
                        .saturating_sub(w.input);
                    let odd = attrs.padding == Padding::Same && total % 2 == 1;
                    if odd && w.dilation != 1 {
                        return Err(self.err(inst, format!(
                            "padding=same pads axis {ax} by {total} cells, one more after than before, with dilation {}; NIR's padding is symmetric",
                            w.dilation
                        )));
                    }
                    pads.push(if attrs.padding == Padding::Same {
                        total.div_ceil(2)
                    } else {
                        0
                    });
                    lead.push(usize::from(odd));
                }
                let nk: Vec<usize> = kshape[..d]
                    .iter()
                    .zip(&lead)
                    .map(|(&k, &l)| k + l)
                    .collect();
                let ntaps: usize = nk.iter().product();
                // snnc [k..., cin/g, cout] → NIR [cout, cin, k...] with groups expanded.
                let mut w = vec![0f32; cout * cin * ntaps];
                for t in 0..taps {
                    // The tap's position in the (possibly larger) NIR kernel.
                    let (mut rest, mut nt) = (t, 0);
                    for ax in 0..d {
                        let inner: usize = kshape[ax + 1..d].iter().product();
                        let i = rest / inner;
                        rest %= inner;
                        let ninner: usize = nk[ax + 1..].iter().product();
                        nt += (i + lead[ax]) * ninner;
                    }
                    for ci in 0..cin_g {
                        for co in 0..cout {
                            let g = co / cout_g;
                            let src = (t * cin_g + ci) * cout + co;
                            let dst = (co * cin + g * cin_g + ci) * ntaps + nt;
                            w[dst] = k[src] * x.scale;
                        }
                    }
                }
                let mut wshape = vec![cout, cin];
                wshape.extend_from_slice(&nk);
                let kind = if d == 1 { "Conv1d" } else { "Conv2d" };
                let p = Primitive::new(
                    kind,
                    [
                        ("weight", Field::float(&wshape, w)),
                        ("bias", Field::float(&[cout], vec![0.0; cout])),
                        ("stride", ints(&attrs.strides)),
                        ("padding", ints(&pads)),
                        ("dilation", ints(&attrs.dilation)),
                        ("groups", Field::int(1)),
                        ("input_shape", ints(&x.shape[..d])),
                    ],
                );
                let node = self.add_node(&name, p, &x.sources);
                self.biasable.insert(node.clone(), cout);
                let shape = m.value(inst.results[0]).ty.shape.clone();
                self.set(
                    inst.results[0],
                    Val {
                        sources: vec![node],
                        scale: 1.0,
                        shape,
                        layout: Layout::Std,
                        spikes: None,
                    },
                );
            }
            Op::Dense => {
                let x = self.operand(inst, inst.args[0])?;
                let (w, wshape) = self.constant(inst, inst.args[1])?;
                if x.shape.len() != 1 {
                    return Err(self.err(inst, "NIR's Affine takes 1-D input: flatten first"));
                }
                let (n, o) = (wshape[0], wshape[1]);
                let perm: Vec<u32> = match &x.layout {
                    Layout::Perm(p) => p.clone(),
                    Layout::Std => (0..n as u32).collect(),
                };
                let mut wt = vec![0f32; o * n];
                for (i, &src) in perm.iter().enumerate() {
                    for r in 0..o {
                        wt[r * n + i] = w[src as usize * o + r] * x.scale;
                    }
                }
                let p = Primitive::new(
                    "Affine",
                    [
                        ("weight", Field::float(&[o, n], wt)),
                        ("bias", Field::float(&[o], vec![0.0; o])),
                    ],
                );
                let node = self.add_node(&name, p, &x.sources);
                self.biasable.insert(node.clone(), o);
                self.set(
                    inst.results[0],
                    Val {
                        sources: vec![node],
                        scale: 1.0,
                        shape: vec![o],
                        layout: Layout::Std,
                        spikes: None,
                    },
                );
            }
            Op::Bias => {
                let x = self.operand(inst, inst.args[0])?;
                let (b, bshape) = self.constant(inst, inst.args[1])?;
                self.bias(inst, &x, b, bshape)?;
                self.set(inst.results[0], x);
            }
            Op::BatchNorm { epsilon } => {
                let x = self.operand(inst, inst.args[0])?;
                let mut p = Vec::new();
                for &a in &inst.args[1..5] {
                    p.push(self.constant(inst, a)?.0);
                }
                let (gamma, beta, mean, var) = (p[0], p[1], p[2], p[3]);
                let a: Vec<f64> = gamma
                    .iter()
                    .zip(var)
                    .map(|(&g, &v)| g as f64 / (v as f64 + epsilon).sqrt())
                    .collect();
                let c: Vec<f32> = (0..a.len())
                    .map(|k| (beta[k] as f64 - a[k] * mean[k] as f64) as f32)
                    .collect();
                let a: Vec<f32> = a.iter().map(|&v| v as f32).collect();
                self.fold_affine(inst, &x, &a, &c)?;
                self.set(inst.results[0], x);
            }
            Op::Scale => {
                let x = self.operand(inst, inst.args[0])?;
                let (c, _) = self.constant(inst, inst.args[1])?;
                let n: usize = x.shape.iter().product();
                let full: Vec<f32> = (0..n).map(|i| c[i % c.len()]).collect();
                let p = Primitive::new(
                    "Scale",
                    [("scale", Field::float(&x.nir_shape(), x.to_nir(&full)))],
                );
                let node = self.add_node(&name, p, &x.sources);
                self.set(
                    inst.results[0],
                    Val {
                        sources: vec![node],
                        ..x
                    },
                );
            }
            Op::Add => {
                let vals: Vec<Val> = inst
                    .args
                    .iter()
                    .map(|&a| self.operand(inst, a))
                    .collect::<Result<_, _>>()?;
                if vals.iter().any(|v| v.layout != vals[0].layout) {
                    return Err(self.err(inst, "adds values laid out differently in NIR"));
                }
                let same_scale = vals.iter().all(|v| v.scale == vals[0].scale);
                let mut sources = Vec::new();
                for v in &vals {
                    if same_scale {
                        sources.extend(v.sources.iter().cloned());
                    } else {
                        sources.extend(self.unscaled(v, &name));
                    }
                }
                let scale = if same_scale { vals[0].scale } else { 1.0 };
                let spikes = if vals.iter().all(|v| v.spikes.is_some()) {
                    vals[0].spikes
                } else {
                    None
                };
                self.set(
                    inst.results[0],
                    Val {
                        sources,
                        scale,
                        spikes,
                        ..vals[0].clone()
                    },
                );
            }
            Op::Reshape { shape } => {
                let x = self.operand(inst, inst.args[0])?;
                if shape.len() == 1 && x.shape.len() == 1 {
                    self.set(inst.results[0], x);
                } else if shape.len() == 1 && x.layout == Layout::Std {
                    let p = flatten(&x.nir_shape());
                    let node = self.add_node(&name, p, &x.sources);
                    let perm = std_perm(&x.shape);
                    self.set(
                        inst.results[0],
                        Val {
                            sources: vec![node],
                            shape: shape.clone(),
                            layout: Layout::Perm(perm),
                            ..x
                        },
                    );
                } else {
                    return Err(self.err(inst, "NIR can only flatten to one axis"));
                }
            }
            Op::AvgPool(attrs) => {
                let x = self.operand(inst, inst.args[0])?;
                self.full_windows(inst, &x, attrs)?;
                let p = Primitive::new(
                    "AvgPool2d",
                    [
                        ("kernel_size", ints(&attrs.pool)),
                        ("stride", ints(&attrs.strides)),
                        ("padding", ints(&[0, 0])),
                    ],
                );
                let node = self.add_node(&name, p, &x.sources);
                let shape = m.value(inst.results[0]).ty.shape.clone();
                self.set(
                    inst.results[0],
                    Val {
                        sources: vec![node],
                        shape,
                        ..x
                    },
                );
            }
            Op::GlobalAvgPool => {
                let x = self.operand(inst, inst.args[0])?;
                if x.shape.len() != 3 || x.layout != Layout::Std {
                    return Err(self.err(inst, "NIR pools over two spatial axes"));
                }
                let hw = &x.shape[..2];
                let p = Primitive::new(
                    "AvgPool2d",
                    [
                        ("kernel_size", ints(hw)),
                        ("stride", ints(hw)),
                        ("padding", ints(&[0, 0])),
                    ],
                );
                let pool = self.add_node(&name, p, &x.sources);
                let c = x.shape[2];
                let node = self.add_node(&format!("{name}_flatten"), flatten(&[c, 1, 1]), &[pool]);
                self.set(
                    inst.results[0],
                    Val {
                        sources: vec![node],
                        shape: vec![c],
                        layout: Layout::Std,
                        ..x
                    },
                );
            }
            Op::MaxPool(attrs) => {
                let x = self.operand(inst, inst.args[0])?;
                self.full_windows(inst, &x, attrs)?;
                let y = self.max_circuit(inst, &x, &attrs.pool, &attrs.strides, &name)?;
                self.set(inst.results[0], y);
            }
            Op::GlobalMaxPool => {
                let x = self.operand(inst, inst.args[0])?;
                if x.shape.len() != 3 || x.layout != Layout::Std {
                    return Err(self.err(inst, "NIR pools over two spatial axes"));
                }
                let hw = x.shape[..2].to_vec();
                let y = self.max_circuit(inst, &x, &hw, &hw, &name)?;
                let c = x.shape[2];
                let node =
                    self.add_node(&format!("{name}_flatten"), flatten(&[c, 1, 1]), &y.sources);
                self.set(
                    inst.results[0],
                    Val {
                        sources: vec![node],
                        shape: vec![c],
                        layout: Layout::Std,
                        ..y
                    },
                );
            }
            Op::Neuron(n) => {
                for g in 0..inst.groups() {
                    let (args, results) = inst.group(g);
                    let gname = m.value(results[0]).name.clone();
                    let x = self.operand(inst, args[0])?;
                    match n.model {
                        NeuronModel::IfNeuron => {}
                        NeuronModel::SpikingRelu | NeuronModel::FixedRelu => self.warn_once(
                            "spiking_relu",
                            format!(
                                "`{gname}` and the other spiking_relu layers export as NIR's IF, which integrates negative input where Nengo's spiking ReLU drops it: spikes differ wherever a layer's input current goes negative. Convert with `--swap relu=if` for an exact export"
                            ),
                        ),
                        _ if !n.model.is_spiking() => {
                            return Err(self.err(inst, format!(
                                "`{}` is a rate neuron; NIR hardware runs spiking neurons: convert with --spiking",
                                n.model.name()
                            )));
                        }
                        _ => {
                            return Err(self.err(inst, format!(
                                "`{}` has no NIR counterpart yet (IF-type neurons export: use --swap relu=if)",
                                n.model.name()
                            )));
                        }
                    }
                    let count: usize = x.shape.iter().product();
                    let v0 = self.initial(inst, args[1], count)?;
                    let r = vec![(n.gain as f32) * x.scale; count];
                    let theta: Vec<f32> = v0.iter().map(|&v| 1.0 - v).collect();
                    let reset: Vec<f32> = v0.iter().map(|&v| -v).collect();
                    let shape = x.nir_shape();
                    let mut p = Primitive::new(
                        "IF",
                        [
                            ("r", Field::float(&shape, x.to_nir(&r))),
                            ("v_threshold", Field::float(&shape, x.to_nir(&theta))),
                            ("v_reset", Field::float(&shape, x.to_nir(&reset))),
                        ],
                    );
                    subtract_metadata(&mut p);
                    let node = self.add_node(&gname, p, &x.sources);
                    let h = (n.amplitude as f32) / (m.dt as f32);
                    self.set(
                        results[0],
                        Val {
                            sources: vec![node],
                            scale: h,
                            spikes: Some(n.amplitude),
                            ..x
                        },
                    );
                }
            }
            Op::Lowpass { tau } => {
                self.warn_once(
                    "lowpass",
                    format!(
                        "`{name}`: synapses export as LI nodes, whose output consumers read in the same step; snnc's neurons read a synapse one step later (NengoDL's timing), so spike times shift by a step per synapse"
                    ),
                );
                let decay = snnc_ir::semantics::lowpass_decay(m.dt, *tau);
                let tau_nir = (m.dt / (1.0 - decay as f64)) as f32;
                for g in 0..inst.groups() {
                    let (args, results) = inst.group(g);
                    let gname = m.value(results[0]).name.clone();
                    let x = self.operand(inst, args[0])?;
                    let count: usize = x.shape.iter().product();
                    let shape = x.nir_shape();
                    let p = Primitive::new(
                        "LI",
                        [
                            ("tau", Field::float(&shape, vec![tau_nir; count])),
                            ("r", Field::float(&shape, vec![1.0; count])),
                            ("v_leak", Field::float(&shape, vec![0.0; count])),
                        ],
                    );
                    let node = self.add_node(&gname, p, &x.sources);
                    let val = Val {
                        sources: vec![node],
                        ..x
                    };
                    if let Operand::State(s) = args[1] {
                        self.state_vals.insert(s.0, val.clone());
                    }
                    self.set(results[0], val);
                }
            }
            Op::Softmax
                if m.end_of_step_values().any(|v| v == inst.results[0])
                    && !m
                        .insts
                        .iter()
                        .any(|i| i.args.contains(&Operand::Value(inst.results[0]))) =>
            {
                let x = self.operand(inst, inst.args[0])?;
                self.warnings.push(format!(
                    "`{name}`: softmax has no NIR counterpart; it is the last op, so the graph's output is its input (the logits)"
                ));
                self.set(inst.results[0], x);
            }
            op => {
                return Err(self.err(inst, format!(
                    "`{}` has no NIR counterpart{}",
                    op.name(),
                    match op {
                        Op::Sparse { .. } | Op::Gather { .. } => " (export from the Keras model, or a module compiled without lower-maxpool, so max pooling is still `max_pool`)",
                        _ => "",
                    }
                )));
            }
        }
        Ok(())
    }

    /// Initial voltages of a neuron's state operand (seed 0 for uniform draws).
    fn initial(&self, inst: &Inst, o: Operand, count: usize) -> Result<Vec<f32>, NirError> {
        let Operand::State(s) = o else {
            return Err(self.err(inst, "the neuron's voltage must be a state"));
        };
        let mut v = vec![0f32; count];
        match &self.m.state(s).init {
            StateInit::Zeros => {}
            StateInit::Uniform { lo, hi, seed } => {
                snnc_ir::rng::uniform_fill(&mut v, *lo, *hi, *seed, 0)
            }
            StateInit::Const(c) => match &self.m.constant(*c).data {
                ConstData::F32(d) if d.len() == count => v.copy_from_slice(d),
                _ => {
                    return Err(self.err(
                        inst,
                        "initial voltage constant has no f32 data of the state's size",
                    ));
                }
            },
        }
        Ok(v)
    }

    /// Fold a per-channel `y = a·x + c` (inference batch normalisation) into the Affine or Conv
    /// node that computes `x` and that nothing else reads yet.
    fn fold_affine(&mut self, inst: &Inst, x: &Val, a: &[f32], c: &[f32]) -> Result<(), NirError> {
        let target = match x.sources.as_slice() {
            [one] if x.scale == 1.0 && self.biasable.get(one) == Some(&a.len()) => one.clone(),
            _ => {
                return Err(self.err(
                    inst,
                    "NIR has no batch normalisation: snnc folds it into the Affine or Conv node right before it, and there is none here",
                ));
            }
        };
        let Some(Node::Prim(p)) = self.graph.nodes.get_mut(&target) else {
            return Err(self.err(inst, "the node before it is missing"));
        };
        if let Some(Field::Float { data, .. }) = p.fields.get_mut("weight") {
            // Affine (out, in) and Conv (C_out, C_in, k...) both lead with the output channel.
            let per = data.len() / a.len();
            for (k, row) in data.chunks_mut(per).enumerate() {
                row.iter_mut().for_each(|w| *w *= a[k]);
            }
        }
        if let Some(Field::Float { data, .. }) = p.fields.get_mut("bias") {
            for (k, b) in data.iter_mut().enumerate() {
                *b = a[k] * *b + c[k];
            }
        }
        Ok(())
    }

    /// Fold a `bias` op into the node that computes its input.
    fn bias(&mut self, inst: &Inst, x: &Val, b: &[f32], bshape: &[usize]) -> Result<(), NirError> {
        let channels = *x.shape.last().unwrap_or(&1);
        if bshape.len() != 1 || bshape[0] != channels || x.scale != 1.0 || x.sources.len() != 1 {
            return Err(self.err(
                inst,
                "NIR carries biases inside Affine and Conv nodes; this bias does not follow one",
            ));
        }
        let mut target = x.sources[0].clone();
        if !self.biasable.contains_key(&target) {
            // A bias after a synapse: move it before the synapse (the LI filters it).
            let into: Vec<String> = self
                .graph
                .edges
                .iter()
                .filter(|(_, d)| *d == target)
                .map(|(s, _)| s.clone())
                .collect();
            let is_li =
                matches!(self.graph.nodes.get(&target), Some(Node::Prim(p)) if p.kind == "LI");
            if is_li
                && into.len() == 1
                && self
                    .graph
                    .nodes
                    .get(&into[0])
                    .is_some_and(|n| matches!(n.kind(), "Affine" | "Conv1d" | "Conv2d"))
            {
                let name = self.m.value(inst.results[0]).name.clone();
                self.warn_once(
                    "bias",
                    format!("`{name}`: biases after a synapse move before it in NIR (the LI node filters them): they reach full size after a few time constants instead of at once"),
                );
                target = into[0].clone();
            } else {
                return Err(self.err(inst, "NIR carries biases inside Affine and Conv nodes; this bias does not follow one"));
            }
        }
        if let Some(Node::Prim(p)) = self.graph.nodes.get_mut(&target)
            && let Some(Field::Float { data, .. }) = p.fields.get_mut("bias")
            && data.len() == b.len()
        {
            for (d, &v) in data.iter_mut().zip(b) {
                *d += v;
            }
            return Ok(());
        }
        Err(self.err(inst, "the node before this bias has no matching bias field"))
    }

    /// Pooling whose every window lies fully inside the input (so NIR's fixed-size windows agree
    /// with snnc's, which never count padding).
    fn full_windows(&self, inst: &Inst, x: &Val, a: &PoolAttrs) -> Result<(), NirError> {
        if x.shape.len() != 3 || x.layout != Layout::Std {
            return Err(self.err(inst, "NIR pools over two spatial axes"));
        }
        for ax in 0..2 {
            let w = WindowAxis::new(x.shape[ax], a.pool[ax], a.strides[ax], 1, a.padding)
                .map_err(|e| self.err(inst, e.to_string()))?;
            if w.pad_before != 0 || (w.output - 1) * w.stride + w.window > w.input {
                return Err(self.err(inst, format!(
                    "windows on axis {ax} reach into padding, which snnc never counts and NIR's pooling would; only pooling whose windows fit the input exports"
                )));
            }
        }
        Ok(())
    }

    /// The max-pool circuit of `lower-maxpool` in NIR primitives (see the module docs).
    fn max_circuit(
        &mut self,
        inst: &Inst,
        x: &Val,
        pool: &[usize],
        strides: &[usize],
        name: &str,
    ) -> Result<Val, NirError> {
        let Some(amplitude) = x.spikes else {
            return Err(self.err(inst, "max pooling of a value that is not a spike train needs rate units, which NIR hardware does not have"));
        };
        let c = x.shape[2];
        let (h_out, w_out) = (
            (x.shape[0] - pool[0]) / strides[0] + 1,
            (x.shape[1] - pool[1]) / strides[1] + 1,
        );
        let taps = pool[0] * pool[1];
        let unit_gain = (1.0 / amplitude) as f32;
        let h = x.scale;
        // Level 0 reads the input through the pooling window; later levels read the previous
        // level's slots (channel = slot·C + c) through 1×1 maps.
        let mut slots = taps;
        let mut sources = x.sources.clone();
        let mut level = 0;
        let mut first = true;
        if taps == 1 {
            return Err(self.err(inst, "a 1×1 max pool is the identity; remove it"));
        }
        while slots > 1 {
            let pairs = slots / 2;
            let unpaired = slots % 2;
            let next_slots = pairs + unpaired;
            let (kh, kw, sh, sw, cin) = if first {
                (pool[0], pool[1], strides[0], strides[1], c)
            } else {
                (1, 1, 1, 1, slots * c)
            };
            let kt = kh * kw;
            // Where slot `t` of this level lives: (input channel offset, kernel tap).
            let at = |t: usize, ch: usize| -> (usize, usize) {
                if first { (ch, t) } else { (t * c + ch, 0) }
            };
            let mut diff = vec![0f32; pairs * c * cin * kt];
            let mut select = vec![0f32; next_slots * c * cin * kt];
            for k in 0..pairs {
                for ch in 0..c {
                    let o = k * c + ch;
                    let (ia, ta) = at(2 * k, ch);
                    let (ib, tb) = at(2 * k + 1, ch);
                    diff[(o * cin + ia) * kt + ta] = h;
                    diff[(o * cin + ib) * kt + tb] = -h;
                    select[(o * cin + ib) * kt + tb] = 1.0;
                }
            }
            if unpaired == 1 {
                for ch in 0..c {
                    let o = pairs * c + ch;
                    let (i, t) = at(slots - 1, ch);
                    select[(o * cin + i) * kt + t] = 1.0;
                }
            }
            let in_shape: Vec<usize> = if first {
                x.shape[..2].to_vec()
            } else {
                vec![h_out, w_out]
            };
            let conv = |w: Vec<f32>, cout: usize| {
                Primitive::new(
                    "Conv2d",
                    [
                        ("weight", Field::float(&[cout, cin, kh, kw], w)),
                        ("bias", Field::float(&[cout], vec![0.0; cout])),
                        ("stride", ints(&[sh, sw])),
                        ("padding", ints(&[0, 0])),
                        ("dilation", ints(&[1, 1])),
                        ("groups", Field::int(1)),
                        ("input_shape", ints(&in_shape)),
                    ],
                )
            };
            let prefix = format!("{name}_l{level}");
            let d = self.add_node(&format!("{prefix}_diff"), conv(diff, pairs * c), &sources);
            let s = self.add_node(
                &format!("{prefix}_b"),
                conv(select, next_slots * c),
                &sources,
            );
            let units = pairs * c * h_out * w_out;
            let ushape = [pairs * c, h_out, w_out];
            let mut p = Primitive::new(
                "IF",
                [
                    ("r", Field::float(&ushape, vec![unit_gain; units])),
                    // Initial voltage 0.5 with integer steps: θ = 0.5, reset to 0 is exact under
                    // both reset rules.
                    ("v_threshold", Field::float(&ushape, vec![0.5; units])),
                    ("v_reset", Field::float(&ushape, vec![0.0; units])),
                ],
            );
            subtract_metadata(&mut p);
            p.metadata.insert(
                "circuit".into(),
                Field::Text(format!("max pool `{name}`, level {level}")),
            );
            let mut u = self.add_node(&format!("{prefix}_u"), p, &[d]);
            if unpaired == 1 {
                // Place the units' spikes in the first `pairs` slots of the next level.
                let mut e = vec![0f32; next_slots * c * pairs * c];
                for o in 0..pairs * c {
                    e[o * pairs * c + o] = 1.0;
                }
                let embed = Primitive::new(
                    "Conv2d",
                    [
                        (
                            "weight",
                            Field::float(&[next_slots * c, pairs * c, 1, 1], e),
                        ),
                        (
                            "bias",
                            Field::float(&[next_slots * c], vec![0.0; next_slots * c]),
                        ),
                        ("stride", ints(&[1, 1])),
                        ("padding", ints(&[0, 0])),
                        ("dilation", ints(&[1, 1])),
                        ("groups", Field::int(1)),
                        ("input_shape", ints(&[h_out, w_out])),
                    ],
                );
                u = self.add_node(&format!("{prefix}_place"), embed, &[u]);
            }
            sources = vec![s, u];
            slots = next_slots;
            first = false;
            level += 1;
        }
        Ok(Val {
            sources,
            scale: h,
            shape: vec![h_out, w_out, c],
            layout: Layout::Std,
            spikes: Some(amplitude),
        })
    }
}

/// Record snnc's reset rule on an `IF` node: subtract 1 (NIR itself leaves the rule open).
fn subtract_metadata(p: &mut Primitive) {
    p.metadata
        .insert("reset".into(), Field::Text("subtract".into()));
    p.metadata.insert("reset_amount".into(), Field::scalar(1.0));
}

/// Fold every `IF` node's gain `r` into the weights and bias of the map that feeds it, so that
/// `r = 1` everywhere: for consumers that ignore `r` (Norse builds its `IF` cells without it) and
/// hardware whose neurons have no input gain. A map qualifies when it is an `Affine`/`Conv`
/// feeding only that node, directly or through one linear `LI` (`v_leak = 0`) that feeds only
/// that node, and, for a convolution, when `r` is one value per output channel. Mathematically
/// the same network; the currents round differently, so spikes may move where a voltage lands
/// within rounding of the threshold. Returns a warning for each node left unfolded.
pub fn fold_gains(graph: &mut Graph) -> Vec<String> {
    let mut warnings = Vec::new();
    let ifs: Vec<String> = graph
        .nodes
        .iter()
        .filter(|(_, n)| n.kind() == "IF")
        .map(|(k, _)| k.clone())
        .collect();
    let sources = |g: &Graph, n: &str| -> Vec<String> {
        g.edges
            .iter()
            .filter(|(_, d)| d == n)
            .map(|(s, _)| s.clone())
            .collect()
    };
    let consumers = |g: &Graph, n: &str| g.edges.iter().filter(|(s, _)| s == n).count();
    let floats = |g: &Graph, n: &str, f: &str| -> Option<Vec<f32>> {
        match g.nodes.get(n) {
            Some(Node::Prim(p)) => match p.fields.get(f) {
                Some(Field::Float { data, .. }) => Some(data.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    for name in ifs {
        let Some(r) = floats(graph, &name, "r") else {
            continue;
        };
        if r.iter().all(|&x| x == 1.0) {
            continue;
        }
        // The map to fold into: the single source, or the single source of a linear LI.
        let mut target = match sources(graph, &name).as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        if let Some(t) = target.clone()
            && graph.nodes.get(&t).map(Node::kind) == Some("LI")
        {
            let linear = floats(graph, &t, "v_leak").is_some_and(|v| v.iter().all(|&x| x == 0.0));
            target = match sources(graph, &t).as_slice() {
                [one] if linear && consumers(graph, &t) == 1 => Some(one.clone()),
                _ => None,
            };
        }
        let folded = target.filter(|t| consumers(graph, t) == 1).and_then(|t| {
            let Some(Node::Prim(p)) = graph.nodes.get_mut(&t) else {
                return None;
            };
            if !matches!(p.kind.as_str(), "Affine" | "Conv1d" | "Conv2d") {
                return None;
            }
            let outs = match p.fields.get("bias") {
                Some(Field::Float { data, .. }) => data.len(),
                _ => return None,
            };
            // One factor per output channel (per output, for an Affine).
            let per = r.len() / outs.max(1);
            if outs == 0 || r.len() != outs * per {
                return None;
            }
            let factor: Vec<f32> = r.chunks(per).map(|c| c[0]).collect();
            if r.chunks(per)
                .zip(&factor)
                .any(|(c, f)| c.iter().any(|x| x != f))
            {
                return None;
            }
            if let Some(Field::Float { data, .. }) = p.fields.get_mut("weight") {
                let row = data.len() / outs;
                for (w, f) in data.chunks_mut(row).zip(&factor) {
                    w.iter_mut().for_each(|x| *x *= f);
                }
            }
            if let Some(Field::Float { data, .. }) = p.fields.get_mut("bias") {
                data.iter_mut().zip(&factor).for_each(|(b, f)| *b *= f);
            }
            Some(())
        });
        match folded {
            Some(()) => {
                if let Some(Node::Prim(p)) = graph.nodes.get_mut(&name)
                    && let Some(Field::Float { data, .. }) = p.fields.get_mut("r")
                {
                    data.iter_mut().for_each(|x| *x = 1.0);
                }
            }
            None => warnings.push(format!(
                "`{name}`: its gain r stays in the IF node (it is not fed by one Affine or Conv node of its own with one gain per output channel)"
            )),
        }
    }
    warnings
}
