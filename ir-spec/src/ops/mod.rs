//! The closed set of operations and their attributes. The text spelling of ops and attributes
//! is in [`text`], the shape rules in [`infer`].

mod infer;
mod text;

pub use infer::InferError;
pub use text::{AttrValue, TextError, format_f32, format_f64};

use serde::{Deserialize, Serialize};

pub use crate::geometry::Padding;

/// The class of an op, as passes and backends reason about it (see [`Op::class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// A neuron population: element `k` of every result depends only on element `k` of every
    /// operand (its current and its states).
    Neuron,
    /// A synapse (`lowpass`, `alpha`): lane-wise like a neuron, and linear in its input.
    Synapse,
    /// Element `k` of the result depends only on element `k` of each operand, a constant
    /// operand broadcasting along the last axis (`bias`, `scale`, `add`, `batch_norm`).
    LaneWise,
    /// Linear in its first operand, with fixed weights in the others (`dense`, `conv`,
    /// `sparse`, average pooling).
    Linear,
    /// Each result element is one operand element or zero, chosen by position only (`gather`,
    /// `reshape`, `transpose`, `pad`, `upsample`, `concat`).
    IndexMap,
    /// Anything else (`max_pool`, `global_max_pool`, `softmax`).
    Other,
}

impl OpClass {
    /// Element `k` of every result depends only on element `k` of every operand (neurons,
    /// synapses and the lane-wise arithmetic).
    pub fn is_lane_wise(self) -> bool {
        matches!(self, OpClass::Neuron | OpClass::Synapse | OpClass::LaneWise)
    }
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
    /// Nengo's SpikingRectifiedLinear with a fixed-point voltage (24 fractional bits, integer
    /// arithmetic), so that under a constant current its spike train has an exact closed form
    /// and a runtime may schedule it by next spike step; state: voltage.
    FixedRelu,
    /// NengoDL's SpikingLeakyReLU; state: voltage.
    SpikingLeakyRelu {
        /// Slope below zero (negative spikes).
        negative_slope: f64,
    },
    /// Integrate-and-fire, reset by subtraction, no floor on the membrane; state: voltage.
    IfNeuron,
    /// Leaky integrate-and-fire as NIR's consumers step it (forward Euler): the voltage keeps
    /// `decay` of itself each step, a spike when it exceeds 1 (at most one per step), then reset
    /// to 0; state: voltage. `decay = 1` is NIR's `IF` with reset to `v_reset`.
    LeakyIf {
        /// Fraction of the voltage kept per step (`1 − dt/τ`), in `[0, 1]`.
        decay: f64,
    },
    /// Nengo's LIF; state: voltage and refractory time.
    Lif {
        /// Membrane time constant (s).
        tau_rc: f64,
        /// Refractory period (s).
        tau_ref: f64,
        /// Lowest voltage the membrane is clamped to.
        min_voltage: f64,
    },
    /// `J` for `J > 0`, `alpha·(e^J − 1)` otherwise (Keras's `elu`).
    Elu {
        /// Scale of the negative part.
        alpha: f64,
    },
    /// `λ·elu_α(J)` with Keras's fixed `α = 1.67326324…`, `λ = 1.05070098…`.
    Selu,
    /// `ln(1 + e^J)`, computed as `max(J, 0) + ln(1 + e^−|J|)`.
    Softplus,
    /// `J / (1 + |J|)`.
    Softsign,
    /// `J · σ(J)` = `J / (1 + e^−J)` (Keras's `swish` and `silu`).
    Swish,
    /// `½·J·(1 + erf(J/√2))`, or with `tanh`: `½·J·(1 + tanh(√(2/π)·(J + 0.044715·J³)))`.
    Gelu {
        /// The tanh approximation (Keras's `approximate=True`).
        tanh: bool,
    },
    /// `clip(slope·J + offset, 0, 1)`: Keras 2's `hard_sigmoid` is slope 0.2, offset 0.5;
    /// Keras 3's is slope 1/6, offset 0.5.
    HardSigmoid {
        /// Slope.
        slope: f64,
        /// Value at 0.
        offset: f64,
    },
    /// `e^J`.
    Exponential,
    /// `min(max(J, 0), 6)`.
    Relu6,
    /// `J · tanh(softplus(J))`.
    Mish,
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
            NeuronModel::FixedRelu => "fixed_relu",
            NeuronModel::SpikingLeakyRelu { .. } => "spiking_leaky_relu",
            NeuronModel::IfNeuron => "if_neuron",
            NeuronModel::LeakyIf { .. } => "leaky_if",
            NeuronModel::Lif { .. } => "lif",
            NeuronModel::Elu { .. } => "elu",
            NeuronModel::Selu => "selu",
            NeuronModel::Softplus => "softplus",
            NeuronModel::Softsign => "softsign",
            NeuronModel::Swish => "swish",
            NeuronModel::Gelu { .. } => "gelu",
            NeuronModel::HardSigmoid { .. } => "hard_sigmoid",
            NeuronModel::Exponential => "exponential",
            NeuronModel::Relu6 => "relu6",
            NeuronModel::Mish => "mish",
        }
    }

    /// Whether the model is one of Nengo's neuron types (ReLU, leaky ReLU, sigmoid, tanh, LIF and
    /// their spiking twins), which NengoDL's options (firing-rate scales, synapses) act on. The
    /// other activations NengoDL runs in TensorFlow; snnc runs them as rate ops, untouched by
    /// those options.
    pub fn is_nengo_type(&self) -> bool {
        matches!(
            self,
            NeuronModel::Relu
                | NeuronModel::LeakyRelu { .. }
                | NeuronModel::Sigmoid
                | NeuronModel::Tanh
                | NeuronModel::LifRate { .. }
                | NeuronModel::SpikingRelu
                | NeuronModel::FixedRelu
                | NeuronModel::SpikingLeakyRelu { .. }
                | NeuronModel::IfNeuron
                | NeuronModel::Lif { .. }
        )
    }

    /// Number of state tensors the model carries (operands after the current; results after the output).
    pub fn num_states(&self) -> usize {
        match self {
            NeuronModel::SpikingRelu
            | NeuronModel::FixedRelu
            | NeuronModel::SpikingLeakyRelu { .. }
            | NeuronModel::IfNeuron
            | NeuronModel::LeakyIf { .. } => 1,
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
    /// Elementwise product of two or more tensors of one type (not neural: a rate op).
    Mul,
    /// Layer normalisation over the last axis: `(x − mean) / sqrt(var + epsilon) · gamma + beta`.
    LayerNorm {
        /// Added to the variance.
        epsilon: f64,
    },
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
            Op::Mul => "mul",
            Op::LayerNorm { .. } => "layer_norm",
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
        "mul",
        "layer_norm",
        "relu",
        "leaky_relu",
        "sigmoid",
        "tanh",
        "lif_rate",
        "elu",
        "selu",
        "softplus",
        "softsign",
        "swish",
        "gelu",
        "hard_sigmoid",
        "exponential",
        "relu6",
        "mish",
        "spiking_relu",
        "fixed_relu",
        "spiking_leaky_relu",
        "if_neuron",
        "leaky_if",
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
            Op::Add | Op::Mul => Arity::AtLeast(2),
            Op::LayerNorm { .. } => Arity::Exact(3),
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
    /// index maps, neurons and synapses. `max_pool`, `global_max_pool`, `batch_norm`,
    /// `softmax`, `mul` and `layer_norm` are not neural.
    pub fn is_neural(&self) -> bool {
        !matches!(
            self,
            Op::MaxPool(_)
                | Op::GlobalMaxPool
                | Op::BatchNorm { .. }
                | Op::Softmax
                | Op::Mul
                | Op::LayerNorm { .. }
        )
    }

    /// Whether the op is linear in its first operand when every other operand is a constant:
    /// the [`OpClass::Linear`] maps, the one-operand index maps and `scale` (not `concat`, whose
    /// other operands are added, nor `bias`).
    pub fn is_linear(&self) -> bool {
        match self.class() {
            OpClass::Linear => true,
            OpClass::IndexMap => !matches!(self, Op::Concat { .. }),
            _ => *self == Op::Scale,
        }
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
            Op::MaxPool(_) | Op::GlobalMaxPool | Op::Softmax | Op::Mul | Op::LayerNorm { .. } => {
                OpClass::Other
            }
        }
    }
}
