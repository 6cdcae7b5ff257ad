//! Cranelift building blocks: counted loops with constant bounds, f32x4-then-scalar maps, folds
//! over runtime bounds, and loads, stores and lane-wise selects at baked-in addresses.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::FunctionBuilder;

/// Emit `for i in (start..end).step_by(step) { body(i) }` with `i` a pointer-sized integer, as a
/// bottom-tested loop (one taken branch per iteration). The bounds are compile-time constants.
pub(super) fn emit_range(
    b: &mut FunctionBuilder,
    start: usize,
    end: usize,
    step: usize,
    mut body: impl FnMut(&mut FunctionBuilder, Value),
) {
    if start >= end {
        return;
    }
    let ptr = types::I64;
    let block = b.create_block();
    let exit = b.create_block();
    let i = b.append_block_param(block, ptr);
    let first = b.ins().iconst(ptr, start as i64);
    b.ins().jump(block, &[first.into()]);
    b.switch_to_block(block);
    body(b, i);
    let next = b.ins().iadd_imm_s(i, step as i64);
    // The last start that still begins an iteration.
    let last = start + (end - 1 - start) / step * step;
    let more = b
        .ins()
        .icmp_imm_u(IntCC::UnsignedLessThanOrEqual, next, last as i64);
    b.ins().brif(more, block, &[next.into()], exit, &[]);
    b.switch_to_block(exit);
}

/// Emit `for i in 0..count { body(i) }`.
pub(super) fn emit_loop(
    b: &mut FunctionBuilder,
    count: usize,
    body: impl FnMut(&mut FunctionBuilder, Value),
) {
    emit_range(b, 0, count, 1, body)
}

/// Emit an elementwise loop over `count` elements: f32x4 over the largest multiple of four, then
/// scalar f32 for the rest. `body(b, ty, i)` handles lanes of type `ty` starting at element `i`;
/// every operation it emits must be lane-wise, so both halves compute bit-identical results.
pub(super) fn emit_map(
    b: &mut FunctionBuilder,
    count: usize,
    mut body: impl FnMut(&mut FunctionBuilder, Type, Value),
) {
    let whole = count / 4 * 4;
    emit_range(b, 0, whole, 4, |b, i| body(b, types::F32X4, i));
    emit_range(b, whole, count, 1, |b, i| body(b, types::F32, i));
}

/// Plain loads and stores: nothing traps (addresses are checked when the code is generated) and
/// vector accesses may be unaligned.
pub(super) fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Address `base + 4·index`.
pub(super) fn addr(b: &mut FunctionBuilder, base: *const f32, index: Value) -> Value {
    let base = b.ins().iconst(types::I64, base as i64);
    let off = b.ins().ishl_imm_u(index, 2);
    b.ins().iadd(base, off)
}

/// Load lanes of type `ty` from element `index` of `base`.
pub(super) fn load(b: &mut FunctionBuilder, ty: Type, base: *const f32, index: Value) -> Value {
    let a = addr(b, base, index);
    b.ins().load(ty, flags(), a, 0)
}

pub(super) fn store(b: &mut FunctionBuilder, base: *const f32, index: Value, v: Value) {
    let a = addr(b, base, index);
    b.ins().store(flags(), v, a, 0);
}

/// `x` in every lane of `ty`.
pub(super) fn fconst(b: &mut FunctionBuilder, ty: Type, x: f32) -> Value {
    let c = b.ins().f32const(x);
    if ty.is_vector() {
        b.ins().splat(ty, c)
    } else {
        c
    }
}

/// Lane-wise `if cond(x, y) { a } else { c }`, branch-free for vectors.
pub(super) fn select(
    b: &mut FunctionBuilder,
    ty: Type,
    cc: FloatCC,
    (x, y): (Value, Value),
    a: Value,
    c: Value,
) -> Value {
    let mask = b.ins().fcmp(cc, x, y);
    if ty.is_vector() {
        let mask = b.ins().bitcast(ty, MemFlagsData::new(), mask);
        b.ins().bitselect(mask, a, c)
    } else {
        b.ins().select(mask, a, c)
    }
}

/// `max(x, 0)` as [`snnc_ir::semantics::max0`] computes it (`NaN` and `±0` give `+0`).
pub(super) fn relu(b: &mut FunctionBuilder, ty: Type, x: Value) -> Value {
    let zero = fconst(b, ty, 0.0);
    select(b, ty, FloatCC::GreaterThan, (x, zero), x, zero)
}

/// Lanes of type `ty` of `x[in0 + idx[pos + l·stride]]`, one lane per `l`. With `runs`, the
/// table is known to give consecutive indices for the lanes of every vector (checked when the code
/// is generated), so one index and one vector load do.
pub(super) fn load_gathered(
    b: &mut FunctionBuilder,
    ty: Type,
    x: *const f32,
    in0: Value,
    (idx, pos, stride, runs): (*const i32, Value, usize, bool),
) -> Value {
    if ty.is_vector() && runs {
        let c = load_index(b, idx, pos);
        let a = b.ins().iadd(in0, c);
        return load(b, ty, x, a);
    }
    let one = |b: &mut FunctionBuilder, l: usize| {
        let p = b.ins().iadd_imm_s(pos, (l * stride) as i64);
        let c = load_index(b, idx, p);
        let a = b.ins().iadd(in0, c);
        load(b, types::F32, x, a)
    };
    let first = one(b, 0);
    if !ty.is_vector() {
        return first;
    }
    let mut v = b.ins().scalar_to_vector(ty, first);
    for l in 1..ty.lane_count() as usize {
        let s = one(b, l);
        v = b.ins().insertlane(v, s, l as u8);
    }
    v
}

/// Load `idx[k]` (an `i32` known to be non-negative) as a pointer-sized integer.
pub(super) fn load_index(b: &mut FunctionBuilder, idx: *const i32, k: Value) -> Value {
    let a = addr(b, idx as *const f32, k);
    let v = b.ins().load(types::I32, flags(), a, 0);
    b.ins().uextend(types::I64, v)
}

/// Emit `acc = init; for e in lo..hi { acc = body(e, acc) }` over runtime bounds; returns `acc`.
pub(super) fn emit_fold(
    b: &mut FunctionBuilder,
    lo: Value,
    hi: Value,
    init: Value,
    body: impl FnOnce(&mut FunctionBuilder, Value, Value) -> Value,
) -> Value {
    let ty = b.func.dfg.value_type(init);
    let header = b.create_block();
    let block = b.create_block();
    let exit = b.create_block();
    let e = b.append_block_param(header, types::I64);
    let acc = b.append_block_param(header, ty);
    let done = b.append_block_param(exit, ty);
    b.ins().jump(header, &[lo.into(), init.into()]);
    b.switch_to_block(header);
    let c = b.ins().icmp(IntCC::UnsignedLessThan, e, hi);
    b.ins().brif(c, block, &[], exit, &[acc.into()]);
    b.switch_to_block(block);
    let next_acc = body(b, e, acc);
    let next = b.ins().iadd_imm_s(e, 1);
    b.ins().jump(header, &[next.into(), next_acc.into()]);
    b.switch_to_block(exit);
    done
}
