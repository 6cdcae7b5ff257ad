//! Choosing per-layer firing-rate scales from calibration data (`--normalize-rates`).
//!
//! The compiler does not simulate; the caller runs the rate modules this module builds and hands
//! back the statistics. Two rules:
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

/// A rate module with every ReLU-family population also exposed as an output, and their names.
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
                    name: format!("act/{name}"),
                    value: Operand::Value(y),
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
