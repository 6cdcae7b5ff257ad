//! The canonical text printer (`Display for Module`). SPEC.md gives the grammar.
//!
//! Canonical means: declarations in arena order (inputs, constants, states), a blank line, then
//! instructions in order, each `next` printed right after the instruction that defines its value
//! (those reading inputs, constants or states come first), then the outputs. Attributes equal to
//! their default are omitted. Constants of at most [`INLINE_LIMIT`] elements print their values;
//! larger ones print their checksum.

use crate::module::{ConstData, Inst, Module, Operand, OutputKind, StateInit};
use crate::ops::{format_f32, format_f64};
use std::fmt::{self, Write};

/// Constants with at most this many elements are printed inline.
pub const INLINE_LIMIT: usize = 16;

/// Quote an output name as a string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "module @{} dt={}", self.name, format_f64(self.dt))?;
        for &v in &self.inputs {
            match self.values.get(v.index()) {
                Some(d) => writeln!(f, "input %{} : {}", d.name, d.ty)?,
                None => writeln!(f, "input %<{v}> : ?")?,
            }
        }
        for c in &self.constants {
            write!(f, "const @{} : {}", c.name, c.ty)?;
            match &c.data {
                ConstData::F32(v) if v.len() <= INLINE_LIMIT => {
                    f.write_str(" = [")?;
                    for (i, x) in v.iter().enumerate() {
                        f.write_str(if i == 0 { "" } else { ", " })?;
                        f.write_str(&format_f32(*x))?;
                    }
                    f.write_str("]")?;
                }
                ConstData::I32(v) if v.len() <= INLINE_LIMIT => {
                    f.write_str(" = [")?;
                    for (i, x) in v.iter().enumerate() {
                        f.write_str(if i == 0 { "" } else { ", " })?;
                        write!(f, "{x}")?;
                    }
                    f.write_str("]")?;
                }
                data => write!(f, " #{:08x}", data.checksum())?,
            }
            f.write_char('\n')?;
        }
        for s in &self.states {
            writeln!(
                f,
                "state ${} : {} = {}",
                s.name,
                s.ty,
                state_init_text(self, &s.init)
            )?;
        }

        // Where each value is defined: inputs before every instruction (slot 0), results of
        // instruction i in slot i+1. Nexts print after the slot of their value.
        let mut slot = vec![0usize; self.values.len()];
        for (i, inst) in self.insts.iter().enumerate() {
            for r in &inst.results {
                if let Some(s) = slot.get_mut(r.index()) {
                    *s = i + 1;
                }
            }
        }
        let mut nexts: Vec<(usize, usize)> = self
            .nexts
            .iter()
            .enumerate()
            .map(|(k, n)| match n.value {
                Operand::Value(v) => (slot.get(v.index()).copied().unwrap_or(0), k),
                _ => (0, k),
            })
            .collect();
        nexts.sort_by_key(|&(s, k)| (s, self.nexts[k].state, k));
        let mut nexts = nexts.into_iter().peekable();
        let mut write_nexts = |f: &mut fmt::Formatter<'_>, upto: usize| -> fmt::Result {
            while let Some(&(s, k)) = nexts.peek() {
                if s > upto {
                    break;
                }
                let n = &self.nexts[k];
                writeln!(
                    f,
                    "next {} = {}",
                    self.operand_name(Operand::State(n.state)),
                    self.operand_name(n.value)
                )?;
                nexts.next();
            }
            Ok(())
        };

        if !self.insts.is_empty() || !self.nexts.is_empty() || !self.outputs.is_empty() {
            f.write_char('\n')?;
        }
        write_nexts(f, 0)?;
        for (i, inst) in self.insts.iter().enumerate() {
            writeln!(f, "{}", inst_text(self, inst))?;
            write_nexts(f, i + 1)?;
        }
        write_nexts(f, usize::MAX)?;
        for o in &self.outputs {
            f.write_str("output ")?;
            if let Some(k) = o.kind.keyword() {
                write!(f, "{k} ")?;
            }
            write!(f, "{} = {}", quote(&o.name), self.operand_name(o.value))?;
            if let OutputKind::Spikes {
                population,
                amplitude,
            } = &o.kind
            {
                write!(
                    f,
                    " {{population={}, amplitude={}}}",
                    quote(population),
                    format_f64(*amplitude)
                )?;
            }
            f.write_char('\n')?;
        }
        Ok(())
    }
}

/// A state's initialiser as printed after `=`.
pub fn state_init_text(m: &Module, init: &StateInit) -> String {
    match init {
        StateInit::Zeros => "zeros".into(),
        StateInit::Uniform { lo, hi, seed } => {
            format!(
                "uniform({}, {}, seed={seed})",
                format_f64(*lo),
                format_f64(*hi)
            )
        }
        StateInit::Const(c) => m.operand_name(Operand::Const(*c)),
    }
}

/// One instruction as printed, without a newline.
pub fn inst_text(m: &Module, inst: &Inst) -> String {
    let mut f = String::new();
    let names = |vals: &mut dyn Iterator<Item = String>| vals.collect::<Vec<_>>().join(", ");
    f += &names(
        &mut inst
            .results
            .iter()
            .map(|r| m.operand_name(Operand::Value(*r))),
    );
    f += " = ";
    f += inst.op.name();
    if !inst.args.is_empty() {
        f += " ";
        f += &names(&mut inst.args.iter().map(|a| m.operand_name(*a)));
    }
    let attrs = inst.op.attrs();
    if !attrs.is_empty() {
        f += " {";
        f += &names(&mut attrs.iter().map(|(k, v)| format!("{k}={v}")));
        f += "}";
    }
    f += " : ";
    f += &names(
        &mut inst.results.iter().map(|r| match m.values.get(r.index()) {
            Some(d) => d.ty.to_string(),
            None => "?".into(),
        }),
    );
    f
}
