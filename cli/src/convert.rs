//! Conversion flags shared by `compile` and `run`: NengoDL's converter options plus snnc's own.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use snnc_compiler::passes::{ConvertOptions, InitialVoltage, MaxPoolMode, SpikeOptions};
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
}

impl ConvertArgs {
    /// True when any conversion flag was given.
    fn any(&self) -> bool {
        self.spiking
            || !self.scale.is_empty()
            || self.synapse.is_some()
            || self.initial_voltage.is_some()
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
            if !self.scale.is_empty() || self.synapse.is_some() || self.initial_voltage.is_some() {
                bail!("--scale-firing-rates, --synapse and --initial-voltage need --spiking");
            }
            return Ok(ConvertOptions {
                max_pool,
                spiking: None,
            });
        }
        let mut s = SpikeOptions {
            max_pool,
            ..SpikeOptions::default()
        };
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
    if let Some(dt) = args.dt {
        if !(dt > 0.0 && dt.is_finite()) {
            bail!("--dt must be a positive number of seconds");
        }
    }
    let is_keras = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "keras" | "h5" | "hdf5"));
    let (mut m, map) = crate::load_module(path)?;
    if !is_keras && !args.any() {
        return Ok((m, map));
    }
    if let Some(dt) = args.dt {
        m.dt = dt;
    }
    let opts = args.options()?;
    // A module that does not verify is reported by the caller with its lines.
    if !snnc_ir::check(&m, snnc_ir::Target::Any).is_empty() {
        return Ok((m, map));
    }
    let m = snnc_compiler::passes::convert(m, &opts)
        .with_context(|| format!("converting {}", path.display()))?;
    Ok((m, None))
}
