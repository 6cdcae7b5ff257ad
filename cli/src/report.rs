//! `snnc run --report DIR`: the numbers of a run turned into `snnc_report`'s figures and
//! `report.md` (firing rates and synaptic operations per layer, accuracy at every step, the
//! ANN's accuracy for reference, a spike raster).

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, Axis, Slice};
use snnc_compiler::probe::{ProbeKind, add_probes};
use snnc_ir::fanout::FanOut;
use snnc_ir::{OutputKind, Verified};
use snnc_report::{Layer, Raster, RasterSample, Report, Series};
use snnc_runtime::dataset::{self, RunResult, RunSpec};
use std::ops::ControlFlow;
use std::path::Path;

/// Samples the raster shows.
const RASTER_SAMPLES: usize = 3;
/// Most neurons (rows) a raster shows.
const RASTER_ROWS: usize = 160;

/// Per population of `module`: firing rates, spikes and synaptic operations per sample, from a
/// run with per-neuron counts.
pub fn layers(module: &Verified, r: &RunResult) -> Vec<Layer> {
    let fan = FanOut::new(module);
    let (n, steps) = (r.samples.max(1) as f64, r.steps.max(1) as f64);
    // Network order: by the instruction that computes each population.
    let at = |pop: &str| {
        module
            .insts
            .iter()
            .position(|i| i.results.iter().any(|&v| module.value(v).name == pop))
    };
    let mut pops: Vec<&(String, Vec<f64>)> = r.neuron_spikes.iter().collect();
    pops.sort_by_key(|(p, _)| at(p));
    pops.into_iter()
        .map(|(pop, counts)| {
            let value = module.outputs.iter().find_map(|o| match &o.kind {
                OutputKind::Spikes { population, .. } if population == pop => Some(o.value),
                _ => None,
            });
            let fan = value.map(|v| fan.of(v)).unwrap_or(&[]);
            if counts.iter().any(|c| !c.is_finite()) {
                eprintln!(
                    "warning: population `{pop}` has spike counts that are not finite numbers (inputs or weights too large); the report leaves them out"
                );
            }
            let synops: f64 = counts
                .iter()
                .zip(fan)
                .filter(|(c, _)| c.is_finite())
                .map(|(c, f)| c * f)
                .sum();
            Layer {
                name: pop.clone(),
                rates_hz: counts.iter().map(|c| c / (n * steps * module.dt)).collect(),
                spikes_per_sample: counts.iter().filter(|c| c.is_finite()).sum::<f64>() / n,
                synops_per_sample: synops / n,
            }
        })
        .collect()
}

/// The population a raster shows by default: the last one named after a Keras layer (no `.`),
/// else the last.
fn default_raster(module: &Verified) -> Option<String> {
    let pops = snnc_compiler::probe::populations(module);
    pops.iter()
        .rev()
        .find(|p| !p.contains('.'))
        .or(pops.last())
        .map(|p| p.to_string())
}

/// Run the first few samples again, recording `layer`'s spikes at every step.
fn raster(
    module: &Verified,
    layer: &str,
    inputs: &[ArrayD<f32>],
    labels: Option<&[i64]>,
    spec: &RunSpec,
) -> Result<Raster> {
    let (m, probes) = add_probes(module.clone().into_inner(), &[format!("{layer}:spikes")])
        .with_context(|| format!("--raster {layer}"))?;
    let ProbeKind::Spikes { output, .. } = probes[0].kind else {
        bail!("--raster {layer}: not a spiking population");
    };
    let m = snnc_ir::verify(m, snnc_ir::Target::Any)?;
    let k = inputs
        .first()
        .map_or(0, |a| a.shape()[0])
        .min(RASTER_SAMPLES);
    let views: Vec<_> = inputs
        .iter()
        .map(|a| a.slice_axis(Axis(0), Slice::from(0..k)))
        .collect();
    let spec = RunSpec {
        batch: k.max(1),
        all_steps: false,
        accuracy_at: Vec::new(),
        spike_probes: vec![(layer.to_string(), output)],
        neuron_counts: false,
        ..spec.clone()
    };
    let r = dataset::run(&m, &views, None, &spec, &mut |_| ControlFlow::Continue(()))?;
    let counts = &r.spike_probes[0].1;
    let steps = r.steps;
    let neurons: usize = probes[0].shape.iter().product();
    let flat = counts
        .as_slice()
        .context("spike record in standard layout")?;
    // Rows: the neurons that spiked in any of these samples, evenly spaced.
    let active: Vec<usize> = (0..neurons)
        .filter(|&i| (0..k * steps).any(|st| flat[st * neurons + i] != 0))
        .collect();
    let stride = active.len().div_ceil(RASTER_ROWS).max(1);
    let shown: Vec<usize> = active.iter().copied().step_by(stride).collect();
    let samples = (0..k)
        .map(|s| {
            let mut spikes = Vec::new();
            for t in 0..steps {
                let at = (s * steps + t) * neurons;
                for (row, &i) in shown.iter().enumerate() {
                    if flat[at + i] != 0 {
                        spikes.push((t, row));
                    }
                }
            }
            RasterSample {
                label: labels.and_then(|l| l.get(s).copied()),
                spikes,
            }
        })
        .collect();
    Ok(Raster {
        layer: layer.to_string(),
        neurons,
        shown,
        steps,
        samples,
    })
}

/// The ANN's accuracy: the Keras model in rate mode, max pooling kept exact, one step.
fn ann_accuracy(model: &Path, inputs: &[ArrayD<f32>], labels: &[i64], batch: usize) -> Result<f64> {
    let rate = crate::convert::ConvertArgs {
        max_pool: Some(crate::convert::MaxPoolArg::Keep),
        ..Default::default()
    };
    let m = crate::convert::load_verified(model, &rate)?;
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let spec = RunSpec {
        steps: Some(1),
        batch,
        ..RunSpec::default()
    };
    // Per-step inputs: the ANN sees the first step.
    let held: Vec<_> = views
        .iter()
        .zip(&m.inputs)
        .map(|(v, &inp)| {
            if v.ndim() == m.value(inp).ty.shape.len() + 2 {
                v.index_axis(Axis(1), 0)
            } else {
                v.view()
            }
        })
        .collect();
    let r = dataset::run(&m, &held, Some(labels), &spec, &mut |_| {
        ControlFlow::Continue(())
    })?;
    Ok(r.correct.unwrap_or(0) as f64 / r.samples.max(1) as f64)
}

/// What the caller ran, for the report.
pub struct Run<'a> {
    /// The model file.
    pub model: &'a Path,
    /// The compiled module run.
    pub module: &'a Verified,
    /// The inputs (after `--samples`).
    pub inputs: &'a [ArrayD<f32>],
    /// The labels, if given.
    pub labels: Option<&'a [i64]>,
    /// The run's settings.
    pub spec: &'a RunSpec,
    /// The run's result (with per-neuron counts and accuracy at every step).
    pub result: &'a RunResult,
    /// How the model was converted, in words.
    pub settings: String,
    /// Whether the network was converted to spiking from a Keras file.
    pub spiking_keras: bool,
    /// `--raster`.
    pub raster: Option<&'a str>,
}

/// Write the report of `run` into `dir`; returns the files written.
pub fn write(dir: &Path, run: &Run) -> Result<Vec<std::path::PathBuf>> {
    let r = run.result;
    let n = r.samples;
    let accuracy = if run.labels.is_some() {
        vec![Series {
            label: run.settings.clone(),
            points: r
                .correct_at
                .iter()
                .map(|&(t, c)| (t, c as f64 / n.max(1) as f64))
                .collect(),
        }]
    } else {
        Vec::new()
    };
    let reference = match run.labels {
        Some(l) if run.spiking_keras => Some((
            "ANN (rate network, 1 step)".to_string(),
            ann_accuracy(run.model, run.inputs, l, run.spec.batch)
                .context("computing the ANN's accuracy for the report")?,
        )),
        _ => None,
    };
    let layer = match run.raster {
        Some(l) => Some(l.to_string()),
        None => default_raster(run.module),
    };
    let raster = match layer {
        Some(l) => Some(raster(run.module, &l, run.inputs, run.labels, run.spec)?),
        None => None,
    };
    let title = run
        .model
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report = Report {
        title,
        samples: n,
        steps: r.steps,
        dt: run.module.dt,
        accuracy,
        reference,
        layers: layers(run.module, r),
        raster,
    };
    snnc_report::write(dir, &report).map_err(Into::into)
}
