//! Passes. Each is one file and one function with a doc comment saying what holds afterwards;
//! [`convert`] runs the conversion pipeline (`spikify` → `lower-maxpool`) and verifies after each.

pub mod fuse;
pub mod lower_maxpool;
pub mod merge;
pub mod rewrite;
pub mod simplify;
pub mod sink_synapses;
pub mod spikify;

pub use fuse::fuse;
pub use lower_maxpool::{MaxPoolMode, lower_maxpool};
pub use merge::{MergeStats, merge};
pub use simplify::simplify;
pub use sink_synapses::sink_synapses;
pub use spikify::{InitialVoltage, SpikeOptions, spikify};

use snnc_ir::{Module, Target, VerifyErrors};

/// Outputs whose name starts with this carry a population's raw spikes (for spike counting).
pub const SPIKE_OUTPUT_PREFIX: &str = "spikes/";

/// A pass failed or left a module that does not verify.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The module after the pass does not verify.
    #[error("after pass `{pass}`:\n{errors}")]
    Verify {
        /// Pass name.
        pass: String,
        /// What the verifier found.
        errors: VerifyErrors,
    },
    /// The pass could not do its work on this module.
    #[error("pass `{pass}`: {message}")]
    Invalid {
        /// Pass name.
        pass: String,
        /// Why.
        message: String,
    },
}

pub(crate) fn build_err(pass: &str, e: snnc_ir::BuildError) -> PassError {
    PassError::Invalid {
        pass: pass.into(),
        message: e.to_string(),
    }
}

/// Verify a module after a pass.
pub fn verify_after(pass: &str, module: &Module, target: Target) -> Result<(), PassError> {
    let errors = snnc_ir::check(module, target);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PassError::Verify {
            pass: pass.to_string(),
            errors: VerifyErrors(errors),
        })
    }
}

/// Conversion options: how to lower max pooling, and whether (and how) to spike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConvertOptions {
    /// Max-pool lowering.
    pub max_pool: MaxPoolMode,
    /// Spiking conversion; `None` keeps rate neurons.
    pub spiking: Option<SpikeOptions>,
}

/// The passes `convert` runs, in order (`spikify` only when spiking).
pub const DEFAULT_PIPELINE: &[&str] = &[
    "spikify",
    "lower-maxpool",
    "simplify",
    "sink-synapses",
    "fuse",
    "merge",
];

/// Every pass a pipeline may name.
pub const PASSES: &[&str] = &[
    "spikify",
    "lower-maxpool",
    "simplify",
    "sink-synapses",
    "fuse",
    "merge",
];

/// What one pass did.
#[derive(Clone, Debug)]
pub struct PassTiming {
    /// Pass name.
    pub pass: String,
    /// Wall time.
    pub time: std::time::Duration,
    /// Instructions before and after.
    pub ops: (usize, usize),
    /// What the pass did beyond the counts, when it says (`merge`: instructions merged in → out).
    pub detail: Option<String>,
}

/// Receives the module after a pass, with the pass name.
pub type ModulePrinter<'a> = &'a mut dyn FnMut(&str, &Module);

/// Observation hooks of a pipeline run: printing after passes and timing them.
#[derive(Default)]
pub struct PassHooks<'a> {
    /// Print the module after these passes (`all` for every pass).
    pub print_after: Vec<String>,
    /// Where printed modules go.
    pub printer: Option<ModulePrinter<'a>>,
    /// Filled with one entry per pass run.
    pub timings: Vec<PassTiming>,
    /// Verify only after the last pass instead of after each (`--no-verify-each`).
    pub verify_last_only: bool,
}

/// Run the conversion pipeline, verifying after every pass. With `max_pool: Neural` no max
/// pooling is left (the module verifies for the neural target unless it has other non-neural
/// ops, such as a softmax readout).
pub fn convert(module: Module, opts: &ConvertOptions) -> Result<Module, PassError> {
    run_pipeline(module, DEFAULT_PIPELINE, opts, &mut PassHooks::default())
}

/// Run the named passes in order, verifying after each one.
pub fn run_pipeline(
    module: Module,
    passes: &[&str],
    opts: &ConvertOptions,
    hooks: &mut PassHooks,
) -> Result<Module, PassError> {
    let mut m = module;
    for (k, &pass) in passes.iter().enumerate() {
        let start = std::time::Instant::now();
        let before = m.insts.len();
        let mut detail = None;
        m = match pass {
            "spikify" => match &opts.spiking {
                Some(s) => {
                    let mut s = s.clone();
                    s.max_pool = opts.max_pool;
                    spikify(&m, &s)?
                }
                None => continue,
            },
            "lower-maxpool" => lower_maxpool(&m, opts.max_pool)?,
            "simplify" => simplify(&m)?,
            "sink-synapses" => sink_synapses(&m)?,
            "fuse" => fuse(&m)?,
            "merge" => {
                let (out, st) = merge::merge_with_stats(&m)?;
                detail = Some(format!(
                    "merged {} neuron/synapse instructions into {}",
                    st.merged_in, st.merged_out
                ));
                out
            }
            other => {
                return Err(PassError::Invalid {
                    pass: other.into(),
                    message: format!("no such pass; the passes are {}", PASSES.join(", ")),
                });
            }
        };
        hooks.timings.push(PassTiming {
            pass: pass.into(),
            time: start.elapsed(),
            ops: (before, m.insts.len()),
            detail,
        });
        if !hooks.verify_last_only || k + 1 == passes.len() {
            verify_after(pass, &m, Target::Any)?;
        }
        if hooks.print_after.iter().any(|p| p == pass || p == "all")
            && let Some(print) = hooks.printer.as_mut()
        {
            print(pass, &m);
        }
    }
    Ok(m)
}
