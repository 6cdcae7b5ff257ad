//! Passes. Each is one file with a function doing the rewrite (its doc comment says what holds
//! afterwards) and a unit type implementing [`Pass`], by which the pass manager
//! ([`run_pipeline`]) finds it by name. [`convert`] runs [`DEFAULT_PIPELINE`], verifying after
//! each pass.

pub mod fixed_neurons;
pub mod fuse;
pub mod lower_maxpool;
pub mod merge;
pub mod options;
pub mod pass;
pub mod rewrite;
pub mod simplify;
pub mod sink_synapses;
pub mod spikify;

pub use fixed_neurons::fixed_neurons;
pub use fuse::fuse;
pub use lower_maxpool::lower_maxpool;
pub use merge::{MergeStats, merge};
pub use options::{ConvertOptions, InitialVoltage, MaxPoolMode, SpikeOptions, Swap};
pub(crate) use pass::build_err;
pub use pass::{Pass, PassError, PassOutcome, SPIKE_OUTPUT_PREFIX, verify_after};
pub use simplify::simplify;
pub use sink_synapses::sink_synapses;
pub use spikify::spikify;

use snnc_ir::{Module, Target};

/// Every pass, in the default pipeline's order.
pub const ALL_PASSES: &[&dyn Pass] = &[
    &spikify::Spikify,
    &lower_maxpool::LowerMaxPool,
    &simplify::Simplify,
    &sink_synapses::SinkSynapses,
    &fuse::Fuse,
    &fixed_neurons::FixedNeurons,
    &merge::Merge,
];

/// The pass of this name.
pub fn pass_named(name: &str) -> Option<&'static dyn Pass> {
    ALL_PASSES.iter().copied().find(|p| p.name() == name)
}

/// The passes `convert` runs, in order (`spikify` only when spiking). `merge` is not among them:
/// on the MNIST example it gains nothing at batch 1 and costs cache locality at batch 64. Nor is
/// `fixed-neurons`: scheduling a held population pays for itself only over long presentations
/// (README, "Performance").
pub const DEFAULT_PIPELINE: &[&str] = &[
    "spikify",
    "lower-maxpool",
    "simplify",
    "sink-synapses",
    "fuse",
];

/// Every pass a pipeline may name, in [`ALL_PASSES`] order.
pub fn pass_names() -> impl Iterator<Item = &'static str> {
    ALL_PASSES.iter().map(|p| p.name())
}

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
    /// The passes' warnings, in order.
    pub warnings: Vec<String>,
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
        let Some(p) = pass_named(pass) else {
            return Err(PassError::UnknownPass {
                name: pass.into(),
                known: pass_names().collect::<Vec<_>>().join(", "),
            });
        };
        let Some(outcome) = p.run(&m, opts)? else {
            continue;
        };
        m = outcome.module;
        let detail = outcome.detail;
        hooks.warnings.extend(outcome.warnings);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_pass_is_registered_once() {
        let mut names: Vec<&str> = pass_names().collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a pass name is registered twice");
        assert!(pass_named("no-such-pass").is_none());
        assert!(DEFAULT_PIPELINE.iter().all(|p| pass_named(p).is_some()));
    }
}
