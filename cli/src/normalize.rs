//! `--normalize-rates`: measure the rate network on calibration data and choose per-layer gains.

use anyhow::{Context, Result};
use ndarray::{ArrayD, Axis, Slice};
use snnc_compiler::calibrate::{NormalizeRule, choose_gains, measure};
use snnc_ir::{Module, Target};
use snnc_runtime::{Backend, Record, Simulator};

/// Run `m` (rate, one input) for one step on `data` in batches; returns every output.
fn run_rate(m: &Module, data: &ArrayD<f32>) -> Result<Vec<ArrayD<f32>>> {
    let v = snnc_ir::verify(m.clone(), Target::Any)
        .map_err(|e| anyhow::anyhow!("calibration module: {e}"))?;
    let n = data.shape()[0];
    let batch = n.min(64);
    let mut sim = Simulator::new(&v, Backend::Jit, batch)?;
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

/// Per-layer gains for `m` (a rate module) chosen by `rule` from `data`.
pub fn gains(
    m: &Module,
    data: &ArrayD<f32>,
    rule: NormalizeRule,
    percentile: f64,
) -> Result<Vec<(String, f64)>> {
    let n = data.shape()[0];
    let mut simulate = |probe: &Module| -> Result<Vec<Vec<f32>>, String> {
        let outs = run_rate(probe, data).map_err(|e| format!("{e:#}"))?;
        Ok(outs
            .into_iter()
            .map(|a| a.iter().copied().collect())
            .collect())
    };
    let (stats, margin) = measure(m, n, percentile, &mut simulate)?;
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
