//! `--normalize-rates`: measure the rate network on calibration data and choose per-layer gains.

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, Axis, Slice};
use snnc_compiler::calibrate::{
    LayerStats, NormalizeRule, choose_gains, perturb, probe_activations,
};
use snnc_ir::{Module, Target};
use snnc_runtime::{Backend, Record, Simulator};

/// Run `m` (rate, one input) for one step on `data` in batches; returns every output.
fn run_rate(m: &Module, data: &ArrayD<f32>) -> Result<Vec<ArrayD<f32>>> {
    let v = snnc_ir::verify(m.clone(), Target::Any)
        .map_err(|e| anyhow::anyhow!("calibration module: {e}"))?;
    let n = data.shape()[0];
    let batch = n.min(64);
    let mut sim = Simulator::new(&v, Backend::Interp, batch)?;
    let mut parts: Vec<Vec<ArrayD<f32>>> = vec![Vec::new(); v.outputs.len()];
    for lo in (0..n).step_by(batch) {
        let hi = (lo + batch).min(n);
        let mut x = ArrayD::zeros(crate::npy::batch_shape(data, batch));
        x.slice_axis_mut(Axis(0), Slice::from(0..hi - lo))
            .assign(&data.slice_axis(Axis(0), Slice::from(lo..hi)));
        sim.reset(0);
        let outs = sim.run(1, &[x.view()], Record::LastStep)?;
        for (p, o) in parts.iter_mut().zip(outs) {
            p.push(o.slice_axis(Axis(0), Slice::from(0..hi - lo)).to_owned());
        }
    }
    parts
        .iter()
        .map(|p| {
            let views: Vec<_> = p.iter().map(|a| a.view()).collect();
            ndarray::concatenate(Axis(0), &views).context("joining calibration batches")
        })
        .collect()
}

/// Statistics of every ReLU-family population of the rate module `m` on `data`, and the
/// median top-1/top-2 margin of its first output.
pub fn measure(m: &Module, data: &ArrayD<f32>, percentile: f64) -> Result<(Vec<LayerStats>, f64)> {
    if m.inputs.len() != 1 {
        bail!("--normalize-rates supports single-input models");
    }
    let (probe, names) = probe_activations(m);
    if names.is_empty() {
        bail!("--normalize-rates: the model has no ReLU-family layer to scale");
    }
    let outs = run_rate(&probe, data)?;
    let logits = &outs[0];
    let n = logits.shape()[0];
    let classes = logits.len() / n.max(1);
    let flat = logits.to_shape((n, classes)).context("flattening logits")?;
    let mut margins: Vec<f64> = flat
        .outer_iter()
        .map(|r| {
            let mut v: Vec<f32> = r.to_vec();
            v.sort_by(|a, b| b.total_cmp(a));
            (v[0] - v.get(1).copied().unwrap_or(0.0)) as f64
        })
        .collect();
    margins.sort_by(f64::total_cmp);
    let median_margin = margins[margins.len() / 2];
    let first_act = m.outputs.len();
    let mut stats = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let a = &outs[first_act + k];
        let neurons = a.len() / n.max(1);
        let activity = a.iter().map(|&x| x.max(0.0) as f64).sum::<f64>() / n as f64;
        let mut nz: Vec<f32> = a.iter().copied().filter(|&x| x > 0.0).collect();
        nz.sort_by(f32::total_cmp);
        let p = if nz.is_empty() {
            0.0
        } else {
            nz[((percentile / 100.0) * (nz.len() - 1) as f64).round() as usize] as f64
        };
        // Sensitivity: logit variance caused by a fixed uniform noise pattern on this layer.
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
        let noisy = run_rate(&perturb(m, name, noise), data)?;
        let diff: f64 = noisy[0]
            .iter()
            .zip(logits.iter())
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / n as f64;
        let sigma2 = delta * delta / 3.0;
        // Only active neurons spike, so only they carry quantisation noise: weight the
        // sensitivity (measured with noise on every neuron) by the fraction that is active.
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

/// Per-layer gains for `m` (a rate module) chosen by `rule` from `data`.
pub fn gains(
    m: &Module,
    data: &ArrayD<f32>,
    rule: NormalizeRule,
    percentile: f64,
) -> Result<Vec<(String, f64)>> {
    let (stats, margin) = measure(m, data, percentile)?;
    let g = choose_gains(&stats, margin, rule);
    eprintln!(
        "normalize-rates: median logit margin {margin:.3}; {}",
        stats
            .iter()
            .zip(&g)
            .map(|(s, (_, g))| format!(
                "{} (n={}, activity {:.1}, p{} {:.3}, sensitivity {:.3}) gain {g:.0}",
                s.name, s.neurons, s.activity, percentile, s.percentile, s.sensitivity
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(g)
}
