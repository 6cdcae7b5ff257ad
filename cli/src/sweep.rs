//! `snnc sweep`: a grid of conversion settings run in one process, each scored at several steps
//! with its spikes and synaptic operations per sample — the accuracy-versus-latency-versus-spikes
//! table conversion papers show, as text and as CSV.

use crate::convert::ConvertArgs;
use crate::npy::{read_f32, read_labels};
use anyhow::{Context, Result, bail};
use clap::Args;
use snnc_compiler::driver::{Swap, spike_defaults};
use snnc_compiler::passes::InitialVoltage;
use snnc_runtime::Backend;
use snnc_runtime::dataset::{self, RunSpec};
use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;

#[derive(Args)]
pub struct SweepArgs {
    /// The Keras model (or IR module).
    model: PathBuf,
    /// Input data `(n, *input_shape)`, held for every step (one input).
    #[arg(long)]
    input: PathBuf,
    /// Integer class labels `(n,)`.
    #[arg(long)]
    labels: PathBuf,
    /// Steps each setting runs; spikes and synaptic operations count over all of them.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Steps at which accuracy is scored (comma separated) [default: 4, 8, 16, 32, 64 and
    /// --steps, those up to --steps].
    #[arg(long, value_delimiter = ',')]
    at: Vec<usize>,
    /// Firing-rate scales to try (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "100,200,400")]
    scales: Vec<String>,
    /// Synapses to try: time constants in seconds or `none` (comma separated) [default: the
    /// conversion's, 0.005 unless --target-steps].
    #[arg(long, value_delimiter = ',')]
    synapses: Vec<String>,
    /// Initial voltages to try: `uniform` or a value (comma separated) [default: the
    /// conversion's].
    #[arg(long = "initial-voltages", value_delimiter = ',')]
    initial_voltages: Vec<String>,
    /// Neurons for ReLU layers to try: `relu=spiking_relu`, `relu=if`, `relu=lif` (comma
    /// separated) [default: the conversion's].
    #[arg(long, value_delimiter = ',')]
    swaps: Vec<String>,
    /// Readouts to try, comma separated: `last` (the output at the step), `mean` (its mean since
    /// the first step), `window:K` (over the last K steps) or `filtered[:TAU]` (through its own
    /// lowpass) [default: each row's own, as `snnc run` chooses it].
    #[arg(long, value_delimiter = ',')]
    readouts: Vec<crate::run::ReadoutArg>,
    /// Also try per-layer scales chosen by `--normalize-rates` from these calibration inputs,
    /// with each synapse and initial voltage (in place of the fixed scales for those rows).
    #[arg(long = "normalize", value_name = "DATA.npy")]
    normalize: Option<PathBuf>,
    /// Use only samples START:END.
    #[arg(long, value_name = "START:END")]
    samples: Option<String>,
    /// Samples simulated together [default: as many as keep every thread's arenas within a
    /// quarter of the last-level cache, 1 to 32, as `snnc run` chooses it]
    #[arg(long)]
    batch: Option<usize>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also write the table as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Conversion flags every setting shares (the swept ones are set per row).
    #[command(flatten)]
    convert: ConvertArgs,
}

/// One row of the table.
struct Row {
    setting: String,
    accuracy: Vec<f64>,
    spikes: f64,
    synops: f64,
}

pub fn sweep(args: SweepArgs) -> Result<u8> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if args.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    let mut at = if args.at.is_empty() {
        [4, 8, 16, 32, 64]
            .into_iter()
            .filter(|&t| t < args.steps)
            .chain([args.steps])
            .collect()
    } else {
        args.at.clone()
    };
    at.sort_unstable();
    at.dedup();
    if let Some(&bad) = at.iter().find(|&&t| t == 0 || t > args.steps) {
        bail!(
            "--at {bad}: steps are counted from 1 to --steps {}",
            args.steps
        );
    }
    let mut x = read_f32(&args.input)?;
    let mut labels = read_labels(&args.labels)?;
    let n = x.shape().first().copied().unwrap_or(0);
    if labels.len() != n {
        bail!("{} labels for {n} samples", labels.len());
    }
    if let Some(spec) = &args.samples {
        let r = crate::run::sample_range(spec, n)?;
        x = x
            .slice_axis(ndarray::Axis(0), ndarray::Slice::from(r.clone()))
            .to_owned();
        labels = labels[r].to_vec();
    }
    let n = labels.len();
    // Each row's firing rates: a fixed scale, or the calibrated per-layer scales.
    enum Rates<'a> {
        Scale(&'a str),
        Normalized(&'a PathBuf),
    }
    let rates: Vec<Rates> = args
        .scales
        .iter()
        .map(|s| Rates::Scale(s))
        .chain(args.normalize.iter().map(Rates::Normalized))
        .collect();
    // An empty list sweeps nothing: the shared conversion flags decide.
    let or_shared = |list: &[String], shared: &Option<String>| -> Vec<Option<String>> {
        if list.is_empty() {
            vec![shared.clone()]
        } else {
            list.iter().cloned().map(Some).collect()
        }
    };
    let synapses = or_shared(&args.synapses, &args.convert.synapse);
    let voltages = or_shared(&args.initial_voltages, &args.convert.initial_voltage);
    let swaps = or_shared(&args.swaps, &args.convert.swap);
    let readouts: Vec<Option<crate::run::ReadoutArg>> = if args.readouts.is_empty() {
        vec![None]
    } else {
        args.readouts.iter().copied().map(Some).collect()
    };
    let mut settings: Vec<(String, ConvertArgs, crate::run::ReadoutArg)> = Vec::new();
    for &readout in &readouts {
        for synapse in &synapses {
            for v0 in &voltages {
                for swap in &swaps {
                    for r in &rates {
                        let mut c = args.convert.clone();
                        c.spiking = true;
                        c.synapse = synapse.clone();
                        c.initial_voltage = v0.clone();
                        c.swap = swap.clone();
                        let mut parts = vec![match r {
                            Rates::Scale(s) => {
                                c.scale = vec![s.to_string()];
                                format!("scale {s}")
                            }
                            Rates::Normalized(p) => {
                                c.normalize_rates = Some((*p).clone());
                                match c.target_steps {
                                    Some(t) => format!("normalized for step {t}"),
                                    None => "normalized".to_string(),
                                }
                            }
                        }];
                        // Without --target-steps its defaults do not apply to fixed scales.
                        let timed = c.timed();
                        if !timed {
                            c.target_steps = None;
                        }
                        // An unset flag is shown with the value the conversion gives it.
                        let d = spike_defaults(timed);
                        let or_default =
                            |v: &Option<String>, default: String| v.clone().unwrap_or(default);
                        let synapse_default = d.synapse.map_or("none".into(), |t| t.to_string());
                        let v0_default = match d.initial_voltage {
                            InitialVoltage::Uniform => "uniform".to_string(),
                            InitialVoltage::Fixed(v) => v.to_string(),
                        };
                        parts.push(format!("synapse {}", or_default(synapse, synapse_default)));
                        parts.push(format!("v0 {}", or_default(v0, v0_default)));
                        if swap.is_some() || timed || !args.swaps.is_empty() {
                            let neuron = match d.relu_neuron {
                                Swap::SpikingRelu => "relu=spiking_relu",
                                Swap::If => "relu=if",
                                Swap::Lif => "relu=lif",
                            };
                            parts.push(or_default(swap, neuron.into()));
                        }
                        let readout = readout.unwrap_or_else(|| c.default_readout());
                        parts.push(format!("readout {readout}"));
                        let name = parts.join(", ");
                        settings.push((name, c, readout));
                    }
                }
            }
        }
    }
    let run = |module: &snnc_ir::Verified,
               steps: usize,
               at: &[usize],
               readout: crate::run::ReadoutArg| {
        let spec = RunSpec {
            steps: Some(steps),
            batch: args.batch.unwrap_or(0),
            backend: Backend::Jit,
            accuracy_at: at.to_vec(),
            synops: true,
            readout,
            threads: args.threads,
            ..Default::default()
        };
        dataset::run(module, &[x.view()], Some(&labels), &spec, &mut |_| {
            ControlFlow::Continue(())
        })
        .map_err(anyhow::Error::from)
    };
    // The ANN itself: the rate network, one step.
    let mut ann_args = args.convert.clone();
    ann_args.spiking = false;
    ann_args.swap = None;
    ann_args.initial_voltage = None;
    ann_args.normalize_rates = None;
    ann_args.target_steps = None;
    let ann = crate::convert::load_verified(&args.model, &ann_args)?;
    let r = run(&ann, 1, &[], crate::run::ReadoutArg::Last)?;
    let ann_accuracy = r.correct.unwrap_or(0) as f64 / n as f64;
    let mut rows = Vec::new();
    for (setting, c, readout) in &settings {
        eprintln!("sweep: {setting}");
        let module = crate::convert::load_verified(&args.model, c)
            .with_context(|| format!("setting `{setting}`"))?;
        let r = run(&module, args.steps, &at, *readout)?;
        let per_sample =
            |c: &[(String, Vec<f64>)]| c.iter().flat_map(|(_, v)| v).sum::<f64>() / n as f64;
        rows.push(Row {
            setting: setting.clone(),
            accuracy: at
                .iter()
                .map(|t| {
                    let k = r.correct_at.iter().find(|(s, _)| s == t).map_or(0, |p| p.1);
                    k as f64 / n as f64
                })
                .collect(),
            spikes: per_sample(&r.spikes),
            synops: per_sample(&r.synops),
        });
    }
    println!(
        "{}: {n} samples, {} steps; ANN (rate network) accuracy {ann_accuracy:.4}",
        args.model.display(),
        args.steps
    );
    print!("{}", table(&rows, &at, args.steps));
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&rows, &at, ann_accuracy))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(0)
}

fn table(rows: &[Row], at: &[usize], steps: usize) -> String {
    let width = rows
        .iter()
        .map(|r| r.setting.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!("{:<width$}", "setting");
    for t in at {
        let _ = write!(out, " {:>7}", format!("@{t}"));
    }
    let _ = writeln!(
        out,
        " {:>12} {:>14}",
        format!("spikes/{steps}"),
        format!("synops/{steps}")
    );
    for r in rows {
        let _ = write!(out, "{:<width$}", r.setting);
        for a in &r.accuracy {
            let _ = write!(out, " {:>7.4}", a);
        }
        let _ = writeln!(out, " {:>12.0} {:>14.0}", r.spikes, r.synops);
    }
    out
}

fn csv(rows: &[Row], at: &[usize], ann: f64) -> String {
    let mut out = String::from("setting");
    for t in at {
        let _ = write!(out, ",accuracy_at_{t}");
    }
    out.push_str(",spikes_per_sample,synops_per_sample\n");
    let _ = write!(out, "ANN (rate)");
    for _ in at {
        let _ = write!(out, ",{ann}");
    }
    out.push_str(",,\n");
    for r in rows {
        let _ = write!(out, "\"{}\"", r.setting);
        for a in &r.accuracy {
            let _ = write!(out, ",{a}");
        }
        let _ = writeln!(out, ",{},{}", r.spikes, r.synops);
    }
    out
}
