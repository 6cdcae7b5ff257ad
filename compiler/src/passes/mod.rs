//! Passes. Each is one file and one function with a doc comment saying what holds afterwards;
//! [`convert`] runs the conversion pipeline (`spikify` → `lower-maxpool`) and verifies after each.

pub mod lower_maxpool;
pub mod rewrite;
pub mod spikify;

pub use lower_maxpool::{MaxPoolMode, lower_maxpool};
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

/// Run the conversion pipeline, verifying after every pass. With `max_pool: Neural` no max
/// pooling is left (the module verifies for the neural target unless it has other non-neural
/// ops, such as a softmax readout).
pub fn convert(module: Module, opts: &ConvertOptions) -> Result<Module, PassError> {
    let mut m = module;
    if let Some(s) = &opts.spiking {
        let mut s = s.clone();
        s.max_pool = opts.max_pool;
        m = spikify(&m, &s)?;
        verify_after("spikify", &m, Target::Any)?;
    }
    m = lower_maxpool(&m, opts.max_pool)?;
    verify_after("lower-maxpool", &m, Target::Any)?;
    Ok(m)
}
