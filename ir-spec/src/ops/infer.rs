//! The shape rule of every op: result types from operand types.

use super::{Arity, NeuronModel, Op};
use crate::geometry::WindowAxis;
use crate::types::{DType, TensorType};

/// Why an op's operands do not fit it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// The wrong number of operands.
    #[error("`{op}` takes {}, got {got}", describe(*expected))]
    Arity {
        /// The op.
        op: &'static str,
        /// What it takes.
        expected: Arity,
        /// Operands given.
        got: usize,
    },
    /// An operand of the wrong element type.
    #[error("operand {operand} of `{op}` must be {want}, got {got}")]
    OperandType {
        /// The op.
        op: &'static str,
        /// 1-based operand position.
        operand: usize,
        /// The element type it needs.
        want: &'static str,
        /// The operand's type.
        got: TensorType,
    },
    /// One group of a merged instruction does not fit.
    #[error("group {group}: {source}")]
    Group {
        /// 1-based group.
        group: usize,
        /// Its problem.
        source: Box<InferError>,
    },
    /// A window does not fit its axis.
    #[error(transparent)]
    Window(#[from] crate::geometry::WindowError),
    /// Ranks, shapes or attribute values break the op's shape rule (SPEC.md states each).
    #[error("{0}")]
    Rule(String),
}

fn describe(a: Arity) -> String {
    match a {
        Arity::Exact(n) => format!("{n} operands"),
        Arity::AtLeast(n) => format!("at least {n} operands"),
        Arity::Groups(n) => format!("{n} operands per group"),
    }
}

impl Op {
    /// Result types from operand types, or why the operands do not fit. Checks operand count,
    /// element types, ranks, shapes and attribute values.
    pub fn infer(&self, args: &[&TensorType]) -> Result<Vec<TensorType>, InferError> {
        let arity = |expected: Arity| InferError::Arity {
            op: self.name(),
            expected,
            got: args.len(),
        };
        match self.arity() {
            Arity::Exact(n) if args.len() != n => return Err(arity(Arity::Exact(n))),
            Arity::AtLeast(n) if args.len() < n => return Err(arity(Arity::AtLeast(n))),
            Arity::Groups(n) if args.is_empty() || !args.len().is_multiple_of(n) => {
                return Err(arity(Arity::Groups(n)));
            }
            Arity::Groups(n) if args.len() > n => {
                let mut all = Vec::with_capacity(args.len() / n * self.num_results());
                for (g, chunk) in args.chunks(n).enumerate() {
                    let r = self.infer(chunk).map_err(|e| InferError::Group {
                        group: g + 1,
                        source: Box::new(e),
                    })?;
                    all.extend(r);
                }
                return Ok(all);
            }
            _ => {}
        }
        // Index operands are i32; every other operand is f32.
        for (i, t) in args.iter().enumerate() {
            let want = match (self, i) {
                (Op::Sparse { .. }, 1) | (Op::Gather { .. }, 1) => DType::I32,
                _ => DType::F32,
            };
            if t.dtype != want {
                return Err(InferError::OperandType {
                    op: self.name(),
                    operand: i + 1,
                    want: want.keyword(),
                    got: (*t).clone(),
                });
            }
        }
        let x = args[0];
        let one = |shape: Vec<usize>| Ok(vec![TensorType::f32(shape)]);
        match self {
            Op::Dense => {
                let w = args[1];
                if x.rank() == 0 || w.rank() != 2 || w.shape[0] != *x.shape.last().unwrap() {
                    return Err(InferError::Rule(format!(
                        "dense needs x[...,n] and w[n,m], got {x} and {w}"
                    )));
                }
                let mut s = x.shape.clone();
                *s.last_mut().unwrap() = w.shape[1];
                one(s)
            }
            Op::Conv(c) => {
                let w = args[1];
                let d = spatial_axes(x, "conv")?;
                if w.rank() != d + 2 {
                    return Err(InferError::Rule(format!(
                        "conv kernel must be [k{}..., cin/groups, cout], got {w}",
                        d
                    )));
                }
                if c.strides.len() != d || c.dilation.len() != d {
                    return Err(InferError::Rule(format!(
                        "strides and dilation need {d} entries for {x}"
                    )));
                }
                let cin = x.shape[d];
                let cout = w.shape[d + 1];
                if c.groups == 0 || !cin.is_multiple_of(c.groups) || !cout.is_multiple_of(c.groups)
                {
                    return Err(InferError::Rule(format!(
                        "groups={} must divide input channels {cin} and output channels {cout}",
                        c.groups
                    )));
                }
                if w.shape[d] != cin / c.groups {
                    return Err(InferError::Rule(format!(
                        "kernel {w} has {} input channels, expected {} ({cin} / groups {})",
                        w.shape[d],
                        cin / c.groups,
                        c.groups
                    )));
                }
                let mut s = Vec::with_capacity(d + 1);
                for i in 0..d {
                    s.push(
                        WindowAxis::new(
                            x.shape[i],
                            w.shape[i],
                            c.strides[i],
                            c.dilation[i],
                            c.padding,
                        )?
                        .output,
                    );
                }
                s.push(cout);
                one(s)
            }
            Op::Sparse { shape } => {
                let (idx, w) = (args[1], args[2]);
                if idx.rank() != 2 || idx.shape[1] != 2 || w.shape != [idx.shape[0]] {
                    return Err(InferError::Rule(format!(
                        "sparse needs idx i32[nnz,2] and w f32[nnz], got {idx} and {w}"
                    )));
                }
                one(shape.clone())
            }
            Op::Gather { shape } => {
                let idx = args[1];
                let n: usize = shape.iter().product();
                if idx.shape != [n] {
                    return Err(InferError::Rule(format!(
                        "gather to {shape:?} needs idx i32[{n}], got {idx}"
                    )));
                }
                one(shape.clone())
            }
            Op::Bias | Op::Scale => {
                let b = args[1];
                if b.rank() > x.rank() || !x.shape.ends_with(&b.shape) {
                    return Err(InferError::Rule(format!(
                        "`{}` operand {b} must match the trailing axes of {x}",
                        self.name()
                    )));
                }
                one(x.shape.clone())
            }
            Op::Add | Op::Mul => {
                if let Some(t) = args.iter().find(|t| t.shape != x.shape) {
                    return Err(InferError::Rule(format!(
                        "{} operands must have one type, got {x} and {t}",
                        self.name()
                    )));
                }
                one(x.shape.clone())
            }
            Op::LayerNorm { epsilon } => {
                let c = *x
                    .shape
                    .last()
                    .ok_or_else(|| InferError::Rule("layer_norm needs at least one axis".into()))?;
                if let Some(t) = args[1..].iter().find(|t| t.shape != [c]) {
                    return Err(InferError::Rule(format!(
                        "layer_norm parameters must be f32[{c}], got {t}"
                    )));
                }
                if epsilon.is_nan() || *epsilon < 0.0 {
                    return Err(InferError::Rule("epsilon must be non-negative".into()));
                }
                one(x.shape.clone())
            }
            Op::AvgPool(p) | Op::MaxPool(p) => {
                let d = spatial_axes(x, "pool")?;
                if p.pool.len() != d || p.strides.len() != d {
                    return Err(InferError::Rule(format!(
                        "pool and strides need {d} entries for {x}"
                    )));
                }
                let mut s = Vec::with_capacity(d + 1);
                for i in 0..d {
                    s.push(
                        WindowAxis::new(x.shape[i], p.pool[i], p.strides[i], 1, p.padding)?.output,
                    );
                }
                s.push(x.shape[d]);
                one(s)
            }
            Op::GlobalAvgPool | Op::GlobalMaxPool => {
                if x.rank() < 2 || x.num_elements() == 0 {
                    return Err(InferError::Rule(format!(
                        "global pool needs spatial axes and channels, got {x}"
                    )));
                }
                one(vec![*x.shape.last().unwrap()])
            }
            Op::BatchNorm { epsilon } => {
                let c = *x
                    .shape
                    .last()
                    .ok_or_else(|| InferError::Rule("batch_norm needs at least one axis".into()))?;
                if let Some(t) = args[1..].iter().find(|t| t.shape != [c]) {
                    return Err(InferError::Rule(format!(
                        "batch_norm parameters must be f32[{c}], got {t}"
                    )));
                }
                if epsilon.is_nan() || *epsilon < 0.0 {
                    return Err(InferError::Rule("epsilon must be non-negative".into()));
                }
                one(x.shape.clone())
            }
            Op::Concat { axis } => {
                if *axis >= x.rank() {
                    return Err(InferError::Rule(format!(
                        "concat axis {axis} out of range for {x}"
                    )));
                }
                let mut s = x.shape.clone();
                for t in &args[1..] {
                    let same_rest = t.rank() == x.rank()
                        && (0..x.rank()).all(|i| i == *axis || t.shape[i] == x.shape[i]);
                    if !same_rest {
                        return Err(InferError::Rule(format!(
                            "concat along axis {axis}: {x} and {t} differ elsewhere"
                        )));
                    }
                    s[*axis] += t.shape[*axis];
                }
                one(s)
            }
            Op::Reshape { shape } => {
                let n: usize = shape.iter().fold(1usize, |a, &d| a.saturating_mul(d));
                if n != x.num_elements() {
                    return Err(InferError::Rule(format!(
                        "reshape of {x} to {shape:?} changes the element count"
                    )));
                }
                one(shape.clone())
            }
            Op::Transpose { perm } => {
                let mut seen = vec![false; x.rank()];
                if perm.len() != x.rank()
                    || perm
                        .iter()
                        .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(InferError::Rule(format!(
                        "perm {perm:?} is not a permutation of the axes of {x}"
                    )));
                }
                one(perm.iter().map(|&p| x.shape[p]).collect())
            }
            Op::Pad { pads } => {
                if pads.len() != x.rank() {
                    return Err(InferError::Rule(format!(
                        "pads needs {} pairs for {x}",
                        x.rank()
                    )));
                }
                let shape: Option<Vec<usize>> = x
                    .shape
                    .iter()
                    .zip(pads)
                    .map(|(d, p)| d.checked_add(p[0])?.checked_add(p[1]))
                    .collect();
                one(shape.ok_or_else(|| InferError::Rule("padding too large".into()))?)
            }
            Op::Upsample { factors } => {
                if x.rank() < 2 || factors.len() != x.rank() - 1 || factors.contains(&0) {
                    return Err(InferError::Rule(format!(
                        "factors needs {} positive entries for {x}",
                        x.rank().max(1) - 1
                    )));
                }
                let mut s: Vec<usize> = x
                    .shape
                    .iter()
                    .zip(factors)
                    .map(|(d, f)| d.checked_mul(*f))
                    .collect::<Option<_>>()
                    .ok_or_else(|| InferError::Rule("upsampling factors too large".into()))?;
                s.push(*x.shape.last().unwrap());
                one(s)
            }
            Op::Softmax => {
                if x.rank() == 0 {
                    return Err(InferError::Rule("softmax needs at least one axis".into()));
                }
                one(x.shape.clone())
            }
            Op::Neuron(n) => {
                if let NeuronModel::LifRate { tau_rc, tau_ref }
                | NeuronModel::Lif {
                    tau_rc, tau_ref, ..
                } = &n.model
                    && !(*tau_rc > 0.0 && *tau_ref >= 0.0)
                {
                    return Err(InferError::Rule(
                        "tau_rc must be positive and tau_ref non-negative".into(),
                    ));
                }
                if let NeuronModel::LeakyIf { decay } = n.model
                    && !(0.0..=1.0).contains(&decay)
                {
                    return Err(InferError::Rule(format!(
                        "decay must lie in [0, 1], not {decay}"
                    )));
                }
                if let Some(t) = args[1..].iter().find(|t| t.shape != x.shape) {
                    return Err(InferError::Rule(format!(
                        "{} state {t} must have the type of its input {x}",
                        n.model.name()
                    )));
                }
                Ok(vec![
                    TensorType::f32(x.shape.clone());
                    1 + n.model.num_states()
                ])
            }
            Op::Lowpass { tau } | Op::Alpha { tau } => {
                if tau.is_nan() || *tau < 0.0 {
                    return Err(InferError::Rule("tau must be non-negative".into()));
                }
                if let Some(t) = args[1..].iter().find(|t| t.shape != x.shape) {
                    return Err(InferError::Rule(format!(
                        "synapse state {t} must have the type of its input {x}"
                    )));
                }
                Ok(vec![TensorType::f32(x.shape.clone()); self.num_results()])
            }
        }
    }
}

/// The number of spatial axes of a `[s..., c]` input of a window op (1-3).
fn spatial_axes(x: &TensorType, op: &str) -> Result<usize, InferError> {
    x.rank()
        .checked_sub(1)
        .filter(|d| (1..=3).contains(d))
        .ok_or_else(|| {
            InferError::Rule(format!(
                "{op} input must have 1-3 spatial axes and channels, got {x}"
            ))
        })
}
