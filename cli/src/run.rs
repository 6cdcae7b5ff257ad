//! `snnc run`: simulate a module on inputs from .npy files.

use crate::npy::{batch_shape, read_f32, read_labels, write_outputs};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use snnc_runtime::observe::{AccuracyAt, SpikeCounter, argmax, reported_outputs};
use snnc_runtime::{Backend, Record, Simulator};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// The reference interpreter.
    Interp,
    /// Cranelift native code (elementwise, neuron, synapse, pooling, gather and max-pool circuit
    /// loops; dense and convolution through the GEMM and event-driven kernels).
    Jit,
}

#[derive(Args)]
pub struct RunArgs {
    /// The model: a Keras model (.keras, .h5, compiled on the fly), a .sir module or a .snn artifact.
    model: PathBuf,
    /// Input data: `FILE.npy` for a single-input model, or `NAME=FILE.npy` per input. Shape
    /// `(n, *input_shape)` is held for every step; `(n, steps, *input_shape)` is fed step by step.
    #[arg(long = "input", required = true)]
    inputs: Vec<String>,
    /// Timesteps to simulate (default: the time axis of step-by-step inputs, else 1).
    #[arg(long)]
    steps: Option<usize>,
    /// Samples simulated together.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Simulation backend.
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Write each output's value at the last step: `(n, *output_shape)` float32. `.npy` for one
    /// output, `.npz` keyed by output name for several.
    #[arg(long)]
    output: Option<PathBuf>,
    /// With --output, write every step: `(n, steps, *output_shape)`.
    #[arg(long)]
    all_steps: bool,
    /// Integer class labels `(n,)`: prints the accuracy of the argmax of the first output at the
    /// last step.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Reset seed (re-keys `uniform` initial states).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With --labels, also print the accuracy at these steps (comma separated), e.g. 10,20,30.
    #[arg(long = "accuracy-at", value_delimiter = ',')]
    accuracy_at: Vec<usize>,
    #[command(flatten)]
    convert: crate::convert::ConvertArgs,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

pub fn run(args: RunArgs) -> Result<u8> {
    let module = crate::convert::load_verified(&args.model, &args.convert)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let input_names: Vec<String> = module
        .inputs
        .iter()
        .map(|v| module.value(*v).name.clone())
        .collect();

    let files = input_files(&module, &args.inputs)?;
    if let Some(out) = &args.output {
        for p in files.iter().chain([&args.model]).chain(args.labels.iter()) {
            if same_file(out, p) {
                bail!("--output {} would overwrite an input file", out.display());
            }
        }
    }

    let mut feeds = Vec::new();
    let mut n_samples = None;
    let mut steps = args.steps;
    for (k, path) in files.iter().enumerate() {
        let data = read_f32(path)?;
        let shape = &module.value(module.inputs[k]).ty.shape;
        let held = data.ndim() == shape.len() + 1 && &data.shape()[1..] == shape.as_slice();
        let timed = data.ndim() == shape.len() + 2 && &data.shape()[2..] == shape.as_slice();
        if !held && !timed {
            bail!(
                "{}: shape {:?} does not fit input `{}` {}; expected (n, {}) or (n, steps, {})",
                path.display(),
                data.shape(),
                input_names[k],
                module.value(module.inputs[k]).ty,
                dims(shape),
                dims(shape)
            );
        }
        if timed {
            match steps {
                None => steps = Some(data.shape()[1]),
                Some(s) if s != data.shape()[1] => bail!(
                    "{}: has {} steps on axis 1, but {s} steps were asked for",
                    path.display(),
                    data.shape()[1]
                ),
                _ => {}
            }
        }
        match n_samples {
            None => n_samples = Some(data.shape()[0]),
            Some(n) if n != data.shape()[0] => {
                bail!(
                    "{}: has {} samples, other inputs have {n}",
                    path.display(),
                    data.shape()[0]
                )
            }
            _ => {}
        }
        feeds.push(data);
    }
    let n = n_samples.unwrap_or(0);
    let steps = steps.unwrap_or(1);
    if n == 0 {
        bail!("the input files hold no samples");
    }
    let labels = match &args.labels {
        Some(p) => {
            let l = read_labels(p)?;
            if l.len() != n {
                bail!("{}: {} labels for {n} samples", p.display(), l.len());
            }
            Some(l)
        }
        None => None,
    };

    let batch = args.batch.min(n);
    let backend = match args.backend {
        BackendArg::Interp => Backend::Interp,
        BackendArg::Jit => Backend::Jit,
    };
    let mut sim = Simulator::new(&module, backend, batch)?;
    let record = if args.all_steps {
        Record::AllSteps
    } else {
        Record::LastStep
    };
    let n_out = module.outputs.len();
    // Spike outputs are counted, not reported.
    let reported = reported_outputs(&module);
    let mut spikes = SpikeCounter::new(&module, batch);
    let mut spike_totals = vec![0f64; spikes.populations().len()];
    let mut checkpoints: Vec<usize> = args.accuracy_at.clone();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    if let Some(&c) = checkpoints.iter().find(|&&c| c == 0 || c > steps) {
        bail!("--accuracy-at {c} is outside the {steps} steps simulated");
    }
    if !checkpoints.is_empty() && labels.is_none() {
        bail!("--accuracy-at needs --labels");
    }
    let mut accuracy_at = reported.first().map(|&k| AccuracyAt::new(k, &checkpoints));
    let mut collected: Vec<Vec<ArrayD<f32>>> = vec![Vec::new(); n_out];
    let mut last_step: Vec<Vec<ArrayD<f32>>> = vec![Vec::new(); n_out];

    let chunks = n.div_ceil(batch);
    let bar = ProgressBar::with_draw_target(Some(chunks as u64), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} batches  {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    let start = Instant::now();
    let mut shown = false;
    for c in 0..chunks {
        let (lo, hi) = (c * batch, ((c + 1) * batch).min(n));
        let inputs: Vec<ArrayD<f32>> = feeds
            .iter()
            .map(|f| {
                let part = f.slice_axis(Axis(0), Slice::from(lo..hi));
                let mut full = ArrayD::zeros(batch_shape(f, batch));
                full.slice_axis_mut(Axis(0), Slice::from(0..hi - lo))
                    .assign(&part);
                full
            })
            .collect();
        let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
        sim.reset(args.seed);
        let real = hi - lo;
        spikes.clear();
        let outs = sim.run_observed(steps, &views, record, &mut |t, sim| {
            spikes.observe(sim);
            if let (Some(acc), Some(labels)) = (accuracy_at.as_mut(), &labels) {
                acc.observe(t, sim, &labels[lo..hi]);
            }
        })?;
        for (total, counts) in spike_totals.iter_mut().zip(spikes.counts()) {
            *total += counts[..real].iter().sum::<f64>();
        }
        for (k, o) in outs.into_iter().enumerate() {
            let real = o.slice_axis(Axis(0), Slice::from(0..hi - lo)).to_owned();
            let last = if args.all_steps && steps > 0 {
                real.index_axis(Axis(1), steps - 1).to_owned()
            } else {
                real.clone()
            };
            last_step[k].push(last);
            if args.output.is_some() {
                collected[k].push(real);
            }
        }
        bar.inc(1);
        if !shown && start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();

    let concat = |parts: &[ArrayD<f32>]| -> Result<ArrayD<f32>> {
        let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
        ndarray::concatenate(Axis(0), &views).context("joining batches")
    };
    let step_count = (chunks * steps).max(1);
    println!(
        "samples: {n}  steps: {steps}  batch: {batch}  backend: {}",
        match args.backend {
            BackendArg::Interp => "interp",
            BackendArg::Jit => "jit",
        }
    );
    println!(
        "time: {:.3} s  ({:.1} µs/step for a batch of {batch})",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / step_count as f64
    );
    if let Some(labels) = labels {
        let Some(&first) = reported.first() else {
            bail!("--labels needs a model output to score");
        };
        let logits = concat(&last_step[first])?;
        let classes = logits.len() / n.max(1);
        let flat = logits
            .into_shape_with_order(IxDyn(&[n, classes]))
            .context("flattening the first output")?;
        let mut correct = 0;
        for (row, &label) in flat.outer_iter().zip(&labels) {
            if argmax(row.as_slice().expect("standard layout")) as i64 == label {
                correct += 1;
            }
        }
        println!("accuracy: {:.4} ({correct}/{n})", correct as f64 / n as f64);
        for (c, k) in accuracy_at.iter().flat_map(|a| a.results()) {
            println!("accuracy at step {c}: {:.4} ({k}/{n})", k as f64 / n as f64);
        }
    }
    if !spikes.is_empty() {
        let total: f64 = spike_totals.iter().sum();
        let per: Vec<String> = spikes
            .populations()
            .iter()
            .zip(&spike_totals)
            .map(|(pop, t)| format!("{pop} {:.0}", t / n as f64))
            .collect();
        println!(
            "spikes per sample: {:.0} ({})",
            total / n as f64,
            per.join(", ")
        );
    }
    if let Some(path) = &args.output {
        let mut arrays = Vec::new();
        for &k in &reported {
            arrays.push((module.outputs[k].name.clone(), concat(&collected[k])?));
        }
        write_outputs(path, &arrays)?;
        println!("wrote {}", path.display());
    }
    Ok(0)
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file for each module input, from `--input` arguments: `FILE.npy` for a single-input
/// model, `NAME=FILE.npy` per input otherwise.
pub fn input_files(module: &snnc_ir::Module, specs: &[String]) -> Result<Vec<PathBuf>> {
    let input_names: Vec<String> = module
        .inputs
        .iter()
        .map(|v| module.value(*v).name.clone())
        .collect();
    // Match --input arguments to module inputs.
    let mut files: Vec<Option<PathBuf>> = vec![None; input_names.len()];
    for spec in specs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) if input_names.iter().any(|x| x == n.trim_start_matches('%')) => (
                Some(n.trim_start_matches('%').to_string()),
                PathBuf::from(f),
            ),
            _ => (None, PathBuf::from(spec)),
        };
        let k = match name {
            Some(n) => input_names
                .iter()
                .position(|x| *x == n)
                .expect("matched above"),
            None if input_names.len() == 1 => 0,
            None => bail!(
                "the model has {} inputs ({}); give each as --input NAME=FILE.npy",
                input_names.len(),
                input_names.join(", ")
            ),
        };
        if files[k].replace(file).is_some() {
            bail!("input `{}` is given twice", input_names[k]);
        }
    }
    if let Some(k) = files.iter().position(Option::is_none) {
        bail!(
            "no data for input `{}`; add --input {}=FILE.npy",
            input_names[k],
            input_names[k]
        );
    }
    Ok(files
        .into_iter()
        .map(|f| f.expect("checked above"))
        .collect())
}
