//! The Cranelift backend: one native `step` function per module and batch size.
//!
//! The engine owns a [`Frame`] (the arena laid out by the memory plan: values, states and
//! outputs batch-major, constants once), so every address, shape and neuron or synapse parameter
//! is a constant in the code; the plan and the verifier's index checks bound every access when
//! the code is generated, and nothing the inputs contain can move one.
//!
//! - [`fusion`] decides which consecutive lane-wise and indexed instructions share one loop;
//! - [`codegen`] emits them ([`lanes`] holds the per-lane neuron and synapse updates, mirroring
//!   [`snnc_ir::semantics`]; [`emit`] the loop and memory building blocks), along with pooling
//!   windows and row-compressed `sparse` maps;
//! - [`host`] runs what the code hands to Rust: dense maps and convolutions on the GEMM and
//!   event-driven kernels of [`crate::linear`], index maps by tables, batch norm and softmax.
//! - `wide` runs, where the CPU has AVX2, the commonest fused loops of spiking populations (a
//!   population, alone or after a synapse and a bias; a max-pool circuit level) eight lanes at
//!   a time, with the generated loops' f32 operations in their order, counting the population's
//!   spikes as it goes when asked ([`JitOptions::narrow`] keeps Cranelift's own loops).
//!
//! It never calls the interpreter: the two backends are peers over the same frame, and agree bit
//! for bit because both follow [`snnc_ir::semantics`] and SPEC.md's operation order. Instructions
//! that read only inputs and constants are skipped while the inputs are unchanged (`held`).

mod abi;
mod codegen;
mod emit;
mod fusion;
mod host;
mod lanes;
mod schedule;
mod wide;

use crate::frame::Frame;
use crate::{Engine, SimError};
use abi::{Hosts, Tables};
use cranelift_codegen::ir::{AbiParam, InstBuilder, UserFuncName, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module as _, default_libcall_names};
use host::{Job, Scratch};
use snnc_ir::{Module, Verified};

/// How to build a [`JitEngine`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitOptions {
    /// Read a clock after every instruction (see [`JitEngine::profile`]); the clock calls cost
    /// about 50 ns each.
    pub profile: bool,
    /// Keep the generated machine code's disassembly (see [`JitEngine::disassembly`]).
    pub disassemble: bool,
    /// Only Cranelift's own loops (vectors of at most 128 bits): no eight-lane AVX2 loops for
    /// fused integrate-and-fire chains and max-pool circuit levels (the `wide` module). For
    /// measuring what those loops give, and for testing the generated loops they replace.
    pub narrow: bool,
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
    frame: Frame,
    // Keeps the code alive; never touched after compilation.
    _code: JITModule,
    // Read by the code; never touched after compilation.
    _tables: Tables,
    // Run by the code through their addresses (boxed so they never move); never touched after
    // compilation.
    #[allow(clippy::vec_box)]
    _jobs: Vec<Box<Job>>,
    _scratch: Scratch,
    step_fn: unsafe extern "C" fn(u64),
    /// Instructions computed in generated code, and instructions handed to host jobs.
    pub emitted: (usize, usize),
    /// Instructions that share a loop with the one before them (fused elementwise chains).
    pub fused: usize,
    /// `fixed_relu` populations scheduled by next spike step while the inputs are held.
    pub scheduled: usize,
    /// Per module output: the job whose loop can count its spikes, if one can (looked up every
    /// step by [`Engine::tally`]).
    counted_by: Vec<Option<usize>>,
    profile: Option<Box<Profile>>,
    disassembly: Option<String>,
}

fn jit_err(e: impl std::fmt::Display) -> SimError {
    SimError::Jit(e.to_string())
}

impl JitEngine {
    /// Compile `module` for minibatches of `batch` samples.
    pub fn new(module: &Verified, batch: usize) -> Result<Self, SimError> {
        Self::with_options(module, batch, JitOptions::default())
    }

    /// Compile `module` for minibatches of `batch` samples, with options.
    pub fn with_options(
        module: &Verified,
        batch: usize,
        options: JitOptions,
    ) -> Result<Self, SimError> {
        let mut profile = options.profile.then(|| {
            Box::new(Profile {
                last: std::time::Instant::now(),
                per_inst: vec![Default::default(); module.insts.len()],
                steps: 0,
            })
        });
        let prof_ptr: *mut Profile = profile
            .as_deref_mut()
            .map_or(std::ptr::null_mut(), |p| p as *mut Profile);
        let mut frame = Frame::new(module, batch)?;
        let mut fb = settings::builder();
        fb.set("use_colocated_libcalls", "false").map_err(jit_err)?;
        fb.set("is_pic", "false").map_err(jit_err)?;
        fb.set("opt_level", "speed").map_err(jit_err)?;
        let isa = cranelift_native::builder()
            .map_err(jit_err)?
            .finish(settings::Flags::new(fb))
            .map_err(jit_err)?;
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        jb.symbol("snnc_jit_tick", snnc_jit_tick as *const u8);
        jb.symbol("snnc_jit_host", host::snnc_jit_host as *const u8);
        jb.symbol("snnc_sigmoid", snnc_ir::semantics::sigmoid as *const u8);
        jb.symbol("snnc_tanh", snnc_ir::semantics::tanh as *const u8);
        jb.symbol("snnc_lif_rate", snnc_ir::semantics::lif_rate as *const u8);
        jb.symbol("snnc_lif", snnc_ir::semantics::lif_step_c as *const u8);
        jb.symbol(
            "snnc_activation",
            snnc_ir::semantics::activation as *const u8,
        );
        let mut code = JITModule::new(jb);
        let mut ctx = code.make_context();
        let mut fctx = FunctionBuilderContext::new();
        ctx.func.signature.params.push(AbiParam::new(types::I64));
        let id = code
            .declare_function("snnc_step", Linkage::Export, &ctx.func.signature)
            .map_err(jit_err)?;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let mut import = |name: &str, params: &[types::Type], ret: bool| {
            let mut sig = code.make_signature();
            sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
            if ret {
                sig.returns.push(AbiParam::new(types::F32));
            }
            let id = code
                .declare_function(name, Linkage::Import, &sig)
                .map_err(jit_err)?;
            Ok::<_, SimError>(code.declare_func_in_func(id, &mut ctx.func))
        };
        let (f32_, i64_) = (types::F32, types::I64);
        let tick = import("snnc_jit_tick", &[i64_, i64_], false)?;
        let hosts = Hosts {
            sigmoid: import("snnc_sigmoid", &[f32_; 3], true)?,
            tanh: import("snnc_tanh", &[f32_; 3], true)?,
            lif_rate: import("snnc_lif_rate", &[f32_; 5], true)?,
            lif: import("snnc_lif", &[i64_, f32_, f32_, f32_, i64_], false)?,
            activation: import(
                "snnc_activation",
                &[types::I32, f32_, f32_, f32_, f32_, f32_],
                true,
            )?,
            job: import("snnc_jit_host", &[i64_, i64_], false)?,
        };
        let m: &Module = module;
        let mut emitted = (0, 0);
        let mut fused = 0;
        let mut tables = Tables::default();
        let mut jobs: Vec<Box<Job>> = Vec::new();
        let mut scratch = Scratch::default();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let held = b.block_params(entry)[0];
            let groups = fusion::elementwise_groups(m, &frame, module.info());
            let stored = fusion::stored_values(module.info(), &groups);
            // Fan-outs, for the eight-lane loops that count their population's spikes: the
            // module's, computed once for it and its clones, if one asks.
            let fan = || Some(module.fan_out());
            let cx = codegen::Cx {
                m,
                f: &frame,
                hosts: &hosts,
            };
            let mut i = 0;
            while i < m.insts.len() {
                // Instructions on inputs and constants only are skipped while the inputs are
                // held (their results are still in their buffers).
                let after = frame.is_invariant(i).then(|| {
                    let run = b.create_block();
                    let after = b.create_block();
                    b.ins().brif(held, after, &[], run, &[]);
                    b.switch_to_block(run);
                    after
                });
                let inst = &m.insts[i];
                let group_at = groups.iter().find(|(g, _)| g[0] == i);
                let wide = group_at.filter(|_| !options.narrow).and_then(|(g, l)| {
                    wide::Chain::detect(m, &frame, (g, *l), &stored, &fan)
                        .map(Job::Wide)
                        .or_else(|| {
                            wide::Level::detect(m, &frame, (g, *l), &stored, &fan)
                                .map(Job::WideLevel)
                        })
                });
                let next = if let (Some((group, _)), Some(job)) = (group_at, wide) {
                    let job = Box::new(job);
                    let p = b.ins().iconst(types::I64, &*job as *const Job as i64);
                    let n = b.ins().iconst(types::I64, batch as i64);
                    b.ins().call(hosts.job, &[p, n]);
                    jobs.push(job);
                    emitted.1 += group.len();
                    i + group.len()
                } else if let Some((group, lanes)) = group_at {
                    codegen::emit_elementwise_group(
                        &mut b,
                        &cx,
                        &mut tables,
                        (group, *lanes),
                        &stored,
                    );
                    emitted.0 += group.len();
                    fused += group.len() - 1;
                    i + group.len()
                } else if codegen::emit_inst(&mut b, &cx, &mut tables, i) {
                    emitted.0 += 1;
                    i + 1
                } else if let Some(job) = Job::new(m, &frame, inst, &mut scratch)? {
                    let job = Box::new(job);
                    let p = b.ins().iconst(types::I64, &*job as *const Job as i64);
                    let n = b.ins().iconst(types::I64, batch as i64);
                    b.ins().call(hosts.job, &[p, n]);
                    jobs.push(job);
                    emitted.1 += 1;
                    i + 1
                } else {
                    return Err(SimError::Jit(format!(
                        "no code for instruction {i} (`{}` with {} groups and these operands)",
                        inst.op.name(),
                        inst.groups()
                    )));
                };
                if options.profile {
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
        // Synapses whose eight-lane loop writes their next value over their state.
        for job in &jobs {
            if let Job::Wide(chain) = &**job
                && let Some(k) = chain.next_in_place
            {
                frame.next_in_place(k);
            }
        }
        scratch.allocate()?;
        for job in &mut jobs {
            job.bind_scratch(&mut scratch);
        }
        ctx.set_disasm(options.disassemble);
        code.define_function(id, &mut ctx).map_err(jit_err)?;
        let disassembly = ctx
            .compiled_code()
            .and_then(|c| c.vcode.clone())
            .filter(|_| options.disassemble);
        code.clear_context(&mut ctx);
        code.finalize_definitions().map_err(jit_err)?;
        let ptr = code.get_finalized_function(id);
        // SAFETY: the function was declared with exactly this signature.
        let step_fn = unsafe { std::mem::transmute::<*const u8, unsafe extern "C" fn(u64)>(ptr) };
        let scheduled = jobs.iter().filter(|j| j.schedules()).count();
        let mut counted_by = vec![None; m.outputs.len()];
        for (i, job) in jobs.iter().enumerate() {
            if let Some(slot) = job.count().and_then(|c| counted_by.get_mut(c.output)) {
                slot.get_or_insert(i);
            }
        }
        Ok(JitEngine {
            frame,
            _code: code,
            _tables: tables,
            _jobs: jobs,
            _scratch: scratch,
            step_fn,
            emitted,
            fused,
            scheduled,
            counted_by,
            profile,
            disassembly,
        })
    }

    /// Time per instruction so far, when built with [`JitOptions::profile`].
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_deref()
    }

    /// The generated code's disassembly, when built with [`JitOptions::disassemble`].
    pub fn disassembly(&self) -> Option<&str> {
        self.disassembly.as_deref()
    }
}

// SAFETY: every raw pointer the engine holds (in its generated code, its tables and its host
// jobs) points into memory the engine itself owns — the frame's arena and constants, the tables,
// the jobs, the scratch space, the code — and none of it is shared with another value or tied
// to a thread (`step` takes `&mut self`; the kernels' thread-local index buffer is
// taken and given back within each call, never kept between them). Moving the engine to another
// thread moves all of it together.
unsafe impl Send for JitEngine {}

impl Engine for JitEngine {
    fn reset(&mut self, seed: u64) {
        self.frame.reset(seed);
        for job in &self._jobs {
            job.reset();
        }
    }

    fn count_in_step(&self, on: bool) {
        for job in &self._jobs {
            if let Some(c) = job.count() {
                c.on.set(on);
            }
        }
    }

    fn tally(&self, k: usize, synops: bool, out: &mut dyn FnMut(usize, f64, Option<f64>)) -> bool {
        self.counted_by
            .get(k)
            .copied()
            .flatten()
            .and_then(|i| self._jobs[i].count())
            .is_some_and(|c| c.tally(synops, out))
    }

    fn step(&mut self, inputs: &[&[f32]]) {
        let held = self.frame.load_inputs(inputs);
        for job in &self._jobs {
            job.set_held(held);
        }
        if let Some(prof) = self.profile.as_deref_mut() {
            prof.last = std::time::Instant::now();
            prof.steps += 1;
        }
        // SAFETY: the code only touches the frame's buffers, the tables and the jobs, whose
        // addresses it baked in and which keep them for the engine's lifetime; no Rust reference
        // to them is alive during the call.
        unsafe { (self.step_fn)(held as u64) };
        self.frame.finish_step();
    }

    fn output(&self, k: usize) -> &[f32] {
        self.frame.output(k)
    }

    fn module(&self) -> &Module {
        self.frame.module()
    }

    fn verified(&self) -> &Verified {
        self.frame.verified()
    }
}
