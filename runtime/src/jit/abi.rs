//! What generated code links to and reads: the host functions it calls and the tables whose
//! addresses it bakes in.

use cranelift_codegen::ir::FuncRef;

/// Host functions the generated code calls: the transcendental neurons of
/// [`snnc_ir::semantics`], and the host jobs.
pub(super) struct Hosts {
    pub(super) sigmoid: FuncRef,
    pub(super) tanh: FuncRef,
    pub(super) lif_rate: FuncRef,
    pub(super) lif: FuncRef,
    pub(super) activation: FuncRef,
    pub(super) job: FuncRef,
}

/// Tables the generated code reads that the module does not hold in this form (row-sorted sparse
/// maps, pooling windows, LIF parameters and their result slots). Their heap addresses are baked
/// into the code, so they live as long as it does.
#[derive(Default)]
pub(super) struct Tables {
    pub(super) index: Vec<Vec<i32>>,
    pub(super) weight: Vec<Vec<f32>>,
    // Boxed: the code holds their addresses while the vector grows.
    #[allow(clippy::vec_box)]
    pub(super) lif: Vec<Box<(snnc_ir::semantics::LifParams, [f32; 4])>>,
}
