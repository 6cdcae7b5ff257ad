//! # snnc-ir: the intermediate representation of snnc
//!
//! A [`Module`] is one timestep of a network written as a pure function
//! `(inputs_t, state_t) → (outputs_t, state_{t+1})`. Per-sample shapes throughout; the runtime
//! adds the batch dimension.
//!
//! - **Values** `%name` are SSA: defined once (as an input or an instruction result) and used
//!   only after their definition. Instructions are stored in execution order.
//! - **Constants** `@name` hold weights and index tables (`f32` or `i32`).
//! - **States** `$name` carry values across steps. Reading `$v` gives last step's value;
//!   `next $v = %x` sets the value for the next step.
//! - **Ops** form the closed enum [`Op`]; each has a shape rule ([`Op::infer`]).
//!
//! One canonical text format: [`Module`]'s `Display` prints it and [`parse`] reads it back;
//! print∘parse∘print is the identity. [`verify`] is the only way to get a [`Verified`] module,
//! the value every backend requires. `ir-spec/SPEC.md` gives the grammar and the exact
//! semantics of every op.
#![deny(missing_docs)]

pub mod artifact;
pub mod builder;
pub mod diff;
pub mod fanout;
pub mod geometry;
pub mod info;
pub mod module;
pub mod ops;
pub mod parse;
pub mod plan;
pub mod print;
pub mod rng;
pub mod semantics;
pub mod types;
pub mod verify;

pub use artifact::{ArtifactError, load_snn, read_snn, save_snn, write_snn};
pub use builder::{BuildError, Builder};
pub use info::{ModuleInfo, Reader};
pub use module::{
    ConstData, ConstId, Constant, Inst, InstId, Module, Next, Operand, Output, OutputKind, State,
    StateId, StateInit, ValueData, ValueId,
};
pub use ops::{ConvAttrs, Neuron, NeuronModel, Op, OpClass, Padding, PoolAttrs};
pub use parse::{ParseError, SourceMap, parse, parse_with_source_map};
pub use plan::MemoryPlan;
pub use types::{DType, TensorType};
pub use verify::{Location, Target, Verified, VerifyError, VerifyErrors, check, verify};
