//! Rebuilding a module instruction by instruction: the common machinery of the passes.

use snnc_ir::{
    BuildError, Builder, ConstId, Inst, Module, Operand, StateId, StateInit, ValueData, ValueId,
};

/// Copies a module into a [`Builder`], letting a pass replace any instruction. Old operands map
/// to new ones; a replaced value may map to any operand (a state, say, for a delayed reader).
pub struct Rewriter<'m> {
    /// The module being rewritten.
    pub old: &'m Module,
    /// The module being built.
    pub b: Builder,
    values: Vec<Option<Operand>>,
    consts: Vec<Option<ConstId>>,
    states: Vec<Option<StateId>>,
}

impl<'m> Rewriter<'m> {
    /// Start from `old`'s inputs, constants and states (same names, same order).
    pub fn new(old: &'m Module) -> Self {
        Self::keeping(
            old,
            &vec![true; old.constants.len()],
            &vec![true; old.states.len()],
        )
    }

    /// Start from `old`'s inputs and only the constants and states marked live (a state's
    /// constant initialiser is kept with it).
    pub fn keeping(old: &'m Module, live_consts: &[bool], live_states: &[bool]) -> Self {
        let mut b = Builder::new(&old.name, old.dt);
        let mut values = vec![None; old.values.len()];
        for &v in &old.inputs {
            let d = &old.values[v.index()];
            values[v.index()] = Some(Operand::Value(b.input(&d.name, &d.ty.shape)));
        }
        let mut keep_const = live_consts.to_vec();
        for (s, &live) in old.states.iter().zip(live_states) {
            if let (true, StateInit::Const(c)) = (live, &s.init) {
                keep_const[c.index()] = true;
            }
        }
        let consts: Vec<Option<ConstId>> = old
            .constants
            .iter()
            .zip(&keep_const)
            .map(|(c, &keep)| keep.then(|| b.constant(&c.name, c.ty.clone(), c.data.clone())))
            .collect();
        let states = old
            .states
            .iter()
            .zip(live_states)
            .map(|(s, &keep)| {
                keep.then(|| {
                    let init = match &s.init {
                        StateInit::Const(c) => {
                            StateInit::Const(consts[c.index()].expect("kept above"))
                        }
                        other => other.clone(),
                    };
                    b.state(&s.name, &s.ty.shape, init)
                })
            })
            .collect();
        Rewriter {
            old,
            b,
            values,
            consts,
            states,
        }
    }

    /// The new operand for an old one.
    pub fn map(&self, o: Operand) -> Operand {
        match o {
            Operand::Value(v) => {
                self.values[v.index()].expect("values are mapped before use (SSA order)")
            }
            Operand::Const(c) => Operand::Const(self.consts[c.index()].expect("a live constant")),
            Operand::State(s) => Operand::State(self.states[s.index()].expect("a live state")),
        }
    }

    /// Make readers of old value `v` read `to` instead.
    pub fn set(&mut self, v: ValueId, to: Operand) {
        self.values[v.index()] = Some(to);
    }

    /// Add an f32 constant named `name`, or `name2`, `name3`… if that name is taken.
    pub fn fresh_constant(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> ConstId {
        let consts = &self.b.module().constants;
        let unique = unique_name(name, |n| consts.iter().any(|c| c.name == n));
        self.b.constant_f32(&unique, shape, data)
    }

    /// Add a state named `name`, or `name2`, `name3`… if that name is taken.
    pub fn fresh_state(&mut self, name: &str, shape: &[usize], init: StateInit) -> StateId {
        let states = &self.b.module().states;
        let unique = unique_name(name, |n| states.iter().any(|s| s.name == n));
        self.b.state(&unique, shape, init)
    }

    /// The old value's data.
    pub fn old_value(&self, v: ValueId) -> &ValueData {
        &self.old.values[v.index()]
    }

    /// Copy an instruction unchanged (operands mapped, result names kept).
    pub fn copy(&mut self, inst: &Inst) -> Result<Vec<ValueId>, BuildError> {
        let args: Vec<Operand> = inst.args.iter().map(|&a| self.map(a)).collect();
        let names: Vec<String> = inst
            .results
            .iter()
            .map(|r| self.old.values[r.index()].name.clone())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let new = self.b.op_named(inst.op.clone(), &args, &refs)?;
        for (r, n) in inst.results.iter().zip(&new) {
            self.set(*r, Operand::Value(*n));
        }
        Ok(new)
    }

    /// Finish: copy `next`s and outputs through the mapping.
    pub fn finish(mut self) -> Module {
        for n in &self.old.nexts {
            if let Some(state) = self.states[n.state.index()] {
                let value = self.map(n.value);
                self.b.next(state, value);
            }
        }
        for o in &self.old.outputs {
            let value = self.map(o.value);
            self.b.output_of_kind(&o.name, value, o.kind.clone());
        }
        self.b.finish()
    }
}

/// `name`, or `name2`, `name3`… — the first that `taken` refuses.
fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut unique = name.to_string();
    let mut k = 2;
    while taken(&unique) {
        unique = format!("{name}{k}");
        k += 1;
    }
    unique
}
