//! Conversion flags shared by `compile` and `run`: NengoDL's converter options plus snnc's own.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use snnc_compiler::calibrate::Simulated;
use snnc_compiler::driver::{
    CompileHooks, Flags, Normalize, NormalizeRuleFlag, Swap, TimedNormalize, compile,
    spike_defaults,
};
use snnc_compiler::passes::{InitialVoltage, MaxPoolMode};
use snnc_ir::{Module, Verified};
use std::path::Path;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum MaxPoolArg {
    /// A circuit of neurons (exact in rate mode; integrate-and-fire units when spiking).
    Neural,
    /// Average pooling instead (NengoDL's max_to_avg_pool).
    Avg,
    /// The exact non-neural op (what NengoDL's fallback computes).
    Keep,
}

#[derive(Args, Clone, Debug, Default)]
pub struct ConvertArgs {
    /// Swap every ReLU-family activation for its spiking twin (NengoDL's swap_activations).
    #[arg(long)]
    pub spiking: bool,
    /// Neuron for ReLU layers when spiking: `relu=spiking_relu` (default, Nengo's), `relu=if`
    /// (integrate-and-fire with signed input, reset by subtraction: needed without synapses) or
    /// `relu=lif` (Nengo's LIF; changes the function, as NengoDL's swap_activations does).
    #[arg(long, value_name = "relu=MODEL")]
    pub swap: Option<String>,
    /// Firing-rate scale: gain × S on the input current, amplitude ÷ S on the output. `S` for
    /// every layer, or `LAYER=S` for one (repeatable).
    #[arg(long = "scale-firing-rates", value_name = "S|LAYER=S")]
    pub scale: Vec<String>,
    /// Lowpass synapse time constant (s) on connections out of spiking neurons and on output
    /// probes, or `none` [default: 0.005 with --spiking].
    #[arg(long, value_name = "TAU|none")]
    pub synapse: Option<String>,
    /// The synapse on connections out of one layer, winning over --synapse there: e.g.
    /// `conv1=none` or `dense1=0.002` (repeatable).
    #[arg(long = "layer-synapse", value_name = "LAYER=TAU|none")]
    pub layer_synapse: Vec<String>,
    /// Initial membrane voltage: `uniform` (U(0,1), Nengo's default) or a value such as 0.5.
    #[arg(long = "initial-voltage", value_name = "uniform|V")]
    pub initial_voltage: Option<String>,
    /// How max pooling becomes neural [default: neural].
    #[arg(long = "max-pool", value_enum)]
    pub max_pool: Option<MaxPoolArg>,
    /// Simulation timestep in seconds [default: 0.001, or the module's own].
    #[arg(long)]
    pub dt: Option<f64>,
    /// The passes to run, comma separated [default: spikify,lower-maxpool,simplify,sink-synapses,fuse; also: merge, fixed-neurons].
    #[arg(long, value_delimiter = ',', value_name = "PASS,...")]
    pub passes: Option<Vec<String>>,
    /// Print the module to stderr after this pass (repeatable).
    #[arg(long = "print-after", value_name = "PASS")]
    pub print_after: Vec<String>,
    /// Print the module to stderr after every pass.
    #[arg(long = "print-after-all")]
    pub print_after_all: bool,
    /// Print each pass's time and instruction counts to stderr.
    #[arg(long = "time-passes")]
    pub time_passes: bool,
    /// Verify the module after every pass (the default; an error names the pass that broke it).
    #[arg(long = "verify-each", overrides_with = "no_verify_each")]
    pub verify_each: bool,
    /// Verify only the final module (faster on very large models; a failure no longer names
    /// the pass).
    #[arg(long = "no-verify-each", overrides_with = "verify_each")]
    pub no_verify_each: bool,
    /// Choose each layer's firing-rate scale from calibration inputs `(n, *input_shape)` run
    /// through the rate network (explicit `--scale-firing-rates LAYER=S` still win).
    #[arg(long = "normalize-rates", value_name = "DATA.npy")]
    pub normalize_rates: Option<std::path::PathBuf>,
    /// The rule for --normalize-rates: `budget` (fewest spikes for a bounded logit error) or
    /// `percentile` (the p-th percentile activation fires at --max-rate).
    #[arg(long = "normalize-rule", value_enum, default_value = "budget")]
    pub normalize_rule: NormalizeRuleArg,
    /// Percentile of non-zero activations used by the percentile rule.
    #[arg(long, default_value_t = 99.0)]
    pub percentile: f64,
    /// Target rate (Hz) of the percentile activation for the percentile rule.
    #[arg(long = "max-rate", default_value_t = 1000.0)]
    pub max_rate: f64,
    /// Budget rule: allowed logit error (standard deviation) as a fraction of the median margin.
    #[arg(long = "error-fraction", default_value_t = 0.3)]
    pub error_fraction: f64,
    /// With --normalize-rates: search the scales by simulating the spiking network on the
    /// calibration inputs for T steps, for the fewest spikes at which it answers as the rate
    /// network does (mean readout). Unless given, ReLUs become `if_neuron`s (--swap relu=if) with
    /// --synapse none and --initial-voltage 0.5, and `run` reads outputs with --readout mean.
    #[arg(long = "target-steps", value_name = "T")]
    pub target_steps: Option<usize>,
    /// With --target-steps: the fraction of calibration inputs on which the spiking network's
    /// decision at step T must equal the rate network's.
    #[arg(long = "target-agreement", default_value_t = 0.99)]
    pub target_agreement: f64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug, Default)]
pub enum NormalizeRuleArg {
    /// Fewest spikes for a bounded logit error.
    #[default]
    Budget,
    /// Rueckauer et al.'s percentile normalisation.
    Percentile,
}

impl ConvertArgs {
    /// The conversion settings in a few words, for legends: `spiking, scale 200, synapse 0.005`.
    pub fn describe(&self) -> String {
        let mut parts = vec![if self.spiking { "spiking" } else { "rate" }.to_string()];
        parts.extend(self.swap.iter().cloned());
        parts.extend(self.scale.iter().map(|s| format!("scale {s}")));
        if self.normalize_rates.is_some() {
            parts.push(format!("normalized ({:?} rule)", self.normalize_rule).to_lowercase());
        }
        parts.extend(self.target_steps.map(|t| format!("target step {t}")));
        parts.extend(self.synapse.iter().map(|s| format!("synapse {s}")));
        parts.extend(self.layer_synapse.iter().map(|s| format!("synapse {s}")));
        parts.extend(
            self.initial_voltage
                .iter()
                .map(|v| format!("initial voltage {v}")),
        );
        parts.extend(
            self.max_pool
                .map(|m| format!("max pool {m:?}").to_lowercase()),
        );
        parts.join(", ")
    }

    /// Whether `--target-steps` applies (it needs `--normalize-rates`) and so sets the defaults of
    /// the flags left unset.
    pub fn timed(&self) -> bool {
        self.target_steps.is_some() && self.normalize_rates.is_some()
    }

    /// How `run` reads outputs unless `--readout` is given: `mean` for a spiking network without
    /// a synapse (its output at one step is one step's spikes), else `last`.
    pub fn default_readout(&self) -> crate::run::ReadoutArg {
        let no_synapse = match self.synapse.as_deref() {
            Some(s) => s == "none",
            None => spike_defaults(self.timed()).synapse.is_none(),
        };
        if self.spiking && no_synapse {
            crate::run::ReadoutArg::Mean
        } else {
            crate::run::ReadoutArg::Last
        }
    }

    /// The driver's flags these arguments ask for (numbers parsed; ranges are checked by the
    /// driver). `--normalize-rates` is added by [`load_verified`], which reads its data.
    pub fn flags(&self) -> Result<Flags> {
        let mut f = Flags {
            spiking: self.spiking,
            max_pool: self.max_pool.map(|m| match m {
                MaxPoolArg::Neural => MaxPoolMode::Neural,
                MaxPoolArg::Avg => MaxPoolMode::Avg,
                MaxPoolArg::Keep => MaxPoolMode::Keep,
            }),
            dt: self.dt,
            passes: self.passes.clone(),
            verify_last_only: self.no_verify_each,
            ..Flags::default()
        };
        f.swap = match self.swap.as_deref() {
            None => None,
            Some("relu=spiking_relu") => Some(Swap::SpikingRelu),
            Some("relu=lif") => Some(Swap::Lif),
            Some("relu=if") => Some(Swap::If),
            Some(other) => {
                bail!("--swap {other}: supported are relu=spiking_relu, relu=if and relu=lif")
            }
        };
        for spec in &self.scale {
            let parse = |v: &str| -> Result<f64> {
                v.parse()
                    .with_context(|| format!("--scale-firing-rates {spec}: `{v}` is not a number"))
            };
            match spec.split_once('=') {
                Some((layer, v)) => f.layer_scales.push((layer.to_string(), parse(v)?)),
                None => f.scale = Some(parse(spec)?),
            }
        }
        for spec in &self.layer_synapse {
            let Some((layer, v)) = spec.split_once('=') else {
                bail!("--layer-synapse {spec}: expected LAYER=TAU or LAYER=none");
            };
            let tau = match v {
                "none" | "None" => None,
                v => Some(v.parse().with_context(|| {
                    format!("--layer-synapse {spec}: `{v}` is not a time constant")
                })?),
            };
            f.layer_synapses.push((layer.to_string(), tau));
        }
        f.synapse = match self.synapse.as_deref() {
            None => None,
            Some("none" | "None") => Some(None),
            Some(v) => {
                Some(Some(v.parse().with_context(|| {
                    format!("--synapse: `{v}` is not a time constant")
                })?))
            }
        };
        f.initial_voltage = match self.initial_voltage.as_deref() {
            None => None,
            Some("uniform") => Some(InitialVoltage::Uniform),
            Some(x) => Some(InitialVoltage::Fixed(x.parse().with_context(|| {
                format!("--initial-voltage: `{x}` is neither `uniform` nor a number")
            })?)),
        };
        Ok(f)
    }
}

/// Load a model and convert it (always for Keras models, and for IR modules when any
/// conversion flag is given), then verify: the error lists every problem with its line.
pub fn load_verified(path: &Path, args: &ConvertArgs) -> Result<Verified> {
    let mut flags = args.flags()?;
    if !flags.spiking && (args.initial_voltage.is_some() || args.swap.is_some()) {
        bail!("--initial-voltage and --swap need --spiking");
    }
    if args.target_steps.is_some() && args.normalize_rates.is_none() {
        bail!(
            "--target-steps needs --normalize-rates DATA.npy (the calibration inputs it simulates)"
        );
    }
    let data = match &args.normalize_rates {
        Some(p) => Some(crate::npy::read_f32(p)?),
        None => None,
    };
    if let Some(d) = &data {
        if !args.spiking {
            bail!("--normalize-rates needs --spiking");
        }
        flags.normalize = Some(Normalize {
            samples: d.shape().first().copied().unwrap_or(0),
            percentile: args.percentile,
            rule: match args.normalize_rule {
                NormalizeRuleArg::Budget => NormalizeRuleFlag::Budget {
                    error_fraction: args.error_fraction,
                },
                NormalizeRuleArg::Percentile => NormalizeRuleFlag::Percentile {
                    max_rate: args.max_rate,
                },
            },
            target: args.target_steps.map(|steps| TimedNormalize {
                steps,
                agreement: args.target_agreement,
            }),
        });
    }
    let mut simulate = |m: &Module, steps: usize| match &data {
        Some(d) => snnc_runtime::dataset::run_calibration(m, d.view(), steps)
            .map(|(outputs, spikes)| Simulated { outputs, spikes }),
        None => Err("no calibration data".to_string()),
    };
    let mut print = |pass: &str, m: &Module| eprint!("; after pass {pass}\n{m}\n");
    let hooks = CompileHooks {
        print_after: if args.print_after_all {
            vec!["all".into()]
        } else {
            args.print_after.clone()
        },
        printer: Some(&mut print),
        simulate: Some(&mut simulate),
    };
    let (m, report) = compile(path, &flags, hooks)?;
    if let Some(c) = &report.calibration {
        eprintln!("normalize-rates: {c}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if args.time_passes {
        for t in &report.timings {
            eprintln!(
                "pass {:<14} {:>9.3} ms  {} → {} instructions{}",
                t.pass,
                t.time.as_secs_f64() * 1e3,
                t.ops.0,
                t.ops.1,
                t.detail
                    .as_ref()
                    .map_or(String::new(), |d| format!(" ({d})"))
            );
        }
    }
    Ok(m)
}
