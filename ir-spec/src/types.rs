//! Tensor types: an element type and a shape, written `f32[28,28,1]`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor. Values and states are always `f32`; constants may also be `i32`
/// (index tables for `gather` and `sparse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 32-bit signed integer.
    I32,
}

impl DType {
    /// The keyword the text format uses for this type.
    pub fn keyword(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }
}

/// A tensor type: element type and shape (per sample: the batch dimension is implicit).
/// A scalar has an empty shape, `f32[]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first (channels last, as Keras).
    pub shape: Vec<usize>,
}

impl TensorType {
    /// An `f32` tensor of the given shape.
    pub fn f32(shape: impl Into<Vec<usize>>) -> Self {
        TensorType {
            dtype: DType::F32,
            shape: shape.into(),
        }
    }

    /// An `i32` tensor of the given shape.
    pub fn i32(shape: impl Into<Vec<usize>>) -> Self {
        TensorType {
            dtype: DType::I32,
            shape: shape.into(),
        }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements (1 for a scalar). Saturates instead of overflowing, so absurd shapes
    /// from a file are caught by size checks rather than wrapping.
    pub fn num_elements(&self) -> usize {
        self.shape
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype.keyword())?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
