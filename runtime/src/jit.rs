//! The Cranelift backend: one native `step` function per module and batch size.
//!
//! The buffers are the interpreter's (values, states and outputs batch-major; constants once), so
//! their addresses, every shape and every neuron and synapse parameter are baked into the code as
//! constants; nothing the inputs contain can move an access outside its buffer. This first version
//! emits the loops of the elementwise, neuron, synapse and index-map ops itself (in the exact f32
//! operation order of the interpreter, so spikes agree one for one) and calls back into the
//! reference implementation for the rest (convolution, dense, pooling, transcendental neurons,
//! layout ops); the passes issue replaces those calls with emitted loops and GEMM calls.

use crate::interp::Interpreter;
use crate::{Engine, SimError};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, UserFuncName, Value, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module as _, default_libcall_names};
use snnc_ir::{Module, NeuronModel, Op, Operand, Verified};

/// Runs instruction `inst` of the interpreter behind `interp` (the fallback for ops the JIT does
/// not emit yet).
extern "C" fn snnc_jit_fallback(interp: *mut Interpreter, inst: u64) {
    // SAFETY: `JitEngine::step` passes a pointer to its own interpreter and holds no other
    // reference to it while the step function runs.
    let it = unsafe { &mut *interp };
    it.run_inst(inst as usize);
}

/// A module compiled for one batch size.
pub struct JitEngine {
    interp: Box<Interpreter>,
    // Keeps the code alive; never touched after compilation.
    _code: JITModule,
    step_fn: unsafe extern "C" fn(*mut Interpreter),
    /// Instructions emitted natively and instructions left to the fallback.
    pub emitted: (usize, usize),
}

fn jit_err(e: impl std::fmt::Display) -> SimError {
    SimError::Jit(e.to_string())
}

/// Emit `for i in 0..count { body(i) }` with `i` a pointer-sized integer.
fn emit_loop(
    b: &mut FunctionBuilder,
    count: usize,
    mut body: impl FnMut(&mut FunctionBuilder, Value),
) {
    if count == 0 {
        return;
    }
    let ptr = types::I64;
    let header = b.create_block();
    let block = b.create_block();
    let exit = b.create_block();
    let i = b.append_block_param(header, ptr);
    let zero = b.ins().iconst(ptr, 0);
    b.ins().jump(header, &[zero.into()]);
    b.switch_to_block(header);
    let n = b.ins().iconst(ptr, count as i64);
    let c = b.ins().icmp(
        cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan,
        i,
        n,
    );
    b.ins().brif(c, block, &[], exit, &[]);
    b.switch_to_block(block);
    body(b, i);
    let next = b.ins().iadd_imm_s(i, 1);
    b.ins().jump(header, &[next.into()]);
    b.switch_to_block(exit);
}

fn flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Address `base + 4·index`.
fn addr(b: &mut FunctionBuilder, base: *const f32, index: Value) -> Value {
    let base = b.ins().iconst(types::I64, base as i64);
    let off = b.ins().ishl_imm_u(index, 2);
    b.ins().iadd(base, off)
}

fn load(b: &mut FunctionBuilder, base: *const f32, index: Value) -> Value {
    let a = addr(b, base, index);
    b.ins().load(types::F32, flags(), a, 0)
}

fn store(b: &mut FunctionBuilder, base: *const f32, index: Value, v: Value) {
    let a = addr(b, base, index);
    b.ins().store(flags(), v, a, 0);
}

fn fconst(b: &mut FunctionBuilder, x: f32) -> Value {
    b.ins().f32const(x)
}

impl JitEngine {
    /// Compile `module` for minibatches of `batch` samples.
    pub fn new(module: &Verified, batch: usize) -> Result<Self, SimError> {
        let mut interp = Box::new(Interpreter::new(module, batch)?);
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
        let mut code = JITModule::new(jb);
        let mut ctx = code.make_context();
        let mut fctx = FunctionBuilderContext::new();
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
        let m: Module = (**module).clone();
        let mut emitted = (0, 0);
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let this = b.block_params(entry)[0];
            for i in 0..m.insts.len() {
                if emit_inst(&mut b, &m, &mut interp, i) {
                    emitted.0 += 1;
                } else {
                    let idx = b.ins().iconst(types::I64, i as i64);
                    b.ins().call(fallback, &[this, idx]);
                    emitted.1 += 1;
                }
            }
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(code.target_config());
        }
        code.define_function(id, &mut ctx).map_err(jit_err)?;
        code.clear_context(&mut ctx);
        code.finalize_definitions().map_err(jit_err)?;
        let ptr = code.get_finalized_function(id);
        // SAFETY: the function was declared with exactly this signature.
        let step_fn = unsafe {
            std::mem::transmute::<*const u8, unsafe extern "C" fn(*mut Interpreter)>(ptr)
        };
        Ok(JitEngine {
            interp,
            _code: code,
            step_fn,
            emitted,
        })
    }
}

/// Emit instruction `i` natively when the JIT knows how; false leaves it to the fallback.
fn emit_inst(b: &mut FunctionBuilder, m: &Module, it: &mut Interpreter, i: usize) -> bool {
    let inst = &m.insts[i];
    let batch = it.batch();
    let n_of = |o: Operand| m.operand_type(o).expect("verified").num_elements();
    let is_const = |o: &Operand| matches!(o, Operand::Const(_));
    let out = |k: usize| it.operand_ptr(Operand::Value(inst.results[k]));
    let dt = m.dt as f32;
    match &inst.op {
        Op::Neuron(n)
            if !is_const(&inst.args[0])
                && matches!(
                    n.model,
                    NeuronModel::Relu
                        | NeuronModel::LeakyRelu { .. }
                        | NeuronModel::SpikingRelu
                        | NeuronModel::SpikingLeakyRelu { .. }
                        | NeuronModel::IfNeuron
                ) =>
        {
            if inst.args.iter().skip(1).any(is_const) {
                return false;
            }
            let total = n_of(inst.args[0]) * batch;
            let (g, a) = (n.gain as f32, n.amplitude as f32);
            let j = it.operand_ptr(inst.args[0]);
            let y = out(0);
            let model = n.model.clone();
            let (vin, vout) = if model.is_spiking() {
                (it.operand_ptr(inst.args[1]), out(1))
            } else {
                (std::ptr::null(), std::ptr::null())
            };
            let height = a / dt;
            emit_loop(b, total, |b, k| {
                let jv = load(b, j, k);
                let gv = fconst(b, g);
                let x = b.ins().fmul(gv, jv);
                let zero = fconst(b, 0.0);
                match model {
                    NeuronModel::Relu => {
                        let r = b.ins().fmax(x, zero);
                        let av = fconst(b, a);
                        let yv = b.ins().fmul(av, r);
                        store(b, y, k, yv);
                    }
                    NeuronModel::LeakyRelu { negative_slope } => {
                        let s = fconst(b, negative_slope as f32);
                        let sx = b.ins().fmul(s, x);
                        let neg = b.ins().fcmp(FloatCC::LessThan, x, zero);
                        let r = b.ins().select(neg, sx, x);
                        let av = fconst(b, a);
                        let yv = b.ins().fmul(av, r);
                        store(b, y, k, yv);
                    }
                    _ => {
                        let drive = match model {
                            NeuronModel::SpikingRelu => b.ins().fmax(x, zero),
                            NeuronModel::SpikingLeakyRelu { negative_slope } => {
                                let s = fconst(b, negative_slope as f32);
                                let sx = b.ins().fmul(s, x);
                                let pos = b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                                b.ins().select(pos, x, sx)
                            }
                            _ => x,
                        };
                        let dtv = fconst(b, dt);
                        let step = b.ins().fmul(drive, dtv);
                        let v0 = load(b, vin, k);
                        let v = b.ins().fadd(v0, step);
                        let spikes = match model {
                            NeuronModel::SpikingRelu => b.ins().floor(v),
                            NeuronModel::SpikingLeakyRelu { .. } => b.ins().trunc(v),
                            _ => {
                                let f = b.ins().floor(v);
                                b.ins().fmax(f, zero)
                            }
                        };
                        let h = fconst(b, height);
                        let yv = b.ins().fmul(h, spikes);
                        store(b, y, k, yv);
                        let v1 = b.ins().fsub(v, spikes);
                        store(b, vout, k, v1);
                    }
                }
            });
            true
        }
        Op::Lowpass { tau } if !inst.args.iter().any(is_const) => {
            let decay = (-m.dt / tau).exp() as f32;
            let total = n_of(inst.args[0]) * batch;
            let (x, s, y) = (
                it.operand_ptr(inst.args[0]),
                it.operand_ptr(inst.args[1]),
                out(0),
            );
            emit_loop(b, total, |b, k| {
                let d = fconst(b, decay);
                let sv = load(b, s, k);
                let a = b.ins().fmul(d, sv);
                let xv = load(b, x, k);
                let one_minus = fconst(b, 1.0 - decay);
                let c = b.ins().fmul(one_minus, xv);
                let yv = b.ins().fadd(a, c);
                store(b, y, k, yv);
            });
            true
        }
        Op::Bias | Op::Scale if !is_const(&inst.args[0]) && is_const(&inst.args[1]) => {
            let width = n_of(inst.args[1]).max(1);
            let rows = n_of(inst.args[0]) * batch / width;
            let (x, p, y) = (
                it.operand_ptr(inst.args[0]),
                it.operand_ptr(inst.args[1]),
                out(0),
            );
            let add = inst.op == Op::Bias;
            let w = width;
            emit_loop(b, rows, |b, r| {
                let row0 = b.ins().imul_imm_s(r, w as i64);
                emit_loop(b, w, |b, c| {
                    let k = b.ins().iadd(row0, c);
                    let xv = load(b, x, k);
                    let pv = load(b, p, c);
                    let yv = if add {
                        b.ins().fadd(xv, pv)
                    } else {
                        b.ins().fmul(xv, pv)
                    };
                    store(b, y, k, yv);
                });
            });
            true
        }
        Op::Add if !inst.args.iter().any(is_const) => {
            let total = n_of(inst.args[0]) * batch;
            let ptrs: Vec<*const f32> = inst.args.iter().map(|&a| it.operand_ptr(a)).collect();
            let y = out(0);
            emit_loop(b, total, |b, k| {
                let mut acc = load(b, ptrs[0], k);
                for &p in &ptrs[1..] {
                    let v = load(b, p, k);
                    acc = b.ins().fadd(acc, v);
                }
                store(b, y, k, acc);
            });
            true
        }
        Op::Reshape { .. } if !is_const(&inst.args[0]) => {
            let total = n_of(inst.args[0]) * batch;
            let (x, y) = (it.operand_ptr(inst.args[0]), out(0));
            emit_loop(b, total, |b, k| {
                let v = load(b, x, k);
                store(b, y, k, v);
            });
            true
        }
        Op::Gather { .. } if !is_const(&inst.args[0]) => {
            let (n_in, n_out) = (
                n_of(inst.args[0]),
                m.value(inst.results[0]).ty.num_elements(),
            );
            let (x, idx, y) = (
                it.operand_ptr(inst.args[0]),
                it.index_ptr(inst.args[1]),
                out(0),
            );
            emit_loop(b, batch, |b, s| {
                let in0 = b.ins().imul_imm_s(s, n_in as i64);
                let out0 = b.ins().imul_imm_s(s, n_out as i64);
                emit_loop(b, n_out, |b, k| {
                    let ia = addr(b, idx as *const f32, k);
                    let src32 = b.ins().load(types::I32, flags(), ia, 0);
                    let src = b.ins().uextend(types::I64, src32);
                    let si = b.ins().iadd(in0, src);
                    let v = load(b, x, si);
                    let di = b.ins().iadd(out0, k);
                    store(b, y, di, v);
                });
            });
            true
        }
        Op::Sparse { .. } if !is_const(&inst.args[0]) && is_const(&inst.args[2]) => {
            let (n_in, n_out) = (
                n_of(inst.args[0]),
                m.value(inst.results[0]).ty.num_elements(),
            );
            let nnz = n_of(inst.args[2]);
            let (x, idx, w, y) = (
                it.operand_ptr(inst.args[0]),
                it.index_ptr(inst.args[1]),
                it.operand_ptr(inst.args[2]),
                out(0),
            );
            emit_loop(b, batch, |b, s| {
                let in0 = b.ins().imul_imm_s(s, n_in as i64);
                let out0 = b.ins().imul_imm_s(s, n_out as i64);
                emit_loop(b, n_out, |b, k| {
                    let di = b.ins().iadd(out0, k);
                    let zero = fconst(b, 0.0);
                    store(b, y, di, zero);
                });
                emit_loop(b, nnz, |b, e| {
                    let e2 = b.ins().ishl_imm_u(e, 1);
                    let ra = addr(b, idx as *const f32, e2);
                    let r32 = b.ins().load(types::I32, flags(), ra, 0);
                    let c32 = b.ins().load(types::I32, flags(), ra, 4);
                    let r = b.ins().uextend(types::I64, r32);
                    let c = b.ins().uextend(types::I64, c32);
                    let wv = load(b, w, e);
                    let si = b.ins().iadd(in0, c);
                    let xv = load(b, x, si);
                    let prod = b.ins().fmul(wv, xv);
                    let di = b.ins().iadd(out0, r);
                    let yv = load(b, y, di);
                    let sum = b.ins().fadd(yv, prod);
                    store(b, y, di, sum);
                });
            });
            true
        }
        _ => false,
    }
}

impl Engine for JitEngine {
    fn reset(&mut self, seed: u64) {
        self.interp.reset(seed);
    }

    fn step(&mut self, inputs: &[&[f32]]) {
        self.interp.load_inputs(inputs);
        let p: *mut Interpreter = &mut *self.interp;
        // SAFETY: the code only touches the interpreter's buffers, whose addresses it baked in
        // and which keep them for the interpreter's lifetime (run_inst and finish_step write in
        // place); no Rust reference to the interpreter is alive during the call.
        unsafe { (self.step_fn)(p) };
        self.interp.finish_step();
    }

    fn output(&self, k: usize) -> &[f32] {
        self.interp.output(k)
    }

    fn module(&self) -> &Module {
        self.interp.module()
    }
}
