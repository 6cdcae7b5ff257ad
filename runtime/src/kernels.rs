//! The interpreter's per-sample reference loops on flat row-major slices: convolution and
//! pooling. Written for clarity, not speed: they are what the JIT's kernels are checked against.

use crate::window::Window3;
use snnc_ir::semantics::{Fold, multiply_add};
use snnc_ir::{ConvAttrs, PoolAttrs};

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
