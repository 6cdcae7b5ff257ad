//! Layers about time: `TimeDistributed`, and keras-spiking's `SpikingActivation`, `Lowpass`
//! and `Alpha` (the layers NengoDL registers converters for).
//!
//! In a temporal model (an input `Input((None, ...))`, one time step per simulation step) a
//! `TimeDistributed` layer is its wrapped layer on the step, and keras-spiking's layers become
//! snnc's own spiking neuron and synapses with state carried from step to step. A
//! `TimeDistributed` over a time axis of known length runs its layer on each slice.

use super::super::philox;
use super::*;
use snnc_ir::StateInit;

/// The most time steps a `TimeDistributed` over a known-length axis is unrolled into.
const MAX_UNROLLED_STEPS: usize = 1024;

/// Activations whose values are never negative: keras-spiking's spike count `⌊v⌋` of them is
/// snnc's `spiking_relu` on the activation's output, exactly.
const NON_NEGATIVE: &[&str] = &[
    "relu",
    "sigmoid",
    "softplus",
    "relu6",
    "hard_sigmoid",
    "exponential",
];

/// The layer a `TimeDistributed` wraps, as a layer of its own. It keeps the wrapper's name,
/// which is where its weights are stored.
pub(super) fn wrapped_layer(l: &Layer) -> Result<Layer, ModelError> {
    let spec = l.config.get("layer");
    let class = spec
        .and_then(|s| s.get("class_name"))
        .and_then(Value::as_str);
    match (class, spec.and_then(|s| s.get("config"))) {
        (Some(class), Some(config)) if !STRUCTURAL.contains(&class) => Ok(Layer {
            name: l.name.clone(),
            class: class.to_string(),
            config: config.clone(),
            calls: Vec::new(),
            inner: None,
        }),
        (Some(class), Some(_)) => Err(ModelError::Unsupported {
            layer: l.name.clone(),
            what: format!("a `{class}` model inside `TimeDistributed`"),
        }),
        _ => Err(ModelError::Unsupported {
            layer: l.name.clone(),
            what: "`TimeDistributed` without the `layer` it wraps (class_name and config)".into(),
        }),
    }
}

impl Converter<'_> {
    /// `TimeDistributed(layer)`: the layer on one time step of a temporal model; over a time
    /// axis of known length, the layer on each slice `x[t]`, stacked again.
    pub(super) fn time_distributed(
        &mut self,
        cx: &Ctx,
        ins: &[ValueId],
    ) -> Result<ValueId, ModelError> {
        let x = one(cx, ins)?;
        let layer = wrapped_layer(cx.layer)?;
        let wrapped = |prefix: String| Ctx {
            layer: &layer,
            path: cx.path.clone(),
            prefix,
            inner: "layer",
        };
        if self.temporal == Some(true) {
            return self.convert_layer(&wrapped(cx.prefix.clone()), &[x]);
        }
        let shape = self.ty(x);
        let (steps, step_shape) = match shape.split_first() {
            Some((&t, rest)) if !rest.is_empty() => (t, rest.to_vec()),
            _ => {
                return Err(cx.shape_err(format!(
                    "`TimeDistributed` needs a time axis and at least one more, got {shape:?}"
                )));
            }
        };
        if steps > MAX_UNROLLED_STEPS {
            return Err(cx.unsupported(format!(
                "`TimeDistributed` over {steps} time steps of known length (at most {MAX_UNROLLED_STEPS} are unrolled; declare the time axis as None to run one step per simulation step)"
            )));
        }
        let size: usize = step_shape.iter().product();
        if size.checked_mul(steps).is_none_or(|n| n > MAX_DERIVED) {
            return Err(cx.shape_err(format!("{shape:?} has too many elements")));
        }
        let mut outs = Vec::with_capacity(steps);
        for t in 0..steps {
            let idx = (t * size..(t + 1) * size).map(|i| i as i32).collect();
            let table =
                self.b
                    .constant_i32(&format!("{}.step{t}", path_key(&cx.path)), &[size], idx);
            let slice = self.op(
                cx,
                Op::Gather {
                    shape: step_shape.clone(),
                },
                &[x.into(), table.into()],
                &format!("step{t}"),
            )?;
            let y = self.convert_layer(&wrapped(format!("{}.step{t}", cx.prefix)), &[slice])?;
            let stacked: Vec<usize> = [1].into_iter().chain(self.ty(y)).collect();
            outs.push(self.op(
                cx,
                Op::Reshape { shape: stacked },
                &[y.into()],
                &format!("step{t}_out"),
            )?);
        }
        let args: Vec<Operand> = outs.into_iter().map(Operand::from).collect();
        self.op(cx, Op::Concat { axis: 0 }, &args, "stacked")
    }

    /// The options every keras-spiking layer shares, checked; its `dt`.
    fn keras_spiking_dt(&self, cx: &Ctx) -> Result<f64, ModelError> {
        if self.temporal != Some(true) {
            return Err(cx.unsupported(format!(
                "`{}` runs over time: the model needs an input with a time axis of unknown length (`Input((None, ...))`), fed one step per simulation step",
                cx.layer.class
            )));
        }
        for (key, wanted) in [
            ("return_sequences", true),
            ("return_state", false),
            ("time_major", false),
        ] {
            if cx.bool_or(key, wanted) != wanted {
                return Err(cx.unsupported(format!(
                    "`{key}={}` (snnc outputs every step of the sequence, batch-major)",
                    !wanted
                )));
            }
        }
        let dt = cx.f64_or("dt", 0.001)?;
        if !(dt.is_finite() && dt > 0.0) {
            return Err(cx.unsupported(format!("`dt` = {dt}: expected a positive time step")));
        }
        Ok(dt)
    }

    /// keras-spiking's `SpikingActivation`: `v += f(x)·dt; n = ⌊v⌋; v −= n`, output `n/dt`,
    /// the voltages starting where keras-spiking's `seed` puts them (TensorFlow's stateless
    /// uniform draw for one sample, as NengoDL takes it) or, without a seed, uniform at random.
    pub(super) fn spiking_activation(
        &mut self,
        cx: &Ctx,
        x: ValueId,
    ) -> Result<ValueId, ModelError> {
        let dt = self.keras_spiking_dt(cx)?;
        let act = cx.cfg().get("activation");
        let name = activation_name(act).unwrap_or_else(|| "?".into());
        let j = match name.as_str() {
            "relu" => x,
            n if NON_NEGATIVE.contains(&n) => self.activation(cx, x, act)?,
            _ => {
                return Err(cx.unsupported(format!(
                    "`SpikingActivation` of `{name}`: snnc's spiking neurons count ⌊v⌋ of a rate that is never negative ({})",
                    NON_NEGATIVE.join(", ")
                )));
            }
        };
        let shape = self.ty(x);
        let init = match cx.cfg().get("seed").and_then(Value::as_i64) {
            Some(seed) => {
                let n = shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .filter(|&n| n <= MAX_DERIVED)
                    .ok_or_else(|| cx.shape_err(format!("{shape:?} has too many elements")))?;
                let v0 = philox::stateless_uniform(n, seed, seed);
                StateInit::Const(self.b.constant_f32(
                    &format!("{}.v0", path_key(&cx.path)),
                    &shape,
                    v0,
                ))
            }
            None => StateInit::Uniform {
                lo: 0.0,
                hi: 1.0,
                seed: self.b.module().states.len() as u64,
            },
        };
        let v = self.b.state(&format!("{}.v", cx.prefix), &shape, init);
        // The layer's own dt against the simulation's: `v += (g·J)·dt_sim`, spikes of
        // `a/dt_sim`, with g = dt/dt_sim and a = dt_sim/dt (both 1 when they agree).
        let ratio = dt / self.b.module().dt;
        let op = Op::Neuron(Neuron {
            model: NeuronModel::SpikingRelu,
            gain: ratio,
            amplitude: 1.0 / ratio,
        });
        let rs = self
            .b
            .op(
                op,
                &[j.into(), Operand::State(v)],
                &format!("{}.spikes", cx.prefix),
            )
            .map_err(|e| cx.shape_err(e.to_string()))?;
        self.b.next(v, rs[1]);
        Ok(rs[0])
    }

    /// keras-spiking's `Lowpass` (`alpha` false) or `Alpha` filter, from its `tau` and
    /// `initial_level` weights and its `dt`: snnc's `lowpass`/`alpha` synapse when every unit
    /// has one time constant, else the same zero-order-hold recurrence written out with
    /// per-unit coefficients (computed in f32 as keras-spiking does). Each step outputs the
    /// filtered value of this step, as keras-spiking does.
    pub(super) fn keras_spiking_filter(
        &mut self,
        cx: &Ctx,
        x: ValueId,
        alpha: bool,
    ) -> Result<ValueId, ModelError> {
        let dt = self.keras_spiking_dt(cx)?;
        let shape = self.ty(x);
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(cx.shape_err(format!("`{}` of an empty input {shape:?}", cx.layer.class)));
        }
        let wcx = Ctx {
            layer: cx.layer,
            path: cx.path.clone(),
            prefix: cx.prefix.clone(),
            inner: "layer/cell",
        };
        // Lowpass keeps `[1, *shape]` weights, Alpha flat `[n]` ones.
        let stored: Vec<usize> = if alpha {
            vec![n]
        } else {
            [1].into_iter().chain(shape.iter().copied()).collect()
        };
        let level = self.weight_data(&wcx, 0, "initial_level", &stored)?;
        let tau = self.weight_data(&wcx, 1, "tau", &stored)?;
        let tau: Vec<f32> = tau.into_iter().map(|t| t.max(1e-8)).collect();
        if let Some(bad) = tau.iter().find(|t| !t.is_finite()) {
            return Err(cx.unsupported(format!("`tau` = {bad}: expected a finite time constant")));
        }
        let key = path_key(&cx.path);
        let level_init = if level.iter().all(|&l| l == 0.0) {
            StateInit::Zeros
        } else {
            StateInit::Const(
                self.b
                    .constant_f32(&format!("{key}.initial_level"), &shape, level),
            )
        };
        let y = self
            .b
            .state(&format!("{}.y", cx.prefix), &shape, level_init);
        let z = alpha.then(|| {
            self.b
                .state(&format!("{}.z", cx.prefix), &shape, StateInit::Zeros)
        });
        let name = format!("{}.filtered", cx.prefix);
        let fail = |e: snnc_ir::BuildError| cx.shape_err(e.to_string());
        if tau.iter().all(|&t| t == tau[0]) {
            // One time constant: snnc's synapse, its τ scaled so that dt_sim/τ' = dt/τ.
            let tau = f64::from(tau[0]) * self.b.module().dt / dt;
            let (op, mut args) = match alpha {
                false => (Op::Lowpass { tau }, vec![x.into(), Operand::State(y)]),
                true => (Op::Alpha { tau }, vec![x.into(), Operand::State(y)]),
            };
            args.extend(z.map(Operand::State));
            let rs = self.b.op(op, &args, &name).map_err(fail)?;
            self.b.next(y, rs[0]);
            if let Some(z) = z {
                self.b.next(z, rs[1]);
            }
            return Ok(rs[0]);
        }
        let dt32 = dt as f32;
        let r: Vec<f32> = tau.iter().map(|&t| dt32 / t).collect();
        let e: Vec<f32> = r.iter().map(|&r| (-r).exp()).collect();
        let mut coef = |what: &str, f: &dyn Fn(usize) -> f32| -> Operand {
            let data = (0..n).map(f).collect();
            self.b
                .constant_f32(&format!("{key}.{what}"), &shape, data)
                .into()
        };
        let Some(z) = z else {
            // y' = (1 − a)·x + a·y, a = e^{−dt/τ}.
            let b = coef("input_gain", &|k| 1.0 - e[k]);
            let a = coef("decay", &|k| e[k]);
            let terms = [(x.into(), b), (Operand::State(y), a)];
            let y1 = self.weighted_sum(cx, &terms, "filtered")?;
            self.b.next(y, y1);
            return Ok(y1);
        };
        // keras-spiking's state x = (x0, x1) with output x1:
        // x0' = e(1 − r)·x0 − e·r/τ·x1 + e·r/τ·in,  x1' = e·dt·x0 + e(1 + r)·x1 + (1 − e(1 + r))·in.
        let a00 = coef("a00", &|k| e[k] * (1.0 - r[k]));
        let a01 = coef("a01", &|k| e[k] * -(r[k] / tau[k]));
        let b0 = coef("b0", &|k| e[k] * (r[k] / tau[k]));
        let a10 = coef("a10", &|k| e[k] * dt32);
        let a11 = coef("a11", &|k| e[k] * (1.0 + r[k]));
        let b1 = coef("b1", &|k| 1.0 - e[k] * (1.0 + r[k]));
        let (x0, x1) = (Operand::State(z), Operand::State(y));
        let z1 = self.weighted_sum(cx, &[(x0, a00), (x1, a01), (x.into(), b0)], "filtered_x0")?;
        let y1 = self.weighted_sum(cx, &[(x0, a10), (x1, a11), (x.into(), b1)], "filtered")?;
        self.b.next(z, z1);
        self.b.next(y, y1);
        Ok(y1)
    }

    /// `Σ vᵢ·cᵢ`, summed left to right.
    fn weighted_sum(
        &mut self,
        cx: &Ctx,
        terms: &[(Operand, Operand)],
        suffix: &str,
    ) -> Result<ValueId, ModelError> {
        let mut products = Vec::with_capacity(terms.len());
        for (k, &(v, c)) in terms.iter().enumerate() {
            products.push(Operand::from(self.op(
                cx,
                Op::Scale,
                &[v, c],
                &format!("{suffix}_term{k}"),
            )?));
        }
        self.op(cx, Op::Add, &products, suffix)
    }
}
