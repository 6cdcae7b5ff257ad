//! Building modules in code: the API the Keras front-end and the passes use. Every instruction
//! added gets its result types from shape inference, so a built module is well-typed by
//! construction (the verifier still checks the rest: SSA order, state updates, targets).

use crate::module::{
    ConstData, ConstId, Constant, Inst, Module, Next, Operand, Output, OutputKind, State, StateId,
    StateInit, ValueData, ValueId,
};
use crate::ops::Op;
use crate::types::TensorType;
use std::collections::HashSet;
use thiserror::Error;

/// Why an instruction could not be added.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("cannot build `{op}` named `{name}`: {message}")]
pub struct BuildError {
    /// Op name.
    pub op: String,
    /// Requested result name.
    pub name: String,
    /// What did not fit.
    pub message: String,
}

impl From<ValueId> for Operand {
    fn from(v: ValueId) -> Self {
        Operand::Value(v)
    }
}
impl From<ConstId> for Operand {
    fn from(c: ConstId) -> Self {
        Operand::Const(c)
    }
}
impl From<StateId> for Operand {
    fn from(s: StateId) -> Self {
        Operand::State(s)
    }
}

/// Turn any string into a valid, unused name: invalid characters become `_`, and a taken name
/// gets a `.1`, `.2`, … suffix.
fn fresh(taken: &mut HashSet<String>, wanted: &str) -> String {
    let mut base: String = wanted
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if base.is_empty() {
        base.push('_');
    }
    let mut name = base.clone();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}.{k}");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

/// Builds a [`Module`] one declaration and instruction at a time.
#[derive(Clone, Debug)]
pub struct Builder {
    module: Module,
    value_names: HashSet<String>,
    const_names: HashSet<String>,
    state_names: HashSet<String>,
}

impl Builder {
    /// Start a module.
    pub fn new(name: &str, dt: f64) -> Self {
        let name = fresh(&mut HashSet::new(), name);
        Builder {
            module: Module::new(name, dt),
            value_names: HashSet::new(),
            const_names: HashSet::new(),
            state_names: HashSet::new(),
        }
    }

    /// The module so far.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Declare an `f32` input.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> ValueId {
        let name = fresh(&mut self.value_names, name);
        let v = ValueId(self.module.values.len() as u32);
        self.module.values.push(ValueData {
            name,
            ty: TensorType::f32(shape),
        });
        self.module.inputs.push(v);
        v
    }

    /// Declare a constant. The data length must match the type (the verifier checks it).
    pub fn constant(&mut self, name: &str, ty: TensorType, data: ConstData) -> ConstId {
        let name = fresh(&mut self.const_names, name);
        let c = ConstId(self.module.constants.len() as u32);
        self.module.constants.push(Constant { name, ty, data });
        c
    }

    /// Declare an `f32` constant.
    pub fn constant_f32(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> ConstId {
        self.constant(name, TensorType::f32(shape), ConstData::F32(data))
    }

    /// Declare an `i32` constant.
    pub fn constant_i32(&mut self, name: &str, shape: &[usize], data: Vec<i32>) -> ConstId {
        self.constant(name, TensorType::i32(shape), ConstData::I32(data))
    }

    /// Declare an `f32` state.
    pub fn state(&mut self, name: &str, shape: &[usize], init: StateInit) -> StateId {
        let name = fresh(&mut self.state_names, name);
        let s = StateId(self.module.states.len() as u32);
        self.module.states.push(State {
            name,
            ty: TensorType::f32(shape),
            init,
        });
        s
    }

    /// Add an instruction; results are named `name`, `name.1`, … and typed by inference.
    pub fn op(&mut self, op: Op, args: &[Operand], name: &str) -> Result<Vec<ValueId>, BuildError> {
        let fail = |message: String| BuildError {
            op: op.name().into(),
            name: name.into(),
            message,
        };
        let mut types = Vec::with_capacity(args.len());
        for &a in args {
            types.push(
                self.module
                    .operand_type(a)
                    .ok_or_else(|| fail("an operand handle is out of range".into()))?,
            );
        }
        let result_types = op.infer(&types).map_err(|e| fail(e.to_string()))?;
        let mut results = Vec::with_capacity(result_types.len());
        for (k, ty) in result_types.into_iter().enumerate() {
            let wanted = if k == 0 {
                name.to_string()
            } else {
                format!("{name}.{k}")
            };
            let n = fresh(&mut self.value_names, &wanted);
            results.push(ValueId(self.module.values.len() as u32));
            self.module.values.push(ValueData { name: n, ty });
        }
        self.module.insts.push(Inst {
            op,
            args: args.to_vec(),
            results: results.clone(),
        });
        Ok(results)
    }

    /// Rename a value (to a fresh, valid variant of `name`).
    pub fn rename(&mut self, v: ValueId, name: &str) {
        let old = std::mem::take(&mut self.module.values[v.index()].name);
        self.value_names.remove(&old);
        self.module.values[v.index()].name = fresh(&mut self.value_names, name);
    }

    /// Add an instruction whose results take the given names (made valid and unique).
    pub fn op_named(
        &mut self,
        op: Op,
        args: &[Operand],
        names: &[&str],
    ) -> Result<Vec<ValueId>, BuildError> {
        let first = names.first().copied().unwrap_or("v");
        let rs = self.op(op, args, first)?;
        for (r, n) in rs.iter().zip(names).skip(1) {
            self.rename(*r, n);
        }
        Ok(rs)
    }

    /// Add a single-result instruction.
    pub fn op1(&mut self, op: Op, args: &[Operand], name: &str) -> Result<ValueId, BuildError> {
        Ok(self.op(op, args, name)?[0])
    }

    /// Set a state's value for the next step.
    pub fn next(&mut self, state: StateId, value: impl Into<Operand>) {
        self.module.nexts.push(Next {
            state,
            value: value.into(),
        });
    }

    /// Add an output.
    pub fn output(&mut self, name: &str, value: impl Into<Operand>) {
        self.module.outputs.push(Output {
            name: name.to_string(),
            value: value.into(),
            kind: OutputKind::Value,
        });
    }

    /// Add an output of a given kind (a probe, or a population's spikes).
    pub fn output_of_kind(&mut self, name: &str, value: impl Into<Operand>, kind: OutputKind) {
        self.module.outputs.push(Output {
            name: name.to_string(),
            value: value.into(),
            kind,
        });
    }

    /// The finished module (verify it before running it).
    pub fn finish(self) -> Module {
        self.module
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Neuron, NeuronModel};

    #[test]
    fn builds_typed_spiking_layer() {
        let mut b = Builder::new("m", 0.001);
        let x = b.input("x", &[4]);
        let w = b.constant_f32("w", &[4, 2], vec![0.5; 8]);
        let v = b.state(
            "v",
            &[2],
            StateInit::Uniform {
                lo: 0.0,
                hi: 1.0,
                seed: 0,
            },
        );
        let j = b.op1(Op::Dense, &[x.into(), w.into()], "j").unwrap();
        let spiking = Op::Neuron(Neuron {
            model: NeuronModel::SpikingRelu,
            gain: 1.0,
            amplitude: 1.0,
        });
        let r = b.op(spiking, &[j.into(), v.into()], "s").unwrap();
        b.next(v, r[1]);
        b.output("s", r[0]);
        let m = b.finish();
        assert_eq!(m.value(r[1]).name, "s.1");
        assert_eq!(m.value(r[0]).ty, TensorType::f32([2]));
        assert!(crate::verify(m, crate::Target::Neural).is_ok());
    }

    #[test]
    fn shape_errors_name_the_op() {
        let mut b = Builder::new("m", 0.001);
        let x = b.input("x", &[4]);
        let w = b.constant_f32("w", &[3, 2], vec![0.0; 6]);
        let e = b.op1(Op::Dense, &[x.into(), w.into()], "fc").unwrap_err();
        assert_eq!(e.op, "dense");
        assert!(e.message.contains("f32[3,2]"), "{e}");
    }

    #[test]
    fn names_are_made_valid_and_unique() {
        let mut b = Builder::new("m", 0.001);
        let a = b.input("in put", &[1]);
        let c = b.input("in put", &[1]);
        assert_eq!(b.module().value(a).name, "in_put");
        assert_eq!(b.module().value(c).name, "in_put.1");
    }
}
