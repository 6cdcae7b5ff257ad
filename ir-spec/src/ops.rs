//! The closed set of operations, their attributes, their text spelling and their shape rules.

use crate::geometry::WindowAxis;
use crate::info::OpClass;
use crate::types::{DType, TensorType};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Padding mode of a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Padding {
    /// No padding: every window lies inside the input.
    Valid,
    /// Output length `⌈in/stride⌉`, padded as TensorFlow does (extra cell at the end).
    Same,
}

/// Attributes of `conv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvAttrs {
    /// Stride per spatial axis.
    pub strides: Vec<usize>,
    /// Padding mode.
    pub padding: Padding,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
    /// Number of channel groups.
    pub groups: usize,
}

/// Attributes of `avg_pool` and `max_pool`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolAttrs {
    /// Window size per spatial axis.
    pub pool: Vec<usize>,
    /// Stride per spatial axis.
    pub strides: Vec<usize>,
    /// Padding mode; padded cells never count (excluded from averages, never the maximum).
    pub padding: Padding,
}

/// The neuron model of a neuron op. Rate models are stateless; spiking models carry state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NeuronModel {
    /// `max(0, J)`.
    Relu,
    /// `J` for `J ≥ 0`, `negative_slope·J` otherwise.
    LeakyRelu {
        /// Slope below zero.
        negative_slope: f64,
    },
    /// `1 / (1 + e^−J)`.
    Sigmoid,
    /// `tanh(J)`.
    Tanh,
    /// Nengo's LIFRate: `1 / (tau_ref + tau_rc·ln(1 + 1/(J−1)))` for `J > 1`, else 0.
    LifRate {
        /// Membrane time constant (s).
        tau_rc: f64,
        /// Refractory period (s).
        tau_ref: f64,
    },
    /// Nengo's SpikingRectifiedLinear; state: voltage.
    SpikingRelu,
    /// NengoDL's SpikingLeakyReLU; state: voltage.
    SpikingLeakyRelu {
        /// Slope below zero (negative spikes).
        negative_slope: f64,
    },
    /// Integrate-and-fire, reset by subtraction, no floor on the membrane; state: voltage.
    IfNeuron,
    /// Nengo's LIF; state: voltage and refractory time.
    Lif {
        /// Membrane time constant (s).
        tau_rc: f64,
        /// Refractory period (s).
        tau_ref: f64,
        /// Lowest voltage the membrane is clamped to.
        min_voltage: f64,
    },
}

impl NeuronModel {
    /// The op name in text.
    pub fn name(&self) -> &'static str {
        match self {
            NeuronModel::Relu => "relu",
            NeuronModel::LeakyRelu { .. } => "leaky_relu",
            NeuronModel::Sigmoid => "sigmoid",
            NeuronModel::Tanh => "tanh",
            NeuronModel::LifRate { .. } => "lif_rate",
            NeuronModel::SpikingRelu => "spiking_relu",
            NeuronModel::SpikingLeakyRelu { .. } => "spiking_leaky_relu",
            NeuronModel::IfNeuron => "if_neuron",
            NeuronModel::Lif { .. } => "lif",
        }
    }

    /// Number of state tensors the model carries (operands after the current; results after the output).
    pub fn num_states(&self) -> usize {
        match self {
            NeuronModel::SpikingRelu
            | NeuronModel::SpikingLeakyRelu { .. }
            | NeuronModel::IfNeuron => 1,
            NeuronModel::Lif { .. } => 2,
            _ => 0,
        }
    }

    /// True for models whose output is a spike train.
    pub fn is_spiking(&self) -> bool {
        self.num_states() > 0
    }
}

/// A neuron population: `output = amplitude · model(gain · J)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// The model.
    pub model: NeuronModel,
    /// Multiplies the input current (NengoDL's `scale_firing_rates` sets it).
    pub gain: f64,
    /// Multiplies the output; a spike has height `amplitude/dt`.
    pub amplitude: f64,
}

/// Every operation of the IR. See SPEC.md for the exact semantics of each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// `x[..., n] · w[n, m]`.
    Dense,
    /// Cross-correlation over 1-3 spatial axes, kernel `[k..., cin/groups, cout]`.
    Conv(ConvAttrs),
    /// Sparse linear map on the flattened input: `y[r] += w[k]·x[c]` for `idx[k] = (r, c)`.
    Sparse {
        /// Result shape (written as the result type).
        shape: Vec<usize>,
    },
    /// `y[i] = x[idx[i]]` on flattened tensors.
    Gather {
        /// Result shape (written as the result type).
        shape: Vec<usize>,
    },
    /// Adds a constant broadcast over leading axes.
    Bias,
    /// Multiplies by a tensor broadcast over leading axes.
    Scale,
    /// Elementwise sum of two or more tensors of one type.
    Add,
    /// Average pooling (padding excluded from the count).
    AvgPool(PoolAttrs),
    /// Max pooling (padding never wins).
    MaxPool(PoolAttrs),
    /// Mean over all spatial axes.
    GlobalAvgPool,
    /// Maximum over all spatial axes.
    GlobalMaxPool,
    /// Inference batch normalisation over the last axis.
    BatchNorm {
        /// Added to the variance.
        epsilon: f64,
    },
    /// Concatenation along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Same elements, new shape (written as the result type).
    Reshape {
        /// Result shape.
        shape: Vec<usize>,
    },
    /// Axis permutation: result axis `i` is input axis `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Zero padding, `[before, after]` per axis.
    Pad {
        /// Cells added before and after on each axis.
        pads: Vec<[usize; 2]>,
    },
    /// Nearest-neighbour upsampling: each spatial cell repeated `factors[i]` times.
    Upsample {
        /// Repeat factor per spatial axis.
        factors: Vec<usize>,
    },
    /// Softmax over the last axis (not a neuron; allowed only as a readout).
    Softmax,
    /// A neuron population.
    Neuron(Neuron),
    /// Nengo's zero-order-hold lowpass synapse.
    Lowpass {
        /// Time constant (s).
        tau: f64,
    },
    /// Nengo's zero-order-hold alpha synapse.
    Alpha {
        /// Time constant (s).
        tau: f64,
    },
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exact(usize),
    /// At least this many.
    AtLeast(usize),
    /// A positive multiple of this many: a lane-wise op (neuron or synapse) applied to one or
    /// more independent groups at once, each with its own operands and results (see `merge`).
    Groups(usize),
}

/// An attribute value as written in text: a number, a word, or a list.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// A number (integers are exact).
    Num(f64),
    /// A bare word such as `same`.
    Word(String),
    /// `[a, b, ...]`.
    List(Vec<AttrValue>),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Num(x) => f.write_str(&format_f64(*x)),
            AttrValue::Word(w) => f.write_str(w),
            AttrValue::List(items) => {
                f.write_str("[")?;
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{it}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Shortest text that parses back to exactly `x` (integers without a fraction; exponent form
/// outside `[1e-5, 1e16)`).
pub fn format_f64(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Shortest text that parses back to exactly `x`, same rules as [`format_f64`].
pub fn format_f32(x: f32) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

fn ints(v: &[usize]) -> AttrValue {
    AttrValue::List(v.iter().map(|&x| AttrValue::Num(x as f64)).collect())
}

fn padding_word(p: Padding) -> AttrValue {
    AttrValue::Word(match p {
        Padding::Valid => "valid".into(),
        Padding::Same => "same".into(),
    })
}

const LIF_TAU_RC: f64 = 0.02;
const LIF_TAU_REF: f64 = 0.002;

impl Op {
    /// The op name in text.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Dense => "dense",
            Op::Conv(_) => "conv",
            Op::Sparse { .. } => "sparse",
            Op::Gather { .. } => "gather",
            Op::Bias => "bias",
            Op::Scale => "scale",
            Op::Add => "add",
            Op::AvgPool(_) => "avg_pool",
            Op::MaxPool(_) => "max_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::GlobalMaxPool => "global_max_pool",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Concat { .. } => "concat",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Pad { .. } => "pad",
            Op::Upsample { .. } => "upsample",
            Op::Softmax => "softmax",
            Op::Neuron(n) => n.model.name(),
            Op::Lowpass { .. } => "lowpass",
            Op::Alpha { .. } => "alpha",
        }
    }

    /// Every op name the text format knows.
    pub const NAMES: &'static [&'static str] = &[
        "dense",
        "conv",
        "sparse",
        "gather",
        "bias",
        "scale",
        "add",
        "avg_pool",
        "max_pool",
        "global_avg_pool",
        "global_max_pool",
        "batch_norm",
        "concat",
        "reshape",
        "transpose",
        "pad",
        "upsample",
        "softmax",
        "relu",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "lif_rate",
        "spiking_relu",
        "spiking_leaky_relu",
        "if_neuron",
        "lif",
        "lowpass",
        "alpha",
    ];

    /// Operand count.
    pub fn arity(&self) -> Arity {
        match self {
            Op::Dense | Op::Bias | Op::Scale | Op::Gather { .. } => Arity::Exact(2),
            Op::Conv(_) => Arity::Exact(2),
            Op::Sparse { .. } => Arity::Exact(3),
            Op::Add => Arity::AtLeast(2),
            Op::Concat { .. } => Arity::AtLeast(1),
            Op::BatchNorm { .. } => Arity::Exact(5),
            Op::Neuron(_) | Op::Lowpass { .. } | Op::Alpha { .. } => {
                Arity::Groups(self.group_arity().expect("lane-wise ops group"))
            }
            _ => Arity::Exact(1),
        }
    }

    /// Operands per group of a lane-wise op that may apply to several groups at once (neurons and
    /// synapses); `None` for every other op.
    pub fn group_arity(&self) -> Option<usize> {
        match self {
            Op::Neuron(n) => Some(1 + n.model.num_states()),
            Op::Lowpass { .. } => Some(2),
            Op::Alpha { .. } => Some(3),
            _ => None,
        }
    }

    /// Number of results (per group, for ops with [`Op::group_arity`]).
    pub fn num_results(&self) -> usize {
        match self {
            Op::Neuron(n) => 1 + n.model.num_states(),
            Op::Alpha { .. } => 2,
            _ => 1,
        }
    }

    /// How many groups an instruction of this op with `num_args` operands computes (1 for ops
    /// that do not group).
    pub fn groups(&self, num_args: usize) -> usize {
        match self.group_arity() {
            Some(k) => num_args / k,
            None => 1,
        }
    }

    /// True when the op may remain in a module verified for the neural target: linear maps,
    /// index maps, neurons and synapses. `max_pool`, `global_max_pool`, `batch_norm` and
    /// `softmax` are not neural.
    pub fn is_neural(&self) -> bool {
        !matches!(
            self,
            Op::MaxPool(_) | Op::GlobalMaxPool | Op::BatchNorm { .. } | Op::Softmax
        )
    }

    /// The op's class: what passes and backends may assume about how its results depend on its
    /// operands (see [`OpClass`]).
    pub fn class(&self) -> OpClass {
        match self {
            Op::Neuron(_) => OpClass::Neuron,
            Op::Lowpass { .. } | Op::Alpha { .. } => OpClass::Synapse,
            Op::Bias | Op::Scale | Op::Add | Op::BatchNorm { .. } => OpClass::LaneWise,
            Op::Dense | Op::Conv(_) | Op::Sparse { .. } | Op::AvgPool(_) | Op::GlobalAvgPool => {
                OpClass::Linear
            }
            Op::Gather { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Pad { .. }
            | Op::Upsample { .. }
            | Op::Concat { .. } => OpClass::IndexMap,
            Op::MaxPool(_) | Op::GlobalMaxPool | Op::Softmax => OpClass::Other,
        }
    }

    /// The attributes as printed, in canonical order, defaults omitted.
    pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
        let num = AttrValue::Num;
        let mut a = Vec::new();
        match self {
            Op::Conv(c) => {
                a.push(("strides", ints(&c.strides)));
                a.push(("padding", padding_word(c.padding)));
                if c.dilation.iter().any(|&d| d != 1) {
                    a.push(("dilation", ints(&c.dilation)));
                }
                if c.groups != 1 {
                    a.push(("groups", num(c.groups as f64)));
                }
            }
            Op::AvgPool(p) | Op::MaxPool(p) => {
                a.push(("pool", ints(&p.pool)));
                a.push(("strides", ints(&p.strides)));
                a.push(("padding", padding_word(p.padding)));
            }
            Op::BatchNorm { epsilon } => a.push(("epsilon", num(*epsilon))),
            Op::Concat { axis } => a.push(("axis", num(*axis as f64))),
            Op::Transpose { perm } => a.push(("perm", ints(perm))),
            Op::Pad { pads } => a.push((
                "pads",
                AttrValue::List(pads.iter().map(|p| ints(p)).collect()),
            )),
            Op::Upsample { factors } => a.push(("factors", ints(factors))),
            Op::Neuron(n) => {
                match &n.model {
                    NeuronModel::LeakyRelu { negative_slope }
                    | NeuronModel::SpikingLeakyRelu { negative_slope } => {
                        a.push(("negative_slope", num(*negative_slope)))
                    }
                    NeuronModel::LifRate { tau_rc, tau_ref } => {
                        if *tau_rc != LIF_TAU_RC {
                            a.push(("tau_rc", num(*tau_rc)));
                        }
                        if *tau_ref != LIF_TAU_REF {
                            a.push(("tau_ref", num(*tau_ref)));
                        }
                    }
                    NeuronModel::Lif {
                        tau_rc,
                        tau_ref,
                        min_voltage,
                    } => {
                        if *tau_rc != LIF_TAU_RC {
                            a.push(("tau_rc", num(*tau_rc)));
                        }
                        if *tau_ref != LIF_TAU_REF {
                            a.push(("tau_ref", num(*tau_ref)));
                        }
                        if *min_voltage != 0.0 {
                            a.push(("min_voltage", num(*min_voltage)));
                        }
                    }
                    _ => {}
                }
                if n.gain != 1.0 {
                    a.push(("gain", num(n.gain)));
                }
                if n.amplitude != 1.0 {
                    a.push(("amplitude", num(n.amplitude)));
                }
            }
            Op::Lowpass { tau } | Op::Alpha { tau } => a.push(("tau", num(*tau))),
            _ => {}
        }
        a
    }

    /// Build an op from its text name, attributes and annotated result types (which give the
    /// shape of `reshape`, `gather` and `sparse`). Errors say which attribute is wrong.
    pub fn from_text(
        name: &str,
        attrs: Vec<(String, AttrValue)>,
        result_types: &[TensorType],
    ) -> Result<Op, String> {
        let mut a = AttrReader { op: name, attrs };
        let result_shape = || -> Result<Vec<usize>, String> {
            match result_types {
                [t] => Ok(t.shape.clone()),
                _ => Err(format!("`{name}` has exactly one result type")),
            }
        };
        let neuron = |model: NeuronModel, a: &mut AttrReader| -> Result<Op, String> {
            let gain = a.opt_f64("gain")?.unwrap_or(1.0);
            let amplitude = a.opt_f64("amplitude")?.unwrap_or(1.0);
            Ok(Op::Neuron(Neuron {
                model,
                gain,
                amplitude,
            }))
        };
        let op = match name {
            "dense" => Op::Dense,
            "conv" => {
                let strides = a.req_ints("strides")?;
                let padding = a.req_padding()?;
                let dilation = a
                    .opt_ints("dilation")?
                    .unwrap_or_else(|| vec![1; strides.len()]);
                let groups = a.opt_usize("groups")?.unwrap_or(1);
                Op::Conv(ConvAttrs {
                    strides,
                    padding,
                    dilation,
                    groups,
                })
            }
            "sparse" => Op::Sparse {
                shape: result_shape()?,
            },
            "gather" => Op::Gather {
                shape: result_shape()?,
            },
            "bias" => Op::Bias,
            "scale" => Op::Scale,
            "add" => Op::Add,
            "avg_pool" | "max_pool" => {
                let p = PoolAttrs {
                    pool: a.req_ints("pool")?,
                    strides: a.req_ints("strides")?,
                    padding: a.req_padding()?,
                };
                if name == "avg_pool" {
                    Op::AvgPool(p)
                } else {
                    Op::MaxPool(p)
                }
            }
            "global_avg_pool" => Op::GlobalAvgPool,
            "global_max_pool" => Op::GlobalMaxPool,
            "batch_norm" => Op::BatchNorm {
                epsilon: a.req_f64("epsilon")?,
            },
            "concat" => Op::Concat {
                axis: a.req_usize("axis")?,
            },
            "reshape" => Op::Reshape {
                shape: result_shape()?,
            },
            "transpose" => Op::Transpose {
                perm: a.req_ints("perm")?,
            },
            "pad" => {
                let v = a.take("pads").ok_or("`pad` needs attribute `pads`")?;
                let err = || "`pads` must be a list of [before,after] pairs".to_string();
                let AttrValue::List(items) = v else {
                    return Err(err());
                };
                let mut pads = Vec::new();
                for it in items {
                    let p = as_ints(&it).ok_or_else(err)?;
                    if p.len() != 2 {
                        return Err(err());
                    }
                    pads.push([p[0], p[1]]);
                }
                Op::Pad { pads }
            }
            "upsample" => Op::Upsample {
                factors: a.req_ints("factors")?,
            },
            "softmax" => Op::Softmax,
            "relu" => neuron(NeuronModel::Relu, &mut a)?,
            "sigmoid" => neuron(NeuronModel::Sigmoid, &mut a)?,
            "tanh" => neuron(NeuronModel::Tanh, &mut a)?,
            "spiking_relu" => neuron(NeuronModel::SpikingRelu, &mut a)?,
            "if_neuron" => neuron(NeuronModel::IfNeuron, &mut a)?,
            "leaky_relu" => {
                let negative_slope = a.req_f64("negative_slope")?;
                neuron(NeuronModel::LeakyRelu { negative_slope }, &mut a)?
            }
            "spiking_leaky_relu" => {
                let negative_slope = a.req_f64("negative_slope")?;
                neuron(NeuronModel::SpikingLeakyRelu { negative_slope }, &mut a)?
            }
            "lif_rate" => {
                let tau_rc = a.opt_f64("tau_rc")?.unwrap_or(LIF_TAU_RC);
                let tau_ref = a.opt_f64("tau_ref")?.unwrap_or(LIF_TAU_REF);
                neuron(NeuronModel::LifRate { tau_rc, tau_ref }, &mut a)?
            }
            "lif" => {
                let tau_rc = a.opt_f64("tau_rc")?.unwrap_or(LIF_TAU_RC);
                let tau_ref = a.opt_f64("tau_ref")?.unwrap_or(LIF_TAU_REF);
                let min_voltage = a.opt_f64("min_voltage")?.unwrap_or(0.0);
                neuron(
                    NeuronModel::Lif {
                        tau_rc,
                        tau_ref,
                        min_voltage,
                    },
                    &mut a,
                )?
            }
            "lowpass" => Op::Lowpass {
                tau: a.req_f64("tau")?,
            },
            "alpha" => Op::Alpha {
                tau: a.req_f64("tau")?,
            },
            other => {
                return Err(format!(
                    "unknown op `{other}`; expected one of: {}",
                    Op::NAMES.join(", ")
                ));
            }
        };
        a.finish()?;
        Ok(op)
    }

    /// Result types from operand types, or why the operands do not fit. Checks operand count,
    /// element types, ranks, shapes and attribute values.
    pub fn infer(&self, args: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match self.arity() {
            Arity::Exact(n) if args.len() != n => {
                return Err(format!(
                    "`{}` takes {n} operands, got {}",
                    self.name(),
                    args.len()
                ));
            }
            Arity::AtLeast(n) if args.len() < n => {
                return Err(format!(
                    "`{}` takes at least {n} operands, got {}",
                    self.name(),
                    args.len()
                ));
            }
            Arity::Groups(n) if args.is_empty() || !args.len().is_multiple_of(n) => {
                return Err(format!(
                    "`{}` takes {n} operands per group, got {}",
                    self.name(),
                    args.len()
                ));
            }
            Arity::Groups(n) if args.len() > n => {
                let mut all = Vec::with_capacity(args.len() / n * self.num_results());
                for (g, chunk) in args.chunks(n).enumerate() {
                    let r = self
                        .infer(chunk)
                        .map_err(|e| format!("group {}: {e}", g + 1))?;
                    all.extend(r);
                }
                return Ok(all);
            }
            _ => {}
        }
        // Index operands are i32; every other operand is f32.
        for (i, t) in args.iter().enumerate() {
            let want = match (self, i) {
                (Op::Sparse { .. }, 1) | (Op::Gather { .. }, 1) => DType::I32,
                _ => DType::F32,
            };
            if t.dtype != want {
                return Err(format!(
                    "operand {} of `{}` must be {}, got {t}",
                    i + 1,
                    self.name(),
                    want.keyword()
                ));
            }
        }
        let x = args[0];
        let one = |shape: Vec<usize>| Ok(vec![TensorType::f32(shape)]);
        match self {
            Op::Dense => {
                let w = args[1];
                if x.rank() == 0 || w.rank() != 2 || w.shape[0] != *x.shape.last().unwrap() {
                    return Err(format!("dense needs x[...,n] and w[n,m], got {x} and {w}"));
                }
                let mut s = x.shape.clone();
                *s.last_mut().unwrap() = w.shape[1];
                one(s)
            }
            Op::Conv(c) => {
                let w = args[1];
                let d = spatial_axes(x, "conv")?;
                if w.rank() != d + 2 {
                    return Err(format!(
                        "conv kernel must be [k{}..., cin/groups, cout], got {w}",
                        d
                    ));
                }
                if c.strides.len() != d || c.dilation.len() != d {
                    return Err(format!("strides and dilation need {d} entries for {x}"));
                }
                let cin = x.shape[d];
                let cout = w.shape[d + 1];
                if c.groups == 0 || !cin.is_multiple_of(c.groups) || !cout.is_multiple_of(c.groups)
                {
                    return Err(format!(
                        "groups={} must divide input channels {cin} and output channels {cout}",
                        c.groups
                    ));
                }
                if w.shape[d] != cin / c.groups {
                    return Err(format!(
                        "kernel {w} has {} input channels, expected {} ({cin} / groups {})",
                        w.shape[d],
                        cin / c.groups,
                        c.groups
                    ));
                }
                let mut s = Vec::with_capacity(d + 1);
                for i in 0..d {
                    s.push(
                        WindowAxis::new(
                            x.shape[i],
                            w.shape[i],
                            c.strides[i],
                            c.dilation[i],
                            c.padding,
                        )?
                        .output,
                    );
                }
                s.push(cout);
                one(s)
            }
            Op::Sparse { shape } => {
                let (idx, w) = (args[1], args[2]);
                if idx.rank() != 2 || idx.shape[1] != 2 || w.shape != [idx.shape[0]] {
                    return Err(format!(
                        "sparse needs idx i32[nnz,2] and w f32[nnz], got {idx} and {w}"
                    ));
                }
                one(shape.clone())
            }
            Op::Gather { shape } => {
                let idx = args[1];
                let n: usize = shape.iter().product();
                if idx.shape != [n] {
                    return Err(format!("gather to {shape:?} needs idx i32[{n}], got {idx}"));
                }
                one(shape.clone())
            }
            Op::Bias | Op::Scale => {
                let b = args[1];
                if b.rank() > x.rank() || !x.shape.ends_with(&b.shape) {
                    return Err(format!(
                        "`{}` operand {b} must match the trailing axes of {x}",
                        self.name()
                    ));
                }
                one(x.shape.clone())
            }
            Op::Add => {
                if let Some(t) = args.iter().find(|t| t.shape != x.shape) {
                    return Err(format!("add operands must have one type, got {x} and {t}"));
                }
                one(x.shape.clone())
            }
            Op::AvgPool(p) | Op::MaxPool(p) => {
                let d = spatial_axes(x, "pool")?;
                if p.pool.len() != d || p.strides.len() != d {
                    return Err(format!("pool and strides need {d} entries for {x}"));
                }
                let mut s = Vec::with_capacity(d + 1);
                for i in 0..d {
                    s.push(
                        WindowAxis::new(x.shape[i], p.pool[i], p.strides[i], 1, p.padding)?.output,
                    );
                }
                s.push(x.shape[d]);
                one(s)
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool => {
                if x.rank() < 2 || x.num_elements() == 0 {
                    return Err(format!(
                        "global pool needs spatial axes and channels, got {x}"
                    ));
                }
                one(vec![*x.shape.last().unwrap()])
            }
            Op::BatchNorm { epsilon } => {
                let c = *x.shape.last().ok_or("batch_norm needs at least one axis")?;
                if let Some(t) = args[1..].iter().find(|t| t.shape != [c]) {
                    return Err(format!("batch_norm parameters must be f32[{c}], got {t}"));
                }
                if epsilon.is_nan() || *epsilon < 0.0 {
                    return Err("epsilon must be non-negative".into());
                }
                one(x.shape.clone())
            }
            Op::Concat { axis } => {
                if *axis >= x.rank() {
                    return Err(format!("concat axis {axis} out of range for {x}"));
                }
                let mut s = x.shape.clone();
                for t in &args[1..] {
                    let same_rest = t.rank() == x.rank()
                        && (0..x.rank()).all(|i| i == *axis || t.shape[i] == x.shape[i]);
                    if !same_rest {
                        return Err(format!(
                            "concat along axis {axis}: {x} and {t} differ elsewhere"
                        ));
                    }
                    s[*axis] += t.shape[*axis];
                }
                one(s)
            }
            Op::Reshape { shape } => {
                let n: usize = shape.iter().fold(1usize, |a, &d| a.saturating_mul(d));
                if n != x.num_elements() {
                    return Err(format!(
                        "reshape of {x} to {shape:?} changes the element count"
                    ));
                }
                one(shape.clone())
            }
            Op::Transpose { perm } => {
                let mut seen = vec![false; x.rank()];
                if perm.len() != x.rank()
                    || perm
                        .iter()
                        .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(format!(
                        "perm {perm:?} is not a permutation of the axes of {x}"
                    ));
                }
                one(perm.iter().map(|&p| x.shape[p]).collect())
            }
            Op::Pad { pads } => {
                if pads.len() != x.rank() {
                    return Err(format!("pads needs {} pairs for {x}", x.rank()));
                }
                let shape: Option<Vec<usize>> = x
                    .shape
                    .iter()
                    .zip(pads)
                    .map(|(d, p)| d.checked_add(p[0])?.checked_add(p[1]))
                    .collect();
                one(shape.ok_or("padding too large")?)
            }
            Op::Upsample { factors } => {
                if x.rank() < 2 || factors.len() != x.rank() - 1 || factors.contains(&0) {
                    return Err(format!(
                        "factors needs {} positive entries for {x}",
                        x.rank().max(1) - 1
                    ));
                }
                let mut s: Vec<usize> = x
                    .shape
                    .iter()
                    .zip(factors)
                    .map(|(d, f)| d.checked_mul(*f))
                    .collect::<Option<_>>()
                    .ok_or("upsampling factors too large")?;
                s.push(*x.shape.last().unwrap());
                one(s)
            }
            Op::Softmax => {
                if x.rank() == 0 {
                    return Err("softmax needs at least one axis".into());
                }
                one(x.shape.clone())
            }
            Op::Neuron(n) => {
                if let NeuronModel::LifRate { tau_rc, tau_ref }
                | NeuronModel::Lif {
                    tau_rc, tau_ref, ..
                } = &n.model
                    && !(*tau_rc > 0.0 && *tau_ref >= 0.0)
                {
                    return Err("tau_rc must be positive and tau_ref non-negative".into());
                }
                if let Some(t) = args[1..].iter().find(|t| t.shape != x.shape) {
                    return Err(format!(
                        "{} state {t} must have the type of its input {x}",
                        n.model.name()
                    ));
                }
                Ok(vec![
                    TensorType::f32(x.shape.clone());
                    1 + n.model.num_states()
                ])
            }
            Op::Lowpass { tau } | Op::Alpha { tau } => {
                if tau.is_nan() || *tau < 0.0 {
                    return Err("tau must be non-negative".into());
                }
                if let Some(t) = args[1..].iter().find(|t| t.shape != x.shape) {
                    return Err(format!(
                        "synapse state {t} must have the type of its input {x}"
                    ));
                }
                Ok(vec![TensorType::f32(x.shape.clone()); self.num_results()])
            }
        }
    }
}

/// The number of spatial axes of a `[s..., c]` input of a window op (1-3).
fn spatial_axes(x: &TensorType, op: &str) -> Result<usize, String> {
    x.rank()
        .checked_sub(1)
        .filter(|d| (1..=3).contains(d))
        .ok_or_else(|| format!("{op} input must have 1-3 spatial axes and channels, got {x}"))
}

fn as_ints(v: &AttrValue) -> Option<Vec<usize>> {
    match v {
        AttrValue::List(items) => items.iter().map(as_usize).collect(),
        _ => None,
    }
}

fn as_usize(v: &AttrValue) -> Option<usize> {
    match v {
        AttrValue::Num(x) if *x >= 0.0 && x.fract() == 0.0 && *x < 1e15 => Some(*x as usize),
        _ => None,
    }
}

/// Takes attributes by name and complains about missing, malformed and unknown ones.
struct AttrReader<'a> {
    op: &'a str,
    attrs: Vec<(String, AttrValue)>,
}

impl AttrReader<'_> {
    fn take(&mut self, key: &str) -> Option<AttrValue> {
        let i = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(i).1)
    }
    fn missing(&self, key: &str) -> String {
        format!("`{}` needs attribute `{key}`", self.op)
    }
    fn opt_f64(&mut self, key: &str) -> Result<Option<f64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(AttrValue::Num(x)) => Ok(Some(x)),
            Some(v) => Err(format!("attribute `{key}` must be a number, got `{v}`")),
        }
    }
    fn req_f64(&mut self, key: &str) -> Result<f64, String> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }
    fn opt_usize(&mut self, key: &str) -> Result<Option<usize>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => as_usize(&v).map(Some).ok_or_else(|| {
                format!("attribute `{key}` must be a non-negative integer, got `{v}`")
            }),
        }
    }
    fn req_usize(&mut self, key: &str) -> Result<usize, String> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }
    fn opt_ints(&mut self, key: &str) -> Result<Option<Vec<usize>>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => as_ints(&v).map(Some).ok_or_else(|| {
                format!("attribute `{key}` must be a list of non-negative integers, got `{v}`")
            }),
        }
    }
    fn req_ints(&mut self, key: &str) -> Result<Vec<usize>, String> {
        self.opt_ints(key)?.ok_or_else(|| self.missing(key))
    }
    fn req_padding(&mut self) -> Result<Padding, String> {
        match self.take("padding") {
            Some(AttrValue::Word(w)) if w == "valid" => Ok(Padding::Valid),
            Some(AttrValue::Word(w)) if w == "same" => Ok(Padding::Same),
            Some(v) => Err(format!(
                "attribute `padding` must be `valid` or `same`, got `{v}`"
            )),
            None => Err(self.missing("padding")),
        }
    }
    fn finish(self) -> Result<(), String> {
        match self.attrs.first() {
            Some((k, _)) => Err(format!("`{}` has no attribute `{k}`", self.op)),
            None => Ok(()),
        }
    }
}
