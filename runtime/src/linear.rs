//! The JIT's dense and convolution kernels over a whole minibatch: a row kernel (im2col first for
//! a convolution) and, for a sparse sample, the event-driven convolution ([`Scatter`]).
//!
//! Every path accumulates each output element over the shared dimension in the reference order
//! (SPEC.md §4.1) with the same fused multiply-adds, skipping only zero terms, so its results are
//! bit for bit those of the interpreter's plain loops in [`crate::kernels`], the independent
//! reference, and the two backends emit the same spikes. The order does not depend on the number
//! of rows or on the path a sample takes, so a sample's result does not depend on the batch it
//! runs in (tested below).

use crate::window::Window3;
use snnc_ir::{ConvAttrs, Op};

/// The im2col scratch is split into chunks of whole samples of at most this many floats.
const SCRATCH_LIMIT: usize = 1 << 22;

/// A convolution with more (output position, tap) pairs than this (32 MiB of table) has no
/// event-driven path: it always runs as GEMM.
const SCATTER_LIMIT: usize = 1 << 22;

/// A dense map or convolution with every dimension fixed.
#[derive(Clone, Debug)]
pub enum LinearPlan {
    /// `y[r, :] = x[r, :] · w` for every row `r` of the last axis, `w` of shape `[n_in, n_out]`.
    Dense {
        /// Rows per sample (the product of the input's leading axes).
        rows: usize,
        /// Input width.
        n_in: usize,
        /// Output width.
        n_out: usize,
    },
    /// Convolution of `[s..., cin]` by `[k..., cin/groups, cout]`.
    Conv {
        /// Window geometry.
        geo: Window3,
        /// The im2col matrix as runs of consecutive taps (over all output positions in order)
        /// that read consecutive input positions: `(taps in the run, first input position or
        /// u32::MAX for padding)`. With one group a run is one contiguous copy.
        runs: Vec<(u32, u32)>,
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Channel groups.
        groups: usize,
        /// A 1×…×1 kernel with stride 1 and no padding in one group: the input already is the
        /// im2col matrix.
        direct: bool,
        /// For one group: which output positions and taps each input position feeds, to add
        /// the weights of each non-zero input to its outputs (see [`Scatter`]).
        scatter: Option<Box<Scatter>>,
    },
}

/// The convolution read backwards: `entries[starts[p]..starts[p + 1]]` are the `(output
/// position, tap)` pairs whose window reads input position `p`, in order of output position.
///
/// A sample whose input is at most a quarter non-zero (a spike train, typically a few percent)
/// is computed by adding, for each non-zero input element in order, its value times the weight
/// row of each tap it feeds to that output position: work in proportion to the non-zeros instead
/// of the whole GEMM. The choice is made per sample from that sample's input alone, so a sample's
/// result still does not depend on its batch.
#[derive(Clone, Debug)]
pub struct Scatter {
    starts: Vec<u32>,
    entries: Vec<(u32, u32)>,
}

impl Scatter {
    fn new(geo: &Window3, in_positions: usize) -> Option<Self> {
        let n = geo.out_positions().checked_mul(geo.taps())?;
        if n > SCATTER_LIMIT {
            return None;
        }
        let mut triples: Vec<(u32, u32, u32)> = Vec::with_capacity(n);
        geo.for_each(|o, t, src| {
            if let Some(p) = src {
                triples.push((p as u32, o as u32, t as u32));
            }
        });
        triples.sort_unstable();
        let mut starts = vec![0u32; in_positions + 1];
        for &(p, _, _) in &triples {
            starts[p as usize + 1] += 1;
        }
        for p in 0..in_positions {
            starts[p + 1] += starts[p];
        }
        let entries = triples.into_iter().map(|(_, o, t)| (o, t)).collect();
        Some(Scatter { starts, entries })
    }
}

impl LinearPlan {
    /// The plan for `op` with input shape `x` and weight shape `w` (one sample), if it is linear.
    pub fn new(op: &Op, x: &[usize], w: &[usize]) -> Option<Self> {
        match op {
            Op::Dense => Some(LinearPlan::Dense {
                rows: x[..x.len() - 1].iter().product(),
                n_in: w[0],
                n_out: w[1],
            }),
            Op::Conv(c) => Self::conv(c, x, w),
            _ => None,
        }
    }

    fn conv(c: &ConvAttrs, x: &[usize], w: &[usize]) -> Option<Self> {
        let d = x.len() - 1;
        let geo = Window3::new(x, &w[..d], &c.strides, &c.dilation, c.padding).ok()?;
        // A 1×…×1 window at stride 1 never pads, whatever the padding mode.
        let direct = geo.taps() == 1 && c.groups == 1 && c.strides.iter().all(|&s| s == 1);
        let mut runs: Vec<(u32, u32)> = Vec::new();
        if !direct {
            geo.out_positions().checked_mul(geo.taps())?;
            u32::try_from(x.iter().product::<usize>()).ok()?;
            let one_group = c.groups == 1;
            geo.for_each(|_, _, src| {
                let src = src.map_or(u32::MAX, |i| i as u32);
                if let Some((n, first)) = runs.last_mut() {
                    let extends = if *first == u32::MAX {
                        src == u32::MAX
                    } else {
                        one_group && src == *first + *n
                    };
                    if extends {
                        *n += 1;
                        return;
                    }
                }
                runs.push((1, src));
            });
        }
        let in_positions = x[..d].iter().product();
        let scatter = if c.groups == 1 {
            Scatter::new(&geo, in_positions).map(Box::new)
        } else {
            None
        };
        Some(LinearPlan::Conv {
            geo,
            runs,
            cin: x[d],
            cout: w[d + 1],
            groups: c.groups,
            direct,
            scatter,
        })
    }

    /// Samples per im2col chunk and floats of scratch this plan needs for `batch` samples.
    fn chunking(&self, batch: usize) -> (usize, usize) {
        match self {
            LinearPlan::Conv {
                geo,
                cin,
                groups,
                direct: false,
                ..
            } => {
                let per_sample = geo.out_positions() * geo.taps() * (cin / groups);
                let chunk = (SCRATCH_LIMIT / per_sample.max(1)).clamp(1, batch.max(1));
                (chunk, chunk * per_sample)
            }
            _ => (batch, 0),
        }
    }

    /// Scratch floats [`LinearPlan::run`] needs for `batch` samples.
    pub fn scratch_len(&self, batch: usize) -> usize {
        self.chunking(batch).1
    }

    /// Multiply-adds per sample.
    pub fn macs(&self) -> usize {
        match self {
            LinearPlan::Dense { rows, n_in, n_out } => rows * n_in * n_out,
            LinearPlan::Conv {
                geo,
                cin,
                cout,
                groups,
                ..
            } => geo.out_positions() * geo.taps() * (cin / groups) * cout,
        }
    }

    /// Run on `batch` samples stored back to back in `x` and `y`; `w` is shared by all of them.
    /// `scratch` must hold at least [`LinearPlan::scratch_len`] floats.
    pub fn run(&self, batch: usize, x: &[f32], w: &[f32], y: &mut [f32], scratch: &mut [f32]) {
        match *self {
            LinearPlan::Dense { rows, n_in, n_out } => {
                let rows = batch * rows;
                let w = &w[..n_in * n_out];
                let (x, y) = (&x[..rows * n_in], &mut y[..rows * n_out]);
                dense(x, w, y, n_in, n_out)
            }
            LinearPlan::Conv {
                ref geo,
                ref runs,
                cin,
                cout,
                groups,
                direct,
                ref scatter,
            } => {
                let positions = geo.out_positions();
                let k = geo.taps() * (cin / groups);
                let in_len = geo.axes.iter().map(|a| a.input).product::<usize>() * cin;
                let out_len = positions * cout;
                assert!(x.len() >= batch * in_len && y.len() >= batch * out_len);
                assert!(w.len() >= k * cout);
                let Some(sc) = scatter else {
                    self.gemm_conv(batch, x, w, y, scratch, (runs, direct));
                    return;
                };
                // Sparse samples one by one from their non-zero inputs; runs of consecutive
                // dense samples in one GEMM.
                let w = &w[..k * cout];
                // One index buffer per thread, kept from call to call; a sparse sample's
                // non-zeros are `nz[..n]`.
                let mut nz_buf = NONZERO_INDICES.take();
                if nz_buf.len() < in_len {
                    nz_buf.resize(in_len, 0);
                }
                let nz = &mut nz_buf[..in_len];
                let sparse = |s: usize, nz: &mut [u32]| {
                    let n = nonzeros(&x[s * in_len..][..in_len], nz);
                    (n * 4 <= in_len).then_some(n)
                };
                let scatter_one = |s: usize, nz: &[u32], y: &mut [f32]| {
                    let ys = &mut y[s * out_len..][..out_len];
                    let xs = &x[s * in_len..][..in_len];
                    scatter_sample(sc, (xs, nz), w, ys, (cin, cout))
                };
                let mut s = 0;
                while s < batch {
                    if let Some(n) = sparse(s, nz) {
                        scatter_one(s, &nz[..n], y);
                        s += 1;
                        continue;
                    }
                    let mut e = s + 1;
                    let mut sparse_next = None;
                    while e < batch {
                        sparse_next = sparse(e, nz);
                        if sparse_next.is_some() {
                            break;
                        }
                        e += 1;
                    }
                    let (xs, ys) = (&x[s * in_len..e * in_len], &mut y[s * out_len..e * out_len]);
                    self.gemm_conv(e - s, xs, w, ys, scratch, (runs, direct));
                    if let Some(n) = sparse_next {
                        scatter_one(e, &nz[..n], y);
                        e += 1;
                    }
                    s = e;
                }
                NONZERO_INDICES.set(nz_buf);
            }
        }
    }

    /// The GEMM path of a convolution over `batch` samples.
    fn gemm_conv(
        &self,
        batch: usize,
        x: &[f32],
        w: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
        (runs, direct): (&[(u32, u32)], bool),
    ) {
        let LinearPlan::Conv {
            ref geo,
            cin,
            cout,
            groups,
            ..
        } = *self
        else {
            unreachable!("a convolution plan")
        };
        let positions = geo.out_positions();
        let (cin_g, cout_g) = (cin / groups, cout / groups);
        let k = geo.taps() * cin_g;
        let in_len = geo.axes.iter().map(|a| a.input).product::<usize>() * cin;
        if direct {
            // The input already is the im2col matrix: one row per position, `k == cin`.
            let rows = batch * positions;
            rows_dispatch((x, cin), (w, cout), (y, cout), (rows, k, cout));
            return;
        }
        let (chunk, need) = self.chunking(batch);
        let cols = &mut scratch[..need];
        for first in (0..batch).step_by(chunk) {
            let n = chunk.min(batch - first);
            for g in 0..groups {
                for s in 0..n {
                    let xs = &x[(first + s) * in_len..][..in_len];
                    let dst = &mut cols[s * positions * k..][..positions * k];
                    im2col(runs, xs, cin, g * cin_g, cin_g, dst);
                }
                let ys = &mut y[first * positions * cout + g * cout_g..];
                let rows = n * positions;
                // Group g's weights: k rows of stride cout from column g·cout_g; its outputs the
                // same columns of every output row.
                rows_dispatch(
                    (cols, k),
                    (&w[g * cout_g..], cout),
                    (ys, cout),
                    (rows, k, cout_g),
                );
            }
        }
    }
}

/// [`scatter_conv`] on this CPU: one fused multiply-add per term when [`fma_available`].
fn scatter_sample(sc: &Scatter, x: (&[f32], &[u32]), w: &[f32], y: &mut [f32], ch: (usize, usize)) {
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { scatter_fma(sc, x, w, y, ch) };
    }
    scatter_conv(sc, x, w, y, ch, |a, b, c| c + a * b)
}

/// [`scatter_conv`] with fused multiply-adds.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scatter_fma(
    sc: &Scatter,
    x: (&[f32], &[u32]),
    w: &[f32],
    y: &mut [f32],
    ch: (usize, usize),
) {
    scatter_conv(sc, x, w, y, ch, |a, b, c| a.mul_add(b, c))
}

thread_local! {
    /// [`LinearPlan::run`]'s buffer for the indices of a sample's non-zero inputs.
    static NONZERO_INDICES: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The dense rows' buffer for the indices of a row's non-zero inputs (apart from
    /// `NONZERO_INDICES`, which a convolution holds while its GEMM path runs rows).
    static ROW_NONZEROS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Elements a zero test takes together: a group with no non-zero element (most of a spike
/// train) costs one vector test.
const ZERO_GROUP: usize = 8;

/// Whether `v` is not `±0` (NaN counts as non-zero, as `v != 0.0` does), in integer bits so that
/// a group's test is one vectorised OR.
#[inline(always)]
fn nonzero_bits(v: f32) -> u32 {
    v.to_bits() << 1
}

/// `f(i, x[i])` for each non-zero element of `x` (`±0` left out; NaN counts, as `v != 0.0`
/// says), in order. Spike trains are mostly zeros, so runs of zeros are passed over with one test
/// each: 32 elements at a time with AVX2 (and the non-zero lanes of a run that is not all zero
/// taken from a mask), 8 at a time without it.
#[inline(always)]
pub fn for_each_nonzero(x: &[f32], mut f: impl FnMut(usize, f32)) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { for_each_nonzero_avx2(x, &mut f) };
    }
    for_each_nonzero_portable(x, 0, &mut f)
}

/// [`for_each_nonzero`] on `x`, whose first element is element `base` of the whole.
#[inline(always)]
fn for_each_nonzero_portable(x: &[f32], base: usize, f: &mut impl FnMut(usize, f32)) {
    let groups = x.chunks_exact(ZERO_GROUP);
    let tail = groups.remainder();
    for (g, group) in groups.enumerate() {
        // A fixed-size group: the test is a few vector instructions, not a loop.
        let group: &[f32; ZERO_GROUP] = group.try_into().expect("exact chunks");
        if group.iter().fold(0, |a, &v| a | nonzero_bits(v)) == 0 {
            continue;
        }
        for (l, &v) in group.iter().enumerate() {
            if v != 0.0 {
                f(base + g * ZERO_GROUP + l, v);
            }
        }
    }
    let rest = base + x.len() - tail.len();
    for (l, &v) in tail.iter().enumerate() {
        if v != 0.0 {
            f(rest + l, v);
        }
    }
}

/// [`for_each_nonzero`] with AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn for_each_nonzero_avx2(x: &[f32], f: &mut impl FnMut(usize, f32)) {
    use std::arch::x86_64::*;
    const RUN: usize = 32;
    let runs = x.chunks_exact(RUN);
    let tail = runs.remainder();
    let zero = _mm256_setzero_ps();
    // Everything but the sign bit: `-0.0` is zero.
    let magnitude = _mm256_set1_epi32(0x7fff_ffff);
    for (r, run) in runs.enumerate() {
        // SAFETY: `run` holds 32 elements; unaligned loads.
        let v = unsafe { [0, 8, 16, 24].map(|o| _mm256_loadu_ps(run.as_ptr().add(o))) };
        let any = _mm256_or_ps(_mm256_or_ps(v[0], v[1]), _mm256_or_ps(v[2], v[3]));
        if _mm256_testz_si256(_mm256_castps_si256(any), magnitude) == 1 {
            continue;
        }
        for (k, &lanes) in v.iter().enumerate() {
            // Not equal to zero, or unordered (NaN): the lanes where `v != 0.0`.
            let mut mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(lanes, zero)) as u32;
            while mask != 0 {
                let l = 8 * k + mask.trailing_zeros() as usize;
                f(r * RUN + l, run[l]);
                mask &= mask - 1;
            }
        }
    }
    for_each_nonzero_portable(tail, x.len() - tail.len(), f)
}

/// The indices of the non-zero elements of `x` (as [`for_each_nonzero`] finds them), in order,
/// into the first `n` slots of `nz` (which holds at least `x.len()`); returns `n`.
///
/// With AVX2, each group of 8 elements writes all 8 lane indices its mask selects at once (a
/// table of the 256 masks' left-packed lanes) and moves the write position on by the mask's
/// population count, with no branch on what the group holds: a branch per non-zero group
/// mispredicts whenever groups with and without spikes alternate, which is how a spike train a
/// few percent active looks. Runs of 32 elements that are all zero are passed over with one
/// test (a branch, but one that is mostly taken where it matters: a very sparse train).
pub fn nonzeros(x: &[f32], nz: &mut [u32]) -> usize {
    assert!(nz.len() >= x.len(), "room for every index");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above); `nz` is at least as long as `x`.
        return unsafe { nonzeros_avx2(x, nz) };
    }
    let mut n = 0;
    for_each_nonzero(x, |i, _| {
        nz[n] = i as u32;
        n += 1;
    });
    n
}

/// Per 8-bit mask, the indices of its set bits, packed to the left.
static LEFT_PACKED: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut b, mut k) = (0, 0);
        while b < 8 {
            if m & (1 << b) != 0 {
                t[m][k] = b as u32;
                k += 1;
            }
            b += 1;
        }
        m += 1;
    }
    t
};

/// [`nonzeros`] with AVX2.
///
/// # Safety
/// The CPU must support AVX2, and `nz` must be at least as long as `x`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nonzeros_avx2(x: &[f32], nz: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let groups = x.len() / 8;
    let zero = _mm256_setzero_ps();
    // Everything but the sign bit: `-0.0` is zero.
    let magnitude = _mm256_set1_epi32(0x7fff_ffff);
    let mut n = 0;
    // One group of 8 at element `8g`: every index its mask selects, stored at once.
    let mut pack = |g: usize, v: __m256, n: &mut usize| {
        // Not equal to zero, or unordered (NaN): the lanes where `v != 0.0`.
        let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero)) as usize;
        // SAFETY: the table row holds 8 u32; the store writes `nz[n..n + 8]`, in bounds
        // because at most 8 indices were written per earlier group (`n ≤ 8g`) and
        // `8g + 8 ≤ x.len() ≤ nz.len()`. Lanes past the mask's count are overwritten by the
        // next group or left beyond the returned count.
        unsafe {
            let lanes = _mm256_loadu_si256(LEFT_PACKED[mask & 0xff].as_ptr() as *const __m256i);
            let at = _mm256_add_epi32(lanes, _mm256_set1_epi32((8 * g) as i32));
            _mm256_storeu_si256(nz.as_mut_ptr().add(*n) as *mut __m256i, at);
        }
        *n += mask.count_ones() as usize;
    };
    // Runs of four groups: one test passes over a run with nothing in it (most of a sparse
    // train, a well-predicted branch there); the others are packed group by group.
    let runs = groups / 4;
    for r in 0..runs {
        // SAFETY: run `r`'s 32 elements lie within `x`; unaligned loads.
        let v = unsafe { [0, 8, 16, 24].map(|o| _mm256_loadu_ps(x.as_ptr().add(32 * r + o))) };
        let any = _mm256_or_ps(_mm256_or_ps(v[0], v[1]), _mm256_or_ps(v[2], v[3]));
        if _mm256_testz_si256(_mm256_castps_si256(any), magnitude) == 1 {
            continue;
        }
        for (k, &lanes) in v.iter().enumerate() {
            pack(4 * r + k, lanes, &mut n);
        }
    }
    for g in 4 * runs..groups {
        // SAFETY: group `g` lies within `x`; unaligned load.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * g)) };
        pack(g, v, &mut n);
    }
    for (l, &v) in x[8 * groups..].iter().enumerate() {
        if v != 0.0 {
            nz[n] = (8 * groups + l) as u32;
            n += 1;
        }
    }
    n
}

/// One sample's convolution from its non-zero inputs (see [`Scatter`]): `y` starts at zero and
/// each non-zero `x[p, ci]` (their indices in `nz`, in order) adds `x[p, ci] · w[tap, ci, :]` to
/// `y[o, :]` for every `(o, tap)` that reads position `p`, in order of `p`, then `ci`, then `o`.
///
/// The non-zero inputs of one position are taken together: for each `(o, tap)`, blocks of
/// [`SCATTER_BLOCK`] outputs are loaded once, take every active channel's terms in channel order,
/// and are stored once. Each output still receives its terms in the order above (for one output
/// and position the tap is unique), so the sums are the same bit for bit, with a fraction of the
/// loads and stores of `y`.
#[inline(always)]
fn scatter_conv(
    sc: &Scatter,
    (x, nz): (&[f32], &[u32]),
    w: &[f32],
    y: &mut [f32],
    (cin, cout): (usize, usize),
    madd: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    y.fill(0.0);
    if cin == 0 || cout == 0 {
        return;
    }
    // The active channels of one position and their values.
    let mut act: Vec<(usize, f32)> = Vec::with_capacity(cin.min(nz.len()));
    let mut k = 0;
    while k < nz.len() {
        let p = nz[k] as usize / cin;
        let (first, end) = (p * cin, (p + 1) * cin);
        act.clear();
        while k < nz.len() && (nz[k] as usize) < end {
            let i = nz[k] as usize;
            act.push((i - first, x[i]));
            k += 1;
        }
        for &(o, t) in &sc.entries[sc.starts[p] as usize..sc.starts[p + 1] as usize] {
            let yr = &mut y[o as usize * cout..][..cout];
            let wt = &w[t as usize * cin * cout..][..cin * cout];
            let mut blocks = yr.chunks_exact_mut(SCATTER_BLOCK);
            let mut j0 = 0;
            for yb in &mut blocks {
                let mut acc: [f32; SCATTER_BLOCK] = yb.try_into().expect("a full block");
                for &(ci, v) in &act {
                    let wb: &[f32; SCATTER_BLOCK] = wt[ci * cout + j0..][..SCATTER_BLOCK]
                        .try_into()
                        .expect("a full block");
                    for j in 0..SCATTER_BLOCK {
                        acc[j] = madd(v, wb[j], acc[j]);
                    }
                }
                yb.copy_from_slice(&acc);
                j0 += SCATTER_BLOCK;
            }
            let tail = blocks.into_remainder();
            for &(ci, v) in &act {
                let wr = &wt[ci * cout + j0..][..tail.len()];
                for (a, &b) in tail.iter_mut().zip(wr) {
                    *a = madd(v, b, *a);
                }
            }
        }
    }
}

/// Outputs per register block of [`scatter_conv`] (four AVX registers).
const SCATTER_BLOCK: usize = 32;

/// Rows of the im2col matrix for one sample and channel group: row `o` holds the window of output
/// position `o`, tap-major then channel, zero where a tap falls in padding.
fn im2col(runs: &[(u32, u32)], x: &[f32], cin: usize, c0: usize, cin_g: usize, cols: &mut [f32]) {
    let mut at = 0;
    for &(n, src) in runs {
        let len = n as usize * cin_g;
        let dst = &mut cols[at..at + len];
        if src == u32::MAX {
            dst.fill(0.0);
        } else if cin_g == cin {
            dst.copy_from_slice(&x[src as usize * cin..][..len]);
        } else {
            // Several groups: runs are single taps, each `cin_g` channels from `c0`.
            dst.copy_from_slice(&x[src as usize * cin + c0..][..cin_g]);
        }
        at += len;
    }
}

/// Whether the kernels use fused multiply-adds: [`snnc_ir::semantics::fused_multiply_add`], so
/// every row of every batch takes the path the reference loops take and rounds the same way.
#[cfg(target_arch = "x86_64")]
fn fma_available() -> bool {
    snnc_ir::semantics::fused_multiply_add()
}

/// `y = x · w` for row-major `x` (`rows × n_in`, row stride `ldx`), `w` (`n_in × n_out`, row stride
/// `ldw`) and `y` (`rows × n_out`, row stride `ldy`; other columns untouched), on this CPU: one
/// fused multiply-add per term when [`fma_available`].
fn rows_dispatch(
    x: (&[f32], usize),
    w: (&[f32], usize),
    y: (&mut [f32], usize),
    dims: (usize, usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has AVX2 and FMA (checked at run time).
        return unsafe { rows_fma(x, w, y, dims) };
    }
    rows_kernel(x, w, y, dims, |a, b, c| c + a * b)
}

/// [`rows_kernel`] with fused multiply-adds.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_fma(
    x: (&[f32], usize),
    w: (&[f32], usize),
    y: (&mut [f32], usize),
    dims: (usize, usize, usize),
) {
    rows_kernel(x, w, y, dims, |a, b, c| a.mul_add(b, c))
}

/// Outputs of a dense row kept in registers at once (eight AVX2 registers).
const OUT_BLOCK: usize = 64;

/// A dense map of `n_in → n_out` on `rows` rows of `x`.
fn dense(x: &[f32], w: &[f32], y: &mut [f32], n_in: usize, n_out: usize) {
    let rows = x.len().checked_div(n_in).unwrap_or(y.len() / n_out.max(1));
    rows_dispatch((x, n_in), (w, n_out), (y, n_out), (rows, n_in, n_out))
}

/// `y = x · w` row by row, as a sum of the rows of `w` scaled by the elements of `x`, in order:
/// each output element sees its terms in the same order whatever the batch, and a term whose
/// input is zero (most of a spiking layer's output) adds nothing. Four dense rows (at least
/// three quarters non-zero) go together so each weight row is loaded once for all four when all
/// four inputs are non-zero; otherwise each non-zero one adds its row alone. Sparse rows go one
/// by one, passing over runs of zeros with vector tests (testing four rows' inputs one by one
/// cost more than a spiking layer's whole product).
///
/// A matrix-vector product streams the weights once per row either way; GEMM's packing of the
/// weight matrix on every call cost more than the product itself for one sample.
#[inline(always)]
fn rows_kernel(
    (x, ldx): (&[f32], usize),
    (w, ldw): (&[f32], usize),
    (y, ldy): (&mut [f32], usize),
    (rows, n_in, n_out): (usize, usize, usize),
    madd: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    for r in 0..rows {
        y[r * ldy..][..n_out].fill(0.0);
    }
    if n_out == 0 || n_in == 0 {
        return;
    }
    let one_row = |y: &mut [f32], xi: f32, wr: &[f32]| {
        for (p, &wj) in y.iter_mut().zip(wr) {
            *p = madd(xi, wj, *p);
        }
    };
    let dense_row = |r: usize| {
        let xr = &x[r * ldx..][..n_in];
        4 * xr.iter().filter(|&&v| v != 0.0).count() >= 3 * n_in
    };
    let mut r = 0;
    while r + 4 <= rows && (r..r + 4).all(dense_row) {
        let (y0, rest) = y[r * ldy..].split_at_mut(ldy);
        let (y1, rest) = rest.split_at_mut(ldy);
        let (y2, rest) = rest.split_at_mut(ldy);
        let (y0, y1, y2, y3) = (
            &mut y0[..n_out],
            &mut y1[..n_out],
            &mut y2[..n_out],
            &mut rest[..n_out],
        );
        for i in 0..n_in {
            let a = [0, 1, 2, 3].map(|l| x[(r + l) * ldx + i]);
            let wr = &w[i * ldw..][..n_out];
            if a.iter().all(|&v| v != 0.0) {
                for j in 0..n_out {
                    let wj = wr[j];
                    y0[j] = madd(a[0], wj, y0[j]);
                    y1[j] = madd(a[1], wj, y1[j]);
                    y2[j] = madd(a[2], wj, y2[j]);
                    y3[j] = madd(a[3], wj, y3[j]);
                }
            } else {
                for (yl, &al) in [&mut *y0, &mut *y1, &mut *y2, &mut *y3].into_iter().zip(&a) {
                    if al != 0.0 {
                        one_row(yl, al, wr);
                    }
                }
            }
        }
        r += 4;
    }
    // The rest, and every row from the first block of four that is not dense.
    for r in r..rows {
        let yr = &mut y[r * ldy..][..n_out];
        let xr = &x[r * ldx..][..n_in];
        // The non-zero inputs listed first (branch-free), so that the loop over them is
        // predictable and the weight rows' loads (from L2 or further: a spiking layer's active
        // rows change every step) overlap. Blocks of `OUT_BLOCK` outputs are summed in
        // registers and stored once (each output still takes its terms in input order, from the
        // same +0.0 as `y`); the rest of the outputs in memory.
        let mut nz_buf = ROW_NONZEROS.take();
        if nz_buf.len() < n_in {
            nz_buf.resize(n_in, 0);
        }
        let n = nonzeros(xr, &mut nz_buf[..n_in]);
        let nz = &nz_buf[..n];
        let mut j0 = 0;
        while j0 + OUT_BLOCK <= n_out {
            let mut acc = [0.0f32; OUT_BLOCK];
            for &i in nz {
                let i = i as usize;
                let wr: &[f32; OUT_BLOCK] =
                    w[i * ldw + j0..][..OUT_BLOCK].try_into().expect("a block");
                for (a, &wj) in acc.iter_mut().zip(wr) {
                    *a = madd(xr[i], wj, *a);
                }
            }
            yr[j0..j0 + OUT_BLOCK].copy_from_slice(&acc);
            j0 += OUT_BLOCK;
        }
        if j0 < n_out {
            let yr = &mut yr[j0..];
            for &i in nz {
                let i = i as usize;
                one_row(yr, xr[i], &w[i * ldw + j0..][..n_out - j0]);
            }
        }
        ROW_NONZEROS.set(nz_buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels;
    use proptest::prelude::*;
    use snnc_ir::Padding;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (h >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// GEMM convolution = the direct reference loops, and each sample's result is bit-identical
        /// whether it runs alone or in a batch. Samples cycle through dense inputs, inputs a
        /// seventh non-zero (the scatter path: with up to 3 channels per position, several are
        /// often active at one position) and half non-zero (GEMM again), from `phase`.
        #[test]
        fn conv_matches_reference_and_batching(
            d in 1usize..=3,
            size in 3usize..7,
            k in 1usize..4,
            stride in 1usize..3,
            dil in 1usize..3,
            same in any::<bool>(),
            groups in 1usize..3,
            cin_g in 1usize..4,
            // Wide layers too: the scatter path's blocks of 32 outputs and their tails.
            cout_g in prop_oneof![3 => 1usize..4, 1 => 30usize..70],
            batch in 1usize..4,
            phase in 0usize..3,
        ) {
            let (size, k) = if d == 3 { (size.min(4), k.min(2)) } else { (size, k) };
            let padding = if same { Padding::Same } else { Padding::Valid };
            prop_assume!(same || (k - 1) * dil < size);
            let (cin, cout) = (cin_g * groups, cout_g * groups);
            let mut xs = vec![size; d];
            xs.push(cin);
            let mut ws = vec![k; d];
            ws.extend([cin_g, cout]);
            let attrs = ConvAttrs {
                strides: vec![stride; d],
                dilation: vec![dil; d],
                padding,
                groups,
            };
            let plan = LinearPlan::new(&Op::Conv(attrs.clone()), &xs, &ws).unwrap();
            let in_len: usize = xs.iter().product();
            let x: Vec<f32> = data(in_len * batch, 1)
                .into_iter()
                .enumerate()
                .map(|(i, v)| match (i / in_len + phase) % 3 {
                    0 => v,
                    1 if i % 7 == 0 => v,
                    2 if i % 2 == 0 => v,
                    _ => 0.0,
                })
                .collect();
            let w = data(ws.iter().product(), 2);
            let LinearPlan::Conv { ref geo, .. } = plan else { unreachable!() };
            let out_len = geo.out_positions() * cout;
            let mut y = vec![0.0; out_len * batch];
            let mut scratch = vec![0.0; plan.scratch_len(batch)];
            plan.run(batch, &x, &w, &mut y, &mut scratch);
            for s in 0..batch {
                let mut want = vec![0.0; out_len];
                let fused = snnc_ir::semantics::fused_multiply_add();
                kernels::conv(&x[s * in_len..][..in_len], &xs, &w, &ws, &attrs, fused, &mut want);
                // Bit for bit: every path sums in the reference order.
                prop_assert_eq!(&y[s * out_len..][..out_len], &want[..]);
                let mut alone = vec![0.0; out_len];
                let mut scratch = vec![0.0; plan.scratch_len(1)];
                plan.run(1, &x[s * in_len..][..in_len], &w, &mut alone, &mut scratch);
                prop_assert_eq!(&y[s * out_len..][..out_len], &alone[..]);
            }
        }

        #[test]
        fn nonzeros_lists_what_a_filter_does(
            len in 0usize..100, every in 1usize..20, seed in 0u32..1000,
        ) {
            // Zeros of both signs; NaN and subnormals count as non-zero, as `v != 0.0` says.
            let odd = [f32::NAN, f32::MIN_POSITIVE / 2.0, -1.5, 1e-30];
            let x: Vec<f32> = data(len, seed)
                .into_iter()
                .enumerate()
                .map(|(i, v)| match i % every {
                    0 => odd.get((i / every) % 5).copied().unwrap_or(v),
                    1 => -0.0,
                    _ => 0.0,
                })
                .collect();
            let want: Vec<u32> = (0..len as u32).filter(|&i| x[i as usize] != 0.0).collect();
            let mut nz = vec![u32::MAX; len];
            let n = nonzeros(&x, &mut nz);
            prop_assert_eq!(&nz[..n], &want[..]);
        }

        #[test]
        fn dense_matches_reference_and_batching(
            n_in in 0usize..70, n_out in 1usize..150, batch in 1usize..70, sparse: bool,
        ) {
            let plan = LinearPlan::new(&Op::Dense, &[n_in], &[n_in, n_out]).unwrap();
            // Every fifth input zero: a row block of four with some zero inputs adds the others'
            // weight rows alone. Sparse: one input in eleven non-zero and the rest ±0, so whole
            // groups of zeros are passed over.
            let x: Vec<f32> = data(n_in * batch, 3)
                .into_iter()
                .enumerate()
                .map(|(i, v)| match (sparse, i % 11) {
                    (false, _) if i % 5 == 0 => 0.0,
                    (false, _) | (true, 0) => v,
                    (true, k) => if k % 2 == 0 { -0.0 } else { 0.0 },
                })
                .collect();
            let w = data(n_in * n_out, 4);
            let mut y = vec![f32::NAN; n_out * batch];
            plan.run(batch, &x, &w, &mut y, &mut []);
            let fused = snnc_ir::semantics::fused_multiply_add();
            for s in 0..batch {
                let want: Vec<f32> = (0..n_out)
                    .map(|j| {
                        (0..n_in).fold(0.0, |acc, i| {
                            let xi = x[s * n_in + i];
                            if xi == 0.0 {
                                acc
                            } else {
                                snnc_ir::semantics::multiply_add(fused, xi, w[i * n_out + j], acc)
                            }
                        })
                    })
                    .collect();
                prop_assert_eq!(&y[s * n_out..][..n_out], &want[..]);
                let mut alone = vec![0.0; n_out];
                plan.run(1, &x[s * n_in..][..n_in], &w, &mut alone, &mut []);
                prop_assert_eq!(&y[s * n_out..][..n_out], &alone[..]);
            }
        }
    }
}
