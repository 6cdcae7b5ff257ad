//! The module: arenas of values, constants, states and instructions, indexed by typed handles.

use crate::ops::Op;
use crate::types::{DType, TensorType};
use serde::{Deserialize, Serialize};

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl $name {
            /// The arena index this handle refers to.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

handle!(
    /// A handle to a value (`%name`): a module input or an instruction result.
    ValueId,
    "value"
);
handle!(
    /// A handle to a constant (`@name`).
    ConstId,
    "const"
);
handle!(
    /// A handle to a state (`$name`).
    StateId,
    "state"
);
handle!(
    /// A handle to an instruction. Instruction order is execution order.
    InstId,
    "inst"
);

/// What an instruction or a `next`/`output` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operand {
    /// A value defined by an input or an earlier instruction.
    Value(ValueId),
    /// A constant.
    Const(ConstId),
    /// A state: reading it gives the value it had at the start of this step.
    State(StateId),
}

/// A value: an SSA name with a type. It is defined exactly once, either as a module input or as
/// one result of one instruction; the verifier checks this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueData {
    /// Name without the `%` sigil.
    pub name: String,
    /// Type (always `f32`).
    pub ty: TensorType,
}

/// The data of a constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ConstData {
    /// `f32` elements in row-major order.
    F32(Vec<f32>),
    /// `i32` elements in row-major order.
    I32(Vec<i32>),
    /// Only the checksum is known (a dump that printed the constant as type and checksum). Such a
    /// module can be printed, verified and diffed, but not run until the data is attached.
    External {
        /// CRC-32 of the little-endian bytes of the data.
        checksum: u32,
    },
}

impl ConstData {
    /// Number of elements held, or `None` for external data.
    pub fn len(&self) -> Option<usize> {
        match self {
            ConstData::F32(v) => Some(v.len()),
            ConstData::I32(v) => Some(v.len()),
            ConstData::External { .. } => None,
        }
    }

    /// True when the data holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The element type of the held data, `None` for external data.
    pub fn dtype(&self) -> Option<DType> {
        match self {
            ConstData::F32(_) => Some(DType::F32),
            ConstData::I32(_) => Some(DType::I32),
            ConstData::External { .. } => None,
        }
    }

    /// CRC-32 of the little-endian bytes of the elements (for external data, the recorded one).
    pub fn checksum(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        match self {
            ConstData::F32(v) => v.iter().for_each(|x| h.update(&x.to_le_bytes())),
            ConstData::I32(v) => v.iter().for_each(|x| h.update(&x.to_le_bytes())),
            ConstData::External { checksum } => return *checksum,
        }
        h.finalize()
    }
}

/// A constant: weights, biases, index tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constant {
    /// Name without the `@` sigil.
    pub name: String,
    /// Type.
    pub ty: TensorType,
    /// Elements.
    pub data: ConstData,
}

/// How a state is initialised at `reset`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StateInit {
    /// All zeros.
    Zeros,
    /// Independent uniform draws in `[lo, hi)` from the generator described in SPEC.md, keyed by
    /// `seed` and the simulator's reset seed. Every sample of a batch starts from the same draw.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
        /// Seed of this state.
        seed: u64,
    },
    /// The elements of a constant of the same type.
    Const(ConstId),
}

/// A state carried from one step to the next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Name without the `$` sigil.
    pub name: String,
    /// Type (always `f32`).
    pub ty: TensorType,
    /// Initial value.
    pub init: StateInit,
}

/// One operation: `results = op args {attrs}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inst {
    /// The operation and its attributes.
    pub op: Op,
    /// Operands, in the order the op defines.
    pub args: Vec<Operand>,
    /// The values this instruction defines.
    pub results: Vec<ValueId>,
}

impl Inst {
    /// How many groups this instruction computes: more than one only for a merged neuron or
    /// synapse (see [`Op::group_arity`]).
    pub fn groups(&self) -> usize {
        self.op.groups(self.args.len())
    }

    /// Operands and results of group `g`.
    pub fn group(&self, g: usize) -> (&[Operand], &[ValueId]) {
        let (k, r) = (
            self.args.len() / self.groups(),
            self.results.len() / self.groups(),
        );
        (
            &self.args[g * k..(g + 1) * k],
            &self.results[g * r..(g + 1) * r],
        )
    }
}

/// `next $state = operand`: the state's value for the next step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Next {
    /// The state updated.
    pub state: StateId,
    /// Its value at the start of the next step.
    pub value: Operand,
}

/// What an output reports (SPEC.md, "Outputs and probes").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum OutputKind {
    /// A result of the network (`output "logits" = %y`).
    #[default]
    Value,
    /// A value probed for inspection or calibration, not a result of the network
    /// (`output probe "act/dense1" = %a`).
    Probe,
    /// The raw spike train of a population: the first result of a spiking neuron (or of one
    /// group of a merged one) whose amplitude is `amplitude`, so each element is a spike count
    /// times `amplitude / dt` (`output spikes "spikes/conv1" = %s {population="conv1",
    /// amplitude=0.005}`).
    Spikes {
        /// The population's name (the layer it converts).
        population: String,
        /// The population's amplitude.
        amplitude: f64,
    },
}

impl OutputKind {
    /// The keyword printed after `output`, if any.
    pub fn keyword(&self) -> Option<&'static str> {
        match self {
            OutputKind::Value => None,
            OutputKind::Probe => Some("probe"),
            OutputKind::Spikes { .. } => Some("spikes"),
        }
    }
}

/// `output [probe|spikes] "name" = operand`: read after every step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// Name of the output (any string).
    pub name: String,
    /// What is read.
    pub value: Operand,
    /// What it reports.
    #[serde(default)]
    pub kind: OutputKind,
}

/// One timestep of a network as a pure function `(inputs_t, state_t) → (outputs_t, state_{t+1})`.
///
/// Instructions run in storage order; an instruction may only read values defined by inputs or by
/// earlier instructions. Per-sample shapes throughout: the runtime adds a leading batch dimension.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Module {
    /// Module name without the `@` sigil.
    pub name: String,
    /// Simulation timestep in seconds.
    pub dt: f64,
    /// Value arena.
    pub values: Vec<ValueData>,
    /// Values that are module inputs, in declaration order.
    pub inputs: Vec<ValueId>,
    /// Constant arena.
    pub constants: Vec<Constant>,
    /// State arena.
    pub states: Vec<State>,
    /// Instruction arena, in execution order.
    pub insts: Vec<Inst>,
    /// State updates (their order carries no meaning; all run after the last instruction).
    pub nexts: Vec<Next>,
    /// Outputs in declaration order.
    pub outputs: Vec<Output>,
}

impl Module {
    /// An empty module.
    pub fn new(name: impl Into<String>, dt: f64) -> Self {
        Module {
            name: name.into(),
            dt,
            values: Vec::new(),
            inputs: Vec::new(),
            constants: Vec::new(),
            states: Vec::new(),
            insts: Vec::new(),
            nexts: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The value behind a handle.
    pub fn value(&self, v: ValueId) -> &ValueData {
        &self.values[v.index()]
    }

    /// The constant behind a handle.
    pub fn constant(&self, c: ConstId) -> &Constant {
        &self.constants[c.index()]
    }

    /// The state behind a handle.
    pub fn state(&self, s: StateId) -> &State {
        &self.states[s.index()]
    }

    /// The values read after the instructions have run: by outputs and by `next`s.
    pub fn end_of_step_values(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.outputs
            .iter()
            .map(|o| o.value)
            .chain(self.nexts.iter().map(|n| n.value))
            .filter_map(|o| match o {
                Operand::Value(v) => Some(v),
                _ => None,
            })
    }

    /// The type of an operand, `None` if its handle is out of range.
    pub fn operand_type(&self, o: Operand) -> Option<&TensorType> {
        match o {
            Operand::Value(v) => self.values.get(v.index()).map(|d| &d.ty),
            Operand::Const(c) => self.constants.get(c.index()).map(|d| &d.ty),
            Operand::State(s) => self.states.get(s.index()).map(|d| &d.ty),
        }
    }

    /// The operand as it is written in text (`%x`, `@w`, `$v`).
    pub fn operand_name(&self, o: Operand) -> String {
        match o {
            Operand::Value(v) => match self.values.get(v.index()) {
                Some(d) => format!("%{}", d.name),
                None => format!("%<{v}>"),
            },
            Operand::Const(c) => match self.constants.get(c.index()) {
                Some(d) => format!("@{}", d.name),
                None => format!("@<{c}>"),
            },
            Operand::State(s) => match self.states.get(s.index()) {
                Some(d) => format!("${}", d.name),
                None => format!("$<{s}>"),
            },
        }
    }

    /// Look up a value by name.
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values
            .iter()
            .position(|v| v.name == name)
            .map(|i| ValueId(i as u32))
    }

    /// Look up a constant by name.
    pub fn find_constant(&self, name: &str) -> Option<ConstId> {
        self.constants
            .iter()
            .position(|c| c.name == name)
            .map(|i| ConstId(i as u32))
    }

    /// Look up a state by name.
    pub fn find_state(&self, name: &str) -> Option<StateId> {
        self.states
            .iter()
            .position(|s| s.name == name)
            .map(|i| StateId(i as u32))
    }

    /// Look up an output by name.
    pub fn find_output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name == name)
    }
}
