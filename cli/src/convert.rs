//! Conversion flags shared by `compile` and `run`: NengoDL's converter options plus snnc's own.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use snnc_compiler::calibrate::NormalizeRule;
use snnc_compiler::passes::{ConvertOptions, InitialVoltage, MaxPoolMode, PassHooks, SpikeOptions};
use snnc_ir::{Module, SourceMap};
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
    /// Neuron for ReLU layers when spiking: `relu=spiking_relu` (default) or `relu=lif`
    /// (Nengo's LIF; changes the function, as NengoDL's swap_activations does).
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
    /// Initial membrane voltage: `uniform` (U(0,1), Nengo's default) or a value such as 0.5.
    #[arg(long = "initial-voltage", value_name = "uniform|V")]
    pub initial_voltage: Option<String>,
    /// How max pooling becomes neural [default: neural].
    #[arg(long = "max-pool", value_enum)]
    pub max_pool: Option<MaxPoolArg>,
    /// Simulation timestep in seconds [default: 0.001, or the module's own].
    #[arg(long)]
    pub dt: Option<f64>,
    /// The passes to run, comma separated [default: spikify,lower-maxpool,simplify,sink-synapses,fuse; also: merge].
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
    /// True when any conversion flag was given.
    fn any(&self) -> bool {
        self.passes.is_some()
            || !self.print_after.is_empty()
            || self.print_after_all
            || self.time_passes
            || self.no_verify_each
            || self.normalize_rates.is_some()
            || self.spiking
            || !self.scale.is_empty()
            || self.synapse.is_some()
            || self.initial_voltage.is_some()
            || self.swap.is_some()
            || self.max_pool.is_some()
            || self.dt.is_some()
    }

    /// The pipeline options these flags ask for.
    pub fn options(&self) -> Result<ConvertOptions> {
        let max_pool = match self.max_pool.unwrap_or(MaxPoolArg::Neural) {
            MaxPoolArg::Neural => MaxPoolMode::Neural,
            MaxPoolArg::Avg => MaxPoolMode::Avg,
            MaxPoolArg::Keep => MaxPoolMode::Keep,
        };
        if !self.spiking {
            if self.initial_voltage.is_some() || self.swap.is_some() {
                bail!("--initial-voltage and --swap need --spiking");
            }
            if self.scale.is_empty() && self.synapse.is_none() {
                return Ok(ConvertOptions {
                    max_pool,
                    spiking: None,
                });
            }
        }
        // Without --spiking, NengoDL's scales and synapses on the rate network (no synapse
        // unless asked for: NengoDL's default is none).
        let mut s = SpikeOptions {
            max_pool,
            spiking: self.spiking,
            synapse: if self.spiking {
                SpikeOptions::default().synapse
            } else {
                None
            },
            ..SpikeOptions::default()
        };
        match self.swap.as_deref() {
            None | Some("relu=spiking_relu") => {}
            Some("relu=lif") => s.relu_to_lif = true,
            Some(other) => bail!("--swap {other}: supported are relu=spiking_relu and relu=lif"),
        }
        for spec in &self.scale {
            let parse = |v: &str| -> Result<f64> {
                let x: f64 = v.parse().with_context(|| {
                    format!("--scale-firing-rates {spec}: `{v}` is not a number")
                })?;
                if !(x > 0.0 && x.is_finite()) {
                    bail!("--scale-firing-rates {spec}: the scale must be positive");
                }
                Ok(x)
            };
            match spec.split_once('=') {
                Some((layer, v)) => s.layer_scales.push((layer.to_string(), parse(v)?)),
                None => s.scale = parse(spec)?,
            }
        }
        if let Some(t) = &self.synapse {
            s.synapse = match t.as_str() {
                "none" | "None" => None,
                v => {
                    let tau: f64 = v
                        .parse()
                        .with_context(|| format!("--synapse: `{v}` is not a time constant"))?;
                    if !(tau >= 0.0 && tau.is_finite()) {
                        bail!("--synapse must be a non-negative time constant in seconds");
                    }
                    Some(tau)
                }
            };
        }
        if let Some(v) = &self.initial_voltage {
            s.initial_voltage = match v.as_str() {
                "uniform" => InitialVoltage::Uniform,
                x => InitialVoltage::Fixed(x.parse().with_context(|| {
                    format!("--initial-voltage: `{x}` is neither `uniform` nor a number")
                })?),
            };
        }
        Ok(ConvertOptions {
            max_pool,
            spiking: Some(s),
        })
    }
}

/// Load a model and run the conversion pipeline: always for Keras models, and for IR modules
/// when any conversion flag is given.
pub fn load_converted(path: &Path, args: &ConvertArgs) -> Result<(Module, Option<SourceMap>)> {
    if let Some(dt) = args.dt
        && !(dt > 0.0 && dt.is_finite())
    {
        bail!("--dt must be a positive number of seconds");
    }
    let is_keras = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "keras" | "h5" | "hdf5"));
    let (mut m, map) = crate::load::load_module(path)?;
    if !is_keras && !args.any() {
        return Ok((m, map));
    }
    if let Some(dt) = args.dt {
        m.dt = dt;
    }
    let mut opts = args.options()?;
    // A module that does not verify is reported by the caller with its lines.
    if !snnc_ir::check(&m, snnc_ir::Target::Any).is_empty() {
        return Ok((m, map));
    }
    if let Some(data_path) = &args.normalize_rates {
        let Some(spiking) = opts.spiking.as_mut() else {
            bail!("--normalize-rates needs --spiking");
        };
        let data = crate::npy::read_f32(data_path)?;
        // Calibrate the network's own layers: max pooling stays the exact op here.
        let rate = snnc_compiler::passes::convert(
            m.clone(),
            &ConvertOptions {
                max_pool: MaxPoolMode::Keep,
                spiking: None,
            },
        )
        .with_context(|| format!("converting {}", path.display()))?;
        let tau = spiking.synapse.unwrap_or(0.03);
        let rule = match args.normalize_rule {
            NormalizeRuleArg::Budget => NormalizeRule::Budget {
                error_fraction: args.error_fraction,
                tau,
            },
            NormalizeRuleArg::Percentile => NormalizeRule::Percentile {
                max_rate: args.max_rate,
            },
        };
        let chosen = crate::normalize::gains(&rate, &data, rule, args.percentile)
            .with_context(|| format!("--normalize-rates {}", data_path.display()))?;
        for (layer, g) in chosen {
            if !spiking.layer_scales.iter().any(|(l, _)| *l == layer) {
                spiking.layer_scales.push((layer, g));
            }
        }
    }
    let default: Vec<String> = snnc_compiler::passes::DEFAULT_PIPELINE
        .iter()
        .map(|p| p.to_string())
        .collect();
    let names = args.passes.clone().unwrap_or(default);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut print = |pass: &str, m: &Module| eprint!("; after pass {pass}\n{m}\n");
    let mut hooks = PassHooks {
        print_after: if args.print_after_all {
            vec!["all".into()]
        } else {
            args.print_after.clone()
        },
        printer: Some(&mut print),
        timings: Vec::new(),
        warnings: Vec::new(),
        verify_last_only: args.no_verify_each,
    };
    let m = snnc_compiler::passes::run_pipeline(m, &names, &opts, &mut hooks)
        .with_context(|| format!("converting {}", path.display()))?;
    for w in &hooks.warnings {
        eprintln!("warning: {w}");
    }
    if args.time_passes {
        for t in &hooks.timings {
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
    Ok((m, None))
}

/// [`load_converted`], then verify: the error lists every problem with its line.
pub fn load_verified(path: &Path, args: &ConvertArgs) -> Result<snnc_ir::Verified> {
    let (m, map) = load_converted(path, args)?;
    snnc_ir::verify(m, snnc_ir::Target::Any).map_err(|e| {
        anyhow::anyhow!(
            "{} does not verify:\n{}",
            path.display(),
            e.render(map.as_ref()).trim_end()
        )
    })
}
