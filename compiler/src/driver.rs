//! From a file a user names to a verified module: what every front-end (the `snnc` CLI, the Python
//! package) does before it simulates, in one place.
//!
//! [`load`] reads any model file by its extension; [`Flags`] are the conversion knobs users set
//! (NengoDL's converter arguments and snnc's own), checked once by [`Flags::options`];
//! [`compile`] runs calibration (through the caller's simulator: the compiler does not simulate),
//! the pass pipeline and the verifier. Errors name the file, and the layer or line where there is
//! one.

use crate::calibrate::{self, CalibrateError, NormalizeRule, Simulate};
use crate::keras::{KerasError, KerasOptions};
use crate::passes::{
    self, ConvertOptions, DEFAULT_PIPELINE, InitialVoltage, MaxPoolMode, PassError, PassHooks,
    PassTiming, SpikeOptions,
};
use snnc_ir::{ArtifactError, Module, SourceMap, Target, Verified};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a model file could not be read.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A `.sir` file that is not UTF-8.
    #[error("{}: not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A `.sir` file that does not parse.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        col: usize,
        /// What was expected.
        message: String,
    },
    /// A `.json` file that is not a serialised module.
    #[error("{}: not a snnc JSON module: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// serde's message.
        message: String,
    },
    /// A `.snn` artifact that could not be read.
    #[error("{}: {source}", path.display())]
    Artifact {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        source: ArtifactError,
    },
    /// A Keras model that could not be read (the error names the file and layer).
    #[error(transparent)]
    Keras(Box<KerasError>),
    /// A NIR graph that could not be read or imported (the error names the file or node).
    #[error(transparent)]
    Nir(Box<snnc_nir::NirError>),
    /// An extension snnc does not read.
    #[error("{}: unknown file type; expected .keras, .h5, .sir, .snn, .json or .nir", path.display())]
    UnknownType {
        /// The file.
        path: PathBuf,
    },
}

impl From<KerasError> for LoadError {
    fn from(e: KerasError) -> Self {
        LoadError::Keras(Box::new(e))
    }
}

/// A module read from a file.
#[derive(Debug)]
pub struct Loaded {
    /// The module as read (not yet verified).
    pub module: Module,
    /// Lines of a `.sir` file's entities, so verifier errors can name them.
    pub source_map: Option<SourceMap>,
    /// Whether it came from a Keras model (which is always converted).
    pub keras: bool,
    /// What loading had to assume (a NIR graph's reset rule, ...), each naming its node.
    pub warnings: Vec<String>,
}

/// Whether `path` names a Keras model, by its extension.
pub fn is_keras_path(path: &Path) -> bool {
    extension(path).is_some_and(|e| matches!(e.as_str(), "keras" | "h5" | "hdf5"))
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Read a module from a Keras model (`.keras`, `.h5`), `.sir` text, a `.snn` artifact or `.json`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    load_at(path, None)
}

/// [`load`], a Keras model converted for the timestep `dt` (default 1 ms): keras-spiking's
/// layers, whose own `dt` may differ, are converted against it.
pub fn load_at(path: &Path, dt: Option<f64>) -> Result<Loaded, LoadError> {
    let read = || {
        std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.into(),
            source,
        })
    };
    let plain = |module| Loaded {
        module,
        source_map: None,
        keras: false,
        warnings: Vec::new(),
    };
    match extension(path).as_deref().unwrap_or("") {
        "snn" => snnc_ir::load_snn(path)
            .map(plain)
            .map_err(|source| LoadError::Artifact {
                path: path.into(),
                source,
            }),
        "json" => {
            let text =
                String::from_utf8(read()?).map_err(|_| LoadError::NotText { path: path.into() })?;
            serde_json::from_str(&text)
                .map(plain)
                .map_err(|e| LoadError::Json {
                    path: path.into(),
                    message: e.to_string(),
                })
        }
        "sir" => {
            let text =
                String::from_utf8(read()?).map_err(|_| LoadError::NotText { path: path.into() })?;
            let (module, map) =
                snnc_ir::parse_with_source_map(&text).map_err(|e| LoadError::Parse {
                    path: path.into(),
                    line: e.line,
                    col: e.col,
                    message: e.message,
                })?;
            Ok(Loaded {
                module,
                source_map: Some(map),
                keras: false,
                warnings: Vec::new(),
            })
        }
        "keras" | "h5" | "hdf5" => Ok(Loaded {
            module: crate::keras::load(
                path,
                &KerasOptions {
                    dt: dt.unwrap_or(KerasOptions::default().dt),
                },
            )?,
            source_map: None,
            keras: true,
            warnings: Vec::new(),
        }),
        "nir" => {
            let imported =
                snnc_nir::import::import_file(path, dt).map_err(|e| LoadError::Nir(Box::new(e)))?;
            Ok(Loaded {
                module: imported.module,
                source_map: None,
                keras: false,
                warnings: imported.warnings,
            })
        }
        _ => Err(LoadError::UnknownType { path: path.into() }),
    }
}

pub use crate::passes::options::Swap;

/// `--normalize-rates`: per-layer scales chosen from calibration samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    /// Calibration samples the caller's simulator runs.
    pub samples: usize,
    /// Percentile of non-zero activations measured per layer.
    pub percentile: f64,
    /// How gains follow from the statistics. A `Budget` rule's `tau` of `None` uses the synapse
    /// (30 ms without one).
    pub rule: NormalizeRuleFlag,
    /// `--target-steps`: answer as the rate network does by this step (see [`TimedNormalize`]).
    pub target: Option<TimedNormalize>,
}

/// `--target-steps T`: per-layer scales searched by simulating the spiking network on the
/// calibration samples for `steps` steps, for the fewest spikes at which its decisions (the mean
/// of its output since the first step) equal the rate network's on a fraction `agreement` of them.
/// Unless given, the neurons become `if_neuron`s (signed input, reset by subtraction) starting
/// at half the threshold, with no synapses: the settings that answer soonest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimedNormalize {
    /// The step by which the network must answer.
    pub steps: usize,
    /// Required agreement with the rate network's decisions on the calibration samples.
    pub agreement: f64,
}

/// The rule of [`Normalize`], before the synapse is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormalizeRuleFlag {
    /// Fewest spikes for a logit error of this fraction of the median logit margin.
    Budget {
        /// Allowed error standard deviation as a fraction of the median margin.
        error_fraction: f64,
    },
    /// The percentile activation fires at `max_rate` Hz.
    Percentile {
        /// Target rate (Hz).
        max_rate: f64,
    },
}

/// The conversion knobs a user sets. `None` means the default; [`Flags::options`] checks them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flags {
    /// Spiking neurons for the ReLU family.
    pub spiking: bool,
    /// Neuron for ReLU layers when spiking.
    pub swap: Option<Swap>,
    /// `scale_firing_rates` for every layer.
    pub scale: Option<f64>,
    /// Per-layer scales (layer name, scale); they win over `scale`.
    pub layer_scales: Vec<(String, f64)>,
    /// Lowpass synapse time constant in seconds; `Some(None)` for no synapse. Default: 5 ms when
    /// spiking, none otherwise (NengoDL's defaults).
    pub synapse: Option<Option<f64>>,
    /// Per-layer synapses (layer name, time constant or `None` for none); they win over
    /// `synapse` for connections out of that layer.
    pub layer_synapses: Vec<(String, Option<f64>)>,
    /// Initial voltage of spiking neurons.
    pub initial_voltage: Option<InitialVoltage>,
    /// Max-pool lowering.
    pub max_pool: Option<MaxPoolMode>,
    /// Timestep in seconds (default: the module's own, 1 ms for Keras models).
    pub dt: Option<f64>,
    /// Pass pipeline by name (default [`DEFAULT_PIPELINE`]).
    pub passes: Option<Vec<String>>,
    /// Calibrate per-layer scales.
    pub normalize: Option<Normalize>,
    /// Verify only the final module.
    pub verify_last_only: bool,
}

/// Why a model could not be converted.
#[derive(Debug, Error)]
pub enum CompileError {
    /// The file could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A flag out of range or flags that do not go together.
    #[error("{0}")]
    Flag(String),
    /// A pass failed (the error names the pass, and the layer where there is one).
    #[error("converting {}: {source}", path.display())]
    Pass {
        /// The model file.
        path: PathBuf,
        /// What failed.
        source: PassError,
    },
    /// Calibration failed.
    #[error("--normalize-rates on {}: {source}", path.display())]
    Calibrate {
        /// The model file.
        path: PathBuf,
        /// What failed.
        source: CalibrateError,
    },
    /// The final module does not verify (every error, with its line for `.sir` files).
    #[error("{} does not verify:\n{rendered}", path.display())]
    Verify {
        /// The model file.
        path: PathBuf,
        /// The verifier's errors, rendered.
        rendered: String,
    },
}

impl Flags {
    /// True when any conversion flag differs from its default: an IR module is then converted
    /// too (a Keras model always is).
    pub fn any(&self) -> bool {
        *self != Flags::default()
    }

    /// Check the flags and turn them into pass options.
    pub fn options(&self) -> Result<ConvertOptions, CompileError> {
        let bad = |m: String| Err(CompileError::Flag(m));
        if let Some(dt) = self.dt
            && !(dt > 0.0 && dt.is_finite())
        {
            return bad(format!("dt must be a positive number of seconds, got {dt}"));
        }
        for (what, s) in self
            .scale
            .iter()
            .map(|&s| ("scale_firing_rates".to_string(), s))
            .chain(
                self.layer_scales
                    .iter()
                    .map(|(l, s)| (format!("scale_firing_rates for layer `{l}`"), *s)),
            )
        {
            if !(s > 0.0 && s.is_finite()) {
                return bad(format!("{what} must be a positive number, got {s}"));
            }
        }
        for (what, tau) in self
            .synapse
            .flatten()
            .map(|t| ("synapse".to_string(), t))
            .into_iter()
            .chain(
                self.layer_synapses
                    .iter()
                    .filter_map(|(l, t)| t.map(|t| (format!("synapse for layer `{l}`"), t))),
            )
        {
            if !(tau >= 0.0 && tau.is_finite()) {
                return bad(format!(
                    "{what} must be a non-negative time constant in seconds, got {tau}"
                ));
            }
        }
        if let Some(InitialVoltage::Fixed(v)) = self.initial_voltage
            && !v.is_finite()
        {
            return bad(format!("initial voltage must be finite, got {v}"));
        }
        if let Some(t) = self.normalize.and_then(|n| n.target) {
            if t.steps == 0 {
                return bad("target_steps must be at least 1".into());
            }
            if !(t.agreement > 0.0 && t.agreement <= 1.0) {
                return bad(format!(
                    "target_agreement must be in (0, 1], got {}",
                    t.agreement
                ));
            }
        }
        let max_pool = self.max_pool.unwrap_or_default();
        if !self.spiking {
            if self.initial_voltage.is_some() || self.swap.is_some() {
                return bad("the initial voltage and swap options need spiking".into());
            }
            if self.normalize.is_some() {
                return bad("normalize_rates needs spiking".into());
            }
            if self.scale.is_none()
                && self.layer_scales.is_empty()
                && self.synapse.is_none()
                && self.layer_synapses.is_empty()
            {
                return Ok(ConvertOptions {
                    max_pool,
                    spiking: None,
                });
            }
        }
        let defaults = spike_defaults(self.normalize.is_some_and(|n| n.target.is_some()));
        // Without spiking: NengoDL's scales and synapses on the rate network (no synapse unless
        // asked for: NengoDL's default is none).
        let default_synapse = if self.spiking { defaults.synapse } else { None };
        Ok(ConvertOptions {
            max_pool,
            spiking: Some(SpikeOptions {
                scale: self.scale.unwrap_or(defaults.scale),
                layer_scales: self.layer_scales.clone(),
                synapse: self.synapse.unwrap_or(default_synapse),
                layer_synapses: self.layer_synapses.clone(),
                initial_voltage: self.initial_voltage.unwrap_or(defaults.initial_voltage),
                max_pool,
                spiking: self.spiking,
                relu_neuron: self.swap.unwrap_or(defaults.relu_neuron),
            }),
        })
    }
}

/// The spiking options a conversion gets for every flag left unset: NengoDL's, or with
/// `--target-steps` (`timed`) integrate-and-fire neurons from half the threshold and no synapses.
pub fn spike_defaults(timed: bool) -> SpikeOptions {
    let nengo = SpikeOptions::default();
    if timed {
        SpikeOptions {
            relu_neuron: Swap::If,
            synapse: None,
            initial_voltage: InitialVoltage::Fixed(0.5),
            ..nengo
        }
    } else {
        nengo
    }
}

/// Calibrated per-layer scales added to `spiking`; scales given per layer win.
fn add_calibrated(spiking: &mut SpikeOptions, gains: &[(String, f64)]) {
    for (layer, g) in gains {
        if !spiking.layer_scales.iter().any(|(l, _)| l == layer) {
            spiking.layer_scales.push((layer.clone(), *g));
        }
    }
}

/// What [`compile`] reports beside the module.
#[derive(Debug, Default)]
pub struct Report {
    /// The passes' warnings.
    pub warnings: Vec<String>,
    /// One entry per pass run.
    pub timings: Vec<PassTiming>,
    /// With `normalize`: the calibration statistics, the median logit margin and the chosen
    /// gains.
    pub calibration: Option<Calibration>,
}

/// What `--normalize-rates` measured and chose.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Per population.
    pub stats: Vec<calibrate::LayerStats>,
    /// Median top-1/top-2 logit margin of the first output.
    pub margin: f64,
    /// Chosen scale per population.
    pub gains: Vec<(String, f64)>,
    /// With `--target-steps`: the target step, the required agreement, and the search.
    pub timed: Option<(usize, f64, calibrate::TimedChoice)>,
}

impl std::fmt::Display for Calibration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "median logit margin {:.3}", self.margin)?;
        for (s, (_, g)) in self.stats.iter().zip(&self.gains) {
            write!(
                f,
                "; {} (n={}, activity {:.1}, percentile activation {:.3}, sensitivity {:.3}) gain {g:.0}",
                s.name, s.neurons, s.activity, s.percentile, s.sensitivity
            )?;
        }
        if let Some((steps, agreement, choice)) = &self.timed {
            write!(
                f,
                "\ntarget: the rate network's decision on {:.1}% of the calibration samples by step {steps}",
                agreement * 100.0
            )?;
            for (i, c) in choice.tried.iter().enumerate() {
                write!(
                    f,
                    "\n  {} {}: agreement at step {steps} predicted {:.1}%, measured {:.1}%, {:.0} spikes per sample",
                    if i == choice.chosen { "*" } else { " " },
                    c.rule,
                    c.predicted * 100.0,
                    c.measured * 100.0,
                    c.spikes
                )?;
            }
            if !choice.reached {
                write!(
                    f,
                    "\n  target not reached: the setting with the highest agreement is used (try a later --target-steps or a lower --target-agreement)"
                )?;
            }
        }
        Ok(())
    }
}

/// Observers of a [`compile`] run.
#[derive(Default)]
pub struct CompileHooks<'a> {
    /// Print the module after these passes (`all` for every pass) through `printer`.
    pub print_after: Vec<String>,
    /// Where printed modules go.
    pub printer: Option<passes::ModulePrinter<'a>>,
    /// Runs calibration modules (needed with [`Flags::normalize`]).
    pub simulate: Option<&'a mut Simulate<'a>>,
}

/// The passes `flags` ask for, by name.
fn pipeline_names(flags: &Flags) -> Vec<&str> {
    match &flags.passes {
        Some(p) => p.iter().map(String::as_str).collect(),
        None => DEFAULT_PIPELINE.to_vec(),
    }
}

/// Read `path` and convert it under `flags`: Keras models always, IR modules when any flag is
/// given. Returns the verified module and what the passes reported.
pub fn compile(
    path: &Path,
    flags: &Flags,
    hooks: CompileHooks,
) -> Result<(Verified, Report), CompileError> {
    let mut opts = flags.options()?;
    let loaded = load_at(path, flags.dt)?;
    let mut report = Report::default();
    let verified = |m: Module, map: Option<&SourceMap>| {
        snnc_ir::verify(m, Target::Any).map_err(|e| CompileError::Verify {
            path: path.into(),
            rendered: e.render(map).trim_end().to_string(),
        })
    };
    let mut m = loaded.module;
    if !loaded.keras && !flags.any() {
        return Ok((verified(m, loaded.source_map.as_ref())?, report));
    }
    if let Some(dt) = flags.dt {
        m.dt = dt;
    }
    // A module that does not verify is reported with its lines, before any pass runs.
    if !snnc_ir::check(&m, Target::Any).is_empty() {
        return Err(verified(m, loaded.source_map.as_ref()).expect_err("check found errors"));
    }
    let pass_error = |source| CompileError::Pass {
        path: path.into(),
        source,
    };
    if let Some(norm) = flags.normalize
        && opts.spiking.is_some()
    {
        let calib = |source| CompileError::Calibrate {
            path: path.into(),
            source,
        };
        let Some(simulate) = hooks.simulate else {
            return Err(CompileError::Flag(
                "normalize_rates needs a simulator for the calibration runs".into(),
            ));
        };
        // Calibrate the network's own layers: max pooling stays the exact op here.
        let rate = passes::convert(
            m.clone(),
            &ConvertOptions {
                max_pool: MaxPoolMode::Keep,
                spiking: None,
            },
        )
        .map_err(pass_error)?;
        let meas =
            calibrate::measure(&rate, norm.samples, norm.percentile, simulate).map_err(calib)?;
        let (gains, timed) = match (norm.target, norm.rule) {
            (Some(t), rule) => {
                let error_fraction = match rule {
                    NormalizeRuleFlag::Budget { error_fraction } => error_fraction,
                    NormalizeRuleFlag::Percentile { .. } => 0.3,
                };
                let target = calibrate::TimeTarget {
                    steps: t.steps,
                    agreement: t.agreement,
                    error_fraction,
                    dt: m.dt,
                };
                let names = pipeline_names(flags);
                let mut evaluate = |gains: &[(String, f64)]| {
                    let mut o = opts.clone();
                    let sp = o.spiking.as_mut().expect("checked above");
                    add_calibrated(sp, gains);
                    let converted =
                        passes::run_pipeline(m.clone(), &names, &o, &mut PassHooks::default())
                            .map_err(|e| CalibrateError::Simulate(e.to_string()))?;
                    let r = simulate(&converted, t.steps).map_err(CalibrateError::Simulate)?;
                    let first = r.outputs.first().ok_or(CalibrateError::NoOutput)?;
                    Ok((calibrate::decisions(first, norm.samples), r.spikes))
                };
                let choice =
                    calibrate::search_gains(&meas, target, &mut evaluate).map_err(calib)?;
                let gains = choice.tried[choice.chosen].gains.clone();
                (gains, Some((t.steps, t.agreement, choice)))
            }
            (None, rule) => {
                let rule = match rule {
                    NormalizeRuleFlag::Budget { error_fraction } => NormalizeRule::Budget {
                        error_fraction,
                        tau: opts
                            .spiking
                            .as_ref()
                            .and_then(|s| s.synapse)
                            .unwrap_or(0.03),
                    },
                    NormalizeRuleFlag::Percentile { max_rate } => {
                        NormalizeRule::Percentile { max_rate }
                    }
                };
                (
                    calibrate::choose_gains(&meas.stats, meas.median_margin, rule),
                    None,
                )
            }
        };
        add_calibrated(opts.spiking.as_mut().expect("checked above"), &gains);
        report.calibration = Some(Calibration {
            stats: meas.stats,
            margin: meas.median_margin,
            gains,
            timed,
        });
    }
    let names = pipeline_names(flags);
    let mut pass_hooks = PassHooks {
        print_after: hooks.print_after,
        printer: hooks.printer,
        timings: Vec::new(),
        warnings: Vec::new(),
        verify_last_only: flags.verify_last_only,
    };
    let m = passes::run_pipeline(m, &names, &opts, &mut pass_hooks).map_err(pass_error)?;
    report.warnings = pass_hooks.warnings;
    report.timings = pass_hooks.timings;
    Ok((verified(m, None)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_rate_neurons() {
        let o = Flags::default().options().unwrap();
        assert_eq!(o.spiking, None);
        let o = Flags {
            spiking: true,
            ..Flags::default()
        }
        .options()
        .unwrap();
        assert_eq!(o.spiking, Some(SpikeOptions::default()));
    }

    #[test]
    fn rate_mode_scales_have_no_synapse_unless_asked() {
        let o = Flags {
            scale: Some(10.0),
            ..Flags::default()
        }
        .options()
        .unwrap();
        let s = o.spiking.unwrap();
        assert!(!s.spiking);
        assert_eq!((s.scale, s.synapse), (10.0, None));
    }

    #[test]
    fn bad_flags_are_named() {
        let cases = [
            (
                Flags {
                    scale: Some(-1.0),
                    ..Flags::default()
                },
                "scale_firing_rates must be a positive number, got -1",
            ),
            (
                Flags {
                    spiking: true,
                    synapse: Some(Some(f64::NAN)),
                    ..Flags::default()
                },
                "synapse must be a non-negative",
            ),
            (
                Flags {
                    dt: Some(0.0),
                    ..Flags::default()
                },
                "dt must be a positive",
            ),
            (
                Flags {
                    swap: Some(Swap::Lif),
                    ..Flags::default()
                },
                "need spiking",
            ),
        ];
        for (f, want) in cases {
            let e = f.options().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn unknown_extensions_are_refused() {
        let e = load(Path::new("model.onnx")).unwrap_err().to_string();
        assert_eq!(
            e,
            "model.onnx: unknown file type; expected .keras, .h5, .sir, .snn, .json or .nir"
        );
    }
}
