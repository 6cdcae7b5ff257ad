//! Per-sample reference loops on flat row-major slices (convolution, pooling) and window
//! geometry. Written for clarity, not speed: the interpreter runs them, and it is the reference
//! every other backend is compared against.

use snnc_ir::geometry::WindowAxis;
use snnc_ir::semantics::{Fold, multiply_add};
use snnc_ir::{ConvAttrs, Padding, PoolAttrs};

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
    ) -> Result<Self, snnc_ir::geometry::WindowError> {
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

/// Convolution of one sample: `x` is `[s..., cin]`, `w` is `[k..., cin/groups, cout]`. Each
/// output element sums its terms tap by tap, then input channel by channel, a zero input
/// contributing nothing; `fused`: each term is a fused multiply-add
/// ([`snnc_ir::semantics::multiply_add`]).
pub fn conv(
    x: &[f32],
    in_shape: &[usize],
    w: &[f32],
    w_shape: &[usize],
    attrs: &ConvAttrs,
    fused: bool,
    out: &mut [f32],
) {
    let d = in_shape.len() - 1;
    let cin = in_shape[d];
    let cout = w_shape[d + 1];
    let cin_g = cin / attrs.groups;
    let cout_g = cout / attrs.groups;
    let geo = Window3::new(
        in_shape,
        &w_shape[..d],
        &attrs.strides,
        &attrs.dilation,
        attrs.padding,
    )
    .expect("verified shapes");
    out.fill(0.0);
    geo.for_each(|o, tap, src| {
        let Some(i) = src else { return };
        let xs = &x[i * cin..(i + 1) * cin];
        let ys = &mut out[o * cout..(o + 1) * cout];
        for g in 0..attrs.groups {
            for ci in 0..cin_g {
                let xv = xs[g * cin_g + ci];
                if xv == 0.0 {
                    continue;
                }
                let wrow = &w[(tap * cin_g + ci) * cout + g * cout_g..][..cout_g];
                for (y, &wv) in ys[g * cout_g..(g + 1) * cout_g].iter_mut().zip(wrow) {
                    *y = multiply_add(fused, xv, wv, *y);
                }
            }
        }
    });
}

/// Average or max pooling of one sample `[s..., c]` by `fold`, taps in window order. Padding
/// never counts: it is excluded from the average's divisor and never the maximum.
pub fn pool(x: &[f32], in_shape: &[usize], attrs: &PoolAttrs, fold: Fold, out: &mut [f32]) {
    let d = in_shape.len() - 1;
    let c = in_shape[d];
    let ones = vec![1; d];
    let geo = Window3::new(in_shape, &attrs.pool, &attrs.strides, &ones, attrs.padding)
        .expect("verified shapes");
    let n_out = geo.out_positions();
    let mut count = vec![0usize; n_out];
    out.fill(fold.init());
    geo.for_each(|o, _, src| {
        let Some(i) = src else { return };
        count[o] += 1;
        let ys = &mut out[o * c..(o + 1) * c];
        for (y, &xv) in ys.iter_mut().zip(&x[i * c..(i + 1) * c]) {
            *y = fold.step(*y, xv);
        }
    });
    for (o, &n) in count.iter().enumerate() {
        for y in &mut out[o * c..(o + 1) * c] {
            *y = fold.finish(*y, n);
        }
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
