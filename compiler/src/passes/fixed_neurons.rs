//! `fixed-neurons`: a `spiking_relu` population whose input current reads only inputs and
//! constants becomes a `fixed_relu`, the same neuron with a fixed-point voltage.
//!
//! With the inputs held (an image shown for every step), such a population receives the same
//! current on every step, and a `fixed_relu`'s integer voltage gives its spike train an exact
//! closed form: a runtime may visit only the units due to spike (the JIT schedules them on a
//! timing wheel, see SPEC.md, "Skipping work exactly"), and every backend still computes the same
//! spikes. The one difference from `spiking_relu` is the drive's rounding to a multiple of 2⁻²⁴
//! of the threshold per step; over 10,000 steps it moves a unit's count by at most one spike
//! (tested), where f32 accumulation drifts by as much.
//!
//! Only single-group instructions change (run the pass before `merge`).

use super::PassError;
use snnc_ir::{Module, ModuleInfo, NeuronModel, Op};

/// Rewrite every qualifying `spiking_relu`; returns the module and how many changed.
pub fn fixed_neurons(m: &Module) -> (Module, usize) {
    let info = ModuleInfo::new(m);
    let mut out = m.clone();
    let mut changed = 0;
    for inst in &mut out.insts {
        let single = inst.groups() == 1;
        let held_current = info.operand_invariant(inst.args[0]);
        if let Op::Neuron(n) = &mut inst.op
            && n.model == NeuronModel::SpikingRelu
            && single
            && held_current
        {
            n.model = NeuronModel::FixedRelu;
            changed += 1;
        }
    }
    (out, changed)
}

/// The `fixed-neurons` pass.
pub struct FixedNeurons;

impl super::Pass for FixedNeurons {
    fn name(&self) -> &'static str {
        "fixed-neurons"
    }

    fn run(
        &self,
        m: &Module,
        _opts: &super::ConvertOptions,
    ) -> Result<Option<super::PassOutcome>, PassError> {
        let (module, n) = fixed_neurons(m);
        Ok(Some(super::PassOutcome {
            module,
            detail: Some(format!(
                "{n} spiking_relu populations with held currents → fixed_relu"
            )),
            warnings: Vec::new(),
        }))
    }
}
