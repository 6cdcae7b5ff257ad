//! `snnc run`: simulate a module on inputs from .npy files.

use crate::npy::{Array, read_f32, read_labels, write_outputs};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use snnc_runtime::Backend;
use snnc_runtime::dataset::{self, DatasetError, RunSpec};
use std::ops::ControlFlow;
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

/// `--readout`: how value outputs are read at each step (parsed and printed by the runtime).
pub use dataset::Readout as ReadoutArg;

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
    /// Samples simulated together [default: as many as keep every thread's arenas within a
    /// quarter of the last-level cache, 1 to 32; printed with the results]
    #[arg(long)]
    batch: Option<usize>,
    /// Worker threads, each simulating a contiguous range of the samples with its own
    /// simulator (0: one per core). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
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
    /// How outputs are read at each step (written, and scored with --labels): `last`; `mean` of
    /// the values since the first step (a stable answer without a synapse on the output);
    /// `window:K`, the mean over the last K steps; or `filtered[:TAU]`, each output through its
    /// own lowpass of TAU s (default 0.005; the probe's synapse, apart from the connections')
    /// [default: `mean` for a spiking conversion with --synapse none or --target-steps, else
    /// `last`].
    #[arg(long, value_name = "last|mean|window:K|filtered[:TAU]")]
    readout: Option<ReadoutArg>,
    /// Reset seed (re-keys `uniform` initial states).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With --labels, also print the accuracy at these steps (comma separated), e.g. 10,20,30.
    #[arg(long = "accuracy-at", value_delimiter = ',')]
    accuracy_at: Vec<usize>,
    /// Simulate only samples START:END of the inputs (and labels), e.g. one slice per job of a
    /// Slurm array; `snnc merge` joins the outputs.
    #[arg(long, value_name = "START:END")]
    samples: Option<String>,
    /// With --output (.npz): also write each population's spikes per sample, as
    /// `spikes/POPULATION` `(n,)` float32.
    #[arg(long = "save-spikes")]
    save_spikes: bool,
    /// Record these at every step into --output (.npz), by Keras layer or IR name, comma
    /// separated or repeated: NAME (a spiking population's spikes as int32 counts per step, else
    /// the value or state of that name) or NAME:VIEW with VIEW one of spikes, value, voltage,
    /// input, synapse. Shape (n, steps, *shape).
    #[arg(long = "probe", value_delimiter = ',', value_name = "NAME[:VIEW]")]
    probes: Vec<String>,
    /// Write a diagnosis report into DIR: accuracy.svg/.png (with --labels), rates.svg/.png,
    /// spikes.svg, raster.png and report.md.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// With --report: the population raster.png shows [default: the last spiking layer].
    #[arg(long, value_name = "LAYER")]
    raster: Option<String>,
    #[command(flatten)]
    convert: crate::convert::ConvertArgs,
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// `START:END` (either side may be empty) of `n` samples.
pub fn sample_range(spec: &str, n: usize) -> Result<std::ops::Range<usize>> {
    let Some((a, b)) = spec.split_once(':') else {
        bail!("--samples {spec}: expected START:END, e.g. 0:1000");
    };
    let parse = |v: &str, default: usize| -> Result<usize> {
        if v.is_empty() {
            return Ok(default);
        }
        v.parse()
            .with_context(|| format!("--samples {spec}: `{v}` is not a sample index"))
    };
    let (lo, hi) = (parse(a, 0)?, parse(b, n)?.min(n));
    if lo >= hi {
        bail!("--samples {spec}: selects no samples of the {n} given");
    }
    Ok(lo..hi)
}

pub fn run(args: RunArgs) -> Result<u8> {
    let module = crate::convert::load_verified(&args.model, &args.convert)?;
    if args.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    let npz = args
        .output
        .as_ref()
        .is_some_and(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz")));
    if !args.probes.is_empty() && !npz {
        bail!("--probe records into --output FILE.npz; add one");
    }
    if args.raster.is_some() && args.report.is_none() {
        bail!("--raster draws into the --report directory; add --report DIR");
    }
    if let Some(layer) = &args.raster {
        // Checked before the run, which may be long.
        snnc_compiler::probe::add_probes(module.clone().into_inner(), &[format!("{layer}:spikes")])
            .with_context(|| format!("--raster {layer}"))?;
    }
    let (module, probes) = if args.probes.is_empty() {
        (module, Vec::new())
    } else {
        let (m, probes) = snnc_compiler::probe::add_probes(module.into_inner(), &args.probes)?;
        (snnc_ir::verify(m, snnc_ir::Target::Any)?, probes)
    };
    let files = input_files(&module, &args.inputs)?;
    if let Some(out) = &args.output {
        for p in files.iter().chain([&args.model]).chain(args.labels.iter()) {
            if same_file(out, p) {
                bail!("--output {} would overwrite an input file", out.display());
            }
        }
    }
    let mut feeds = Vec::new();
    for path in &files {
        feeds.push(read_f32(path)?);
    }
    let mut labels = match &args.labels {
        Some(p) => Some(read_labels(p)?),
        None => None,
    };
    // --samples: every input (and the labels) cut to the same slice of samples.
    let mut first_sample = 0;
    if let Some(spec) = &args.samples {
        let n = feeds
            .first()
            .map_or(0, |f| f.shape().first().copied().unwrap_or(0));
        let r = sample_range(spec, n)?;
        first_sample = r.start;
        for (f, path) in feeds.iter_mut().zip(&files) {
            if f.ndim() == 0 || f.shape()[0] != n {
                bail!(
                    "{}: has {:?} samples, the first input has {n}",
                    path.display(),
                    f.shape().first()
                );
            }
            *f = f.slice_axis(Axis(0), Slice::from(r.clone())).to_owned();
        }
        if let Some(l) = labels.as_mut() {
            if l.len() != n {
                bail!("{} labels for {n} samples", l.len());
            }
            *l = l[r].to_vec();
        }
    }
    let backend = match args.backend {
        BackendArg::Interp => Backend::Interp,
        BackendArg::Jit => Backend::Jit,
    };
    let mut spec = RunSpec {
        steps: args.steps,
        batch: args.batch.unwrap_or(0),
        backend,
        seed: args.seed,
        all_steps: args.all_steps,
        accuracy_at: args.accuracy_at.clone(),
        spike_probes: snnc_compiler::probe::spike_probes(&probes),
        neuron_counts: args.report.is_some(),
        readout: args
            .readout
            .unwrap_or_else(|| args.convert.default_readout()),
        synops: true,
        threads: args.threads,
    };
    let views: Vec<_> = feeds.iter().map(|f| f.view()).collect();
    if args.report.is_some() && labels.is_some() {
        // The report plots accuracy at every step.
        let (_, steps) = dataset::extent(&module, &views, labels.as_deref(), &spec)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        spec.accuracy_at = (1..=steps).collect();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} batches  {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    let start = Instant::now();
    let mut shown = false;
    let r = dataset::run(&module, &views, labels.as_deref(), &spec, &mut |p| {
        bar.set_length(p.batches as u64);
        bar.set_position(p.batches_done as u64);
        if !shown && start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| {
        // Name the file the user gave for the input concerned.
        let input = match &e {
            DatasetError::Shape { name, .. }
            | DatasetError::Samples { name, .. }
            | DatasetError::Steps { name, .. } => Some(name.as_str()),
            _ => None,
        };
        match input.and_then(|n| {
            module
                .inputs
                .iter()
                .position(|&v| module.value(v).name == n)
        }) {
            Some(k) => anyhow::anyhow!("{}: {e}", files[k].display()),
            None => e.into(),
        }
    })?;
    bar.finish_and_clear();
    let n = r.samples;
    let steps = r.steps;
    let batch = r.batch;
    let step_count = (n.div_ceil(batch) * steps).max(1);
    println!(
        "samples: {n}  steps: {steps}  batch: {batch}  backend: {}",
        match args.backend {
            BackendArg::Interp => "interp",
            BackendArg::Jit => "jit",
        }
    );
    if args.samples.is_some() {
        println!("sample range: {first_sample}:{}", first_sample + n);
    }
    if r.threads > 1 {
        // Minibatches run side by side: the wall time per sample-step is what the threads give.
        println!(
            "time: {:.3} s  ({:.1} µs per sample-step on {} threads, batch {batch})",
            r.elapsed.as_secs_f64(),
            r.elapsed.as_secs_f64() * 1e6 / (n * steps).max(1) as f64,
            r.threads
        );
    } else {
        println!(
            "time: {:.3} s  ({:.1} µs/step for a batch of {batch})",
            r.elapsed.as_secs_f64(),
            r.elapsed.as_secs_f64() * 1e6 / step_count as f64
        );
    }
    if let Some(correct) = r.correct {
        println!("accuracy: {:.4} ({correct}/{n})", correct as f64 / n as f64);
        for (c, k) in r
            .correct_at
            .iter()
            .filter(|(c, _)| args.accuracy_at.contains(c))
        {
            println!(
                "accuracy at step {c}: {:.4} ({k}/{n})",
                *k as f64 / n as f64
            );
        }
    }
    if !r.spikes.is_empty() {
        let total: f64 = r.spikes.iter().map(|(_, c)| c.iter().sum::<f64>()).sum();
        let per: Vec<String> = r
            .spikes
            .iter()
            .map(|(pop, c)| format!("{pop} {:.0}", c.iter().sum::<f64>() / n as f64))
            .collect();
        println!(
            "spikes per sample: {:.0} ({})",
            total / n as f64,
            per.join(", ")
        );
        let synops: f64 = r.synops.iter().flat_map(|(_, c)| c).sum::<f64>() / n as f64;
        println!("synaptic operations per sample: {synops:.0} (spikes × fan-out)");
    }
    if let Some(dir) = &args.report {
        let run = crate::report::Run {
            model: &args.model,
            module: &module,
            inputs: &feeds,
            labels: labels.as_deref(),
            spec: &spec,
            result: &r,
            settings: args.convert.describe(),
            spiking_keras: args.convert.spiking
                && snnc_compiler::driver::is_keras_path(&args.model),
            raster: args.raster.as_deref(),
        };
        let files = crate::report::write(dir, &run)?;
        println!(
            "wrote report {} ({} files)",
            dir.join("report.md").display(),
            files.len()
        );
    }
    if let Some(path) = &args.output {
        let mut arrays: Vec<(String, Array)> = r
            .outputs
            .into_iter()
            .map(|(k, a)| (k, Array::F32(a)))
            .collect();
        arrays.extend(r.spike_probes.into_iter().map(|(k, a)| (k, Array::I32(a))));
        // Probes in the order given.
        let order = |name: &str| probes.iter().position(|p| p.name == name);
        arrays.sort_by_key(|(k, _)| order(k).map_or(0, |i| i + 1));
        if args.save_spikes {
            for (pop, counts) in r.spikes {
                let a =
                    ArrayD::from_shape_vec(IxDyn(&[n]), counts.iter().map(|&c| c as f32).collect())
                        .expect("one count per sample");
                arrays.push((format!("spikes/{pop}"), Array::F32(a)));
            }
        }
        write_outputs(path, &arrays)?;
        println!("wrote {}", path.display());
    }
    Ok(0)
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
