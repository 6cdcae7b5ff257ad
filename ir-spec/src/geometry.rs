//! Window geometry shared by convolution and pooling: output sizes and TensorFlow's padding rule.
//! Every consumer (shape inference, the interpreter, the JIT) calls these, so they cannot disagree.

use crate::module::{ConstData, Inst, Module, Operand};
use crate::ops::Op;
use serde::{Deserialize, Serialize};

/// Padding mode of a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Padding {
    /// No padding: every window lies inside the input.
    Valid,
    /// Output length `⌈in/stride⌉`, padded as TensorFlow does (extra cell at the end).
    Same,
}

/// Why a window does not fit its axis.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// A window, stride or dilation of 0.
    #[error("window, stride and dilation must be at least 1")]
    ZeroSize,
    /// `(window − 1) · dilation + 1` overflows.
    #[error("window too large")]
    TooLarge,
    /// A `valid` window longer than its input.
    #[error(
        "window of {effective} (size {window}, dilation {dilation}) does not fit input of {input} with padding=valid"
    )]
    DoesNotFit {
        /// `(window − 1) · dilation + 1`.
        effective: usize,
        /// Window length.
        window: usize,
        /// Dilation.
        dilation: usize,
        /// Input length.
        input: usize,
    },
    /// A `same` window over an axis of length 0.
    #[error("input axis of length 0")]
    EmptyInput,
}

/// One spatial axis of a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowAxis {
    /// Input length.
    pub input: usize,
    /// Output length.
    pub output: usize,
    /// Window length (kernel or pool size).
    pub window: usize,
    /// Step between windows.
    pub stride: usize,
    /// Spacing between window taps.
    pub dilation: usize,
    /// Padding cells before the first input element (the rest of the padding goes after).
    pub pad_before: usize,
}

impl WindowAxis {
    /// Geometry of one axis. `valid`: windows lie inside the input, `out = ⌊(in − eff)/s⌋ + 1`.
    /// `same`: `out = ⌈in/s⌉`, total padding `max((out−1)·s + eff − in, 0)` split with the smaller
    /// half before (TensorFlow's rule, so an even kernel pads one extra cell at the end).
    /// `eff = (window−1)·dilation + 1`. Errors when a `valid` window does not fit or a size is 0.
    pub fn new(
        input: usize,
        window: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
    ) -> Result<Self, WindowError> {
        if window == 0 || stride == 0 || dilation == 0 {
            return Err(WindowError::ZeroSize);
        }
        let eff = (window - 1)
            .checked_mul(dilation)
            .and_then(|x| x.checked_add(1))
            .ok_or(WindowError::TooLarge)?;
        let (output, pad_before) = match padding {
            Padding::Valid => {
                if input < eff {
                    return Err(WindowError::DoesNotFit {
                        effective: eff,
                        window,
                        dilation,
                        input,
                    });
                }
                ((input - eff) / stride + 1, 0)
            }
            Padding::Same => {
                if input == 0 {
                    return Err(WindowError::EmptyInput);
                }
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + eff).saturating_sub(input);
                (out, total / 2)
            }
        };
        Ok(WindowAxis {
            input,
            output,
            window,
            stride,
            dilation,
            pad_before,
        })
    }

    /// The input index read by output `o` at window tap `k`, or `None` when it falls in padding.
    #[inline]
    pub fn source(&self, o: usize, k: usize) -> Option<usize> {
        let i = (o * self.stride + k * self.dilation) as isize - self.pad_before as isize;
        (i >= 0 && (i as usize) < self.input).then_some(i as usize)
    }
}

/// Row-major strides of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Calls `f(flat_index, multi_index)` for every element of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let n: usize = shape.iter().product();
    let mut idx = vec![0; shape.len()];
    for flat in 0..n {
        f(flat, &idx);
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/// Where an element of an index map's result comes from: operand `arg`, flat element `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    /// The operand.
    pub arg: usize,
    /// The element of that operand (flat, per sample).
    pub index: usize,
}

/// The source of every result element (flat, per sample) of an index-map instruction
/// (`reshape`, `gather`, `transpose`, `upsample`, `pad`, `concat`) of a verified module; `None`
/// for padding. `None` overall for any other op.
pub fn index_sources(m: &Module, inst: &Inst) -> Option<Vec<Option<Source>>> {
    let out_shape = &m.value(*inst.results.first()?).ty.shape;
    let n_out: usize = out_shape.iter().product();
    let in_shape = |k: usize| &m.operand_type(inst.args[k]).expect("verified").shape;
    let from = |index: usize| Some(Source { arg: 0, index });
    Some(match &inst.op {
        Op::Reshape { .. } => (0..n_out).map(from).collect(),
        Op::Gather { .. } => match inst.args.get(1) {
            Some(Operand::Const(c)) => match &m.constant(*c).data {
                ConstData::I32(t) => t.iter().map(|&j| from(j as usize)).collect(),
                _ => return None,
            },
            _ => return None,
        },
        Op::Transpose { perm } => {
            let strides = strides_of(in_shape(0));
            let mut src = Vec::with_capacity(n_out);
            for_each_index(out_shape, |_, idx| {
                src.push(from(
                    idx.iter().zip(perm).map(|(&i, &p)| i * strides[p]).sum(),
                ));
            });
            src
        }
        Op::Upsample { factors } => {
            let strides = strides_of(in_shape(0));
            let mut src = Vec::with_capacity(n_out);
            for_each_index(out_shape, |_, idx| {
                let at = idx
                    .iter()
                    .enumerate()
                    .map(|(a, &i)| factors.get(a).map_or(i, |&fa| i / fa) * strides[a]);
                src.push(from(at.sum()));
            });
            src
        }
        Op::Pad { pads } => {
            let mut src = vec![None; n_out];
            let out_strides = strides_of(out_shape);
            for_each_index(in_shape(0), |flat, idx| {
                let at: usize = idx
                    .iter()
                    .zip(pads)
                    .zip(&out_strides)
                    .map(|((&i, p), s)| (i + p[0]) * s)
                    .sum();
                src[at] = from(flat);
            });
            src
        }
        Op::Concat { axis } => {
            // Output element (o, a, i): outer position o, position a along the axis, inner i.
            let inner: usize = out_shape[axis + 1..].iter().product();
            let along = out_shape[*axis];
            (0..n_out)
                .map(|flat| {
                    let (o, mut a, i) =
                        (flat / (along * inner), flat / inner % along, flat % inner);
                    for k in 0..inst.args.len() {
                        let len = in_shape(k)[*axis];
                        if a < len {
                            return Some(Source {
                                arg: k,
                                index: (o * len + a) * inner + i,
                            });
                        }
                        a -= len;
                    }
                    None
                })
                .collect()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_even_kernel_pads_extra_cell_at_end() {
        // in=5, k=2, s=1: out=5, total pad 1 → 0 before, 1 after.
        let a = WindowAxis::new(5, 2, 1, 1, Padding::Same).unwrap();
        assert_eq!((a.output, a.pad_before), (5, 0));
        assert_eq!(a.source(4, 1), None);
        // in=6, k=3, s=2: out=3, total = 2*2+3-6 = 1 → 0 before.
        let b = WindowAxis::new(6, 3, 2, 1, Padding::Same).unwrap();
        assert_eq!((b.output, b.pad_before), (3, 0));
        // in=7, k=4, s=1: out=7, total=3 → 1 before, 2 after.
        let c = WindowAxis::new(7, 4, 1, 1, Padding::Same).unwrap();
        assert_eq!((c.output, c.pad_before), (7, 1));
    }

    #[test]
    fn valid_padding_sizes() {
        assert_eq!(
            WindowAxis::new(28, 3, 1, 1, Padding::Valid).unwrap().output,
            26
        );
        assert_eq!(
            WindowAxis::new(26, 2, 2, 1, Padding::Valid).unwrap().output,
            13
        );
        assert_eq!(
            WindowAxis::new(10, 3, 1, 2, Padding::Valid).unwrap().output,
            6
        );
        assert!(WindowAxis::new(2, 3, 1, 1, Padding::Valid).is_err());
    }
}
