//! The Cranelift backend: one native `step` function per module and batch size.
//!
//! The code works in the interpreter's arena (laid out by the memory plan: values, states and
//! outputs batch-major, constants once), so every address, shape and neuron or synapse parameter is
//! a constant in it; the plan and the verifier's index checks bound every access when the code is
//! generated, and nothing the inputs contain can move one. It emits the lane-wise instructions
//! (neurons, synapses, bias, scale, add, reshape) and the index maps of max-pool circuits (`gather`,
//! `sparse`) itself, fusing consecutive ones into one f32x4 loop, calls the shared GEMM kernels
//! ([`crate::linear`]) for dense and convolution and host functions for sigmoid, tanh and LIF rate,
//! and hands any other instruction to the interpreter. Every path keeps the interpreter's f32
//! operation order, so the two backends agree bit for bit, spikes included. Instructions that read
//! only inputs and constants are skipped while the inputs are unchanged (`held`).

use crate::interp::Interpreter;
use crate::{Engine, SimError};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, InstBuilder, MemFlagsData, Type, UserFuncName, Value, types,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module as _, default_libcall_names};
use snnc_ir::{ConstData, Module, NeuronModel, Op, Operand, Verified};

/// Runs instruction `inst` of the interpreter behind `interp` (the fallback for ops the JIT does
/// not emit yet).
extern "C" fn snnc_jit_fallback(interp: *mut Interpreter, inst: u64) {
    // SAFETY: `JitEngine::step` passes a pointer to its own interpreter and holds no other
    // reference to it while the step function runs.
    let it = unsafe { &mut *interp };
    it.run_inst(inst as usize);
}

/// Time spent per instruction (or fused chain, counted at its first instruction).
#[derive(Debug)]
pub struct Profile {
    last: std::time::Instant,
    /// Per instruction: total time over the profiled steps.
    pub per_inst: Vec<std::time::Duration>,
    /// Steps profiled.
    pub steps: u64,
}

/// Called by profiled code after each instruction or fused chain.
extern "C" fn snnc_jit_tick(prof: *mut Profile, inst: u64) {
    // SAFETY: `JitEngine::step` passes its own profile, untouched elsewhere during the call.
    let p = unsafe { &mut *prof };
    let now = std::time::Instant::now();
    p.per_inst[inst as usize] += now - p.last;
    p.last = now;
}

/// A module compiled for one batch size.
pub struct JitEngine {
    interp: Box<Interpreter>,
    // Keeps the code alive; never touched after compilation.
    _code: JITModule,
    // Read by the code; never touched after compilation.
    _tables: Tables,
    step_fn: unsafe extern "C" fn(*mut Interpreter, u64),
    /// Instructions emitted natively and instructions left to the fallback.
    pub emitted: (usize, usize),
    /// Instructions that share a loop with the one before them (fused elementwise chains).
    pub fused: usize,
    profile: Option<Box<Profile>>,
}

fn jit_err(e: impl std::fmt::Display) -> SimError {
    SimError::Jit(e.to_string())
}

/// Emit `for i in (start..end).step_by(step) { body(i) }` with `i` a pointer-sized integer, as a
/// bottom-tested loop (one taken branch per iteration). The bounds are compile-time constants.
fn emit_range(
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
fn emit_loop(b: &mut FunctionBuilder, count: usize, body: impl FnMut(&mut FunctionBuilder, Value)) {
    emit_range(b, 0, count, 1, body)
}

/// Emit an elementwise loop over `count` elements: f32x4 over the largest multiple of four, then
/// scalar f32 for the rest. `body(b, ty, i)` handles lanes of type `ty` starting at element `i`;
/// every operation it emits must be lane-wise, so both halves compute bit-identical results.
fn emit_map(
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
fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Address `base + 4·index`.
fn addr(b: &mut FunctionBuilder, base: *const f32, index: Value) -> Value {
    let base = b.ins().iconst(types::I64, base as i64);
    let off = b.ins().ishl_imm_u(index, 2);
    b.ins().iadd(base, off)
}

/// Load lanes of type `ty` from element `index` of `base`.
fn load(b: &mut FunctionBuilder, ty: Type, base: *const f32, index: Value) -> Value {
    let a = addr(b, base, index);
    b.ins().load(ty, flags(), a, 0)
}

fn store(b: &mut FunctionBuilder, base: *const f32, index: Value, v: Value) {
    let a = addr(b, base, index);
    b.ins().store(flags(), v, a, 0);
}

/// `x` in every lane of `ty`.
fn fconst(b: &mut FunctionBuilder, ty: Type, x: f32) -> Value {
    let c = b.ins().f32const(x);
    if ty.is_vector() {
        b.ins().splat(ty, c)
    } else {
        c
    }
}

/// Lane-wise `if cond(x, y) { a } else { c }`, branch-free for vectors.
fn select(
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

/// `max(x, 0)` as the interpreter computes it (`NaN` and `±0` give `0`).
fn relu(b: &mut FunctionBuilder, ty: Type, x: Value) -> Value {
    let zero = fconst(b, ty, 0.0);
    select(b, ty, FloatCC::GreaterThan, (x, zero), x, zero)
}

impl JitEngine {
    /// Compile `module` for minibatches of `batch` samples.
    pub fn new(module: &Verified, batch: usize) -> Result<Self, SimError> {
        Self::build(module, batch, false)
    }

    /// As [`JitEngine::new`], with a clock read after every instruction (see
    /// [`JitEngine::profile`]); the clock calls cost about 50 ns each.
    pub fn profiled(module: &Verified, batch: usize) -> Result<Self, SimError> {
        Self::build(module, batch, true)
    }

    /// Time per instruction so far, when built with [`JitEngine::profiled`].
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_deref()
    }

    fn build(module: &Verified, batch: usize, profiled: bool) -> Result<Self, SimError> {
        let mut profile = profiled.then(|| {
            Box::new(Profile {
                last: std::time::Instant::now(),
                per_inst: vec![Default::default(); module.insts.len()],
                steps: 0,
            })
        });
        let prof_ptr: *mut Profile = profile
            .as_deref_mut()
            .map_or(std::ptr::null_mut(), |p| p as *mut Profile);
        let interp = Box::new(Interpreter::new(module, batch)?);
        let mut fb = settings::builder();
        fb.set("use_colocated_libcalls", "false").map_err(jit_err)?;
        fb.set("is_pic", "false").map_err(jit_err)?;
        fb.set("opt_level", "speed").map_err(jit_err)?;
        let isa = cranelift_native::builder()
            .map_err(jit_err)?
            .finish(settings::Flags::new(fb))
            .map_err(jit_err)?;
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        jb.symbol("snnc_jit_fallback", snnc_jit_fallback as *const u8);
        jb.symbol("snnc_jit_tick", snnc_jit_tick as *const u8);
        jb.symbol("snnc_sigmoid", crate::interp::sigmoid as *const u8);
        jb.symbol("snnc_tanh", crate::interp::tanh as *const u8);
        jb.symbol("snnc_lif_rate", crate::interp::lif_rate as *const u8);
        let mut code = JITModule::new(jb);
        let mut ctx = code.make_context();
        let mut fctx = FunctionBuilderContext::new();
        ctx.func.signature.params.push(AbiParam::new(types::I64));
        ctx.func.signature.params.push(AbiParam::new(types::I64));
        let id = code
            .declare_function("snnc_step", Linkage::Export, &ctx.func.signature)
            .map_err(jit_err)?;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let mut fsig = code.make_signature();
        fsig.params.push(AbiParam::new(types::I64));
        fsig.params.push(AbiParam::new(types::I64));
        let fallback_id = code
            .declare_function("snnc_jit_fallback", Linkage::Import, &fsig)
            .map_err(jit_err)?;
        let fallback = code.declare_func_in_func(fallback_id, &mut ctx.func);
        let tick_id = code
            .declare_function("snnc_jit_tick", Linkage::Import, &fsig)
            .map_err(jit_err)?;
        let tick = code.declare_func_in_func(tick_id, &mut ctx.func);
        let mut host = |name: &str, params: usize| -> Result<_, SimError> {
            let mut sig = code.make_signature();
            sig.params
                .extend((0..params).map(|_| AbiParam::new(types::F32)));
            sig.returns.push(AbiParam::new(types::F32));
            let id = code
                .declare_function(name, Linkage::Import, &sig)
                .map_err(jit_err)?;
            Ok(code.declare_func_in_func(id, &mut ctx.func))
        };
        let hosts = Hosts {
            sigmoid: host("snnc_sigmoid", 3)?,
            tanh: host("snnc_tanh", 3)?,
            lif_rate: host("snnc_lif_rate", 5)?,
        };
        let m: Module = (**module).clone();
        let mut emitted = (0, 0);
        let mut fused = 0;
        let mut tables = Tables::default();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let this = b.block_params(entry)[0];
            let held = b.block_params(entry)[1];
            let groups = elementwise_groups(&m, &interp);
            let stored = stored_values(&m, &groups);
            let mut i = 0;
            while i < m.insts.len() {
                // Instructions on inputs and constants only are skipped while the inputs are
                // held (their results are still in their buffers).
                let after = interp.is_invariant(i).then(|| {
                    let run = b.create_block();
                    let after = b.create_block();
                    b.ins().brif(held, after, &[], run, &[]);
                    b.switch_to_block(run);
                    after
                });
                let next = if let Some((group, lanes)) = groups.iter().find(|(g, _)| g[0] == i) {
                    emit_elementwise_group(
                        &mut b,
                        (&m, &interp, &hosts),
                        &mut tables,
                        (group, *lanes),
                        &stored,
                    );
                    emitted.0 += group.len();
                    fused += group.len() - 1;
                    i + group.len()
                } else if emit_inst(&mut b, (&m, &interp, &hosts), &mut tables, i) {
                    emitted.0 += 1;
                    i + 1
                } else {
                    let idx = b.ins().iconst(types::I64, i as i64);
                    b.ins().call(fallback, &[this, idx]);
                    emitted.1 += 1;
                    i + 1
                };
                if profiled {
                    let p = b.ins().iconst(types::I64, prof_ptr as i64);
                    let idx = b.ins().iconst(types::I64, i as i64);
                    b.ins().call(tick, &[p, idx]);
                }
                if let Some(after) = after {
                    b.ins().jump(after, &[]);
                    b.switch_to_block(after);
                }
                i = next;
            }
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(code.target_config());
        }
        let disasm = std::env::var_os("SNNC_JIT_DISASM").is_some();
        ctx.set_disasm(disasm);
        code.define_function(id, &mut ctx).map_err(jit_err)?;
        if let Some(text) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            eprintln!("{text}");
        }
        code.clear_context(&mut ctx);
        code.finalize_definitions().map_err(jit_err)?;
        let ptr = code.get_finalized_function(id);
        // SAFETY: the function was declared with exactly this signature.
        let step_fn = unsafe {
            std::mem::transmute::<*const u8, unsafe extern "C" fn(*mut Interpreter, u64)>(ptr)
        };
        Ok(JitEngine {
            interp,
            _code: code,
            _tables: tables,
            step_fn,
            emitted,
            fused,
            profile,
        })
    }
}

/// How an instruction joins a fused loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lanes {
    /// Lane-wise; broadcasts a constant of this width along the last axis (`bias`/`scale`; 1 for
    /// the rest).
    Width(usize),
    /// Element `r` of a sample reads its operand at indices from a table (`gather`, and `sparse`
    /// maps whose rows all have the same terms and weights, such as max-pool circuits).
    Indexed,
}

/// A `sparse` map whose rows all have `d` terms with the same weights: per row, the columns.
struct FixedRows {
    d: usize,
    weights: Vec<f32>,
    cols: Vec<i32>,
}

/// The rows of a `sparse` instruction in that form, if they have it. Terms keep the
/// interpreter's order within each row.
fn fixed_rows(m: &Module, inst: &snnc_ir::Inst) -> Option<FixedRows> {
    let (Operand::Const(ic), Operand::Const(wc)) = (inst.args[1], inst.args[2]) else {
        return None;
    };
    let (ConstData::I32(pairs), ConstData::F32(w)) = (&m.constant(ic).data, &m.constant(wc).data)
    else {
        return None;
    };
    let n_out = m.value(inst.results[0]).ty.num_elements();
    if n_out == 0 || w.len() % n_out != 0 {
        return None;
    }
    let d = w.len() / n_out;
    if !(1..=8).contains(&d) {
        return None;
    }
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by_key(|&e| pairs[2 * e]);
    let rows_ok = order
        .chunks_exact(d)
        .enumerate()
        .all(|(r, terms)| terms.iter().all(|&e| pairs[2 * e] as usize == r));
    let weights: Vec<f32> = order[..d].iter().map(|&e| w[e]).collect();
    let shared = order.chunks_exact(d).all(|terms| {
        terms
            .iter()
            .zip(&weights)
            .all(|(&e, &wt)| w[e].to_bits() == wt.to_bits())
    });
    (rows_ok && shared).then(|| FixedRows {
        d,
        weights,
        cols: order.iter().map(|&e| pairs[2 * e + 1]).collect(),
    })
}

/// Lanes of type `ty` of `x[in0 + idx[pos + l·stride]]`, one lane per `l`. With `runs`, the
/// table is known to give consecutive indices for the lanes of every vector (checked when the code
/// is generated), so one index and one vector load do.
fn load_gathered(
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

/// Whether the JIT computes instruction `inst` inside a fused loop, and how.
fn elementwise_lanes(m: &Module, inst: &snnc_ir::Inst) -> Option<Lanes> {
    let is_const = |o: &Operand| matches!(o, Operand::Const(_));
    match &inst.op {
        Op::Gather { .. } if !is_const(&inst.args[0]) => return Some(Lanes::Indexed),
        Op::Sparse { .. } if !is_const(&inst.args[0]) => {
            return fixed_rows(m, inst).map(|_| Lanes::Indexed);
        }
        _ => {}
    }
    elementwise_width(m, inst).map(Lanes::Width)
}

/// Whether the JIT computes instruction `inst` lane by lane (so it can join a fused loop), and
/// the width of the constant it broadcasts along the last axis (`bias`/`scale`; 1 for the rest).
fn elementwise_width(m: &Module, inst: &snnc_ir::Inst) -> Option<usize> {
    let is_const = |o: &Operand| matches!(o, Operand::Const(_));
    if inst.groups() > 1 {
        return None;
    }
    let no_const = !inst.args.iter().any(is_const);
    match &inst.op {
        Op::Neuron(n)
            if no_const
                && matches!(
                    n.model,
                    NeuronModel::Relu
                        | NeuronModel::LeakyRelu { .. }
                        | NeuronModel::SpikingRelu
                        | NeuronModel::SpikingLeakyRelu { .. }
                        | NeuronModel::IfNeuron
                        | NeuronModel::Sigmoid
                        | NeuronModel::Tanh
                        | NeuronModel::LifRate { .. }
                ) =>
        {
            Some(1)
        }
        Op::Lowpass { .. } | Op::Alpha { .. } | Op::Add if no_const => Some(1),
        Op::Reshape { .. } if no_const => Some(1),
        Op::Bias | Op::Scale if !is_const(&inst.args[0]) && is_const(&inst.args[1]) => {
            let n = m
                .operand_type(inst.args[1])
                .expect("verified")
                .num_elements();
            Some(n.max(1))
        }
        _ => None,
    }
}

/// One neuron update on lanes of type `ty`, in the interpreter's f32 operation order: the output
/// and, for spiking models, the new voltage.
#[allow(clippy::too_many_arguments)]
fn neuron_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    (n, hosts): (&snnc_ir::Neuron, &Hosts),
    dt: f32,
    j: Value,
    v_in: Option<Value>,
) -> (Value, Option<Value>) {
    let (g, a) = (n.gain as f32, n.amplitude as f32);
    // Transcendental models call the interpreter's own function for each lane.
    let host = match n.model {
        NeuronModel::Sigmoid => Some((hosts.sigmoid, vec![])),
        NeuronModel::Tanh => Some((hosts.tanh, vec![])),
        NeuronModel::LifRate { tau_rc, tau_ref } => {
            Some((hosts.lif_rate, vec![tau_rc as f32, tau_ref as f32]))
        }
        _ => None,
    };
    if let Some((f, extra)) = host {
        let call = |b: &mut FunctionBuilder, x: Value| {
            let mut args = vec![x, b.ins().f32const(g), b.ins().f32const(a)];
            for &e in &extra {
                args.push(b.ins().f32const(e));
            }
            let c = b.ins().call(f, &args);
            b.inst_results(c)[0]
        };
        if !ty.is_vector() {
            return (call(b, j), None);
        }
        let mut out = None;
        for l in 0..ty.lane_count() as u8 {
            let x = b.ins().extractlane(j, l);
            let y = call(b, x);
            out = Some(match out {
                None => b.ins().scalar_to_vector(ty, y),
                Some(v) => b.ins().insertlane(v, y, l),
            });
        }
        return (out.expect("at least one lane"), None);
    }
    let gv = fconst(b, ty, g);
    let x = b.ins().fmul(gv, j);
    let zero = fconst(b, ty, 0.0);
    match n.model {
        NeuronModel::Relu | NeuronModel::LeakyRelu { .. } => {
            let r = match n.model {
                NeuronModel::LeakyRelu { negative_slope } => {
                    let s = fconst(b, ty, negative_slope as f32);
                    let sx = b.ins().fmul(s, x);
                    select(b, ty, FloatCC::LessThan, (x, zero), sx, x)
                }
                _ => relu(b, ty, x),
            };
            let av = fconst(b, ty, a);
            (b.ins().fmul(av, r), None)
        }
        _ => {
            let drive = match n.model {
                NeuronModel::SpikingRelu => relu(b, ty, x),
                NeuronModel::SpikingLeakyRelu { negative_slope } => {
                    let s = fconst(b, ty, negative_slope as f32);
                    let sx = b.ins().fmul(s, x);
                    select(b, ty, FloatCC::GreaterThan, (x, zero), x, sx)
                }
                _ => x,
            };
            let dtv = fconst(b, ty, dt);
            let step = b.ins().fmul(drive, dtv);
            let v = b
                .ins()
                .fadd(v_in.expect("spiking neurons read a voltage"), step);
            let spikes = match n.model {
                NeuronModel::SpikingRelu => b.ins().floor(v),
                NeuronModel::SpikingLeakyRelu { .. } => b.ins().trunc(v),
                _ => {
                    let f = b.ins().floor(v);
                    relu(b, ty, f)
                }
            };
            let h = fconst(b, ty, a / dt);
            let y = b.ins().fmul(h, spikes);
            (y, Some(b.ins().fsub(v, spikes)))
        }
    }
}

/// A lowpass synapse on lanes of type `ty`, in the interpreter's f32 operation order: the new
/// filtered value from input `x` and previous value `s`.
fn lowpass_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    dt: f64,
    tau: f64,
    x: Value,
    s: Value,
) -> Value {
    let decay = (-dt / tau).exp() as f32;
    let d = fconst(b, ty, decay);
    let a = b.ins().fmul(d, s);
    let one_minus = fconst(b, ty, 1.0 - decay);
    let c = b.ins().fmul(one_minus, x);
    b.ins().fadd(a, c)
}

/// An alpha synapse on lanes of type `ty`, in the interpreter's f32 operation order: the new
/// output `y'` and state `z'` from input `u` and the previous `y`, `z`.
fn alpha_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    c: &crate::synapse::AlphaCoefficients,
    (u, y, z): (Value, Value, Value),
) -> (Value, Value) {
    let affine = |b: &mut FunctionBuilder, (wz, wy, wu): (f32, f32, f32)| {
        let (wz, wy, wu) = (fconst(b, ty, wz), fconst(b, ty, wy), fconst(b, ty, wu));
        let tz = b.ins().fmul(wz, z);
        let ty_ = b.ins().fmul(wy, y);
        let s = b.ins().fadd(tz, ty_);
        let tu = b.ins().fmul(wu, u);
        b.ins().fadd(s, tu)
    };
    let y1 = affine(b, (c.yz, c.yy, c.yu));
    let z1 = affine(b, (c.zz, c.zy, c.zu));
    (y1, z1)
}

/// Emit a merged neuron or lowpass instruction (several groups): one loop over each run of
/// consecutive groups whose every operand and result starts where the previous group's ends in
/// the arena (the memory plan places merged groups so; then the whole instruction is one loop).
/// Results never overlap operands except a state updated in its own place, whose element `k` is
/// read before it is written, so one loop over a run computes what group-by-group would.
fn emit_merged(
    b: &mut FunctionBuilder,
    (m, it, hosts): (&Module, &Interpreter, &Hosts),
    inst: &snnc_ir::Inst,
) -> bool {
    let single = snnc_ir::Inst {
        op: inst.op.clone(),
        args: inst.group(0).0.to_vec(),
        results: inst.group(0).1.to_vec(),
    };
    let has_const = inst.args.iter().any(|a| matches!(a, Operand::Const(_)));
    if has_const || elementwise_width(m, &single).is_none() {
        return false;
    }
    let follows = |g: usize| {
        let ((a0, r0), (a1, r1)) = (inst.group(g - 1), inst.group(g));
        let ops = a0.iter().zip(a1).map(|(&p, &q)| (p, q));
        let res = r0
            .iter()
            .zip(r1)
            .map(|(&p, &q)| (Operand::Value(p), Operand::Value(q)));
        ops.chain(res).all(
            |(p, q)| matches!((it.span(p), it.span(q)), (Some(x), Some(y)) if x.end == y.start),
        )
    };
    let dt = m.dt as f32;
    let mut g = 0;
    while g < inst.groups() {
        let mut h = g + 1;
        while h < inst.groups() && follows(h) {
            h += 1;
        }
        let (args, results) = inst.group(g);
        let count: usize = (g..h)
            .map(|k| m.value(inst.group(k).1[0]).ty.num_elements())
            .sum::<usize>()
            * it.batch();
        let ptr = |o: Operand| it.operand_ptr(o);
        emit_map(b, count, |b, ty, k| {
            let x = load(b, ty, ptr(args[0]), k);
            let outs: Vec<Value> = match &inst.op {
                Op::Neuron(n) => {
                    let v0 = args.get(1).map(|&o| load(b, ty, ptr(o), k));
                    let (y, v1) = neuron_lanes(b, ty, (n, hosts), dt, x, v0);
                    std::iter::once(y).chain(v1).collect()
                }
                Op::Lowpass { tau } => {
                    let s = load(b, ty, ptr(args[1]), k);
                    vec![lowpass_lanes(b, ty, m.dt, *tau, x, s)]
                }
                Op::Alpha { tau } => {
                    let c = crate::synapse::AlphaCoefficients::new(m.dt, *tau);
                    let y = load(b, ty, ptr(args[1]), k);
                    let z = load(b, ty, ptr(args[2]), k);
                    let (y1, z1) = alpha_lanes(b, ty, &c, (x, y, z));
                    vec![y1, z1]
                }
                _ => unreachable!("checked above"),
            };
            for (&r, v) in results.iter().zip(outs) {
                store(b, ptr(Operand::Value(r)), k, v);
            }
        });
        g = h;
    }
    true
}

/// Emit consecutive lane-wise instructions `group` (same element count; `bias`/`scale` of one
/// width `w`) as one loop: each element goes through the whole chain in registers, and a result
/// is stored only when something outside the chain reads it.
fn emit_elementwise_group(
    b: &mut FunctionBuilder,
    (m, it, hosts): (&Module, &Interpreter, &Hosts),
    tables: &mut Tables,
    (group, lanes): (&[usize], Lanes),
    stored: &[bool],
) {
    let batch = it.batch();
    let first = &m.insts[group[0]];
    let per_sample = m.value(first.results[0]).ty.num_elements();
    let total = per_sample * batch;
    let dt = m.dt as f32;
    // Index tables of the sparse maps, built once and kept alive with the code.
    let mut rows: std::collections::HashMap<usize, (usize, Vec<f32>, *const i32)> =
        Default::default();
    // Indexed reads of the same operand at the same indices for every element (a max-pool
    // circuit's gather repeats one of its differences' terms) load once: read site (instruction,
    // term) → an id shared by equal sites.
    let mut site_ids: std::collections::HashMap<(Operand, Vec<i32>), usize> = Default::default();
    let mut sites: std::collections::HashMap<(usize, usize), usize> = Default::default();
    // Sites whose indices run in steps of one within every aligned group of four elements.
    let mut runs: std::collections::HashSet<(usize, usize)> = Default::default();
    for &i in group {
        let inst = &m.insts[i];
        let mut site = |t: usize, seq: Vec<i32>| {
            if seq
                .chunks_exact(4)
                .all(|q| q.iter().enumerate().all(|(l, &v)| v == q[0] + l as i32))
            {
                runs.insert((i, t));
            }
            let n = site_ids.len();
            let id = *site_ids.entry((inst.args[0], seq)).or_insert(n);
            sites.insert((i, t), id);
        };
        match inst.op {
            Op::Sparse { .. } => {
                let fr = fixed_rows(m, inst).expect("grouped sparse maps have fixed rows");
                for t in 0..fr.d {
                    site(t, fr.cols.iter().skip(t).step_by(fr.d).copied().collect());
                }
                rows.insert(i, (fr.d, fr.weights, fr.cols.as_ptr()));
                tables.index.push(fr.cols);
            }
            Op::Gather { .. } => {
                if let Operand::Const(c) = inst.args[1]
                    && let ConstData::I32(idx) = &m.constant(c).data
                {
                    site(0, idx.clone());
                }
            }
            _ => {}
        }
    }
    // `k`: element over the whole batch; `c`: index into a broadcast constant; `sr`: sample and
    // element within it (indexed groups only).
    let body =
        |b: &mut FunctionBuilder, ty: Type, k: Value, c: Value, sr: Option<(Value, Value)>| {
            let mut vals: std::collections::HashMap<snnc_ir::ValueId, Value> = Default::default();
            let mut loaded: std::collections::HashMap<usize, Value> = Default::default();
            for &i in group {
                let inst = &m.insts[i];
                let arg = |b: &mut FunctionBuilder, o: Operand| match o {
                    Operand::Value(v) if vals.contains_key(&v) => vals[&v],
                    _ => load(b, ty, it.operand_ptr(o), k),
                };
                let in0 = |b: &mut FunctionBuilder| {
                    let (s, _) = sr.expect("indexed instructions run in indexed groups");
                    let n_in = m
                        .operand_type(inst.args[0])
                        .expect("verified")
                        .num_elements();
                    b.ins().imul_imm_s(s, n_in as i64)
                };
                let results: Vec<Value> = match &inst.op {
                    Op::Gather { .. } => {
                        let base = in0(b);
                        let r = sr.expect("indexed").1;
                        let x = it.operand_ptr(inst.args[0]);
                        let idx = it.index_ptr(inst.args[1]);
                        let v = match sites.get(&(i, 0)).and_then(|id| loaded.get(id)) {
                            Some(&v) => v,
                            None => {
                                let runs = runs.contains(&(i, 0));
                                load_gathered(b, ty, x, base, (idx, r, 1, runs))
                            }
                        };
                        if let Some(&id) = sites.get(&(i, 0)) {
                            loaded.insert(id, v);
                        }
                        vec![v]
                    }
                    Op::Sparse { .. } => {
                        let base = in0(b);
                        let r = sr.expect("indexed").1;
                        let (d, weights, cols) = &rows[&i];
                        let x = it.operand_ptr(inst.args[0]);
                        let e0 = b.ins().imul_imm_s(r, *d as i64);
                        let mut acc = fconst(b, ty, 0.0);
                        for (t, &wt) in weights.iter().enumerate() {
                            let id = sites[&(i, t)];
                            let xv = match loaded.get(&id) {
                                Some(&v) => v,
                                None => {
                                    let pos = b.ins().iadd_imm_s(e0, t as i64);
                                    let runs = runs.contains(&(i, t));
                                    load_gathered(b, ty, x, base, (*cols, pos, *d, runs))
                                }
                            };
                            loaded.insert(id, xv);
                            let wv = fconst(b, ty, wt);
                            let prod = b.ins().fmul(wv, xv);
                            acc = b.ins().fadd(acc, prod);
                        }
                        vec![acc]
                    }
                    Op::Neuron(n) => {
                        let j = arg(b, inst.args[0]);
                        let v0 = inst.args.get(1).map(|&o| arg(b, o));
                        let (y, v1) = neuron_lanes(b, ty, (n, hosts), dt, j, v0);
                        std::iter::once(y).chain(v1).collect()
                    }
                    Op::Lowpass { tau } => {
                        let sv = arg(b, inst.args[1]);
                        let xv = arg(b, inst.args[0]);
                        vec![lowpass_lanes(b, ty, m.dt, *tau, xv, sv)]
                    }
                    Op::Alpha { tau } => {
                        let c = crate::synapse::AlphaCoefficients::new(m.dt, *tau);
                        let u = arg(b, inst.args[0]);
                        let y = arg(b, inst.args[1]);
                        let z = arg(b, inst.args[2]);
                        let (y1, z1) = alpha_lanes(b, ty, &c, (u, y, z));
                        vec![y1, z1]
                    }
                    Op::Add => {
                        let mut acc = arg(b, inst.args[0]);
                        for &o in &inst.args[1..] {
                            let v = arg(b, o);
                            acc = b.ins().fadd(acc, v);
                        }
                        vec![acc]
                    }
                    Op::Reshape { .. } => vec![arg(b, inst.args[0])],
                    Op::Bias | Op::Scale => {
                        let xv = arg(b, inst.args[0]);
                        let p = it.operand_ptr(inst.args[1]);
                        let pv = if m
                            .operand_type(inst.args[1])
                            .expect("verified")
                            .num_elements()
                            == 1
                        {
                            let zero = b.ins().iconst(types::I64, 0);
                            let s = load(b, types::F32, p, zero);
                            if ty.is_vector() {
                                b.ins().splat(ty, s)
                            } else {
                                s
                            }
                        } else {
                            load(b, ty, p, c)
                        };
                        vec![if inst.op == Op::Bias {
                            b.ins().fadd(xv, pv)
                        } else {
                            b.ins().fmul(xv, pv)
                        }]
                    }
                    _ => unreachable!("only lane-wise instructions are grouped"),
                };
                for (&r, v) in inst.results.iter().zip(results) {
                    if stored[r.index()] {
                        store(b, it.operand_ptr(Operand::Value(r)), k, v);
                    }
                    vals.insert(r, v);
                }
            }
        };
    match lanes {
        Lanes::Width(1) => emit_map(b, total, |b, ty, k| body(b, ty, k, k, None)),
        Lanes::Width(w) => emit_loop(b, total / w, |b, r| {
            let row0 = b.ins().imul_imm_s(r, w as i64);
            emit_map(b, w, |b, ty, c| {
                let k = b.ins().iadd(row0, c);
                body(b, ty, k, c, None)
            });
        }),
        Lanes::Indexed => emit_loop(b, batch, |b, s| {
            let k0 = b.ins().imul_imm_s(s, per_sample as i64);
            emit_map(b, per_sample, |b, ty, r| {
                let k = b.ins().iadd(k0, r);
                body(b, ty, k, k, Some((s, r)))
            });
        }),
    }
}

/// Runs of consecutive lane-wise instructions that one loop can compute: the same element count,
/// the same time invariance, and `bias`/`scale` constants of one width. Returned with that width.
fn elementwise_groups(m: &Module, it: &Interpreter) -> Vec<(Vec<usize>, Lanes)> {
    let mut groups: Vec<(Vec<usize>, Lanes)> = Vec::new();
    let count = |i: usize| m.value(m.insts[i].results[0]).ty.num_elements();
    // Computed once: which instructions read each value, and how each instruction would fuse.
    let mut readers = vec![Vec::new(); m.values.len()];
    for (j, inst) in m.insts.iter().enumerate() {
        for a in &inst.args {
            if let Operand::Value(v) = a {
                readers[v.index()].push(j);
            }
        }
    }
    for v in m.end_of_step_values() {
        readers[v.index()].push(usize::MAX);
    }
    let all_lanes: Vec<Option<Lanes>> = m.insts.iter().map(|i| elementwise_lanes(m, i)).collect();
    for (i, &lanes) in all_lanes.iter().enumerate() {
        let Some(lanes) = lanes else {
            continue;
        };
        if let Some((g, gl)) = groups.last_mut() {
            let last = *g.last().expect("groups are not empty");
            let mut candidate = g.clone();
            candidate.push(i);
            let safe = fusable(m, it, (&readers, &all_lanes), &candidate);
            let joined = match (*gl, lanes) {
                (Lanes::Width(a), Lanes::Width(b)) if a == 1 || b == 1 || a == b => {
                    Some(Lanes::Width(a.max(b)))
                }
                (Lanes::Indexed, Lanes::Width(1))
                | (Lanes::Width(1), Lanes::Indexed)
                | (Lanes::Indexed, Lanes::Indexed) => Some(Lanes::Indexed),
                _ => None,
            };
            if let Some(joined) = joined
                && last + 1 == i
                && count(last) == count(i)
                && it.is_invariant(last) == it.is_invariant(i)
                && safe
            {
                g.push(i);
                *gl = joined;
                continue;
            }
        }
        groups.push((vec![i], lanes));
    }
    groups
}

/// Whether one loop may compute `group`. The memory plan lets a result reuse the space of an
/// operand whose last reader has run, which assumes instructions run one after another. In one
/// loop, element `k` of every instruction runs before element `k + 1` of any, so a result the loop
/// stores must not overlap an operand the loop reads unless both occupy exactly the same span
/// (then element `k` is read before it is written); and an indexed read, which may look at any
/// element, must not overlap a stored result at all.
/// `readers[v]`: the instructions reading value `v` (`usize::MAX` for an output or `next`);
/// `lanes[i]`: how instruction `i` joins a fused loop.
fn fusable(
    m: &Module,
    it: &Interpreter,
    (readers, lanes): (&[Vec<usize>], &[Option<Lanes>]),
    group: &[usize],
) -> bool {
    let in_group = |v: snnc_ir::ValueId| group.iter().any(|&j| m.insts[j].results.contains(&v));
    let read_outside = |v: snnc_ir::ValueId| readers[v.index()].iter().any(|j| !group.contains(j));
    let stored: Vec<std::ops::Range<usize>> = group
        .iter()
        .flat_map(|&j| m.insts[j].results.iter().copied())
        .filter(|&r| read_outside(r))
        .filter_map(|r| it.span(Operand::Value(r)))
        .collect();
    group.iter().all(|&j| {
        let inst = &m.insts[j];
        let indexed = lanes[j] == Some(Lanes::Indexed);
        inst.args.iter().enumerate().all(|(k, &a)| {
            if matches!(a, Operand::Value(v) if in_group(v)) && !(indexed && k == 0) {
                return true;
            }
            if indexed && k == 0 && matches!(a, Operand::Value(v) if in_group(v)) {
                return false;
            }
            let Some(q) = it.span(a) else { return true };
            stored.iter().all(|r| {
                let disjoint = r.end <= q.start || q.end <= r.start;
                disjoint || (!(indexed && k == 0) && *r == q)
            })
        })
    })
}

/// Which values the generated code must store: those read outside the fused loop that computes
/// them (by another instruction, a `next` or an output).
fn stored_values(m: &Module, groups: &[(Vec<usize>, Lanes)]) -> Vec<bool> {
    let mut group_of = vec![usize::MAX; m.insts.len()];
    for (k, (g, _)) in groups.iter().enumerate() {
        for &i in g {
            group_of[i] = k;
        }
    }
    let mut def_group = vec![usize::MAX - 1; m.values.len()];
    for (i, inst) in m.insts.iter().enumerate() {
        for r in &inst.results {
            def_group[r.index()] = group_of[i];
        }
    }
    let mut stored = vec![false; m.values.len()];
    for (i, inst) in m.insts.iter().enumerate() {
        for a in &inst.args {
            if let Operand::Value(v) = a
                && (group_of[i] == usize::MAX || def_group[v.index()] != group_of[i])
            {
                stored[v.index()] = true;
            }
        }
    }
    for v in m.end_of_step_values() {
        stored[v.index()] = true;
    }
    // A value no group defines is written by its own kernel anyway.
    stored
}

/// Host functions the generated code calls: the interpreter's transcendental neurons.
struct Hosts {
    sigmoid: cranelift_codegen::ir::FuncRef,
    tanh: cranelift_codegen::ir::FuncRef,
    lif_rate: cranelift_codegen::ir::FuncRef,
}

/// Tables the generated code reads that the module does not hold in this form (row-sorted sparse
/// maps). Their heap addresses are baked into the code, so they live as long as it does.
#[derive(Default)]
struct Tables {
    index: Vec<Vec<i32>>,
    weight: Vec<Vec<f32>>,
}

/// Emit instruction `i` natively when the JIT knows how; false leaves it to the fallback.
fn emit_inst(
    b: &mut FunctionBuilder,
    (m, it, hosts): (&Module, &Interpreter, &Hosts),
    tables: &mut Tables,
    i: usize,
) -> bool {
    let inst = &m.insts[i];
    if inst.groups() > 1 {
        return emit_merged(b, (m, it, hosts), inst);
    }
    let batch = it.batch();
    let n_of = |o: Operand| m.operand_type(o).expect("verified").num_elements();
    let is_const = |o: &Operand| matches!(o, Operand::Const(_));
    let out = |k: usize| it.operand_ptr(Operand::Value(inst.results[k]));
    match &inst.op {
        Op::Sparse { .. } if !is_const(&inst.args[0]) && is_const(&inst.args[2]) => {
            // Rows in compressed form: entries sorted by output row, stably, so each row sums
            // its terms in the interpreter's order, starting from zero as the interpreter does.
            // (Maps whose rows all share their terms' weights run in fused loops instead.)
            let (n_in, n_out) = (
                n_of(inst.args[0]),
                m.value(inst.results[0]).ty.num_elements(),
            );
            let Operand::Const(ic) = inst.args[1] else {
                return false;
            };
            let Operand::Const(wc) = inst.args[2] else {
                return false;
            };
            let (ConstData::I32(pairs), ConstData::F32(w)) =
                (&m.constant(ic).data, &m.constant(wc).data)
            else {
                return false;
            };
            let mut order: Vec<usize> = (0..w.len()).collect();
            order.sort_by_key(|&e| pairs[2 * e]);
            let mut starts = vec![0i32; n_out + 1];
            for e in 0..w.len() {
                starts[pairs[2 * e] as usize + 1] += 1;
            }
            for r in 0..n_out {
                starts[r + 1] += starts[r];
            }
            let cols: Vec<i32> = order.iter().map(|&e| pairs[2 * e + 1]).collect();
            let ws: Vec<f32> = order.iter().map(|&e| w[e]).collect();
            let (x, y) = (it.operand_ptr(inst.args[0]), out(0));
            let (starts_p, cols_p, ws_p) = (starts.as_ptr(), cols.as_ptr(), ws.as_ptr());
            tables.index.extend([starts, cols]);
            tables.weight.push(ws);
            emit_loop(b, batch, |b, s| {
                let in0 = b.ins().imul_imm_s(s, n_in as i64);
                let out0 = b.ins().imul_imm_s(s, n_out as i64);
                emit_loop(b, n_out, |b, r| {
                    let lo = load_index(b, starts_p, r);
                    let r1 = b.ins().iadd_imm_s(r, 1);
                    let hi = load_index(b, starts_p, r1);
                    let zero = b.ins().f32const(0.0);
                    let acc = emit_fold(b, lo, hi, zero, |b, e, acc| {
                        let c = load_index(b, cols_p, e);
                        let wv = load(b, types::F32, ws_p, e);
                        let si = b.ins().iadd(in0, c);
                        let xv = load(b, types::F32, x, si);
                        let prod = b.ins().fmul(wv, xv);
                        b.ins().fadd(acc, prod)
                    });
                    let di = b.ins().iadd(out0, r);
                    store(b, y, di, acc);
                });
            });
            true
        }
        Op::AvgPool(_) | Op::MaxPool(_) | Op::GlobalAvgPool | Op::GlobalMaxPool
            if !is_const(&inst.args[0]) =>
        {
            // Each output position folds its window's input positions (padding left out, as
            // the interpreter counts it) in the interpreter's order, f32x4 over the channels.
            let in_shape = &m.operand_type(inst.args[0]).expect("verified").shape;
            let d = in_shape.len() - 1;
            let c = in_shape[d];
            let positions: usize = in_shape[..d].iter().product();
            let (starts, cols): (Vec<i32>, Vec<i32>) = match &inst.op {
                Op::AvgPool(p) | Op::MaxPool(p) => {
                    let Ok(geo) = crate::kernels::Window3::new(
                        in_shape,
                        &p.pool,
                        &p.strides,
                        &vec![1; d],
                        p.padding,
                    ) else {
                        return false;
                    };
                    let mut per = vec![Vec::new(); geo.out_positions()];
                    geo.for_each(|o, _, src| {
                        if let Some(i) = src {
                            per[o].push(i as i32);
                        }
                    });
                    let mut starts = vec![0i32];
                    for w in &per {
                        starts.push(starts[starts.len() - 1] + w.len() as i32);
                    }
                    (starts, per.concat())
                }
                _ => (vec![0, positions as i32], (0..positions as i32).collect()),
            };
            let n_pos = starts.len() - 1;
            let is_max = matches!(inst.op, Op::MaxPool(_) | Op::GlobalMaxPool);
            let (n_in, n_out) = (n_of(inst.args[0]), n_pos * c);
            let (x, y) = (it.operand_ptr(inst.args[0]), out(0));
            let (starts_p, cols_p) = (starts.as_ptr(), cols.as_ptr());
            tables.index.extend([starts, cols]);
            emit_loop(b, batch, |b, s| {
                let in0 = b.ins().imul_imm_s(s, n_in as i64);
                let out0 = b.ins().imul_imm_s(s, n_out as i64);
                emit_loop(b, n_pos, |b, o| {
                    let lo = load_index(b, starts_p, o);
                    let o1 = b.ins().iadd_imm_s(o, 1);
                    let hi = load_index(b, starts_p, o1);
                    let row = b.ins().imul_imm_s(o, c as i64);
                    let row = b.ins().iadd(out0, row);
                    emit_map(b, c, |b, ty, ch| {
                        let init = fconst(b, ty, if is_max { f32::NEG_INFINITY } else { 0.0 });
                        let acc = emit_fold(b, lo, hi, init, |b, e, acc| {
                            let src = load_index(b, cols_p, e);
                            let at = b.ins().imul_imm_s(src, c as i64);
                            let at = b.ins().iadd(at, ch);
                            let at = b.ins().iadd(in0, at);
                            let xv = load(b, ty, x, at);
                            if is_max {
                                // `acc.max(x)`: a NaN input never wins.
                                select(b, ty, FloatCC::GreaterThan, (xv, acc), xv, acc)
                            } else {
                                b.ins().fadd(acc, xv)
                            }
                        });
                        let acc = if is_max {
                            acc
                        } else {
                            let n = b.ins().isub(hi, lo);
                            let n = b.ins().fcvt_from_uint(types::F32, n);
                            let n = if ty.is_vector() {
                                b.ins().splat(ty, n)
                            } else {
                                n
                            };
                            b.ins().fdiv(acc, n)
                        };
                        let at = b.ins().iadd(row, ch);
                        store(b, y, at, acc);
                    });
                });
            });
            true
        }
        _ => false,
    }
}

/// Load `idx[k]` (an `i32` known to be non-negative) as a pointer-sized integer.
fn load_index(b: &mut FunctionBuilder, idx: *const i32, k: Value) -> Value {
    let a = addr(b, idx as *const f32, k);
    let v = b.ins().load(types::I32, flags(), a, 0);
    b.ins().uextend(types::I64, v)
}

/// Emit `acc = init; for e in lo..hi { acc = body(e, acc) }` over runtime bounds; returns `acc`.
fn emit_fold(
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

impl Engine for JitEngine {
    fn reset(&mut self, seed: u64) {
        self.interp.reset(seed);
    }

    fn step(&mut self, inputs: &[&[f32]]) {
        let held = self.interp.load_inputs(inputs);
        if let Some(prof) = self.profile.as_deref_mut() {
            prof.last = std::time::Instant::now();
            prof.steps += 1;
        }
        let p: *mut Interpreter = &mut *self.interp;
        // SAFETY: the code only touches the interpreter's buffers, whose addresses it baked in
        // and which keep them for the interpreter's lifetime (run_inst and finish_step write in
        // place); no Rust reference to the interpreter is alive during the call.
        unsafe { (self.step_fn)(p, held as u64) };
        self.interp.finish_step();
    }

    fn output(&self, k: usize) -> &[f32] {
        self.interp.output(k)
    }

    fn module(&self) -> &Module {
        self.interp.module()
    }
}
