//! Window geometry shared by convolution and pooling: output sizes and TensorFlow's padding rule.
//! Every consumer (shape inference, the interpreter, the JIT) calls these, so they cannot disagree.

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
