//! # snnc-compiler: front-ends and passes
//!
//! Turns models into snnc IR: the Keras front-end ([`keras`]) now, the optimisation passes next.
//! Every transformation's contract: it takes a module and returns one that verifies again.

pub mod keras;

use snnc_ir::{Module, Target, VerifyErrors};

/// Verify a module after a transformation, the check every pass runs under `--verify-each`.
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
}
