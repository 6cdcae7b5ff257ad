//! The scalar semantics of every op, written once: what SPEC.md says each op computes, per
//! element, in f32 and in a fixed operation order.
//!
//! The runtime's interpreter calls these functions element by element; its JIT mirrors them
//! operation for operation in Cranelift IR (neurons, synapses, bias, scale, add, pooling folds)
//! or calls them as host functions for the transcendental ones (sigmoid, tanh, LIF, softmax), so
//! the two backends compute bit-identical numbers without either calling into the other. The
//! compiler's constant folding uses them too. SPEC.md states the same formulas.

use crate::ops::{Neuron, NeuronModel};

/// A rate neuron's output for input current `x`: `amplitude · model(gain · x)`.
/// Spiking models are not rate functions; see [`spiking_step`] and [`lif_step`].
pub fn rate(n: &Neuron, x: f32) -> f32 {
    let (g, a) = (n.gain as f32, n.amplitude as f32);
    match n.model {
        NeuronModel::Relu => relu(x, g, a),
        NeuronModel::LeakyRelu { negative_slope } => leaky_relu(x, g, a, negative_slope as f32),
        NeuronModel::Sigmoid => sigmoid(x, g, a),
        NeuronModel::Tanh => tanh(x, g, a),
        NeuronModel::LifRate { tau_rc, tau_ref } => {
            lif_rate(x, g, a, tau_rc as f32, tau_ref as f32)
        }
        _ => {
            let (code, p0, p1) = activation_code(&n.model).expect("spiking models have state");
            activation(code, x, g, a, p0, p1)
        }
    }
}

/// Keras's fixed SELU constants.
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

/// The activations without a Nengo neuron type as `(code, p0, p1)` for [`activation`];
/// `None` for the other models.
pub fn activation_code(model: &NeuronModel) -> Option<(i32, f32, f32)> {
    Some(match *model {
        NeuronModel::Elu { alpha } => (0, alpha as f32, 0.0),
        NeuronModel::Selu => (1, 0.0, 0.0),
        NeuronModel::Softplus => (2, 0.0, 0.0),
        NeuronModel::Softsign => (3, 0.0, 0.0),
        NeuronModel::Swish => (4, 0.0, 0.0),
        NeuronModel::Gelu { tanh: false } => (5, 0.0, 0.0),
        NeuronModel::Gelu { tanh: true } => (6, 0.0, 0.0),
        NeuronModel::HardSigmoid { slope, offset } => (7, slope as f32, offset as f32),
        NeuronModel::Exponential => (8, 0.0, 0.0),
        NeuronModel::Relu6 => (9, 0.0, 0.0),
        NeuronModel::Mish => (10, 0.0, 0.0),
        _ => return None,
    })
}

fn softplus(x: f32) -> f32 {
    max0(x) + (-x.abs()).exp().ln_1p()
}

/// `a · f(g·x)` for the activation of [`activation_code`] `code` with parameters `p0`, `p1`
/// (SPEC.md §4.4 gives each formula). C linkage: generated code calls it per lane.
pub extern "C" fn activation(code: i32, x: f32, g: f32, a: f32, p0: f32, p1: f32) -> f32 {
    let x = g * x;
    let elu = |alpha: f32| if x > 0.0 { x } else { alpha * x.exp_m1() };
    let y = match code {
        0 => elu(p0),
        1 => SELU_SCALE * elu(SELU_ALPHA),
        2 => softplus(x),
        3 => x / (1.0 + x.abs()),
        4 => x / (1.0 + (-x).exp()),
        5 => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        6 => {
            let c = (2.0 / std::f32::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
        }
        7 => (p0 * x + p1).clamp(0.0, 1.0),
        8 => x.exp(),
        9 => max0(x).min(6.0),
        10 => x * softplus(x).tanh(),
        _ => f32::NAN,
    };
    a * y
}

/// `max(x, 0)` with `NaN` and `±0` giving `+0` (the select the JIT emits).
#[inline]
pub fn max0(x: f32) -> f32 {
    if x > 0.0 { x } else { 0.0 }
}

/// ReLU: `a · max(g·x, 0)`.
pub extern "C" fn relu(x: f32, g: f32, a: f32) -> f32 {
    a * max0(g * x)
}

/// Leaky ReLU: `a · (g·x < 0 ? s·g·x : g·x)`.
pub extern "C" fn leaky_relu(x: f32, g: f32, a: f32, s: f32) -> f32 {
    let x = g * x;
    a * if x < 0.0 { s * x } else { x }
}

/// Sigmoid: `a / (1 + e^(−g·x))`.
pub extern "C" fn sigmoid(x: f32, g: f32, a: f32) -> f32 {
    a / (1.0 + (-g * x).exp())
}

/// Tanh: `a · tanh(g·x)`.
pub extern "C" fn tanh(x: f32, g: f32, a: f32) -> f32 {
    a * (g * x).tanh()
}

/// Nengo's LIFRate: `a / (tau_ref + tau_rc · ln(1 + 1/(g·x − 1)))` when `g·x > 1`, else 0.
pub extern "C" fn lif_rate(x: f32, g: f32, a: f32, rc: f32, rf: f32) -> f32 {
    let jj = g * x - 1.0;
    if jj > 0.0 {
        a / (rf + rc * (1.0 / jj).ln_1p())
    } else {
        0.0
    }
}

/// `⌊x⌋`, exactly `f32::floor` (but for the sign of a zero result, `+0` for `-0`), without the
/// libm call a build for baseline x86-64 makes of it: below 2²³ in magnitude by truncation,
/// beyond that (where every f32 is an integer) and for NaN by `f32::floor`.
#[inline]
pub fn floor(x: f32) -> f32 {
    if x.abs() < 8_388_608.0 {
        let t = x as i32 as f32;
        if t > x { t - 1.0 } else { t }
    } else {
        x.floor()
    }
}

/// One step of the integrate-and-fire family (`spiking_relu`, `spiking_leaky_relu`,
/// `if_neuron`) on input current `j` and voltage `v`: returns the output and the new voltage.
///
/// `drive` is the rectified current (`max(g·j, 0)`; leaky: `g·j` or `s·g·j`; IF: `g·j`), the
/// voltage integrates `drive · dt`, the spike count is `floor(v)` (leaky: `trunc(v)`, so negative
/// spikes; IF: `max(floor(v), 0)`), the output is `a/dt · count` and the voltage loses the count.
pub fn spiking_step(
    model: &NeuronModel,
    (g, a, dt): (f32, f32, f32),
    j: f32,
    v: f32,
) -> (f32, f32) {
    let x = g * j;
    let (drive, count): (f32, fn(f32) -> f32) = match model {
        NeuronModel::SpikingRelu => (max0(x), floor),
        NeuronModel::SpikingLeakyRelu { negative_slope } => (
            if x > 0.0 {
                x
            } else {
                *negative_slope as f32 * x
            },
            f32::trunc,
        ),
        NeuronModel::IfNeuron => (x, |v| max0(floor(v))),
        _ => unreachable!("not an integrate-and-fire model"),
    };
    let v = v + drive * dt;
    let spikes = count(v);
    (a / dt * spikes, v - spikes)
}

/// One unit of a `fixed_relu` voltage: voltages are integers in units of 2⁻²⁴ (the threshold).
pub const FIXED_ONE: i64 = 1 << 24;

/// The largest drive per step a `fixed_relu` takes, in [`FIXED_ONE`] units (64 spikes per step):
/// it keeps `voltage + steps · drive` within `i64` for 2³² steps.
pub const FIXED_MAX_DRIVE: i64 = 1 << 30;

/// A `fixed_relu` drive per step in [`FIXED_ONE`] units: `max(g·j, 0)·dt` in f32, as
/// `spiking_relu` computes it, rounded to the nearest multiple of 2⁻²⁴ (ties to even) and capped
/// at [`FIXED_MAX_DRIVE`]; NaN drives nothing.
#[inline]
pub fn fixed_drive((g, dt): (f32, f32), j: f32) -> i64 {
    // Exact in f64 (an f32 times a power of two); `max0` made it non-negative (NaN: 0).
    let d = (f64::from(max0(g * j) * dt) * FIXED_ONE as f64).min(FIXED_MAX_DRIVE as f64);
    // Adding and taking away 2⁵² rounds a number in [0, 2⁵¹) to an integer, ties to even,
    // without a libm call.
    const MAGIC: f64 = (1u64 << 52) as f64;
    ((d + MAGIC) - MAGIC) as i64
}

/// A voltage as a `fixed_relu` reads it: `⌊v·2²⁴⌋` in [`FIXED_ONE`] units, within ±2⁴⁰ (NaN: 0).
/// Every voltage a step writes is exact in this form.
#[inline]
pub fn fixed_voltage(v: f32) -> i64 {
    const LIMIT: f64 = (1u64 << 40) as f64;
    let x = (f64::from(v) * FIXED_ONE as f64).clamp(-LIMIT, LIMIT);
    // Truncation, one lower for a negative non-integer (`as` maps NaN to 0).
    let t = x as i64;
    t - i64::from((t as f64) > x)
}

/// One `fixed_relu` step on one element: `(output, new voltage)`. In [`FIXED_ONE`] units,
/// `V = fixed_voltage(v) + fixed_drive(j)`, `n = ⌊V / 2²⁴⌋` spikes, and the new voltage is
/// `(V − n·2²⁴) / 2²⁴`, in `[0, 1)` and exact in f32. Output `a/dt · n`.
///
/// Integer arithmetic makes the closed form exact: under a drive `q` held from a voltage `V₀`,
/// the spikes of the `k`-th step are `⌊(V₀+k·q)/2²⁴⌋ − ⌊(V₀+(k−1)·q)/2²⁴⌋`, bit for bit what
/// stepping gives.
pub fn fixed_relu_step((g, a, dt): (f32, f32, f32), j: f32, v: f32) -> (f32, f32) {
    let (n, rest, _) = fixed_relu_integers((g, dt), j, v);
    (a / dt * n as f32, rest as f32 / FIXED_ONE as f32)
}

/// [`fixed_relu_step`] in integers: the spikes `n`, the new voltage in [`FIXED_ONE`] units (in
/// `[0, 2²⁴)`) and the drive `q` the step added.
#[inline]
pub fn fixed_relu_integers((g, dt): (f32, f32), j: f32, v: f32) -> (i64, i64, i64) {
    let q = fixed_drive((g, dt), j);
    let total = fixed_voltage(v) + q;
    let n = total >> 24;
    (n, total - (n << 24), q)
}

/// One `leaky_if` step on one element: `(output, new voltage)` from the current `j` and the
/// voltage `v`, with gain `g`, amplitude `a`, step `dt` and `decay` in f32:
/// `v = decay·v + (g·j)·dt`; a spike when `v > 1`, after which `v = 0`.
pub fn leaky_if_step((g, a, dt, decay): (f32, f32, f32, f32), j: f32, v: f32) -> (f32, f32) {
    let v = decay * v + (g * j) * dt;
    if v > 1.0 { (a / dt, 0.0) } else { (0.0, v) }
}

/// The parameters of Nengo's LIF neuron in f32, as one step uses them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct LifParams {
    /// Gain on the input current.
    pub gain: f32,
    /// Output amplitude (a spike is `amplitude / dt`).
    pub amplitude: f32,
    /// Step (s).
    pub dt: f32,
    /// Membrane time constant (s).
    pub tau_rc: f32,
    /// Refractory period (s).
    pub tau_ref: f32,
    /// Lowest voltage.
    pub min_voltage: f32,
}

impl LifParams {
    /// The parameters of neuron `n` (a `lif`) stepping by `dt` seconds.
    pub fn new(n: &Neuron, dt: f64) -> Self {
        let NeuronModel::Lif {
            tau_rc,
            tau_ref,
            min_voltage,
        } = n.model
        else {
            unreachable!("not a lif neuron")
        };
        LifParams {
            gain: n.gain as f32,
            amplitude: n.amplitude as f32,
            dt: dt as f32,
            tau_rc: tau_rc as f32,
            tau_ref: tau_ref as f32,
            min_voltage: min_voltage as f32,
        }
    }
}

/// One step of Nengo's LIF on input current `j`, voltage `v` and refractory time `r`: returns
/// the output, the new voltage and the new refractory time (Nengo's `LIF.step`, in f32).
pub fn lif_step(p: &LifParams, j: f32, v: f32, r: f32) -> (f32, f32, f32) {
    let dt = p.dt;
    let x = p.gain * j;
    let r = r - dt;
    let delta_t = (dt - r).clamp(0.0, dt);
    let v = v - (x - v) * (-delta_t / p.tau_rc).exp_m1();
    if v > 1.0 {
        let t_spike = dt + p.tau_rc * (-(v - 1.0) / (x - 1.0)).ln_1p();
        (p.amplitude / dt, 0.0, p.tau_ref + t_spike)
    } else {
        (0.0, v.max(p.min_voltage), r)
    }
}

/// [`lif_step`] with C linkage for generated code: writes output, voltage and refractory time
/// to `out[0..3]`.
///
/// # Safety
/// `p` must point to valid parameters and `out` to three writable floats.
pub unsafe extern "C" fn lif_step_c(p: *const LifParams, j: f32, v: f32, r: f32, out: *mut f32) {
    // SAFETY: guaranteed by the caller.
    let (p, out) = unsafe { (&*p, std::slice::from_raw_parts_mut(out, 3)) };
    let (y, v, r) = lif_step(p, j, v, r);
    out.copy_from_slice(&[y, v, r]);
}

/// The decay `e^(−dt/tau)` of a lowpass synapse, computed in f64 and rounded once.
pub fn lowpass_decay(dt: f64, tau: f64) -> f32 {
    (-dt / tau).exp() as f32
}

/// One lowpass step: `decay · s + (1 − decay) · x` for input `x` and previous value `s`.
pub fn lowpass_step(decay: f32, x: f32, s: f32) -> f32 {
    decay * s + (1.0 - decay) * x
}

/// The exact ZOH step of Nengo's `Alpha(tau) = 1/(tau·s + 1)²` in the state coordinates the IR
/// uses: `y` (the filtered output) and `z` (the first state of Nengo's controllable canonical
/// form). One step is
/// `y' = yz·z + yy·y + yu·u` and `z' = zz·z + zy·y + zu·u`.
/// Derivation (SPEC.md, `alpha`): the state matrix has the double eigenvalue `−1/tau`, so
/// `exp(A·dt) = e^{−dt/tau}(I + (A + I/tau)·dt)` in closed form; `tau = 0` is a passthrough.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlphaCoefficients {
    /// Weight of `z` in `y'`.
    pub yz: f32,
    /// Weight of `y` in `y'`.
    pub yy: f32,
    /// Weight of `u` in `y'`.
    pub yu: f32,
    /// Weight of `z` in `z'`.
    pub zz: f32,
    /// Weight of `y` in `z'`.
    pub zy: f32,
    /// Weight of `u` in `z'`.
    pub zu: f32,
}

impl AlphaCoefficients {
    /// Coefficients for step `dt` and time constant `tau` (seconds), computed in f64.
    pub fn new(dt: f64, tau: f64) -> Self {
        if tau <= 0.0 {
            return AlphaCoefficients {
                yz: 0.0,
                yy: 0.0,
                yu: 1.0,
                zz: 0.0,
                zy: 0.0,
                zu: 0.0,
            };
        }
        let e = (-dt / tau).exp();
        let r = dt / tau;
        AlphaCoefficients {
            yz: (e * dt / (tau * tau)) as f32,
            yy: (e * (1.0 + r)) as f32,
            yu: ((1.0 - e) - r * e) as f32,
            zz: (e * (1.0 - r)) as f32,
            zy: (-e * dt) as f32,
            zu: (dt * e) as f32,
        }
    }

    /// One step on input `u` and previous `y`, `z`: the new `(y, z)`, each summed as
    /// `(wz·z + wy·y) + wu·u`.
    pub fn step(&self, u: f32, y: f32, z: f32) -> (f32, f32) {
        (
            self.yz * z + self.yy * y + self.yu * u,
            self.zz * z + self.zy * y + self.zu * u,
        )
    }
}

/// Inference batch normalisation of one element: `gamma · (x − mean) / sqrt(var + eps) + beta`.
pub fn batch_norm(x: f32, (gamma, beta, mean, var): (f32, f32, f32, f32), eps: f32) -> f32 {
    gamma * (x - mean) / (var + eps).sqrt() + beta
}

/// Softmax of one row: `e^(x − max) / Σ e^(x − max)`, the sum taken in order.
pub fn softmax_row(xs: &[f32], ys: &mut [f32]) {
    let mx = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = (x - mx).exp();
        sum += *y;
    }
    ys.iter_mut().for_each(|y| *y /= sum);
}

/// [`softmax_row`] with C linkage for generated code, on `n` floats.
///
/// # Safety
/// `x` must point to `n` readable floats and `y` to `n` writable floats not overlapping them.
pub unsafe extern "C" fn softmax_row_c(x: *const f32, y: *mut f32, n: u64) {
    // SAFETY: guaranteed by the caller.
    let (xs, ys) = unsafe {
        (
            std::slice::from_raw_parts(x, n as usize),
            std::slice::from_raw_parts_mut(y, n as usize),
        )
    };
    softmax_row(xs, ys)
}

/// `bias`: `x + p`.
pub fn bias(x: f32, p: f32) -> f32 {
    x + p
}

/// `scale`: `x · p`.
pub fn scale(x: f32, p: f32) -> f32 {
    x * p
}

/// One more operand of `add`: `acc + x` (operands are summed in order).
pub fn add(acc: f32, x: f32) -> f32 {
    acc + x
}

/// One more operand of `mul`: `acc · x` (operands are multiplied in order).
pub fn mul(acc: f32, x: f32) -> f32 {
    acc * x
}

/// Layer normalisation of one row: `mean = Σx/c`, `var = Σ(x − mean)²/c` (sums in order),
/// `y = (x − mean) / sqrt(var + eps) · gamma + beta`.
pub fn layer_norm_row(xs: &[f32], gamma: &[f32], beta: &[f32], eps: f32, ys: &mut [f32]) {
    let c = xs.len().max(1) as f32;
    let mean = xs.iter().sum::<f32>() / c;
    let var = xs.iter().map(|&x| (x - mean) * (x - mean)).sum::<f32>() / c;
    let root = (var + eps).sqrt();
    for (((y, &x), &g), &b) in ys.iter_mut().zip(xs).zip(gamma).zip(beta) {
        *y = (x - mean) / root * g + b;
    }
}

/// A pooling fold: the start value, one step and the finish over `n` taps. Padding never takes
/// part (it is left out of the window and of the average's divisor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// Average: `0`, `acc + x`, `acc / n`.
    Avg,
    /// Maximum: `−∞`, `x > acc ? x : acc` (a NaN never wins), `acc`.
    Max,
}

impl Fold {
    /// The value before the first tap.
    pub fn init(self) -> f32 {
        match self {
            Fold::Avg => 0.0,
            Fold::Max => f32::NEG_INFINITY,
        }
    }

    /// Fold in one tap.
    pub fn step(self, acc: f32, x: f32) -> f32 {
        match self {
            Fold::Avg => acc + x,
            Fold::Max => {
                if x > acc {
                    x
                } else {
                    acc
                }
            }
        }
    }

    /// The result after `n` taps.
    pub fn finish(self, acc: f32, n: usize) -> f32 {
        match self {
            Fold::Avg => acc / n as f32,
            Fold::Max => acc,
        }
    }
}

/// Whether dense maps and convolutions accumulate with fused multiply-adds: on x86-64 when the
/// CPU has AVX2 and FMA (decided once per process), so every backend, row and batch rounds the
/// same way. Elsewhere each term is `acc + x·w`.
pub fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FMA.get_or_init(|| {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One term of a dense map or convolution: `acc + x·w`, fused when [`fused_multiply_add`].
/// A zero input contributes nothing (linear maps skip it), whatever the weight.
pub fn multiply_add(fused: bool, x: f32, w: f32, acc: f32) -> f32 {
    if fused {
        x.mul_add(w, acc)
    } else {
        acc + x * w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_is_a_passthrough_at_zero_tau() {
        let c = AlphaCoefficients::new(0.001, 0.0);
        assert_eq!(c.step(3.0, 1.0, 2.0), (3.0, 0.0));
    }

    #[test]
    fn spiking_relu_counts_whole_crossings() {
        let m = NeuronModel::SpikingRelu;
        // 2.5 units of voltage per step from v = 0.75: 3.25 → 3 spikes, 0.25 left.
        let (y, v) = spiking_step(&m, (1.0, 1.0, 1.0), 2.5, 0.75);
        assert_eq!((y, v), (3.0, 0.25));
        // Negative currents never drive a spiking ReLU.
        assert_eq!(spiking_step(&m, (1.0, 1.0, 1.0), -4.0, 0.5), (0.0, 0.5));
        // An IF unit integrates them and never spikes negatively.
        let (y, v) = spiking_step(&NeuronModel::IfNeuron, (1.0, 1.0, 1.0), -4.0, 0.5);
        assert_eq!((y, v), (0.0, -3.5));
    }

    #[test]
    fn fixed_relu_steps_in_integers() {
        let p = (1.0, 1.0, 1.0);
        // 2.5 units from 0.75, as the spiking ReLU: 3 spikes, 0.25 left.
        assert_eq!(fixed_relu_step(p, 2.5, 0.75), (3.0, 0.25));
        assert_eq!(fixed_relu_step(p, -4.0, 0.5), (0.0, 0.5));
        assert_eq!(fixed_relu_step(p, f32::NAN, 0.5), (0.0, 0.5));
        assert_eq!(fixed_relu_step(p, f32::INFINITY, 0.0), (64.0, 0.0));
        // A drive of 0.1 is 1677721.6 units, rounded to 1677722: after 10 steps from 0 the
        // voltage is 4 units past the threshold, so exactly one spike, at step 10.
        let (mut v, mut spikes) = (0.0, Vec::new());
        for k in 1..=10 {
            let (y, v1) = fixed_relu_step(p, 0.1, v);
            if y > 0.0 {
                spikes.push(k);
            }
            v = v1;
        }
        assert_eq!(spikes, [10]);
        assert_eq!(fixed_voltage(v), 4);
    }

    #[test]
    fn floor_is_f32_floor() {
        let mut x = 1.0e-30f32;
        let cases = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            0.99999994,
            -0.99999994,
            2.5,
            -2.5,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            -8_388_609.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::MIN,
        ];
        for &c in &cases {
            assert_eq!(floor(c), c.floor(), "{c}");
        }
        assert!(floor(f32::NAN).is_nan());
        while x < 1e10 {
            for v in [x, -x, x + 0.5, -x - 0.5] {
                assert_eq!(floor(v), v.floor(), "{v}");
            }
            x *= 1.37;
        }
    }

    #[test]
    fn folds() {
        let taps = [1.0, f32::NAN, 3.0, 2.0];
        let max = taps
            .iter()
            .fold(Fold::Max.init(), |a, &x| Fold::Max.step(a, x));
        assert_eq!(Fold::Max.finish(max, 4), 3.0);
        let sum = [1.0, 2.0, 6.0]
            .iter()
            .fold(Fold::Avg.init(), |a, &x| Fold::Avg.step(a, x));
        assert_eq!(Fold::Avg.finish(sum, 3), 3.0);
    }
}
