//! Index geometry on flat row-major buffers, shared by every backend and kernel: sliding windows
//! over up to three spatial axes, strides of a shape, and row-major index enumeration.

use snnc_ir::Padding;
use snnc_ir::geometry::{WindowAxis, WindowError};

/// Up to three spatial axes, padded with unit axes at the front so every kernel is 3-D.
#[derive(Clone, Debug)]
pub struct Window3 {
    /// The three axes, outermost first.
    pub axes: [WindowAxis; 3],
}

impl Window3 {
    fn unit() -> WindowAxis {
        WindowAxis::new(1, 1, 1, 1, Padding::Valid).expect("unit axis is valid")
    }

    /// Geometry for a window over the spatial axes of `in_shape` (`[s..., c]`).
    pub fn new(
        in_shape: &[usize],
        window: &[usize],
        strides: &[usize],
        dilation: &[usize],
        padding: Padding,
    ) -> Result<Self, WindowError> {
        let d = window.len();
        let mut axes = [Self::unit(), Self::unit(), Self::unit()];
        for i in 0..d {
            axes[3 - d + i] =
                WindowAxis::new(in_shape[i], window[i], strides[i], dilation[i], padding)?;
        }
        Ok(Window3 { axes })
    }

    /// Number of output positions.
    pub fn out_positions(&self) -> usize {
        self.axes.iter().map(|a| a.output).product()
    }

    /// Number of taps in a window.
    pub fn taps(&self) -> usize {
        self.axes.iter().map(|a| a.window).product()
    }

    /// Calls `f(out_position, tap, Some(input_position))` for every tap of every output position
    /// (`None` where the tap falls in padding). Positions are flat over the spatial axes.
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, Option<usize>)) {
        let [a, b, c] = &self.axes;
        let mut o = 0;
        for o0 in 0..a.output {
            for o1 in 0..b.output {
                for o2 in 0..c.output {
                    let mut t = 0;
                    for k0 in 0..a.window {
                        for k1 in 0..b.window {
                            for k2 in 0..c.window {
                                let src =
                                    match (a.source(o0, k0), b.source(o1, k1), c.source(o2, k2)) {
                                        (Some(i0), Some(i1), Some(i2)) => {
                                            Some((i0 * b.input + i1) * c.input + i2)
                                        }
                                        _ => None,
                                    };
                                f(o, t, src);
                                t += 1;
                            }
                        }
                    }
                    o += 1;
                }
            }
        }
    }
}

pub use snnc_ir::geometry::{for_each_index, strides_of};
