//! The text spelling of ops: attribute values, their canonical printing, and reading an op back
//! from its name, attributes and result types.

use super::{ConvAttrs, Neuron, NeuronModel, Op, Padding, PoolAttrs};
use crate::types::TensorType;
use std::fmt;

/// Why an op's text (name, attributes, result types) does not make an op.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// No op has this name.
    #[error("unknown op `{name}`; expected one of: {}", Op::NAMES.join(", "))]
    UnknownOp {
        /// The name written.
        name: String,
    },
    /// A required attribute is absent.
    #[error("`{op}` needs attribute `{key}`")]
    MissingAttribute {
        /// The op.
        op: String,
        /// The attribute.
        key: String,
    },
    /// An attribute of the wrong form.
    #[error("attribute `{key}` must be {expected}, got `{got}`")]
    BadAttribute {
        /// The attribute.
        key: String,
        /// What it must be.
        expected: &'static str,
        /// What was written.
        got: String,
    },
    /// An attribute the op does not have.
    #[error("`{op}` has no attribute `{key}`")]
    UnknownAttribute {
        /// The op.
        op: String,
        /// The attribute.
        key: String,
    },
    /// An op whose result type gives its shape was given another number of result types.
    #[error("`{0}` has exactly one result type")]
    ResultTypes(String),
}

impl TextError {
    /// Whether the error is about an attribute (the parser then points at the attributes).
    pub fn is_attribute(&self) -> bool {
        matches!(
            self,
            TextError::MissingAttribute { .. }
                | TextError::BadAttribute { .. }
                | TextError::UnknownAttribute { .. }
        )
    }
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
    shortest(x)
}

/// Shortest text that parses back to exactly `x`, same rules as [`format_f64`].
pub fn format_f32(x: f32) -> String {
    shortest(x)
}

fn shortest<T: fmt::Display + fmt::LowerExp + Into<f64> + Copy>(x: T) -> String {
    let v: f64 = x.into();
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
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
            Op::BatchNorm { epsilon } | Op::LayerNorm { epsilon } => {
                a.push(("epsilon", num(*epsilon)))
            }
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
                    NeuronModel::Elu { alpha } if *alpha != 1.0 => a.push(("alpha", num(*alpha))),
                    NeuronModel::Gelu { tanh: true } => {
                        a.push(("approximate", AttrValue::Word("tanh".into())))
                    }
                    NeuronModel::LeakyIf { decay } => a.push(("decay", num(*decay))),
                    NeuronModel::HardSigmoid { slope, offset } => {
                        a.push(("slope", num(*slope)));
                        a.push(("offset", num(*offset)));
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
    ) -> Result<Op, TextError> {
        let mut a = AttrReader { op: name, attrs };
        let result_shape = || -> Result<Vec<usize>, TextError> {
            match result_types {
                [t] => Ok(t.shape.clone()),
                _ => Err(TextError::ResultTypes(name.to_string())),
            }
        };
        let neuron = |model: NeuronModel, a: &mut AttrReader| -> Result<Op, TextError> {
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
                let v = a.take("pads").ok_or_else(|| a.missing("pads"))?;
                let err = || TextError::BadAttribute {
                    key: "pads".into(),
                    expected: "a list of [before,after] pairs",
                    got: v.to_string(),
                };
                let AttrValue::List(items) = v.clone() else {
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
            "mul" => Op::Mul,
            "layer_norm" => Op::LayerNorm {
                epsilon: a.req_f64("epsilon")?,
            },
            "relu" => neuron(NeuronModel::Relu, &mut a)?,
            "sigmoid" => neuron(NeuronModel::Sigmoid, &mut a)?,
            "tanh" => neuron(NeuronModel::Tanh, &mut a)?,
            "spiking_relu" => neuron(NeuronModel::SpikingRelu, &mut a)?,
            "fixed_relu" => neuron(NeuronModel::FixedRelu, &mut a)?,
            "if_neuron" => neuron(NeuronModel::IfNeuron, &mut a)?,
            "leaky_if" => {
                let decay = a.req_f64("decay")?;
                neuron(NeuronModel::LeakyIf { decay }, &mut a)?
            }
            "leaky_relu" => {
                let negative_slope = a.req_f64("negative_slope")?;
                neuron(NeuronModel::LeakyRelu { negative_slope }, &mut a)?
            }
            "spiking_leaky_relu" => {
                let negative_slope = a.req_f64("negative_slope")?;
                neuron(NeuronModel::SpikingLeakyRelu { negative_slope }, &mut a)?
            }
            "elu" => {
                let alpha = a.opt_f64("alpha")?.unwrap_or(1.0);
                neuron(NeuronModel::Elu { alpha }, &mut a)?
            }
            "selu" => neuron(NeuronModel::Selu, &mut a)?,
            "softplus" => neuron(NeuronModel::Softplus, &mut a)?,
            "softsign" => neuron(NeuronModel::Softsign, &mut a)?,
            "swish" => neuron(NeuronModel::Swish, &mut a)?,
            "gelu" => {
                let tanh = match a.take("approximate") {
                    None => false,
                    Some(AttrValue::Word(w)) if w == "tanh" => true,
                    Some(AttrValue::Word(w)) if w == "erf" => false,
                    Some(v) => return Err(bad("approximate", "`tanh` or `erf`", &v)),
                };
                neuron(NeuronModel::Gelu { tanh }, &mut a)?
            }
            "hard_sigmoid" => {
                let slope = a.req_f64("slope")?;
                let offset = a.req_f64("offset")?;
                neuron(NeuronModel::HardSigmoid { slope, offset }, &mut a)?
            }
            "exponential" => neuron(NeuronModel::Exponential, &mut a)?,
            "relu6" => neuron(NeuronModel::Relu6, &mut a)?,
            "mish" => neuron(NeuronModel::Mish, &mut a)?,
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
                return Err(TextError::UnknownOp {
                    name: other.to_string(),
                });
            }
        };
        a.finish()?;
        Ok(op)
    }
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

fn bad(key: &str, expected: &'static str, got: &AttrValue) -> TextError {
    TextError::BadAttribute {
        key: key.to_string(),
        expected,
        got: got.to_string(),
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
    fn missing(&self, key: &str) -> TextError {
        TextError::MissingAttribute {
            op: self.op.to_string(),
            key: key.to_string(),
        }
    }
    fn opt_f64(&mut self, key: &str) -> Result<Option<f64>, TextError> {
        match self.take(key) {
            None => Ok(None),
            Some(AttrValue::Num(x)) => Ok(Some(x)),
            Some(v) => Err(bad(key, "a number", &v)),
        }
    }
    fn req_f64(&mut self, key: &str) -> Result<f64, TextError> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }
    fn opt_usize(&mut self, key: &str) -> Result<Option<usize>, TextError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => as_usize(&v)
                .map(Some)
                .ok_or_else(|| bad(key, "a non-negative integer", &v)),
        }
    }
    fn req_usize(&mut self, key: &str) -> Result<usize, TextError> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }
    fn opt_ints(&mut self, key: &str) -> Result<Option<Vec<usize>>, TextError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => as_ints(&v)
                .map(Some)
                .ok_or_else(|| bad(key, "a list of non-negative integers", &v)),
        }
    }
    fn req_ints(&mut self, key: &str) -> Result<Vec<usize>, TextError> {
        self.opt_ints(key)?.ok_or_else(|| self.missing(key))
    }
    fn req_padding(&mut self) -> Result<Padding, TextError> {
        match self.take("padding") {
            Some(AttrValue::Word(w)) if w == "valid" => Ok(Padding::Valid),
            Some(AttrValue::Word(w)) if w == "same" => Ok(Padding::Same),
            Some(v) => Err(bad("padding", "`valid` or `same`", &v)),
            None => Err(self.missing("padding")),
        }
    }
    fn finish(self) -> Result<(), TextError> {
        match self.attrs.first() {
            Some((k, _)) => Err(TextError::UnknownAttribute {
                op: self.op.to_string(),
                key: k.clone(),
            }),
            None => Ok(()),
        }
    }
}
