//! What a pass is: a named rewrite of a module under the conversion options, what it returns,
//! and how it fails.

use super::options::ConvertOptions;
use snnc_ir::{Module, Target, VerifyErrors};

/// The name prefix of the spike outputs the passes add (their kind, not their name, makes them
/// spike outputs: see [`snnc_ir::OutputKind::Spikes`]).
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
    /// Building the rewritten module failed (a shape or name the pass got wrong).
    #[error("pass `{pass}`: {source}")]
    Build {
        /// Pass name.
        pass: &'static str,
        /// What the builder refused.
        source: snnc_ir::BuildError,
    },
    /// A pool window does not fit its input.
    #[error("pass `{pass}`: {source}")]
    Window {
        /// Pass name.
        pass: &'static str,
        /// The window's problem.
        source: snnc_ir::geometry::WindowError,
    },
    /// `spikify` met a merged ReLU (it converts one population per instruction).
    #[error(
        "pass `spikify`: `{name}` is a merged instruction ({groups} groups); run spikify before merge"
    )]
    MergedBeforeSpikify {
        /// The first group's output.
        name: String,
        /// Its groups.
        groups: usize,
    },
    /// A firing-rate scale that is not a positive finite number.
    #[error("pass `spikify`: scale {scale} for `{name}` must be positive")]
    BadScale {
        /// The population.
        name: String,
        /// The scale given.
        scale: f64,
    },
    /// An instruction reads a value that a later one defines (the module was not verified).
    #[error("pass `{pass}`: instruction {inst} reads a value defined later")]
    ReadsLaterValue {
        /// Pass name.
        pass: &'static str,
        /// The instruction.
        inst: usize,
    },
    /// `merge`'s dependency check let a cycle through (a bug in the pass).
    #[error("pass `merge`: merging made the instructions cyclic (a dependency check failed)")]
    MergeCycle,
    /// A pipeline names a pass that does not exist.
    #[error("pass `{name}`: no such pass; the passes are {known}")]
    UnknownPass {
        /// The name given.
        name: String,
        /// Every pass name, comma separated.
        known: String,
    },
}

pub(crate) fn build_err(pass: &'static str, source: snnc_ir::BuildError) -> PassError {
    PassError::Build { pass, source }
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

/// What a pass made: the new module, and a line saying what it did beyond the instruction counts
/// (`merge`: how many instructions it merged into how many), when it has one.
pub struct PassOutcome {
    /// The rewritten module.
    pub module: Module,
    /// Printed by `--time-passes` after the counts.
    pub detail: Option<String>,
    /// What the user should know about the result (printed as warnings).
    pub warnings: Vec<String>,
}

impl From<Module> for PassOutcome {
    fn from(module: Module) -> Self {
        PassOutcome {
            module,
            detail: None,
            warnings: Vec::new(),
        }
    }
}

/// A pass: a named rewrite of a module under the conversion options.
pub trait Pass: Sync {
    /// The name pipelines use (`--passes`).
    fn name(&self) -> &'static str;
    /// Rewrite `m`. `None` when the options leave the pass nothing to do (`spikify` without
    /// spiking options); the pipeline then records no run.
    fn run(&self, m: &Module, opts: &ConvertOptions) -> Result<Option<PassOutcome>, PassError>;
}
