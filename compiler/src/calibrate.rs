//! Choosing per-layer firing-rate scales from calibration data (`--normalize-rates`).
//!
//! The compiler does not simulate: [`measure`] runs the rate modules it builds through the
//! caller's [`Simulate`] callback and computes the statistics. Two rules:
//!
//! - **percentile** (Rueckauer et al. 2017): `g_l = r_max / a_l`, where `a_l` is the p-th percentile
//!   of layer l's non-zero activations — every layer's busy neurons fire near `r_max`.
//! - **budget** (snnc's): minimise the total spike count subject to a bound on the logit error the
//!   spike quantisation causes. A population with gain `g` reports its value with an error of
//!   about `1/(g·τ)` per neuron (`τ` the synapse, or the run time without one), uniform, so layer l
//!   adds a logit error variance `w_l / (12 g_l² τ²)`, where `w_l` is the layer's measured
//!   sensitivity (logit variance per unit of noise variance on its active neurons: silent
//!   neurons do not spike, so they add no quantisation noise); it costs
//!   `g_l · S_l` spikes per second (`S_l` its summed activation). The Lagrange condition gives
//!   `g_l ∝ (w_l / S_l)^{1/3}`: large, busy layers that matter little get low gains, small late
//!   layers high ones. The common factor is set so the predicted logit error's standard
//!   deviation is a fraction (`error_fraction`) of the median top-1/top-2 logit margin.

use crate::passes::rewrite::Rewriter;
use snnc_ir::{Module, NeuronModel, Op, Operand};

/// Why calibration could not measure a module.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// Calibration feeds one input.
    #[error("--normalize-rates supports single-input models; this one has {0} inputs")]
    Inputs(usize),
    /// Nothing to scale.
    #[error("the model has no ReLU-family layer to scale")]
    NoLayer,
    /// No data.
    #[error("the calibration data holds no samples")]
    NoSamples,
    /// The caller's simulation failed.
    #[error("simulating the calibration module: {0}")]
    Simulate(String),
}

/// Runs a rate module for one step on every calibration sample and returns each of its outputs
/// flat, sample after sample (the compiler does not simulate; the caller does, with the runtime).
pub type Simulate<'a> = dyn FnMut(&Module) -> Result<Vec<Vec<f32>>, String> + 'a;

/// Statistics of every ReLU-family population of the rate module `m` on `samples` calibration
/// samples (run by `simulate`), and the median top-1/top-2 margin of its first output.
///
/// A layer's sensitivity is measured by adding a fixed uniform noise pattern of amplitude
/// `δ = max(0.05·p, 10⁻³)` (`p` its percentile activation) to it and taking the mean squared
/// change of the logits per unit noise variance `δ²/3`, weighted by the fraction of its neurons
/// that are active (only they spike, so only they carry quantisation noise).
pub fn measure(
    m: &Module,
    samples: usize,
    percentile: f64,
    simulate: &mut Simulate,
) -> Result<(Vec<LayerStats>, f64), CalibrateError> {
    if m.inputs.len() != 1 {
        return Err(CalibrateError::Inputs(m.inputs.len()));
    }
    if samples == 0 {
        return Err(CalibrateError::NoSamples);
    }
    let (probe, names) = probe_activations(m);
    if names.is_empty() {
        return Err(CalibrateError::NoLayer);
    }
    let outs = simulate(&probe).map_err(CalibrateError::Simulate)?;
    let n = samples;
    let logits = &outs[0];
    let classes = (logits.len() / n).max(1);
    let mut margins: Vec<f64> = logits
        .chunks(classes)
        .map(|r| {
            let mut v: Vec<f32> = r.to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            (v[0] - v.get(1).copied().unwrap_or(0.0)) as f64
        })
        .collect();
    margins.sort_by(f64::total_cmp);
    let median_margin = margins[margins.len() / 2];
    let mut stats = Vec::new();
    for (k, name) in names.iter().enumerate() {
        // The probe of this population, found by its kind and name.
        let probe_name = format!("{ACTIVATION_PROBE_PREFIX}{name}");
        let at = probe
            .outputs
            .iter()
            .position(|o| o.kind == snnc_ir::OutputKind::Probe && o.name == probe_name)
            .expect("probe_activations adds a probe per population");
        let a = &outs[at];
        let neurons = a.len() / n;
        let activity = a.iter().map(|&x| x.max(0.0) as f64).sum::<f64>() / n as f64;
        let mut nz: Vec<f32> = a.iter().copied().filter(|&x| x > 0.0).collect();
        nz.sort_by(f32::total_cmp);
        let p = if nz.is_empty() {
            0.0
        } else {
            nz[((percentile / 100.0) * (nz.len() - 1) as f64).round() as usize] as f64
        };
        let delta = (0.05 * p).max(1e-3);
        let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ (k as u64 + 1);
        let noise: Vec<f32> = (0..neurons)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (((s >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 1.0) as f32 * delta as f32
            })
            .collect();
        let noisy = simulate(&perturb(m, name, noise)).map_err(CalibrateError::Simulate)?;
        let diff: f64 = noisy[0]
            .iter()
            .zip(logits.iter())
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let sigma2 = delta * delta / 3.0;
        let density = nz.len() as f64 / a.len().max(1) as f64;
        stats.push(LayerStats {
            name: name.clone(),
            neurons,
            activity,
            percentile: p,
            sensitivity: density * diff / sigma2,
        });
    }
    Ok((stats, median_margin))
}

/// The name prefix of the activation probes [`probe_activations`] adds.
pub const ACTIVATION_PROBE_PREFIX: &str = "act/";

/// A rate module with every ReLU-family population also exposed as a probe output, and their
/// names.
pub fn probe_activations(m: &Module) -> (Module, Vec<String>) {
    let mut out = m.clone();
    let mut names = Vec::new();
    for inst in &m.insts {
        if let Op::Neuron(n) = &inst.op
            && matches!(n.model, NeuronModel::Relu | NeuronModel::LeakyRelu { .. })
        {
            for g in 0..inst.groups() {
                let y = inst.group(g).1[0];
                let name = m.value(y).name.clone();
                out.outputs.push(snnc_ir::Output {
                    name: format!("{ACTIVATION_PROBE_PREFIX}{name}"),
                    value: Operand::Value(y),
                    kind: snnc_ir::OutputKind::Probe,
                });
                names.push(name);
            }
        }
    }
    (out, names)
}

/// `m` with `noise` added to the population named `layer` (for measuring its sensitivity).
pub fn perturb(m: &Module, layer: &str, noise: Vec<f32>) -> Module {
    let mut rw = Rewriter::new(m);
    for inst in &m.insts {
        let new = rw.copy(inst).expect("copying a verified module");
        // The population's output: an instruction's first result, or a merged group's.
        let per_group = inst.results.len() / inst.groups();
        for k in (0..inst.results.len()).step_by(per_group.max(1)) {
            if m.value(inst.results[k]).name != layer {
                continue;
            }
            let shape = m.value(inst.results[k]).ty.shape.clone();
            let c =
                rw.b.constant_f32(&format!("{layer}.noise"), &shape, noise.clone());
            let y =
                rw.b.op1(
                    Op::Bias,
                    &[new[k].into(), c.into()],
                    &format!("{layer}.noisy"),
                )
                .expect("same shape");
            rw.set(inst.results[k], Operand::Value(y));
        }
    }
    rw.finish()
}

/// What calibration measured about one population.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    /// Population name.
    pub name: String,
    /// Number of neurons.
    pub neurons: usize,
    /// Mean over samples of the summed activation (spikes per second per unit gain).
    pub activity: f64,
    /// The chosen percentile of its non-zero activations.
    pub percentile: f64,
    /// Logit variance per unit noise variance on its active neurons.
    pub sensitivity: f64,
}

/// The rule for choosing gains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormalizeRule {
    /// `g = max_rate / percentile`.
    Percentile {
        /// Target rate of the percentile activation (Hz).
        max_rate: f64,
    },
    /// Fewest spikes for a logit error of `error_fraction` × the median logit margin.
    Budget {
        /// Allowed error standard deviation as a fraction of the median margin.
        error_fraction: f64,
        /// Integration time constant (s): the synapse, or the run time without one.
        tau: f64,
    },
}

/// Per-layer gains (`--scale-firing-rates LAYER=g`) for the rule.
pub fn choose_gains(
    stats: &[LayerStats],
    median_margin: f64,
    rule: NormalizeRule,
) -> Vec<(String, f64)> {
    match rule {
        NormalizeRule::Percentile { max_rate } => stats
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    if s.percentile > 0.0 {
                        max_rate / s.percentile
                    } else {
                        max_rate
                    },
                )
            })
            .collect(),
        NormalizeRule::Budget {
            error_fraction,
            tau,
        } => {
            let eps = 1e-12;
            let shape: Vec<f64> = stats
                .iter()
                .map(|s| ((s.sensitivity + eps) / (s.activity + eps)).cbrt())
                .collect();
            // Σ w_l / (12 κ² u_l² τ²) = (f·m)²  ⇒  κ² = Σ w_l / u_l² / (12 τ² (f m)²)
            let budget = (error_fraction * median_margin).max(eps);
            let sum: f64 = stats
                .iter()
                .zip(&shape)
                .map(|(s, u)| s.sensitivity / (u * u))
                .sum();
            let kappa = (sum / (12.0 * tau * tau * budget * budget)).sqrt();
            stats
                .iter()
                .zip(&shape)
                .map(|(s, u)| (s.name.clone(), (kappa * u).max(1.0)))
                .collect()
        }
    }
}
