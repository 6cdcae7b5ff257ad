//! The verifier: the only way to obtain a [`Verified`] module, which is what the backends take.
//!
//! It collects every error rather than stopping at the first, and ties each to the entity it
//! concerns ([`Location`]); with a [`SourceMap`] from the parser the entity becomes a line.

use crate::info::ModuleInfo;
use crate::module::{ConstData, InstId, Module, Operand, OutputKind, StateInit, ValueId};
use crate::ops::Op;
use crate::parse::{SourceMap, is_valid_name};
use crate::types::DType;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use thiserror::Error;

/// What a module is verified for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Target {
    /// Any op of the IR.
    #[default]
    Any,
    /// Only ops a neural substrate runs: linear and index maps, neurons, synapses. Rejects
    /// `max_pool`, `global_max_pool`, `batch_norm` and `softmax`.
    Neural,
}

/// The entity an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// The module header.
    Module,
    /// The n-th input declaration.
    Input(usize),
    /// A value (its definition or first mention).
    Value(ValueId),
    /// A constant.
    Const(usize),
    /// A state.
    State(usize),
    /// An instruction.
    Inst(InstId),
    /// The n-th `next`.
    Next(usize),
    /// The n-th output.
    Output(usize),
}

impl Location {
    /// The 1-based source line of the entity, when the module was parsed from text.
    pub fn line(&self, map: &SourceMap) -> Option<usize> {
        match *self {
            Location::Module => Some(1),
            Location::Input(i) => map.inputs.get(i).copied(),
            Location::Value(v) => map.values.get(v.index()).copied(),
            Location::Const(i) => map.constants.get(i).copied(),
            Location::State(i) => map.states.get(i).copied(),
            Location::Inst(i) => map.insts.get(i.index()).copied(),
            Location::Next(i) => map.nexts.get(i).copied(),
            Location::Output(i) => map.outputs.get(i).copied(),
        }
    }
}

/// One verifier finding.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{entity}: {message}")]
pub struct VerifyError {
    /// The entity it concerns.
    pub location: Location,
    /// The entity as written in text, e.g. "`%c1 = conv`" or "`state $v`".
    pub entity: String,
    /// What is wrong.
    pub message: String,
}

/// Every finding of one verification, in module order.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub struct VerifyErrors(pub Vec<VerifyError>);

impl fmt::Display for VerifyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl VerifyErrors {
    /// One line per error, prefixed with `line N: ` where the source map knows the line.
    pub fn render(&self, map: Option<&SourceMap>) -> String {
        let mut out = String::new();
        for e in &self.0 {
            match map.and_then(|m| e.location.line(m)) {
                Some(l) => out.push_str(&format!("line {l}: {e}\n")),
                None => out.push_str(&format!("{e}\n")),
            }
        }
        out
    }
}

/// A module the verifier accepted, for the target it names. Backends take only this type.
#[derive(Clone, Debug)]
pub struct Verified {
    module: Module,
    target: Target,
    info: ModuleInfo,
    /// Fan-outs, computed on first use and shared with every clone (each simulator of a
    /// minibatch group or thread keeps a clone).
    fan_out: std::sync::Arc<std::sync::OnceLock<crate::fanout::FanOut>>,
}

impl Verified {
    /// The target it was verified for.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The facts the verifier established about the module.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// Every element's fan-out ([`crate::fanout::FanOut`]), computed on the first call and then
    /// shared by this module and all its clones.
    pub fn fan_out(&self) -> &crate::fanout::FanOut {
        self.fan_out
            .get_or_init(|| crate::fanout::FanOut::new(&self.module))
    }

    /// Give the module back (to transform it; it must then be verified again).
    pub fn into_inner(self) -> Module {
        self.module
    }

    /// True when every constant holds its data (no checksum-only constants), so it can run.
    pub fn is_runnable(&self) -> bool {
        self.module
            .constants
            .iter()
            .all(|c| !matches!(c.data, ConstData::External { .. }))
    }
}

impl Deref for Verified {
    type Target = Module;
    fn deref(&self) -> &Module {
        &self.module
    }
}

/// Verify a module for a target; on success it becomes [`Verified`].
pub fn verify(module: Module, target: Target) -> Result<Verified, VerifyErrors> {
    let errors = check(&module, target);
    if errors.is_empty() {
        let info = ModuleInfo::new(&module);
        Ok(Verified {
            module,
            target,
            info,
            fan_out: Default::default(),
        })
    } else {
        Err(VerifyErrors(errors))
    }
}

/// Every error in a module, without consuming it.
pub fn check(m: &Module, target: Target) -> Vec<VerifyError> {
    Checker {
        m,
        errors: Vec::new(),
    }
    .run(target)
}

struct Checker<'a> {
    m: &'a Module,
    errors: Vec<VerifyError>,
}

impl Checker<'_> {
    fn entity(&self, loc: Location) -> String {
        let m = self.m;
        match loc {
            Location::Module => format!("`module @{}`", m.name),
            Location::Input(i) => match m.inputs.get(i) {
                Some(&v) => format!("`input {}`", m.operand_name(Operand::Value(v))),
                None => format!("input {i}"),
            },
            Location::Value(v) => format!("`{}`", m.operand_name(Operand::Value(v))),
            Location::Const(i) => format!("`const @{}`", m.constants[i].name),
            Location::State(i) => format!("`state ${}`", m.states[i].name),
            Location::Inst(i) => {
                let inst = &m.insts[i.index()];
                let results: Vec<String> = inst
                    .results
                    .iter()
                    .map(|r| m.operand_name(Operand::Value(*r)))
                    .collect();
                format!("`{} = {}`", results.join(", "), inst.op.name())
            }
            Location::Next(i) => {
                let n = &m.nexts[i];
                format!("`next {}`", m.operand_name(Operand::State(n.state)))
            }
            Location::Output(i) => {
                let o = &m.outputs[i];
                let kind = o
                    .kind
                    .keyword()
                    .map(|k| format!("{k} "))
                    .unwrap_or_default();
                format!("`output {kind}\"{}\"`", o.name)
            }
        }
    }

    fn err(&mut self, location: Location, message: impl Into<String>) {
        let entity = self.entity(location);
        self.errors.push(VerifyError {
            location,
            entity,
            message: message.into(),
        });
    }

    fn operand_ok(&self, o: Operand) -> bool {
        self.m.operand_type(o).is_some()
    }

    /// Every check, in the order naga's validator takes them: the module header, then handles
    /// (every value defined exactly once, by an input or an instruction), then each arena's
    /// entities and types, instructions, state updates and outputs.
    fn run(mut self, target: Target) -> Vec<VerifyError> {
        self.check_header();
        let (def, def_count) = self.check_definitions();
        self.check_values(&def_count);
        self.check_constants();
        self.check_states();
        self.check_instructions(target, &def);
        self.check_nexts();
        self.check_outputs();
        self.errors
    }

    /// `dt` and the module name.
    fn check_header(&mut self) {
        let m = self.m;
        if !(m.dt > 0.0 && m.dt.is_finite()) {
            self.err(
                Location::Module,
                format!("dt must be positive, got {}", m.dt),
            );
        }
        if !is_valid_name(&m.name) {
            self.err(
                Location::Module,
                "module name must be letters, digits, `_`, `.`, `-` or `/`",
            );
        }
    }

    /// Where each value is defined (position 0 for inputs, `i + 1` for instruction `i`) and how
    /// many times; definitions that name a missing value are errors.
    fn check_definitions(&mut self) -> (Vec<Option<usize>>, Vec<usize>) {
        let m = self.m;
        // Where each value is defined: position 0 for inputs, i+1 for instruction i.
        let mut def: Vec<Option<usize>> = vec![None; m.values.len()];
        let mut def_count = vec![0usize; m.values.len()];
        for (k, &v) in m.inputs.iter().enumerate() {
            match def.get_mut(v.index()) {
                Some(d) => {
                    *d = Some(0);
                    def_count[v.index()] += 1;
                }
                None => self.err(Location::Input(k), format!("refers to a missing value {v}")),
            }
        }
        for (i, inst) in m.insts.iter().enumerate() {
            for &r in &inst.results {
                match def.get_mut(r.index()) {
                    Some(d) => {
                        if d.is_none() {
                            *d = Some(i + 1);
                        }
                        def_count[r.index()] += 1;
                    }
                    None => self.err(
                        Location::Inst(InstId(i as u32)),
                        format!("result {r} is missing"),
                    ),
                }
            }
        }
        (def, def_count)
    }

    /// Every value defined once, named uniquely and validly, of type f32.
    fn check_values(&mut self, def_count: &[usize]) {
        let m = self.m;
        let mut names = HashSet::new();
        for (i, v) in m.values.iter().enumerate() {
            let loc = Location::Value(ValueId(i as u32));
            match def_count[i] {
                0 => self.err(loc, "is used but never defined"),
                1 => {}
                n => self.err(
                    loc,
                    format!("is defined {n} times (SSA values are defined once)"),
                ),
            }
            if def_count[i] <= 1 && !names.insert(v.name.as_str()) {
                self.err(loc, "another value has the same name");
            }
            if !is_valid_name(&v.name) {
                self.err(loc, "names are letters, digits, `_`, `.`, `-` or `/`");
            }
            if v.ty.dtype != DType::F32 {
                self.err(loc, format!("values are f32, got {}", v.ty));
            }
            if v.ty.num_elements() == 0 {
                self.err(
                    loc,
                    format!("{} has no elements; values hold at least one", v.ty),
                );
            }
        }
    }

    /// Constants: unique valid names, data matching the type.
    fn check_constants(&mut self) {
        let m = self.m;
        let mut names = HashSet::new();
        for (i, c) in m.constants.iter().enumerate() {
            if !names.insert(c.name.as_str()) {
                self.err(Location::Const(i), "another constant has the same name");
            }
            if !is_valid_name(&c.name) {
                self.err(
                    Location::Const(i),
                    "names are letters, digits, `_`, `.`, `-` or `/`",
                );
            }
            if let Some(dt) = c.data.dtype()
                && dt != c.ty.dtype
            {
                self.err(
                    Location::Const(i),
                    format!("data is {} but the type is {}", dt.keyword(), c.ty),
                );
            }
            if let Some(n) = c.data.len()
                && n != c.ty.num_elements()
            {
                self.err(
                    Location::Const(i),
                    format!(
                        "has {n} elements but type {} needs {}",
                        c.ty,
                        c.ty.num_elements()
                    ),
                );
            }
        }
    }

    /// States: unique valid names, f32, well-formed initial values.
    fn check_states(&mut self) {
        let m = self.m;
        let mut names = HashSet::new();
        for (i, s) in m.states.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                self.err(Location::State(i), "another state has the same name");
            }
            if !is_valid_name(&s.name) {
                self.err(
                    Location::State(i),
                    "names are letters, digits, `_`, `.`, `-` or `/`",
                );
            }
            if s.ty.dtype != DType::F32 {
                self.err(Location::State(i), format!("states are f32, got {}", s.ty));
            }
            if s.ty.num_elements() == 0 {
                self.err(
                    Location::State(i),
                    format!("{} has no elements; states hold at least one", s.ty),
                );
            }
            match s.init {
                StateInit::Zeros => {}
                StateInit::Uniform { lo, hi, .. } => {
                    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                        self.err(
                            Location::State(i),
                            format!("uniform({lo}, {hi}) needs finite lo <= hi"),
                        );
                    }
                }
                StateInit::Const(c) => match m.constants.get(c.index()) {
                    Some(k) if k.ty == s.ty => {}
                    Some(k) => self.err(
                        Location::State(i),
                        format!(
                            "initial constant @{} is {} but the state is {}",
                            k.name, k.ty, s.ty
                        ),
                    ),
                    None => self.err(
                        Location::State(i),
                        format!("initial constant {c} is missing"),
                    ),
                },
            }
        }
    }

    /// Instructions: operands exist and are defined earlier, the op is allowed for the target,
    /// the shape rule holds and index tables stay in bounds.
    fn check_instructions(&mut self, target: Target, def: &[Option<usize>]) {
        let m = self.m;
        for (i, inst) in m.insts.iter().enumerate() {
            let loc = Location::Inst(InstId(i as u32));
            let mut arg_types = Vec::new();
            let mut ok = true;
            for (k, &a) in inst.args.iter().enumerate() {
                if !self.operand_ok(a) {
                    self.err(loc, format!("operand {} refers to a missing entity", k + 1));
                    ok = false;
                    continue;
                }
                if let Operand::Value(v) = a
                    && let Some(d) = def[v.index()]
                    && d > i
                {
                    let name = m.operand_name(a);
                    self.err(loc, format!("uses {name} before its definition"));
                }
                arg_types.push(m.operand_type(a).expect("checked above"));
            }
            if target == Target::Neural && !inst.op.is_neural() {
                self.err(
                    loc,
                    format!(
                        "`{}` is not allowed for the neural target; lower it first",
                        inst.op.name()
                    ),
                );
            }
            if !ok || inst.results.iter().any(|r| r.index() >= m.values.len()) {
                continue;
            }
            match inst.op.infer(&arg_types) {
                Err(e) => self.err(loc, e.to_string()),
                Ok(types) => {
                    if types.len() != inst.results.len() {
                        self.err(
                            loc,
                            format!(
                                "`{}` has {} results, got {}",
                                inst.op.name(),
                                types.len(),
                                inst.results.len()
                            ),
                        );
                    } else {
                        for (k, (t, r)) in types.iter().zip(&inst.results).enumerate() {
                            let got = &m.values[r.index()].ty;
                            if got != t {
                                self.err(
                                    loc,
                                    format!(
                                        "result {} has type {got}, but the operands give {t}",
                                        k + 1
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            self.check_indices(loc, &inst.op, &inst.args);
        }
    }

    /// Every state updated exactly once, by a value of its type.
    fn check_nexts(&mut self) {
        let m = self.m;
        let mut next_count = vec![0usize; m.states.len()];
        for (i, n) in m.nexts.iter().enumerate() {
            let Some(st) = m.states.get(n.state.index()) else {
                self.errors.push(VerifyError {
                    location: Location::Next(i),
                    entity: format!("next {}", n.state),
                    message: "refers to a missing state".into(),
                });
                continue;
            };
            next_count[n.state.index()] += 1;
            match m.operand_type(n.value) {
                None => self.err(Location::Next(i), "value refers to a missing entity"),
                Some(t) if *t != st.ty => self.err(
                    Location::Next(i),
                    format!("value has type {t}, the state is {}", st.ty),
                ),
                _ => {}
            }
        }
        for (i, c) in next_count.iter().enumerate() {
            match c {
                1 => {}
                0 => self.err(
                    Location::State(i),
                    "has no `next`; every state is updated exactly once",
                ),
                n => self.err(
                    Location::State(i),
                    format!("has {n} `next` updates; exactly one is allowed"),
                ),
            }
        }
    }

    /// Outputs: unique names, existing operands, spike outputs reading spikes.
    fn check_outputs(&mut self) {
        let m = self.m;
        let mut names = HashSet::new();
        for (i, o) in m.outputs.iter().enumerate() {
            if !names.insert(o.name.as_str()) {
                self.err(Location::Output(i), "another output has the same name");
            }
            if !self.operand_ok(o.value) {
                self.err(Location::Output(i), "refers to a missing entity");
            } else if let OutputKind::Spikes {
                population,
                amplitude,
            } = &o.kind
                && let Err(e) = self.spike_source(o.value, population, *amplitude)
            {
                self.err(Location::Output(i), e);
            }
        }
    }

    /// A spike output reads the spike train of a spiking population of that amplitude: the
    /// first result of a spiking neuron instruction (or of one of its groups).
    fn spike_source(&self, o: Operand, population: &str, amplitude: f64) -> Result<(), String> {
        let m = self.m;
        if population.is_empty() {
            return Err("a spike output names its population".into());
        }
        let Operand::Value(v) = o else {
            return Err("a spike output reads a neuron's spikes, not a state or constant".into());
        };
        let source = m.insts.iter().find_map(|inst| match &inst.op {
            Op::Neuron(n) if n.model.is_spiking() => (0..inst.groups())
                .any(|g| inst.group(g).1.first() == Some(&v))
                .then_some(n.amplitude),
            _ => None,
        });
        match source {
            None => Err(format!(
                "{} is not the spike train of a spiking neuron",
                m.operand_name(o)
            )),
            Some(a) if a != amplitude => Err(format!(
                "amplitude {amplitude} differs from the population's {a}"
            )),
            Some(_) => Ok(()),
        }
    }

    /// Index tables of `gather` and `sparse` must stay inside their tensors.
    fn check_indices(&mut self, loc: Location, op: &Op, args: &[Operand]) {
        let m = self.m;
        let (Some(&Operand::Const(c)), Some(x)) = (args.get(1), args.first()) else {
            return;
        };
        let Some(k) = m.constants.get(c.index()) else {
            return;
        };
        let ConstData::I32(idx) = &k.data else { return };
        let Some(xt) = m.operand_type(*x) else { return };
        let n_in = xt.num_elements();
        match op {
            Op::Gather { .. } => {
                if let Some(bad) = idx.iter().find(|&&i| i < 0 || i as usize >= n_in) {
                    self.err(
                        loc,
                        format!("gather index {bad} is outside the {n_in} input elements"),
                    );
                }
            }
            Op::Sparse { shape } => {
                let n_out: usize = shape.iter().product();
                for pair in idx.chunks(2) {
                    if let [r, col] = *pair
                        && (r < 0 || r as usize >= n_out || col < 0 || col as usize >= n_in)
                    {
                        self.err(
                            loc,
                            format!("sparse entry ({r}, {col}) is outside [{n_out}] × [{n_in}]"),
                        );
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}
