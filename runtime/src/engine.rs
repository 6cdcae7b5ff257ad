//! What every backend implements, and what can go wrong setting one up.

use snnc_ir::Module;
use thiserror::Error;

/// What went wrong setting up or running a simulation.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SimError {
    /// A constant only has a checksum (a dump); load the `.snn` artifact instead.
    #[error(
        "the module has constants without data (only checksums); run the .snn artifact instead"
    )]
    MissingConstantData,
    /// Buffers for this module and batch do not fit in memory.
    #[error("the module's buffers for this batch size do not fit in memory")]
    TooLarge,
    /// Batch size 0.
    #[error("batch size must be at least 1")]
    ZeroBatch,
    /// The memory plan broke one of its guarantees (a bug in snnc, not in the module).
    #[error("internal error in the memory plan: {0}")]
    MemoryPlan(String),
    /// Cranelift could not compile the module.
    #[error("JIT compilation failed: {0}")]
    Jit(String),
    /// Wrong number of input arrays.
    #[error("the module has {expected} inputs, {got} were given")]
    InputCount {
        /// Inputs the module declares.
        expected: usize,
        /// Arrays given.
        got: usize,
    },
    /// An input array of the wrong shape.
    #[error("input %{name}: expected shape {expected}, got {got:?}")]
    InputShape {
        /// Input name.
        name: String,
        /// What was expected, in words.
        expected: String,
        /// Shape given.
        got: Vec<usize>,
    },
}

/// What a backend implements. `Send`, so a simulation may move to another thread (a Python
/// binding releases the GIL while it runs). Buffers are flat, batch-major: sample `b` of a tensor of `n`
/// elements is `[b·n, (b+1)·n)`.
pub trait Engine: Send {
    /// Set every state to its initial value for reset seed `seed`.
    fn reset(&mut self, seed: u64);
    /// Run one step; `inputs[k]` holds input `k` for the whole batch.
    fn step(&mut self, inputs: &[&[f32]]);
    /// Output `k` as of the last step, for the whole batch.
    fn output(&self, k: usize) -> &[f32];
    /// The module it runs.
    fn module(&self) -> &Module;
    /// The module it runs, with the verifier's facts.
    fn verified(&self) -> &snnc_ir::Verified;
    /// Count spikes inside the following steps where the backend can (see [`Engine::tally`]).
    fn count_in_step(&self, _on: bool) {}
    /// The spikes of spike output `k` counted inside the last step, per sample, with their
    /// synaptic operations if `synops` (`out(sample, spikes, synops)`); false (and no call) if
    /// the backend did not count them exactly there: then count the output itself.
    fn tally(
        &self,
        _k: usize,
        _synops: bool,
        _out: &mut dyn FnMut(usize, f64, Option<f64>),
    ) -> bool {
        false
    }
}
