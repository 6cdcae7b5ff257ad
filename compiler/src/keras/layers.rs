//! Layer-by-layer conversion of a Keras graph into IR (rate mode: exact Keras semantics).

use super::ModelError;
use super::graph::{Container, Layer, call_order, declared_batch_shape, resolve_node};
use super::weights::{LayerPath, WeightStore, snake_case};
use ndarray::ArrayD;
use serde_json::Value;
use snnc_ir::{
    Builder, ConstId, ConvAttrs, Module, Neuron, NeuronModel, Op, Operand, Padding, PoolAttrs,
    ValueId,
};
use std::collections::HashMap;

mod temporal;
use temporal::wrapped_layer;

/// Options of the Keras conversion.
#[derive(Clone, Debug)]
pub struct KerasOptions {
    /// Simulation timestep written into the module (seconds).
    pub dt: f64,
}

impl Default for KerasOptions {
    fn default() -> Self {
        KerasOptions { dt: 0.001 }
    }
}

/// The largest size, stride or count a layer config may give (checked before any arithmetic).
const MAX_CONFIG_INT: u64 = 1 << 24;

/// The most elements of an index table or other constant the converter derives from a layer's
/// shapes (2^28, as for a weight tensor): a config declaring huge shapes is refused before
/// anything that size is allocated.
const MAX_DERIVED: usize = 1 << 28;

/// A number in a layer config: plain, or as tf.keras 2.12's archive format writes a NumPy scalar
/// (`{"class_name": "__numpy__", "config": {"value": 0.0, "dtype": "float32"}}`).
fn config_number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| {
        (v.get("class_name")?.as_str()? == "__numpy__")
            .then(|| v.get("config")?.get("value")?.as_f64())
            .flatten()
    })
}

/// A config integer in `1..=MAX_CONFIG_INT`.
fn positive(v: &Value) -> Option<usize> {
    v.as_u64()
        .filter(|n| (1..=MAX_CONFIG_INT).contains(n))
        .map(|n| n as usize)
}

/// A 1×…×1 convolution's attributes: stride 1, no padding, one group.
fn unit_conv(d: usize) -> ConvAttrs {
    ConvAttrs {
        strides: vec![1; d],
        padding: Padding::Valid,
        dilation: vec![1; d],
        groups: 1,
    }
}

/// Layer classes the graph reader handles itself: inputs and nested models.
const STRUCTURAL: &[&str] = &["InputLayer", "Sequential", "Functional", "Model"];

/// Every Keras layer class the front-end converts, from the one registry ([`LAYERS`]).
pub fn supported_layers() -> Vec<&'static str> {
    let converted = LAYERS.iter().map(|(class, _)| *class);
    STRUCTURAL[..1]
        .iter()
        .copied()
        .chain(converted)
        .chain(STRUCTURAL[1..].iter().copied())
        .collect()
}

/// Converts one layer (a call of it) on its inputs into IR, returning its output.
type ConvertLayer =
    for<'w, 'l> fn(&mut Converter<'w>, &Ctx<'l>, &[ValueId]) -> Result<ValueId, ModelError>;

/// The layer's single input, or an error naming the layer.
fn one(cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
    match ins {
        [x] => Ok(*x),
        _ => Err(cx.shape_err(format!(
            "`{}` takes one input, got {}",
            cx.layer.class,
            ins.len()
        ))),
    }
}

/// A layer that passes its input through at inference.
fn identity(_: &mut Converter, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
    one(cx, ins)
}

/// A converter that takes the layer's one input `x` and calls `me.$method(cx, x)`.
macro_rules! unary {
    ($method:ident) => {
        |me, cx, ins| {
            let x = one(cx, ins)?;
            me.$method(cx, x)
        }
    };
}

/// A converter of a windowed layer (`…ND`) that works channels-last.
macro_rules! windowed {
    ($method:ident $(, $arg:expr)*) => {
        |me, cx, ins| {
            let x = one(cx, ins)?;
            let d = spatial_dims(&cx.layer.class);
            me.channels_last(cx, x, |me, x| me.$method(cx, x, d $(, $arg)*))
        }
    };
}

/// Whether a layer holds weights (Keras's `layer.weights` is not empty): the weighted classes
/// snnc converts, and a nested model with any such layer.
fn has_weights(l: &Layer) -> bool {
    if l.class == "TimeDistributed" {
        return wrapped_layer(l).is_ok_and(|w| has_weights(&w));
    }
    match &l.inner {
        Some(inner) => inner.layers.iter().any(has_weights),
        None => matches!(
            l.class.as_str(),
            "Dense"
                | "Conv1D"
                | "Conv2D"
                | "Conv3D"
                | "Conv1DTranspose"
                | "Conv2DTranspose"
                | "Conv3DTranspose"
                | "DepthwiseConv1D"
                | "DepthwiseConv2D"
                | "SeparableConv1D"
                | "SeparableConv2D"
                | "BatchNormalization"
                | "LayerNormalization"
                | "Lowpass"
                | "Alpha"
        ),
    }
}

/// The `N` of a class name with `ND` in it (`Conv2D` → 2, `Conv3DTranspose` → 3).
fn spatial_dims(class: &str) -> usize {
    let b = class.as_bytes();
    (1..b.len())
        .find(|&i| b[i] == b'D' && b[i - 1].is_ascii_digit())
        .map_or(1, |i| (b[i - 1] - b'0') as usize)
}

/// The registry: every converted layer class and how it converts. Keras's short aliases
/// (`AvgPool2D`, `MaxPool2D`, `GlobalAvgPool2D`, ...) are their own entries.
const LAYERS: &[(&str, ConvertLayer)] = &[
    ("Dense", unary!(dense)),
    ("Conv1D", windowed!(conv)),
    ("Conv2D", windowed!(conv)),
    ("Conv3D", windowed!(conv)),
    ("Conv1DTranspose", windowed!(conv_transpose)),
    ("Conv2DTranspose", windowed!(conv_transpose)),
    ("Conv3DTranspose", windowed!(conv_transpose)),
    ("DepthwiseConv1D", windowed!(depthwise_conv, false)),
    ("DepthwiseConv2D", windowed!(depthwise_conv, false)),
    ("SeparableConv1D", windowed!(depthwise_conv, true)),
    ("SeparableConv2D", windowed!(depthwise_conv, true)),
    ("Cropping1D", windowed!(crop)),
    ("Cropping2D", windowed!(crop)),
    ("Cropping3D", windowed!(crop)),
    ("AveragePooling1D", windowed!(pool, false)),
    ("AveragePooling2D", windowed!(pool, false)),
    ("AveragePooling3D", windowed!(pool, false)),
    ("MaxPooling1D", windowed!(pool, true)),
    ("MaxPooling2D", windowed!(pool, true)),
    ("MaxPooling3D", windowed!(pool, true)),
    ("GlobalAveragePooling1D", windowed!(global_pool, false)),
    ("GlobalAveragePooling2D", windowed!(global_pool, false)),
    ("GlobalAveragePooling3D", windowed!(global_pool, false)),
    ("GlobalMaxPooling1D", windowed!(global_pool, true)),
    ("GlobalMaxPooling2D", windowed!(global_pool, true)),
    ("GlobalMaxPooling3D", windowed!(global_pool, true)),
    ("Activation", |me, cx, ins| {
        let x = one(cx, ins)?;
        me.activation(cx, x, cx.cfg().get("activation"))
    }),
    ("ReLU", unary!(relu)),
    ("ELU", unary!(elu_layer)),
    ("LeakyReLU", unary!(leaky_relu)),
    ("Softmax", unary!(softmax)),
    ("BatchNormalization", unary!(batch_norm)),
    ("Flatten", unary!(flatten)),
    ("Reshape", unary!(reshape)),
    ("Permute", unary!(permute)),
    ("Concatenate", |me, cx, ins| me.concatenate(cx, ins)),
    ("Add", |me, cx, ins| me.sum(cx, ins, false)),
    ("Subtract", |me, cx, ins| me.subtract(cx, ins)),
    ("Maximum", |me, cx, ins| me.extremum(cx, ins, true)),
    ("Multiply", |me, cx, ins| me.multiply(cx, ins)),
    ("Dot", |me, cx, ins| me.dot(cx, ins)),
    ("LayerNormalization", unary!(layer_norm)),
    ("TimeDistributed", |me, cx, ins| {
        me.time_distributed(cx, ins)
    }),
    ("SpikingActivation", unary!(spiking_activation)),
    ("Lowpass", |me, cx, ins| {
        let x = one(cx, ins)?;
        me.keras_spiking_filter(cx, x, false)
    }),
    ("Alpha", |me, cx, ins| {
        let x = one(cx, ins)?;
        me.keras_spiking_filter(cx, x, true)
    }),
    ("Minimum", |me, cx, ins| me.extremum(cx, ins, false)),
    ("Average", |me, cx, ins| me.sum(cx, ins, true)),
    ("ZeroPadding1D", windowed!(zero_pad)),
    ("ZeroPadding2D", windowed!(zero_pad)),
    ("ZeroPadding3D", windowed!(zero_pad)),
    ("UpSampling1D", windowed!(upsample)),
    ("UpSampling2D", windowed!(upsample)),
    ("UpSampling3D", windowed!(upsample)),
    ("Dropout", identity),
    ("SpatialDropout1D", identity),
    ("SpatialDropout2D", identity),
    ("SpatialDropout3D", identity),
    ("GaussianNoise", identity),
    ("GaussianDropout", identity),
    ("AlphaDropout", identity),
    ("ActivityRegularization", identity),
    ("Identity", identity),
    ("Rescaling", unary!(rescaling)),
    ("AvgPool1D", windowed!(pool, false)),
    ("AvgPool2D", windowed!(pool, false)),
    ("AvgPool3D", windowed!(pool, false)),
    ("MaxPool1D", windowed!(pool, true)),
    ("MaxPool2D", windowed!(pool, true)),
    ("MaxPool3D", windowed!(pool, true)),
    ("GlobalAvgPool1D", windowed!(global_pool, false)),
    ("GlobalAvgPool2D", windowed!(global_pool, false)),
    ("GlobalAvgPool3D", windowed!(global_pool, false)),
    ("GlobalMaxPool1D", windowed!(global_pool, true)),
    ("GlobalMaxPool2D", windowed!(global_pool, true)),
    ("GlobalMaxPool3D", windowed!(global_pool, true)),
];

/// Convert a parsed model into a module.
pub fn convert(
    top: &Container,
    weights: &WeightStore,
    model_name: &str,
    options: &KerasOptions,
    keras3: bool,
) -> Result<Module, ModelError> {
    let mut cv = Converter {
        b: Builder::new(model_name, options.dt),
        keras3,
        weights,
        loaded: HashMap::new(),
        consts: HashMap::new(),
        temporal: None,
    };
    let outs = cv.container(top, &[], None)?;
    for (name, v) in output_names(top).into_iter().zip(outs) {
        cv.b.output(&name, v);
    }
    Ok(cv.b.finish())
}

/// The names of a model's outputs as Keras's `model.output_names` gives them: the output
/// layer's name, and for a layer that gives several outputs (or whose name is taken already)
/// `name_1`, `name_2`, … — the first not taken, counting per layer.
fn output_names(top: &Container) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    let mut next_suffix: HashMap<&str, usize> = HashMap::new();
    top.outputs
        .iter()
        .map(|t| {
            let mut proposal = t.layer.clone();
            while taken.contains(&proposal) {
                let k = next_suffix.entry(t.layer.as_str()).or_insert(1);
                proposal = format!("{}_{k}", t.layer);
                *k += 1;
            }
            taken.insert(proposal.clone());
            proposal
        })
        .collect()
}

struct Converter<'a> {
    b: Builder,
    /// Keras 3 wrote the model (its `hard_sigmoid` differs from Keras 2's).
    keras3: bool,
    weights: &'a WeightStore,
    /// Weights read so far, by layer path key.
    loaded: HashMap<String, Vec<ArrayD<f32>>>,
    /// Constants made so far, by constant name: a layer called twice shares them.
    consts: HashMap<String, ConstId>,
    /// Whether the model's inputs have a time axis (`Input((None, ...))`), once an input is
    /// read: every layer then acts on one time step.
    temporal: Option<bool>,
}

fn path_key(path: &LayerPath) -> String {
    path.iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join("/")
}

/// A per-layer context: the layer, its path and name prefix, and the values it reads.
struct Ctx<'l> {
    layer: &'l Layer,
    path: Vec<(String, String)>,
    prefix: String,
    /// Where a wrapper keeps this layer's weights below its own group (see
    /// [`WeightStore::layer`]); empty for a layer that holds its own.
    inner: &'static str,
}

impl Ctx<'_> {
    fn cfg(&self) -> &Value {
        &self.layer.config
    }

    /// `filters`, an integer from 1 to [`MAX_CONFIG_INT`].
    fn filters(&self) -> Result<usize, ModelError> {
        self.cfg().get("filters").and_then(positive).ok_or_else(|| {
            self.unsupported(format!(
                "`filters`: expected an integer from 1 to {MAX_CONFIG_INT}"
            ))
        })
    }

    /// Cells before and after on each of `d` axes (`ZeroPadding`'s `padding`, `Cropping`'s
    /// `cropping`): one number for all, `(before, after)` for 1-D, or one number or pair per
    /// axis; each at most [`MAX_CONFIG_INT`]. Default 1.
    fn side_pairs(&self, key: &str, d: usize) -> Result<Vec<[usize; 2]>, ModelError> {
        let v = self.cfg().get(key).cloned().unwrap_or(Value::from(1));
        let bad = || self.unsupported(format!("{key} {v}"));
        let int = |p: &Value| {
            p.as_u64()
                .filter(|&n| n <= MAX_CONFIG_INT)
                .map(|n| n as usize)
        };
        let pair = |p: &Value| -> Option<[usize; 2]> {
            match p {
                Value::Array(a) if a.len() == 2 => Some([int(&a[0])?, int(&a[1])?]),
                _ => int(p).map(|n| [n; 2]),
            }
        };
        Ok(match &v {
            Value::Number(_) => vec![pair(&v).ok_or_else(bad)?; d],
            Value::Array(a) if d == 1 && a.len() == 2 && a.iter().all(Value::is_number) => {
                vec![pair(&v).ok_or_else(bad)?]
            }
            Value::Array(a) if a.len() == d => {
                a.iter().map(pair).collect::<Option<_>>().ok_or_else(bad)?
            }
            _ => return Err(bad()),
        })
    }
    fn unsupported(&self, what: impl Into<String>) -> ModelError {
        ModelError::Unsupported {
            layer: self.layer.name.clone(),
            what: what.into(),
        }
    }
    fn shape_err(&self, message: impl Into<String>) -> ModelError {
        ModelError::Shape {
            layer: self.layer.name.clone(),
            message: message.into(),
        }
    }
    fn str_or<'v>(&'v self, key: &str, default: &'v str) -> &'v str {
        self.cfg()
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
    }
    fn bool_or(&self, key: &str, default: bool) -> bool {
        self.cfg()
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.cfg().get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => config_number(v)
                .ok_or_else(|| self.unsupported(format!("`{key}` = {v} is not a number"))),
        }
    }
    /// An integer or a list of `d` integers (Keras accepts both for sizes and strides).
    fn ints(&self, key: &str, d: usize) -> Result<Option<Vec<usize>>, ModelError> {
        let bad = |v: &Value| {
            self.unsupported(format!(
                "`{key}` = {v}: expected {d} integer(s) from 1 to {MAX_CONFIG_INT}"
            ))
        };
        match self.cfg().get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Number(_)) => {
                positive(v).map(|n| Some(vec![n; d])).ok_or_else(|| bad(v))
            }
            Some(v @ Value::Array(a)) => {
                let out: Option<Vec<usize>> = a.iter().map(positive).collect();
                match out {
                    Some(o) if o.len() == d => Ok(Some(o)),
                    _ => Err(bad(v)),
                }
            }
            Some(v) => Err(bad(v)),
        }
    }
    fn channels_first(&self) -> Result<bool, ModelError> {
        match self.str_or("data_format", "channels_last") {
            "channels_last" => Ok(false),
            "channels_first" => Ok(true),
            other => Err(self.unsupported(format!("data_format `{other}`"))),
        }
    }
    fn padding(&self) -> Result<Padding, ModelError> {
        match self
            .str_or("padding", "valid")
            .to_ascii_lowercase()
            .as_str()
        {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            other => Err(self.unsupported(format!("padding `{other}`"))),
        }
    }
}

fn neuron(model: NeuronModel) -> Op {
    Op::Neuron(Neuron {
        model,
        gain: 1.0,
        amplitude: 1.0,
    })
}

/// The activation named by a config value: a string, or Keras 3's serialised function object.
fn activation_name(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => Some("linear".into()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => o
            .get("config")
            .and_then(|c| {
                c.as_str()
                    .map(str::to_string)
                    .or_else(|| c.get("name").and_then(Value::as_str).map(str::to_string))
            })
            .or_else(|| {
                o.get("class_name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }),
        _ => None,
    }
}

impl Converter<'_> {
    fn ty(&self, v: ValueId) -> Vec<usize> {
        self.b.module().value(v).ty.shape.clone()
    }

    fn op(
        &mut self,
        cx: &Ctx,
        op: Op,
        args: &[Operand],
        suffix: &str,
    ) -> Result<ValueId, ModelError> {
        let name = format!("{}.{suffix}", cx.prefix);
        self.b
            .op1(op, args, &name)
            .map_err(|e| cx.shape_err(e.to_string()))
    }

    fn scalar(&mut self, name: &str, v: f32) -> ConstId {
        if let Some(&c) = self.consts.get(name) {
            return c;
        }
        let c = self.b.constant_f32(name, &[], vec![v]);
        self.consts.insert(name.to_string(), c);
        c
    }

    fn layer_weights(&mut self, cx: &Ctx) -> Result<Vec<ArrayD<f32>>, ModelError> {
        let key = path_key(&cx.path);
        if !self.loaded.contains_key(&key) {
            let w = self.weights.layer(&cx.path, cx.inner)?;
            self.loaded.insert(key.clone(), w);
        }
        Ok(self.loaded[&key].clone())
    }

    /// The shape of a windowed layer's input, which must be `[s_1..s_d, c]`.
    fn windowed_shape(&self, cx: &Ctx, x: ValueId, d: usize) -> Result<Vec<usize>, ModelError> {
        let shape = self.ty(x);
        if shape.len() != d + 1 {
            return Err(cx.shape_err(format!(
                "{} needs a rank-{} input, got {shape:?}",
                cx.layer.class,
                d + 1
            )));
        }
        Ok(shape)
    }

    /// A merge layer's inputs brought to one shape, as Keras broadcasts them: equal ranks, each
    /// axis of one size or 1 (a squeeze-and-excitation `Multiply` of `[h, w, c]` by `[1, 1, c]`);
    /// an input with 1s where the others are larger is repeated by a `gather`. At least
    /// `min` inputs.
    fn broadcast(
        &mut self,
        cx: &Ctx,
        ins: &[ValueId],
        min: usize,
    ) -> Result<(Vec<ValueId>, Vec<usize>), ModelError> {
        let class = &cx.layer.class;
        if ins.len() < min.max(1) {
            return Err(cx.shape_err(format!(
                "`{class}` takes at least {} inputs, got {}",
                min.max(1),
                ins.len()
            )));
        }
        let shapes: Vec<Vec<usize>> = ins.iter().map(|&v| self.ty(v)).collect();
        let mut out = shapes[0].clone();
        for s in &shapes[1..] {
            let clash = || {
                cx.shape_err(format!(
                    "`{class}` cannot broadcast inputs shaped {:?} and {s:?} (equal ranks, each axis of one size or 1)",
                    shapes[0]
                ))
            };
            if s.len() != out.len() {
                return Err(clash());
            }
            for (o, &n) in out.iter_mut().zip(s) {
                match (*o, n) {
                    (a, b) if a == b => {}
                    (1, b) => *o = b,
                    (_, 1) => {}
                    _ => return Err(clash()),
                }
            }
        }
        let total = out.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
        let mut values = Vec::with_capacity(ins.len());
        for (k, (&v, s)) in ins.iter().zip(&shapes).enumerate() {
            if *s == out {
                values.push(v);
                continue;
            }
            let total = total
                .filter(|&t| t <= MAX_DERIVED)
                .ok_or_else(|| cx.shape_err(format!("{out:?} has too many elements")))?;
            let strides = snnc_ir::geometry::strides_of(s);
            let mut idx = Vec::with_capacity(total);
            snnc_ir::geometry::for_each_index(&out, |_, at| {
                let flat: usize = (0..out.len())
                    .map(|a| if s[a] == 1 { 0 } else { at[a] * strides[a] })
                    .sum();
                idx.push(flat as i32);
            });
            let table = self.b.constant_i32(
                &format!("{}.broadcast{k}", path_key(&cx.path)),
                &[total],
                idx,
            );
            values.push(self.op(
                cx,
                Op::Gather { shape: out.clone() },
                &[v.into(), table.into()],
                &format!("broadcast{k}"),
            )?);
        }
        Ok((values, out))
    }

    /// `y + bias` (weight `idx`, `[channels]`) unless `use_bias` is off, then the activation.
    fn bias_activation(
        &mut self,
        cx: &Ctx,
        mut y: ValueId,
        idx: usize,
        channels: usize,
    ) -> Result<ValueId, ModelError> {
        if cx.bool_or("use_bias", true) {
            let b = self.weight(cx, idx, "bias", &[channels])?;
            y = self.op(cx, Op::Bias, &[y.into(), b.into()], "biased")?;
        }
        self.activation(cx, y, cx.cfg().get("activation"))
    }

    /// Weight `idx` of the layer as a constant named `<layer>.<what>`, checked against `expected`.
    fn weight(
        &mut self,
        cx: &Ctx,
        idx: usize,
        what: &str,
        expected: &[usize],
    ) -> Result<ConstId, ModelError> {
        self.weight_as(cx, idx, what, expected, expected)
    }

    /// Weight `idx` of the layer, which must have shape `expected`, as a constant of shape
    /// `stored` (the same elements in the same order).
    fn weight_as(
        &mut self,
        cx: &Ctx,
        idx: usize,
        what: &str,
        expected: &[usize],
        stored: &[usize],
    ) -> Result<ConstId, ModelError> {
        let name = format!("{}.{what}", path_key(&cx.path));
        if let Some(&c) = self.consts.get(&name) {
            return Ok(c);
        }
        let data = self.weight_data(cx, idx, what, expected)?;
        let c = self.b.constant_f32(&name, stored, data);
        self.consts.insert(name, c);
        Ok(c)
    }

    /// The elements of weight `idx` of the layer (called `what` in errors), which must have
    /// shape `expected`, in row-major order.
    fn weight_data(
        &mut self,
        cx: &Ctx,
        idx: usize,
        what: &str,
        expected: &[usize],
    ) -> Result<Vec<f32>, ModelError> {
        let w = self.layer_weights(cx)?;
        let a = w.get(idx).ok_or_else(|| ModelError::MissingWeight {
            layer: cx.layer.name.clone(),
            what: format!("{idx} (`{what}`; the file has {} for this layer)", w.len()),
        })?;
        if a.shape() != expected {
            return Err(ModelError::WeightShape {
                layer: cx.layer.name.clone(),
                weight: what.into(),
                expected: expected.to_vec(),
                got: a.shape().to_vec(),
            });
        }
        Ok(a.iter().copied().collect())
    }

    fn activation(
        &mut self,
        cx: &Ctx,
        x: ValueId,
        act: Option<&Value>,
    ) -> Result<ValueId, ModelError> {
        let name = activation_name(act).unwrap_or_else(|| "?".into());
        let op = match name.as_str() {
            "linear" | "identity" => return Ok(x),
            "relu" => neuron(NeuronModel::Relu),
            "sigmoid" => neuron(NeuronModel::Sigmoid),
            "tanh" => neuron(NeuronModel::Tanh),
            "leaky_relu" => neuron(NeuronModel::LeakyRelu {
                negative_slope: 0.2,
            }),
            "softmax" => {
                return self.op(cx, Op::Softmax, &[x.into()], "softmax");
            }
            "elu" => neuron(NeuronModel::Elu { alpha: 1.0 }),
            "selu" => neuron(NeuronModel::Selu),
            "softplus" => neuron(NeuronModel::Softplus),
            "softsign" => neuron(NeuronModel::Softsign),
            "swish" | "silu" => neuron(NeuronModel::Swish),
            "gelu" => neuron(NeuronModel::Gelu { tanh: false }),
            "hard_sigmoid" => neuron(NeuronModel::HardSigmoid {
                slope: if self.keras3 { 1.0 / 6.0 } else { 0.2 },
                offset: 0.5,
            }),
            "exponential" => neuron(NeuronModel::Exponential),
            "relu6" => neuron(NeuronModel::Relu6),
            "mish" => neuron(NeuronModel::Mish),
            _ => {
                return Err(ModelError::UnsupportedActivation {
                    layer: cx.layer.name.clone(),
                    activation: name,
                });
            }
        };
        self.op(cx, op, &[x.into()], &name)
    }

    /// `x` with axis `from` moved to the end (or back when `to_front`), for channels_first.
    fn channels_to_last(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let r = self.ty(x).len();
        let perm: Vec<usize> = (1..r).chain([0]).collect();
        self.op(cx, Op::Transpose { perm }, &[x.into()], "to_channels_last")
    }

    /// Apply `f` (which works channels-last) to `x`, transposing around it for `channels_first`.
    fn channels_last(
        &mut self,
        cx: &Ctx,
        x: ValueId,
        f: impl FnOnce(&mut Self, ValueId) -> Result<ValueId, ModelError>,
    ) -> Result<ValueId, ModelError> {
        if !cx.channels_first()? {
            return f(self, x);
        }
        let input = self.channels_to_last(cx, x)?;
        let y = f(self, input)?;
        self.channels_to_first(cx, y)
    }

    fn channels_to_first(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let r = self.ty(x).len();
        let perm: Vec<usize> = [r - 1].into_iter().chain(0..r - 1).collect();
        self.op(cx, Op::Transpose { perm }, &[x.into()], "to_channels_first")
    }

    fn container(
        &mut self,
        c: &Container,
        path: &[(String, String)],
        given_inputs: Option<&[ValueId]>,
    ) -> Result<Vec<ValueId>, ModelError> {
        // Archive weight groups: snake-cased class names, de-duplicated in model.layers order
        // (a Sequential model's layers exclude its InputLayer) by the counter of the Keras that
        // wrote the file (see `ArchiveLayout`).
        let twice = self
            .weights
            .layout()
            .is_some_and(|l| l.weighted_count_twice);
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut autos: HashMap<&str, String> = HashMap::new();
        for l in &c.layers {
            if c.class == "Sequential" && l.class == "InputLayer" {
                continue;
            }
            let base = snake_case(&l.class);
            let n = counts.entry(base.clone()).or_insert(0);
            autos.insert(
                &l.name,
                if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}_{n}")
                },
            );
            *n += if twice && has_weights(l) { 2 } else { 1 };
        }
        let index = c.index();
        let mut tensors: HashMap<(usize, usize), Vec<ValueId>> = HashMap::new();
        for (i, k) in call_order(c)? {
            let layer = &c.layers[i];
            let mut lpath = path.to_vec();
            lpath.push((
                layer.name.clone(),
                autos.get(layer.name.as_str()).cloned().unwrap_or_default(),
            ));
            let prefix = path_key(&lpath);
            if layer.class == "InputLayer" {
                let pos = c.inputs.iter().position(|t| t.layer == layer.name);
                let v = match (given_inputs, pos) {
                    (Some(g), Some(p)) if p < g.len() => g[p],
                    (Some(_), _) => {
                        return Err(ModelError::Config(format!(
                            "nested model `{}`: input layer `{}` is not fed",
                            c.name, layer.name
                        )));
                    }
                    (None, _) => {
                        let (shape, timed) = input_shape(layer)?;
                        match self.temporal {
                            Some(t) if t != timed => {
                                return Err(ModelError::Unsupported {
                                    layer: layer.name.clone(),
                                    what: "inputs with and without a time axis in one model".into(),
                                });
                            }
                            _ => self.temporal = Some(timed),
                        }
                        self.b.input(&prefix, &shape)
                    }
                };
                tensors.insert((i, 0), vec![v]);
                continue;
            }
            let mut ins = Vec::new();
            for t in &layer.calls[k] {
                let p = index[t.layer.as_str()];
                let node = resolve_node(c, &c.layers[p], t.node).expect("checked by call_order");
                let v = tensors
                    .get(&(p, node))
                    .and_then(|outs| outs.get(t.tensor))
                    .copied()
                    .ok_or_else(|| ModelError::DanglingInput {
                        layer: layer.name.clone(),
                        tensor: t.to_string(),
                    })?;
                ins.push(v);
            }
            let outs = match &layer.inner {
                Some(inner) => self.container(inner, &lpath, Some(&ins))?,
                None => {
                    let cx = Ctx {
                        layer,
                        path: lpath,
                        prefix,
                        inner: "",
                    };
                    let y = self.layer(&cx, &ins)?;
                    if !ins.contains(&y) {
                        self.b.rename(y, &cx.prefix);
                    }
                    vec![y]
                }
            };
            tensors.insert((i, k), outs);
        }
        c.outputs
            .iter()
            .map(|t| {
                let p = *index
                    .get(t.layer.as_str())
                    .ok_or_else(|| ModelError::DanglingInput {
                        layer: c.name.clone(),
                        tensor: t.to_string(),
                    })?;
                let node = resolve_node(c, &c.layers[p], t.node);
                node.and_then(|n| tensors.get(&(p, n)))
                    .and_then(|o| o.get(t.tensor))
                    .copied()
                    .ok_or_else(|| ModelError::DanglingInput {
                        layer: c.name.clone(),
                        tensor: t.to_string(),
                    })
            })
            .collect()
    }

    fn layer(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        if self.temporal == Some(true) {
            return self.per_step_layer(cx, ins);
        }
        self.convert_layer(cx, ins)
    }

    /// Convert a layer by the registry.
    fn convert_layer(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        let class = cx.layer.class.as_str();
        match LAYERS.iter().find(|(c, _)| *c == class) {
            Some((_, convert)) => convert(self, cx, ins),
            None => Err(ModelError::UnknownLayer {
                layer: cx.layer.name.clone(),
                class: class.into(),
                supported: supported_layers().join(", "),
            }),
        }
    }

    fn elu_layer(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let alpha = cx.f64_or("alpha", 1.0)?;
        self.op(cx, neuron(NeuronModel::Elu { alpha }), &[x.into()], "elu")
    }

    fn leaky_relu(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let slope = match cx.cfg().get("negative_slope") {
            Some(v) if !v.is_null() => config_number(v),
            _ => cx.cfg().get("alpha").and_then(config_number).or(Some(0.3)),
        }
        .ok_or_else(|| cx.unsupported("negative_slope is not a number"))?;
        self.op(
            cx,
            neuron(NeuronModel::LeakyRelu {
                negative_slope: slope,
            }),
            &[x.into()],
            "leaky_relu",
        )
    }

    /// A layer of a temporal model, on one time step: one of [`PER_STEP`], with any `axis` the
    /// last one (Keras counts the batch and time axes, so the last is the per-step rank + 1).
    fn per_step_layer(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        let class = cx.layer.class.as_str();
        if !PER_STEP.contains(&class) {
            return Err(cx.unsupported(format!(
                "`{class}` in a temporal model (an input with a time axis of unknown length, run one step per simulation step): only layers acting on each time step alone are supported ({})",
                PER_STEP.join(", ")
            )));
        }
        let Some(axis) = cx.cfg().get("axis") else {
            return self.convert_layer(cx, ins);
        };
        let rank = ins.first().map_or(1, |&v| self.ty(v).len()) as i64;
        let last = match axis {
            Value::Array(a) if a.len() == 1 => a[0].as_i64(),
            v => v.as_i64(),
        };
        if !(last == Some(-1) || last == Some(rank + 1)) {
            return Err(cx.unsupported(format!(
                "`axis` {axis} in a temporal model: only the last axis is supported"
            )));
        }
        let mut layer = cx.layer.clone();
        layer.config["axis"] = Value::from(-1);
        let inner = Ctx {
            layer: &layer,
            path: cx.path.clone(),
            prefix: cx.prefix.clone(),
            inner: cx.inner,
        };
        self.convert_layer(&inner, ins)
    }

    fn softmax(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let r = self.ty(x).len() as i64;
        let axis = cx
            .cfg()
            .get("axis")
            .and_then(|a| {
                a.as_i64().or_else(|| {
                    a.as_array()
                        .and_then(|l| (l.len() == 1).then(|| l[0].as_i64()).flatten())
                })
            })
            .unwrap_or(-1);
        // Keras counts the batch axis: axis k > 0 is per-sample axis k − 1.
        let a = if axis < 0 { r + axis } else { axis - 1 };
        if axis == 0 || a < 0 || a >= r {
            return Err(cx.unsupported(format!(
                "softmax over axis {axis} (the batch axis or out of range)"
            )));
        }
        let a = a as usize;
        let r = r as usize;
        if a + 1 == r {
            return self.op(cx, Op::Softmax, &[x.into()], "softmax");
        }
        // Over another axis: move it last, take the softmax there, move it back (exact).
        let perm: Vec<usize> = (0..r).filter(|&k| k != a).chain([a]).collect();
        let mut back = vec![0; r];
        for (k, &p) in perm.iter().enumerate() {
            back[p] = k;
        }
        let t = self.op(cx, Op::Transpose { perm }, &[x.into()], "softmax_in")?;
        let y = self.op(cx, Op::Softmax, &[t.into()], "softmax_last")?;
        self.op(cx, Op::Transpose { perm: back }, &[y.into()], "softmax")
    }

    fn flatten(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let mut x = x;
        if cx.channels_first()? && self.ty(x).len() > 1 {
            x = self.channels_to_last(cx, x)?;
        }
        let n = self.ty(x).iter().product();
        if self.ty(x) == [n] {
            return Ok(x);
        }
        self.op(cx, Op::Reshape { shape: vec![n] }, &[x.into()], "flatten")
    }

    fn permute(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let dims = cx
            .ints("dims", self.ty(x).len())?
            .ok_or_else(|| cx.unsupported("Permute without `dims`"))?;
        if dims.contains(&0) {
            return Err(cx.unsupported("Permute cannot move the batch axis"));
        }
        let perm = dims.iter().map(|d| d - 1).collect();
        self.op(cx, Op::Transpose { perm }, &[x.into()], "permute")
    }

    fn concatenate(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        let Some(&first) = ins.first() else {
            return Err(cx.shape_err("`Concatenate` needs at least one input"));
        };
        let r = self.ty(first).len() as i64;
        let axis = cx.cfg().get("axis").and_then(Value::as_i64).unwrap_or(-1);
        let a = if axis < 0 { r + axis } else { axis - 1 };
        if axis == 0 || a < 0 || a >= r {
            return Err(cx.unsupported(format!(
                "concatenation along axis {axis} (the batch axis or out of range)"
            )));
        }
        let args: Vec<Operand> = ins.iter().map(|&v| v.into()).collect();
        self.op(cx, Op::Concat { axis: a as usize }, &args, "concat")
    }

    /// `Add`, or `Average` (`mean`): the sum of the inputs, scaled by 1/n for the mean.
    fn sum(&mut self, cx: &Ctx, ins: &[ValueId], mean: bool) -> Result<ValueId, ModelError> {
        let (ins, _) = self.broadcast(cx, ins, 2)?;
        let args: Vec<Operand> = ins.iter().map(|&v| v.into()).collect();
        let s = self.op(cx, Op::Add, &args, "sum")?;
        if !mean {
            return Ok(s);
        }
        let k = self.scalar(&format!("{}.inv_n", cx.prefix), 1.0 / ins.len() as f32);
        self.op(cx, Op::Scale, &[s.into(), k.into()], "mean")
    }

    /// `Subtract`: `a − b` as `a + (−1)·b` (both exact, so the same number).
    fn subtract(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        if ins.len() != 2 {
            return Err(cx.shape_err(format!("`Subtract` takes two inputs, got {}", ins.len())));
        }
        let (ins, _) = self.broadcast(cx, ins, 2)?;
        let (a, b) = (&ins[0], &ins[1]);
        let minus_one = self.scalar(&format!("{}.minus_one", cx.prefix), -1.0);
        let nb = self.op(cx, Op::Scale, &[(*b).into(), minus_one.into()], "negated")?;
        self.op(cx, Op::Add, &[(*a).into(), nb.into()], "difference")
    }

    /// `Multiply`: the elementwise product of the inputs, broadcast (a rate op).
    fn multiply(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        let (ins, _) = self.broadcast(cx, ins, 1)?;
        if ins.len() == 1 {
            return Ok(ins[0]);
        }
        let args: Vec<Operand> = ins.iter().map(|&v| v.into()).collect();
        self.op(cx, Op::Mul, &args, "product")
    }

    /// `Dot`: Keras's `batch_dot` of two inputs of one or two axes each, contracting axis
    /// `axes[0]` of the first with `axes[1]` of the second (`normalize` off). Each input is
    /// brought to `[rest, n]` (a `transpose`), repeated to `[p, q, n]` (a `gather`), multiplied
    /// and summed over `n` by a `dense` map of ones; the result has the first input's other
    /// axis, then the second's (`[1]` when neither has one).
    fn dot(&mut self, cx: &Ctx, ins: &[ValueId]) -> Result<ValueId, ModelError> {
        let [a, b] = ins else {
            return Err(cx.shape_err(format!("`Dot` takes two inputs, got {}", ins.len())));
        };
        if cx.bool_or("normalize", false) {
            return Err(cx.unsupported("Dot with normalize=True"));
        }
        let (sa, sb) = (self.ty(*a), self.ty(*b));
        if !(1..=2).contains(&sa.len()) || !(1..=2).contains(&sb.len()) {
            return Err(cx.unsupported(format!(
                "Dot of inputs shaped {sa:?} and {sb:?}: each input must have one or two axes (besides the batch)"
            )));
        }
        let axes = cx.cfg().get("axes").cloned().unwrap_or(Value::Null);
        let pair: Option<[i64; 2]> = match &axes {
            Value::Array(v) if v.len() == 2 => {
                v[0].as_i64().zip(v[1].as_i64()).map(|(x, y)| [x, y])
            }
            v => v.as_i64().map(|x| [x, x]),
        };
        // Keras counts the batch axis: axis k ≥ 1 is per-sample axis k − 1, −1 the last.
        let per_sample = |k: i64, rank: usize| {
            let r = rank as i64;
            let a = if k < 0 { r + k } else { k - 1 };
            (k != 0 && (0..r).contains(&a)).then_some(a as usize)
        };
        let (Some(ka), Some(kb)) = (
            pair.and_then(|p| per_sample(p[0], sa.len())),
            pair.and_then(|p| per_sample(p[1], sb.len())),
        ) else {
            return Err(cx.unsupported(format!(
                "Dot over axes {axes} of inputs shaped {sa:?} and {sb:?}"
            )));
        };
        let n = sa[ka];
        if sb[kb] != n {
            return Err(cx.shape_err(format!(
                "Dot contracts axis {} of {sa:?} with axis {} of {sb:?}: lengths differ",
                ka + 1,
                kb + 1
            )));
        }
        // Each input as `[rest, n]`.
        let rows = |me: &mut Self, x: ValueId, shape: &[usize], k: usize, what: &str| {
            let rest: Vec<usize> = (0..shape.len())
                .filter(|&d| d != k)
                .map(|d| shape[d])
                .collect();
            let x = if shape.len() == 2 && k == 0 {
                me.op(cx, Op::Transpose { perm: vec![1, 0] }, &[x.into()], what)?
            } else {
                x
            };
            let m: usize = rest.iter().product();
            let x = me.op(
                cx,
                Op::Reshape { shape: vec![m, n] },
                &[x.into()],
                &format!("{what}_rows"),
            )?;
            Ok::<_, ModelError>((x, m, rest))
        };
        let (xa, p, rest_a) = rows(self, *a, &sa, ka, "lhs")?;
        let (xb, q, rest_b) = rows(self, *b, &sb, kb, "rhs")?;
        let total = p
            .checked_mul(q)
            .and_then(|pq| pq.checked_mul(n))
            .filter(|&t| t <= MAX_DERIVED)
            .ok_or_else(|| cx.shape_err("Dot result too large"))?;
        let spread = |me: &mut Self, x: ValueId, left: bool, what: &str| {
            let mut idx = Vec::with_capacity(total);
            for i in 0..p {
                for j in 0..q {
                    let row = if left { i } else { j };
                    idx.extend((0..n).map(|k| (row * n + k) as i32));
                }
            }
            let table =
                me.b.constant_i32(&format!("{}.{what}_idx", path_key(&cx.path)), &[total], idx);
            me.op(
                cx,
                Op::Gather {
                    shape: vec![p, q, n],
                },
                &[x.into(), table.into()],
                what,
            )
        };
        let xa = spread(self, xa, true, "lhs_spread")?;
        let xb = spread(self, xb, false, "rhs_spread")?;
        let prod = self.op(cx, Op::Mul, &[xa.into(), xb.into()], "product")?;
        let ones = self
            .b
            .constant_f32(&format!("{}.ones", cx.prefix), &[n, 1], vec![1.0; n]);
        let summed = self.op(cx, Op::Dense, &[prod.into(), ones.into()], "sum")?;
        let mut shape: Vec<usize> = rest_a.into_iter().chain(rest_b).collect();
        if shape.is_empty() {
            shape.push(1);
        }
        self.op(cx, Op::Reshape { shape }, &[summed.into()], "dot")
    }

    /// `LayerNormalization` over the last axis (`axis` −1 or the last, `center`/`scale`,
    /// `epsilon`; not `rms_scaling`).
    fn layer_norm(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let shape = self.ty(x);
        let r = shape.len() as i64;
        let axis = match cx.cfg().get("axis") {
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_i64(),
            Some(v) => v.as_i64(),
            None => Some(-1),
        }
        .ok_or_else(|| cx.unsupported("layer normalisation over several axes"))?;
        if axis != -1 && axis != r {
            return Err(cx.unsupported(format!(
                "layer normalisation over axis {axis}; only the last axis is supported"
            )));
        }
        if cx.bool_or("rms_scaling", false) {
            return Err(cx.unsupported("rms_scaling=True"));
        }
        let c = *shape
            .last()
            .ok_or_else(|| cx.shape_err("LayerNormalization of a scalar"))?;
        let eps = cx.f64_or("epsilon", 1e-3)?;
        let (center, scale) = (cx.bool_or("center", true), cx.bool_or("scale", true));
        let gamma = if scale {
            self.weight(cx, 0, "gamma", &[c])?
        } else {
            self.b
                .constant_f32(&format!("{}.gamma", cx.prefix), &[c], vec![1.0; c])
        };
        let beta = if center {
            self.weight(cx, usize::from(scale), "beta", &[c])?
        } else {
            self.b
                .constant_f32(&format!("{}.beta", cx.prefix), &[c], vec![0.0; c])
        };
        self.op(
            cx,
            Op::LayerNorm { epsilon: eps },
            &[x.into(), gamma.into(), beta.into()],
            "layer_norm",
        )
    }

    /// `Maximum` (and `Minimum`, as `−max(−a, −b, …)`) of k inputs of one shape: the inputs
    /// stacked as `[k, n]` and max-pooled over the k cells, so `lower-maxpool` turns it into the
    /// same neural circuit as max pooling (exact in rate mode; integrate-and-fire units when
    /// spiking).
    fn extremum(&mut self, cx: &Ctx, ins: &[ValueId], is_max: bool) -> Result<ValueId, ModelError> {
        let (ins, shape) = self.broadcast(cx, ins, 1)?;
        if ins.len() == 1 {
            return Ok(ins[0]);
        }
        let n: usize = shape.iter().product();
        let minus_one = (!is_max).then(|| self.scalar(&format!("{}.minus_one", cx.prefix), -1.0));
        let mut rows = Vec::with_capacity(ins.len());
        for &x in &ins {
            let x = match minus_one {
                Some(m) => self.op(cx, Op::Scale, &[x.into(), m.into()], "negated")?,
                None => x,
            };
            rows.push(self.op(cx, Op::Reshape { shape: vec![1, n] }, &[x.into()], "row")?);
        }
        let args: Vec<Operand> = rows.iter().map(|&r| r.into()).collect();
        let stacked = self.op(cx, Op::Concat { axis: 0 }, &args, "stacked")?;
        let k = ins.len();
        let attrs = PoolAttrs {
            pool: vec![k],
            strides: vec![k],
            padding: Padding::Valid,
        };
        let m = self.op(cx, Op::MaxPool(attrs), &[stacked.into()], "max")?;
        let y = self.op(cx, Op::Reshape { shape }, &[m.into()], "shaped")?;
        match minus_one {
            Some(mo) => self.op(cx, Op::Scale, &[y.into(), mo.into()], "min"),
            None => Ok(y),
        }
    }

    fn dense(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let units = cx.cfg().get("units").and_then(positive).ok_or_else(|| {
            cx.unsupported(format!(
                "`units`: expected an integer from 1 to {MAX_CONFIG_INT}"
            ))
        })?;
        let n = *self
            .ty(x)
            .last()
            .ok_or_else(|| cx.shape_err("Dense on a scalar"))?;
        let k = self.weight(cx, 0, "kernel", &[n, units])?;
        let y = self.op(cx, Op::Dense, &[x.into(), k.into()], "dense")?;
        self.bias_activation(cx, y, 1, units)
    }

    /// `x · scale + offset`, each a number or one value per channel.
    fn rescaling(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let c = *self.ty(x).last().unwrap_or(&1);
        let mut y = x;
        for (key, default, op) in [("scale", 1.0, Op::Scale), ("offset", 0.0, Op::Bias)] {
            let values: Vec<f32> = match cx.cfg().get(key) {
                None | Some(Value::Null) => vec![default],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| config_number(v).map(|f| f as f32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| cx.unsupported(format!("`{key}` is not numeric")))?,
                Some(v) => vec![
                    config_number(v).ok_or_else(|| cx.unsupported(format!("`{key}` = {v}")))?
                        as f32,
                ],
            };
            if values.len() == 1 && values[0] == default {
                continue;
            }
            let shape: Vec<usize> = if values.len() == 1 { vec![] } else { vec![c] };
            if values.len() != 1 && values.len() != c {
                return Err(
                    cx.shape_err(format!("{} `{key}` values for {c} channels", values.len()))
                );
            }
            let k = self
                .b
                .constant_f32(&format!("{}.{key}", cx.prefix), &shape, values);
            y = self.op(cx, op, &[y.into(), k.into()], key)?;
        }
        Ok(y)
    }

    fn relu(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let threshold = cx.f64_or("threshold", 0.0)?;
        if threshold != 0.0 {
            return Err(cx.unsupported(format!(
                "threshold={threshold}: a shifted ReLU is not a neuron snnc has"
            )));
        }
        let slope = cx.f64_or("negative_slope", 0.0)?;
        let model = if slope == 0.0 {
            NeuronModel::Relu
        } else {
            NeuronModel::LeakyRelu {
                negative_slope: slope,
            }
        };
        let y = self.op(cx, neuron(model), &[x.into()], "relu")?;
        match cx.cfg().get("max_value") {
            None | Some(Value::Null) => Ok(y),
            Some(m) => {
                // min(f(x), m) = f(x) − relu(x − m) for m ≥ 0, exactly.
                let m = config_number(m)
                    .filter(|m| *m >= 0.0)
                    .ok_or_else(|| cx.unsupported(format!("max_value={m}")))?;
                let neg_m = self.scalar(&format!("{}.neg_max", cx.prefix), -m as f32);
                let minus_one = self.scalar(&format!("{}.minus_one", cx.prefix), -1.0);
                let shifted = self.op(cx, Op::Bias, &[x.into(), neg_m.into()], "over")?;
                let excess = self.op(cx, neuron(NeuronModel::Relu), &[shifted.into()], "excess")?;
                let neg = self.op(
                    cx,
                    Op::Scale,
                    &[excess.into(), minus_one.into()],
                    "neg_excess",
                )?;
                self.op(cx, Op::Add, &[y.into(), neg.into()], "capped")
            }
        }
    }

    fn batch_norm(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let shape = self.ty(x);
        let r = shape.len() as i64;
        let axis = match cx.cfg().get("axis") {
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_i64(),
            Some(v) => v.as_i64(),
            None => Some(-1),
        }
        .ok_or_else(|| cx.unsupported("normalisation over several axes"))?;
        let a = if axis < 0 { r + axis } else { axis - 1 };
        if axis == 0 || a < 0 || a >= r {
            return Err(cx.unsupported(format!("normalisation over axis {axis}")));
        }
        let a = a as usize;
        let c = shape[a];
        let eps = cx.f64_or("epsilon", 1e-3)?;
        let (center, scale) = (cx.bool_or("center", true), cx.bool_or("scale", true));
        let mut idx = 0;
        let mut next = |present: bool| {
            let i = idx;
            if present {
                idx += 1;
            }
            i
        };
        let (gi, bi) = (next(scale), next(center));
        let (mi, vi) = (next(true), next(true));
        let gamma = if scale {
            self.weight(cx, gi, "gamma", &[c])?
        } else {
            self.b
                .constant_f32(&format!("{}.gamma", cx.prefix), &[c], vec![1.0; c])
        };
        let beta = if center {
            self.weight(cx, bi, "beta", &[c])?
        } else {
            self.b
                .constant_f32(&format!("{}.beta", cx.prefix), &[c], vec![0.0; c])
        };
        let mean = self.weight(cx, mi, "moving_mean", &[c])?;
        let var = self.weight(cx, vi, "moving_variance", &[c])?;
        let last = a + 1 == shape.len();
        let mut input = x;
        if !last {
            let perm: Vec<usize> = (0..shape.len()).filter(|&i| i != a).chain([a]).collect();
            input = self.op(cx, Op::Transpose { perm }, &[x.into()], "axis_last")?;
        }
        let args = [
            input.into(),
            gamma.into(),
            beta.into(),
            mean.into(),
            var.into(),
        ];
        let y = self.op(cx, Op::BatchNorm { epsilon: eps }, &args, "bn")?;
        if last {
            return Ok(y);
        }
        // Inverse permutation: move the last axis back to position a.
        let n = shape.len();
        let perm: Vec<usize> = (0..n)
            .map(|i| {
                if i < a {
                    i
                } else if i == a {
                    n - 1
                } else {
                    i - 1
                }
            })
            .collect();
        self.op(cx, Op::Transpose { perm }, &[y.into()], "axis_back")
    }

    fn reshape(&mut self, cx: &Ctx, x: ValueId) -> Result<ValueId, ModelError> {
        let target = cx
            .cfg()
            .get("target_shape")
            .and_then(Value::as_array)
            .ok_or_else(|| cx.unsupported("Reshape without `target_shape`"))?;
        let n: usize = self.ty(x).iter().product();
        let mut shape = Vec::new();
        let mut hole = None;
        for (i, d) in target.iter().enumerate() {
            match d.as_i64() {
                Some(-1) | None if hole.is_none() => {
                    hole = Some(i);
                    shape.push(1);
                }
                Some(v) if v > 0 => shape.push(v as usize),
                _ => {
                    return Err(
                        cx.unsupported(format!("target_shape {}", Value::Array(target.clone())))
                    );
                }
            }
        }
        let known: usize = shape.iter().product();
        if let Some(h) = hole {
            if known == 0 || !n.is_multiple_of(known) {
                return Err(cx.shape_err(format!(
                    "cannot reshape {n} elements to {}",
                    Value::Array(target.clone())
                )));
            }
            shape[h] = n / known;
        }
        self.op(cx, Op::Reshape { shape }, &[x.into()], "reshape")
    }

    fn conv(&mut self, cx: &Ctx, x: ValueId, d: usize) -> Result<ValueId, ModelError> {
        let shape = self.windowed_shape(cx, x, d)?;
        let filters = cx.filters()?;
        let kernel = cx
            .ints("kernel_size", d)?
            .ok_or_else(|| cx.unsupported("no `kernel_size`"))?;
        let strides = cx.ints("strides", d)?.unwrap_or(vec![1; d]);
        let dilation = cx.ints("dilation_rate", d)?.unwrap_or(vec![1; d]);
        let groups = match cx.cfg().get("groups") {
            None | Some(Value::Null) => 1,
            Some(v) => positive(v).ok_or_else(|| {
                cx.unsupported(format!(
                    "`groups` = {v}: expected an integer from 1 to {MAX_CONFIG_INT}"
                ))
            })?,
        };
        let cin = shape[d];
        if groups == 0 || !cin.is_multiple_of(groups) {
            return Err(cx.shape_err(format!(
                "groups={groups} does not divide {cin} input channels"
            )));
        }
        let mut kshape = kernel.clone();
        kshape.extend([cin / groups, filters]);
        let k = self.weight(cx, 0, "kernel", &kshape)?;
        let mut src = x;
        let padding = match cx.str_or("padding", "valid") {
            "causal" if d == 1 => {
                let left = (kernel[0] - 1) * dilation[0];
                src = self.op(
                    cx,
                    Op::Pad {
                        pads: vec![[left, 0], [0, 0]],
                    },
                    &[x.into()],
                    "causal_pad",
                )?;
                Padding::Valid
            }
            _ => cx.padding()?,
        };
        let attrs = ConvAttrs {
            strides,
            padding,
            dilation,
            groups,
        };
        let y = self.op(cx, Op::Conv(attrs), &[src.into(), k.into()], "conv")?;
        self.bias_activation(cx, y, 1, filters)
    }

    /// `DepthwiseConv1D/2D` (`separable` false) and `SeparableConv1D/2D` (a depthwise
    /// convolution, then a 1×1 convolution to `filters` channels). A depthwise kernel
    /// `[k..., cin, multiplier]` is a grouped convolution with `cin` groups of `multiplier` outputs:
    /// output channel `c·multiplier + m` reads input channel `c`, which is Keras's order, so the
    /// kernel's elements stay in place as `[k..., 1, cin·multiplier]`.
    fn depthwise_conv(
        &mut self,
        cx: &Ctx,
        x: ValueId,
        d: usize,
        separable: bool,
    ) -> Result<ValueId, ModelError> {
        let shape = self.windowed_shape(cx, x, d)?;
        let kernel = cx
            .ints("kernel_size", d)?
            .ok_or_else(|| cx.unsupported("no `kernel_size`"))?;
        let strides = cx.ints("strides", d)?.unwrap_or(vec![1; d]);
        let dilation = cx.ints("dilation_rate", d)?.unwrap_or(vec![1; d]);
        let mult = match cx.cfg().get("depth_multiplier") {
            None | Some(Value::Null) => 1,
            Some(v) => positive(v).ok_or_else(|| {
                cx.unsupported(format!(
                    "`depth_multiplier` = {v}: expected an integer from 1 to {MAX_CONFIG_INT}"
                ))
            })?,
        };
        let cin = shape[d];
        let mid = cin
            .checked_mul(mult)
            .filter(|&m| m as u64 <= MAX_CONFIG_INT)
            .ok_or_else(|| cx.unsupported("input channels × depth_multiplier too large"))?;
        let mut kshape = kernel.clone();
        kshape.extend([cin, mult]);
        let mut stored = kernel.clone();
        stored.extend([1, mid]);
        let k = self.weight_as(cx, 0, "depthwise_kernel", &kshape, &stored)?;
        let attrs = ConvAttrs {
            strides,
            padding: cx.padding()?,
            dilation,
            groups: cin,
        };
        let mut y = self.op(cx, Op::Conv(attrs), &[x.into(), k.into()], "depthwise")?;
        let mut channels = mid;
        let mut next = 1;
        if separable {
            let filters = cx.filters()?;
            let mut pshape = vec![1; d];
            pshape.extend([mid, filters]);
            let p = self.weight(cx, 1, "pointwise_kernel", &pshape)?;
            y = self.op(
                cx,
                Op::Conv(unit_conv(d)),
                &[y.into(), p.into()],
                "pointwise",
            )?;
            channels = filters;
            next = 2;
        }
        self.bias_activation(cx, y, next, channels)
    }

    /// `Conv1D/2D/3DTranspose` (TensorFlow's `conv_transpose`): the input with `stride − 1`
    /// zeros between cells (a `gather` from the input and one zero), padded, then a stride-1
    /// `conv` with the kernel flipped along every spatial axis and its channel axes swapped
    /// (Keras stores `[k..., filters, in]`). Output length per axis: `(in − 1)·s + k` for
    /// `valid`, `in·s` for `same` (the full result cut from `⌊max(k − s, 0)/2⌋` on).
    fn conv_transpose(&mut self, cx: &Ctx, x: ValueId, d: usize) -> Result<ValueId, ModelError> {
        let shape = self.windowed_shape(cx, x, d)?;
        let filters = cx.filters()?;
        let kernel = cx
            .ints("kernel_size", d)?
            .ok_or_else(|| cx.unsupported("no `kernel_size`"))?;
        let strides = cx.ints("strides", d)?.unwrap_or(vec![1; d]);
        let dilation = cx.ints("dilation_rate", d)?.unwrap_or(vec![1; d]);
        // `output_padding` may be 0 (`ints` takes only positive numbers).
        let output_padding = match cx.cfg().get("output_padding") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let int = |p: &Value| {
                    p.as_u64()
                        .filter(|&p| p <= MAX_CONFIG_INT)
                        .map(|p| p as usize)
                };
                let vals: Option<Vec<usize>> = match v {
                    Value::Array(a) if a.len() == d => a.iter().map(int).collect(),
                    Value::Number(_) => int(v).map(|p| vec![p; d]),
                    _ => None,
                };
                Some(vals.ok_or_else(|| {
                    cx.unsupported(format!("`output_padding` = {v}: expected {d} integer(s)"))
                })?)
            }
        };
        let same = cx.padding()? == Padding::Same;
        let cin = shape[d];
        let mut kshape = kernel.clone();
        kshape.extend([filters, cin]);
        let w = self.layer_weights(cx)?;
        let a = w.first().ok_or_else(|| ModelError::MissingWeight {
            layer: cx.layer.name.clone(),
            what: "0 (`kernel`; the file has none for this layer)".into(),
        })?;
        if a.shape() != kshape.as_slice() {
            return Err(ModelError::WeightShape {
                layer: cx.layer.name.clone(),
                weight: "kernel".into(),
                expected: kshape,
                got: a.shape().to_vec(),
            });
        }
        // Zero insertion: cell i of each axis goes to i·s; every other cell reads one zero
        // appended after the flattened input.
        let dilated: Vec<usize> = (0..d).map(|a| (shape[a] - 1) * strides[a] + 1).collect();
        let mut dshape = dilated.clone();
        dshape.push(cin);
        let n: usize = shape.iter().product();
        let total = dshape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .filter(|&t| t <= MAX_DERIVED && n < MAX_DERIVED)
            .ok_or_else(|| cx.shape_err("transposed convolution too large"))?;
        let in_strides = snnc_ir::geometry::strides_of(&shape);
        let mut idx = Vec::with_capacity(total);
        snnc_ir::geometry::for_each_index(&dshape, |_, at| {
            let mut flat = at[d];
            for a in 0..d {
                if at[a] % strides[a] != 0 {
                    idx.push(n as i32);
                    return;
                }
                flat += at[a] / strides[a] * in_strides[a];
            }
            idx.push(flat as i32);
        });
        let flat = self.op(cx, Op::Reshape { shape: vec![n] }, &[x.into()], "flat")?;
        let padded = self.op(
            cx,
            Op::Pad { pads: vec![[0, 1]] },
            &[flat.into()],
            "with_zero",
        )?;
        let table = self.b.constant_i32(
            &format!("{}.zero_insert_idx", path_key(&cx.path)),
            &[total],
            idx,
        );
        let xd = self.op(
            cx,
            Op::Gather { shape: dshape },
            &[padded.into(), table.into()],
            "dilated",
        )?;
        // Keras's output length (`deconv_output_length`) and TensorFlow's placement: input
        // cell i's tap t lands on output cell i·s + t·dilation − before, where `before` is
        // half the padding a forward convolution of that length would take (none if valid).
        let mut pads = Vec::with_capacity(d + 1);
        for a in 0..d {
            let (s, k) = (strides[a], (kernel[a] - 1) * dilation[a] + 1);
            let n = shape[a];
            let out = match (&output_padding, same) {
                (None, true) => n * s,
                (None, false) => n * s + k.saturating_sub(s),
                (Some(op), _) => {
                    let pad = if same { k / 2 } else { 0 };
                    ((n - 1) * s + k + op[a])
                        .checked_sub(2 * pad)
                        .filter(|&o| o > 0)
                        .ok_or_else(|| cx.shape_err("transposed convolution output is empty"))?
                }
            };
            let before = if same {
                ((n - 1) * s + k).saturating_sub(out) / 2
            } else {
                0
            };
            // A stride-1 convolution (with the layer's dilation) of the padded length gives
            // `out` cells.
            let (Some(lead), Some(after)) = (
                (k - 1).checked_sub(before),
                (out + k - 1).checked_sub(dilated[a] + (k - 1).saturating_sub(before)),
            ) else {
                return Err(cx.unsupported(format!(
                    "transposed convolution geometry on axis {}: kernel {k}, stride {s}, output length {out}",
                    a + 1
                )));
            };
            pads.push([lead, after]);
        }
        pads.push([0, 0]);
        let xp = self.op(cx, Op::Pad { pads }, &[xd.into()], "padded")?;
        // kernel'[t'..., ci, co] = kernel[k − 1 − t'..., co, ci].
        let taps: usize = kernel.iter().product();
        let mut data = vec![0f32; taps * cin * filters];
        let src = a.as_standard_layout();
        let src = src.as_slice().expect("standard layout");
        let tap_strides = snnc_ir::geometry::strides_of(&kernel);
        snnc_ir::geometry::for_each_index(&kernel, |t, at| {
            let flipped: usize = (0..d)
                .map(|ax| (kernel[ax] - 1 - at[ax]) * tap_strides[ax])
                .sum();
            for ci in 0..cin {
                for co in 0..filters {
                    data[(t * cin + ci) * filters + co] = src[(flipped * filters + co) * cin + ci];
                }
            }
        });
        let mut cshape = kernel.clone();
        cshape.extend([cin, filters]);
        let k = self
            .b
            .constant_f32(&format!("{}.kernel", path_key(&cx.path)), &cshape, data);
        let attrs = ConvAttrs {
            dilation,
            ..unit_conv(d)
        };
        let y = self.op(cx, Op::Conv(attrs), &[xp.into(), k.into()], "conv")?;
        self.bias_activation(cx, y, 1, filters)
    }

    /// `Cropping1D/2D/3D`: a `gather` of the cells left, channels last.
    fn crop(&mut self, cx: &Ctx, x: ValueId, d: usize) -> Result<ValueId, ModelError> {
        let shape = self.windowed_shape(cx, x, d)?;
        let crops = cx.side_pairs("cropping", d)?;
        let mut out = Vec::with_capacity(d + 1);
        for (a, c) in crops.iter().enumerate() {
            match shape[a].checked_sub(c[0] + c[1]).filter(|&n| n > 0) {
                Some(n) => out.push(n),
                None => {
                    return Err(cx.shape_err(format!(
                        "cropping {c:?} on axis {} leaves nothing of its {} cells",
                        a + 1,
                        shape[a]
                    )));
                }
            }
        }
        out.push(shape[d]);
        if shape
            .iter()
            .try_fold(1usize, |a, &n| a.checked_mul(n))
            .is_none_or(|n| n > MAX_DERIVED)
        {
            return Err(cx.shape_err(format!("{shape:?} has too many elements to crop")));
        }
        let strides = snnc_ir::geometry::strides_of(&shape);
        let mut idx = Vec::with_capacity(out.iter().product());
        snnc_ir::geometry::for_each_index(&out, |_, at| {
            let mut flat = at[d];
            for a in 0..d {
                flat += (at[a] + crops[a][0]) * strides[a];
            }
            idx.push(flat as i32);
        });
        let name = format!("{}.crop_idx", path_key(&cx.path));
        let table = self.b.constant_i32(&name, &[idx.len()], idx);
        self.op(
            cx,
            Op::Gather { shape: out },
            &[x.into(), table.into()],
            "crop",
        )
    }

    fn pool(
        &mut self,
        cx: &Ctx,
        x: ValueId,
        d: usize,
        is_max: bool,
    ) -> Result<ValueId, ModelError> {
        let pool = cx.ints("pool_size", d)?.unwrap_or(vec![2; d]);
        let strides = cx.ints("strides", d)?.unwrap_or_else(|| pool.clone());
        let attrs = PoolAttrs {
            pool,
            strides,
            padding: cx.padding()?,
        };
        let op = if is_max {
            Op::MaxPool(attrs)
        } else {
            Op::AvgPool(attrs)
        };
        let y = self.op(
            cx,
            op,
            &[x.into()],
            if is_max { "max_pool" } else { "avg_pool" },
        )?;
        Ok(y)
    }

    fn global_pool(
        &mut self,
        cx: &Ctx,
        x: ValueId,
        d: usize,
        is_max: bool,
    ) -> Result<ValueId, ModelError> {
        if self.ty(x).len() != d + 1 {
            return Err(cx.shape_err(format!(
                "needs a rank-{} input, got {:?}",
                d + 1,
                self.ty(x)
            )));
        }
        let op = if is_max {
            Op::GlobalMaxPool
        } else {
            Op::GlobalAvgPool
        };
        let y = self.op(cx, op, &[x.into()], "global_pool")?;
        if !cx.bool_or("keepdims", false) {
            return Ok(y);
        }
        let c = self.ty(y)[0];
        let mut shape = vec![1; d];
        shape.push(c);
        self.op(cx, Op::Reshape { shape }, &[y.into()], "keepdims")
    }

    fn zero_pad(&mut self, cx: &Ctx, x: ValueId, d: usize) -> Result<ValueId, ModelError> {
        let mut pads = cx.side_pairs("padding", d)?;
        pads.push([0, 0]);
        let y = self.op(cx, Op::Pad { pads }, &[x.into()], "pad")?;
        Ok(y)
    }

    fn upsample(&mut self, cx: &Ctx, x: ValueId, d: usize) -> Result<ValueId, ModelError> {
        let interp = cx.str_or("interpolation", "nearest");
        if interp != "nearest" {
            return Err(cx.unsupported(format!(
                "interpolation `{interp}`; only nearest is supported"
            )));
        }
        let factors = cx.ints("size", d)?.unwrap_or(vec![2; d]);
        let y = self.op(cx, Op::Upsample { factors }, &[x.into()], "upsample")?;
        Ok(y)
    }
}

/// An input layer's per-sample shape, and whether its first axis is a time axis of unknown
/// length (`Input((None, ...))`, a temporal model): then the shape is that of one time step.
fn input_shape(layer: &Layer) -> Result<(Vec<usize>, bool), ModelError> {
    let dims = declared_batch_shape(&layer.config).ok_or_else(|| ModelError::Unsupported {
        layer: layer.name.clone(),
        what: "input layer without `batch_shape`".into(),
    })?;
    let timed = dims.len() >= 3 && dims[1].is_null();
    dims.iter()
        .skip(if timed { 2 } else { 1 })
        .map(|d| d.as_u64().map(|n| n as usize))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ModelError::Unsupported {
            layer: layer.name.clone(),
            what: format!(
                "input shapes must be fully specified (but for a leading time axis), got {}",
                Value::Array(dims.clone())
            ),
        })
        .map(|s| (s, timed))
}

/// Layers a temporal model may hold: each acts on one time step alone (on the last axis, or
/// elementwise), so the model runs one step per simulation step.
const PER_STEP: &[&str] = &[
    "Dense",
    "Activation",
    "ReLU",
    "ELU",
    "LeakyReLU",
    "Softmax",
    "BatchNormalization",
    "LayerNormalization",
    "Rescaling",
    "Concatenate",
    "Add",
    "Subtract",
    "Average",
    "Multiply",
    "Maximum",
    "Minimum",
    "Dropout",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
    "TimeDistributed",
    "SpikingActivation",
    "Lowpass",
    "Alpha",
];

#[cfg(test)]
mod tests {
    use super::output_names;
    use crate::keras::graph::{Container, TensorRef};

    /// Keras 2's `Functional._set_output_names`: repeats get `_1`, `_2`, … per layer, skipping
    /// names already taken.
    #[test]
    fn output_names_follow_keras() {
        let out = |layer: &str, node| TensorRef {
            layer: layer.into(),
            node,
            tensor: 0,
        };
        let top = Container {
            name: "m".into(),
            class: "Functional".into(),
            layers: Vec::new(),
            inputs: Vec::new(),
            keras2_nodes: false,
            outputs: vec![
                out("re_lu", 0),
                out("re_lu", 1),
                out("re_lu_1", 0),
                out("re_lu", 2),
                out("dense", 0),
            ],
        };
        assert_eq!(
            output_names(&top),
            ["re_lu", "re_lu_1", "re_lu_1_1", "re_lu_2", "dense"]
        );
    }
}
