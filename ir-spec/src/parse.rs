//! The text parser: the inverse of the printer. Errors carry line and column and say what was
//! expected. It never panics, whatever the input.
//!
//! Values (`%x`) may be mentioned before they are defined: the parser records them and the
//! verifier reports a use before definition or a value never defined. Constants and states must
//! be declared (anywhere in the file) before the body refers to them by line order.

use crate::module::{
    ConstData, ConstId, Constant, Inst, Module, Next, Operand, Output, OutputKind, State, StateId,
    StateInit, ValueData, ValueId,
};
use crate::ops::{AttrValue, Op};
use crate::types::{DType, TensorType};
use std::collections::HashMap;
use thiserror::Error;

/// How deep attribute lists may nest.
const MAX_ATTR_DEPTH: usize = 16;

/// A parse error at a line and column (both 1-based).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// Where each entity of a parsed module came from (1-based line numbers), for error messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMap {
    /// Line of each input declaration, by position in `Module::inputs`.
    pub inputs: Vec<usize>,
    /// Line of each constant.
    pub constants: Vec<usize>,
    /// Line of each state.
    pub states: Vec<usize>,
    /// Line of each instruction.
    pub insts: Vec<usize>,
    /// Line of each `next`.
    pub nexts: Vec<usize>,
    /// Line of each output.
    pub outputs: Vec<usize>,
    /// Line where each value was first mentioned.
    pub values: Vec<usize>,
}

/// Parse a module from text.
pub fn parse(text: &str) -> Result<Module, ParseError> {
    parse_with_source_map(text).map(|(m, _)| m)
}

/// Parse a module from text and report where each entity was written.
pub fn parse_with_source_map(text: &str) -> Result<(Module, SourceMap), ParseError> {
    Parser::default().run(text)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Value(String),
    Const(String),
    State(String),
    Num(f64, String),
    Str(String),
    Hash(String),
    Punct(char),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Value(n) => format!("`%{n}`"),
            Tok::Const(n) => format!("`@{n}`"),
            Tok::State(n) => format!("`${n}`"),
            Tok::Num(_, s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Hash(h) => format!("`#{h}`"),
            Tok::Punct(c) => format!("`{c}`"),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

/// True when `s` can be written after a sigil without quoting.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_name_char)
}

fn lex_line(line: &str, lineno: usize) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let err = |col: usize, message: String| ParseError {
        line: lineno,
        col: col + 1,
        message,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == ';' {
            break;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let take_while = |i: &mut usize, f: &dyn Fn(char) -> bool| -> String {
            let s = *i;
            while *i < chars.len() && f(chars[*i]) {
                *i += 1;
            }
            chars[s..*i].iter().collect()
        };
        let tok = match c {
            '%' | '@' | '$' => {
                i += 1;
                let name = take_while(&mut i, &is_name_char);
                if name.is_empty() {
                    return Err(err(start, format!("expected a name after `{c}`")));
                }
                match c {
                    '%' => Tok::Value(name),
                    '@' => Tok::Const(name),
                    _ => Tok::State(name),
                }
            }
            '#' => {
                i += 1;
                Tok::Hash(take_while(&mut i, &|c| c.is_ascii_alphanumeric()))
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "unterminated string".into())),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some('"') => s.push('"'),
                                Some('\\') => s.push('\\'),
                                Some('n') => s.push('\n'),
                                _ => return Err(err(i, "unknown escape in string".into())),
                            }
                            i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '=' | ':' | ',' | '[' | ']' | '{' | '}' | '(' | ')' => {
                i += 1;
                Tok::Punct(c)
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                i += 1;
                let mut prev = c;
                while i < chars.len() {
                    let d = chars[i];
                    let ok = d.is_ascii_alphanumeric()
                        || d == '.'
                        || ((d == '-' || d == '+') && (prev == 'e' || prev == 'E'));
                    if !ok {
                        break;
                    }
                    prev = d;
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let lower = text.to_ascii_lowercase();
                let value = match lower.trim_start_matches(['+', '-']) {
                    "inf" => Some(if lower.starts_with('-') {
                        f64::NEG_INFINITY
                    } else {
                        f64::INFINITY
                    }),
                    "nan" => Some(f64::NAN),
                    _ if lower.contains("inf") || lower.contains("nan") => None,
                    _ => text.parse::<f64>().ok(),
                };
                match value {
                    Some(v) => Tok::Num(v, text),
                    None => return Err(err(start, format!("`{text}` is not a number"))),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let w = take_while(&mut i, &|c| c.is_ascii_alphanumeric() || c == '_');
                match w.as_str() {
                    "nan" => Tok::Num(f64::NAN, w),
                    "inf" => Tok::Num(f64::INFINITY, w),
                    _ => Tok::Word(w),
                }
            }
            other => return Err(err(start, format!("unexpected character `{other}`"))),
        };
        toks.push((tok, start + 1));
    }
    Ok(toks)
}

/// Token cursor over one line.
struct Line {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    line: usize,
    end_col: usize,
}

impl Line {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn col(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|&(_, c)| c)
            .unwrap_or(self.end_col)
    }
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.col(),
            message: message.into(),
        }
    }
    fn expected(&self, what: &str) -> ParseError {
        let found = match self.peek() {
            Some(t) => t.describe(),
            None => "end of line".into(),
        };
        self.error(format!("expected {what}, found {found}"))
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.expected(&format!("`{c}`")))
        }
    }
    fn expect_word(&mut self, w: &str) -> Result<(), ParseError> {
        match self.peek() {
            Some(Tok::Word(x)) if x == w => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.expected(&format!("`{w}`"))),
        }
    }
    fn word(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.expected(what)),
        }
    }
    fn number(&mut self, what: &str) -> Result<f64, ParseError> {
        match self.peek() {
            Some(&Tok::Num(v, _)) => {
                self.pos += 1;
                Ok(v)
            }
            _ => Err(self.expected(what)),
        }
    }
    fn integer(&mut self, what: &str) -> Result<u64, ParseError> {
        match self.peek() {
            Some(Tok::Num(_, text)) => match text.parse::<u64>() {
                Ok(v) => {
                    self.pos += 1;
                    Ok(v)
                }
                Err(_) => Err(self.error(format!("expected {what}, found `{text}`"))),
            },
            _ => Err(self.expected(what)),
        }
    }
    fn end(&self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.expected("end of line")),
        }
    }
}

#[derive(Default)]
struct Parser {
    module: Option<Module>,
    map: SourceMap,
    values: HashMap<String, Vec<ValueId>>,
    defined: Vec<bool>,
    consts: HashMap<String, ConstId>,
    states: HashMap<String, StateId>,
}

const MAX_DIM_PRODUCT: usize = 1 << 40;

impl Parser {
    fn run(mut self, text: &str) -> Result<(Module, SourceMap), ParseError> {
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let toks = lex_line(raw, lineno)?;
            if toks.is_empty() {
                continue;
            }
            let mut line = Line {
                toks,
                pos: 0,
                line: lineno,
                end_col: raw.chars().count() + 1,
            };
            self.statement(&mut line)?;
            line.end()?;
        }
        let module = self.module.ok_or(ParseError {
            line: 1,
            col: 1,
            message: "expected `module @name dt=...`, found an empty file".into(),
        })?;
        Ok((module, self.map))
    }

    fn module(&mut self, line: &Line) -> Result<&mut Module, ParseError> {
        self.module
            .as_mut()
            .ok_or_else(|| line.error("expected `module @name dt=...` first"))
    }

    fn statement(&mut self, l: &mut Line) -> Result<(), ParseError> {
        match l.peek().cloned() {
            Some(Tok::Word(w)) if w == "module" => {
                if self.module.is_some() {
                    return Err(l.error("a file holds one module; found a second `module`"));
                }
                l.next();
                let name = match l.next() {
                    Some(Tok::Const(n)) => n,
                    _ => {
                        l.pos -= 1;
                        return Err(l.expected("module name `@name`"));
                    }
                };
                l.expect_word("dt")?;
                l.expect('=')?;
                let col = l.col();
                let dt = l.number("timestep in seconds")?;
                if !(dt > 0.0 && dt.is_finite()) {
                    return Err(ParseError {
                        line: l.line,
                        col,
                        message: "dt must be positive".into(),
                    });
                }
                self.module = Some(Module::new(name, dt));
            }
            Some(Tok::Word(w)) if w == "input" => {
                l.next();
                let name = match l.next() {
                    Some(Tok::Value(n)) => n,
                    _ => {
                        l.pos -= 1;
                        return Err(l.expected("input name `%name`"));
                    }
                };
                l.expect(':')?;
                let ty = self.tensor_type(l)?;
                let v = self.define_value(l, &name, ty)?;
                self.module(l)?.inputs.push(v);
                self.map.inputs.push(l.line);
            }
            Some(Tok::Word(w)) if w == "const" => self.constant(l)?,
            Some(Tok::Word(w)) if w == "state" => self.state(l)?,
            Some(Tok::Word(w)) if w == "next" => {
                l.next();
                let state = match self.operand(l)? {
                    Operand::State(s) => s,
                    _ => {
                        l.pos -= 1;
                        return Err(l.expected("a state `$name`"));
                    }
                };
                l.expect('=')?;
                let value = self.operand(l)?;
                self.module(l)?.nexts.push(Next { state, value });
                self.map.nexts.push(l.line);
            }
            Some(Tok::Word(w)) if w == "output" => {
                l.next();
                let keyword = match l.peek() {
                    Some(Tok::Word(w)) if w == "probe" || w == "spikes" => {
                        let w = w.clone();
                        l.next();
                        Some(w)
                    }
                    _ => None,
                };
                let name = match l.next() {
                    Some(Tok::Str(s)) => s,
                    _ => {
                        l.pos -= 1;
                        return Err(l.expected("`probe`, `spikes` or an output name in quotes"));
                    }
                };
                l.expect('=')?;
                let value = self.operand(l)?;
                let kind = match keyword.as_deref() {
                    Some("probe") => OutputKind::Probe,
                    Some(_) => {
                        // {population="NAME", amplitude=X}
                        l.expect('{')?;
                        l.expect_word("population")?;
                        l.expect('=')?;
                        let population = match l.next() {
                            Some(Tok::Str(s)) => s,
                            _ => {
                                l.pos -= 1;
                                return Err(l.expected("a population name in quotes"));
                            }
                        };
                        l.expect(',')?;
                        l.expect_word("amplitude")?;
                        l.expect('=')?;
                        let amplitude = l.number("the population's amplitude")?;
                        l.expect('}')?;
                        OutputKind::Spikes {
                            population,
                            amplitude,
                        }
                    }
                    None => OutputKind::Value,
                };
                self.module(l)?.outputs.push(Output { name, value, kind });
                self.map.outputs.push(l.line);
            }
            Some(Tok::Value(_)) => self.instruction(l)?,
            _ => {
                return Err(l.expected(
                    "`module`, `input`, `const`, `state`, `next`, `output` or `%result = op ...`",
                ));
            }
        }
        Ok(())
    }

    fn tensor_type(&mut self, l: &mut Line) -> Result<TensorType, ParseError> {
        let dtype = match l.peek() {
            Some(Tok::Word(w)) if w == "f32" => DType::F32,
            Some(Tok::Word(w)) if w == "i32" => DType::I32,
            _ => return Err(l.expected("a type such as `f32[28,28,1]`")),
        };
        l.next();
        l.expect('[')?;
        let mut shape = Vec::new();
        if !l.eat(']') {
            loop {
                shape.push(l.integer("a dimension")? as usize);
                if l.eat(']') {
                    break;
                }
                if !l.eat(',') {
                    return Err(l.expected("`,` or `]`"));
                }
            }
        }
        let ty = TensorType { dtype, shape };
        if ty
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > MAX_DIM_PRODUCT)
        {
            return Err(l.error(format!("type {ty} has more than 2^40 elements")));
        }
        Ok(ty)
    }

    fn define_value(
        &mut self,
        l: &Line,
        name: &str,
        ty: TensorType,
    ) -> Result<ValueId, ParseError> {
        let line = l.line;
        let ids = self.values.entry(name.to_string()).or_default();
        // A value mentioned before this line but not yet defined becomes this definition.
        if let Some(&v) = ids.iter().find(|v| !self.defined[v.index()]) {
            self.defined[v.index()] = true;
            self.module(l)?.values[v.index()].ty = ty;
            return Ok(v);
        }
        let m = self
            .module
            .as_mut()
            .ok_or_else(|| l.error("expected `module @name dt=...` first"))?;
        let v = ValueId(m.values.len() as u32);
        m.values.push(ValueData {
            name: name.to_string(),
            ty,
        });
        self.values
            .get_mut(name)
            .expect("entry inserted above")
            .push(v);
        self.defined.push(true);
        self.map.values.push(line);
        Ok(v)
    }

    fn operand(&mut self, l: &mut Line) -> Result<Operand, ParseError> {
        let col = l.col();
        let lineno = l.line;
        let not_declared = |what: &str, n: &str| ParseError {
            line: lineno,
            col,
            message: format!("{what} `{n}` is not declared"),
        };
        match l.peek().cloned() {
            Some(Tok::Value(n)) => {
                l.next();
                // The most recent definition of this name, or a forward reference.
                if let Some(&v) = self.values.get(&n).and_then(|ids| ids.last()) {
                    return Ok(Operand::Value(v));
                }
                let m = self.module(l)?;
                let v = ValueId(m.values.len() as u32);
                m.values.push(ValueData {
                    name: n.clone(),
                    ty: TensorType::f32(vec![]),
                });
                self.values.entry(n).or_default().push(v);
                self.defined.push(false);
                self.map.values.push(l.line);
                Ok(Operand::Value(v))
            }
            Some(Tok::Const(n)) => {
                l.next();
                self.consts
                    .get(&n)
                    .map(|&c| Operand::Const(c))
                    .ok_or_else(|| not_declared("constant", &format!("@{n}")))
            }
            Some(Tok::State(n)) => {
                l.next();
                self.states
                    .get(&n)
                    .map(|&s| Operand::State(s))
                    .ok_or_else(|| not_declared("state", &format!("${n}")))
            }
            _ => Err(l.expected("an operand (`%value`, `@const` or `$state`)")),
        }
    }

    fn constant(&mut self, l: &mut Line) -> Result<(), ParseError> {
        l.next();
        let name = match l.next() {
            Some(Tok::Const(n)) => n,
            _ => {
                l.pos -= 1;
                return Err(l.expected("constant name `@name`"));
            }
        };
        if self.consts.contains_key(&name) {
            l.pos -= 1;
            return Err(l.error(format!("constant `@{name}` is declared twice")));
        }
        l.expect(':')?;
        let ty = self.tensor_type(l)?;
        let data = if l.eat('=') {
            l.expect('[')?;
            let mut f = Vec::new();
            if !l.eat(']') {
                loop {
                    f.push(l.number("a number")?);
                    if l.eat(']') {
                        break;
                    }
                    l.expect(',')?;
                }
            }
            match ty.dtype {
                DType::F32 => ConstData::F32(f.iter().map(|&x| x as f32).collect()),
                DType::I32 => {
                    let mut out = Vec::with_capacity(f.len());
                    for x in f {
                        if x.fract() != 0.0 || x < i32::MIN as f64 || x > i32::MAX as f64 {
                            return Err(l.error(format!(
                                "i32 constant element {x} is not a 32-bit integer"
                            )));
                        }
                        out.push(x as i32);
                    }
                    ConstData::I32(out)
                }
            }
        } else {
            match l.next() {
                Some(Tok::Hash(h)) if h.len() == 8 => match u32::from_str_radix(&h, 16) {
                    Ok(checksum) => ConstData::External { checksum },
                    Err(_) => {
                        l.pos -= 1;
                        return Err(l.expected("an 8-digit hex checksum `#0a1b2c3d`"));
                    }
                },
                _ => {
                    l.pos -= 1;
                    return Err(l.expected("`= [values]` or a checksum `#0a1b2c3d`"));
                }
            }
        };
        let m = self.module(l)?;
        let id = ConstId(m.constants.len() as u32);
        m.constants.push(Constant {
            name: name.clone(),
            ty,
            data,
        });
        self.consts.insert(name, id);
        self.map.constants.push(l.line);
        Ok(())
    }

    fn state(&mut self, l: &mut Line) -> Result<(), ParseError> {
        l.next();
        let name = match l.next() {
            Some(Tok::State(n)) => n,
            _ => {
                l.pos -= 1;
                return Err(l.expected("state name `$name`"));
            }
        };
        if self.states.contains_key(&name) {
            l.pos -= 1;
            return Err(l.error(format!("state `${name}` is declared twice")));
        }
        l.expect(':')?;
        let ty = self.tensor_type(l)?;
        l.expect('=')?;
        let init = match l.peek().cloned() {
            Some(Tok::Word(w)) if w == "zeros" => {
                l.next();
                StateInit::Zeros
            }
            Some(Tok::Word(w)) if w == "uniform" => {
                l.next();
                l.expect('(')?;
                let lo = l.number("lower bound")?;
                l.expect(',')?;
                let hi = l.number("upper bound")?;
                l.expect(',')?;
                l.expect_word("seed")?;
                l.expect('=')?;
                let seed = l.integer("a non-negative integer seed")?;
                l.expect(')')?;
                StateInit::Uniform { lo, hi, seed }
            }
            Some(Tok::Const(_)) => match self.operand(l)? {
                Operand::Const(c) => StateInit::Const(c),
                _ => unreachable!("a `@` token parses as a constant"),
            },
            _ => return Err(l.expected("`zeros`, `uniform(lo, hi, seed=N)` or `@const`")),
        };
        let m = self.module(l)?;
        let id = StateId(m.states.len() as u32);
        m.states.push(State {
            name: name.clone(),
            ty,
            init,
        });
        self.states.insert(name, id);
        self.map.states.push(l.line);
        Ok(())
    }

    /// An attribute value; lists nest at most [`MAX_ATTR_DEPTH`] deep (no attribute needs more
    /// than two, and deeper nesting must not exhaust the stack).
    fn attr_value(l: &mut Line, depth: usize) -> Result<AttrValue, ParseError> {
        if depth > MAX_ATTR_DEPTH {
            return Err(l.error(format!(
                "attribute lists nest more than {MAX_ATTR_DEPTH} deep"
            )));
        }
        match l.peek().cloned() {
            Some(Tok::Num(v, _)) => {
                l.next();
                Ok(AttrValue::Num(v))
            }
            Some(Tok::Word(w)) => {
                l.next();
                Ok(AttrValue::Word(w))
            }
            Some(Tok::Punct('[')) => {
                l.next();
                let mut items = Vec::new();
                if !l.eat(']') {
                    loop {
                        items.push(Self::attr_value(l, depth + 1)?);
                        if l.eat(']') {
                            break;
                        }
                        l.expect(',')?;
                    }
                }
                Ok(AttrValue::List(items))
            }
            _ => Err(l.expected("an attribute value (number, word or list)")),
        }
    }

    fn instruction(&mut self, l: &mut Line) -> Result<(), ParseError> {
        let mut result_names = Vec::new();
        loop {
            match l.next() {
                Some(Tok::Value(n)) => result_names.push((n, l.col())),
                _ => {
                    l.pos -= 1;
                    return Err(l.expected("a result `%name`"));
                }
            }
            if !l.eat(',') {
                break;
            }
        }
        l.expect('=')?;
        let op_col = l.col();
        let op_name = l.word("an op name")?;
        if !Op::NAMES.contains(&op_name.as_str()) {
            return Err(ParseError {
                line: l.line,
                col: op_col,
                message: format!(
                    "unknown op `{op_name}`; expected one of: {}",
                    Op::NAMES.join(", ")
                ),
            });
        }
        let mut args = Vec::new();
        if !matches!(l.peek(), Some(Tok::Punct('{')) | Some(Tok::Punct(':'))) {
            loop {
                args.push(self.operand(l)?);
                if !l.eat(',') {
                    break;
                }
            }
        }
        let mut attrs: Vec<(String, AttrValue)> = Vec::new();
        let attr_col = l.col();
        if l.eat('{') && !l.eat('}') {
            loop {
                let key_col = l.col();
                let key = l.word("an attribute name")?;
                if attrs.iter().any(|(k, _)| *k == key) {
                    return Err(ParseError {
                        line: l.line,
                        col: key_col,
                        message: format!("attribute `{key}` is given twice"),
                    });
                }
                l.expect('=')?;
                attrs.push((key, Self::attr_value(l, 0)?));
                if l.eat('}') {
                    break;
                }
                l.expect(',')?;
            }
        }
        l.expect(':')?;
        let mut types = Vec::new();
        loop {
            types.push(self.tensor_type(l)?);
            if !l.eat(',') {
                break;
            }
        }
        if types.len() != result_names.len() {
            return Err(l.error(format!(
                "{} results but {} result types",
                result_names.len(),
                types.len()
            )));
        }
        let op = Op::from_text(&op_name, attrs, &types).map_err(|e| ParseError {
            line: l.line,
            col: if e.is_attribute() { attr_col } else { op_col },
            message: e.to_string(),
        })?;
        let mut results = Vec::new();
        for ((name, _), ty) in result_names.into_iter().zip(types) {
            results.push(self.define_value(l, &name, ty)?);
        }
        self.module(l)?.insts.push(Inst { op, args, results });
        self.map.insts.push(l.line);
        Ok(())
    }
}
