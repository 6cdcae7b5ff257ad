//! # snnc-runtime: simulators for verified snnc modules
//!
//! [`Simulator`] runs a [`Verified`] module step by step on a minibatch. The backend is chosen
//! with [`Backend`]: [`Backend::Interp`] is the reference interpreter ([`interp`]), written for
//! clarity and used to check every faster backend; [`Backend::Jit`] compiles the module into one
//! native step function ([`jit`]). Both run on one arena laid out by the module's
//! [`snnc_ir::MemoryPlan`], share the dense and convolution kernels ([`linear`]), and give the same
//! numbers bit for bit. Both skip the instructions that read only inputs and constants while the
//! inputs stay the same from one step to the next.
//!
//! A [`Simulator`] holds its batch in groups of samples, one engine each: the JIT chooses groups
//! whose buffers fit the cache, [`Simulator::run`] takes each group through all its steps in
//! turn, and [`SimOptions::threads`] shares the groups out among threads. The outputs do not
//! depend on the grouping or the thread count.
//!
//! ```
//! use snnc_runtime::{Backend, Record, SimOptions, Simulator};
//!
//! // Two IF neurons under held currents (a module from `snnc compile`: `snnc_ir::load_snn`).
//! let text = "module @m dt=0.001\ninput %j : f32[2]\nstate $v : f32[2] = zeros\n\n\
//!     %s, %v1 = spiking_relu %j, $v : f32[2], f32[2]\nnext $v = %v1\noutput \"s\" = %s\n";
//! let module = snnc_ir::verify(snnc_ir::parse(text)?, snnc_ir::Target::Any)?;
//! // A batch of 64 on every core.
//! let options = SimOptions { threads: 0, ..Default::default() };
//! let mut sim = Simulator::with_options(&module, Backend::Jit, 64, options)?;
//! let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[64, 2]), |i| 100.0 * i[0] as f32);
//! let spikes = sim.run(10, &[x.view()], Record::AllSteps)?;
//! assert_eq!(spikes[0].shape(), [64, 10, 2]);
//! // 600 Hz with dt = 1 ms: 6 spikes in 10 steps, each 1/dt high.
//! let count = spikes[0].slice(ndarray::s![6, .., 0]).sum() * 0.001;
//! assert_eq!(count.round(), 6.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod dataset;
pub mod engine;
pub mod frame;
pub mod interp;
pub mod jit;
pub mod kernels;
pub mod linear;
pub mod observe;
pub use snnc_ir::rng;
pub mod window;

pub use engine::{Engine, SimError};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use snnc_ir::{Module, Verified};

/// The simulation backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The reference interpreter.
    #[default]
    Interp,
    /// Native code from Cranelift (see [`jit`]).
    Jit,
}

/// How much of each output [`Simulator::run`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// `(batch, *shape)`: the value after the last step.
    LastStep,
    /// `(batch, steps, *shape)`: the value after every step.
    AllSteps,
}

/// How a [`Simulator`] is built (see [`Simulator::with_options`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// Options for the JIT's code (ignored by the interpreter).
    pub jit: jit::JitOptions,
    /// Samples per group (see [`Simulator`]): 0 (the default) lets the JIT choose as many as
    /// keep the groups' arenas in the cache ([`dataset::samples_fitting_cache`]) and keeps the
    /// interpreter's batch whole.
    pub group: usize,
    /// Worker threads for [`Simulator::run`] and for compiling the groups (1, the default: the
    /// calling thread; 0: one per core). The batch has at least one group per thread (four,
    /// when the JIT chooses), and each thread takes the next group not yet taken until none is
    /// left.
    pub threads: usize,
}

/// At most this many groups (or [`GROUPS_PER_THREAD`] per thread, if more) when the group size
/// is chosen automatically: each group compiles its own code.
const MAX_AUTO_GROUPS: usize = 8;

/// Groups per thread when several threads share a batch out: a thread takes the next group as
/// soon as it is done with one, so a faster core (or one the machine's other work leaves alone)
/// does more of them.
const GROUPS_PER_THREAD: usize = 4;

/// Samples `start .. start + len` of the batch, simulated by their own engine.
struct Group {
    engine: Box<dyn Engine>,
    start: usize,
    len: usize,
}

/// Runs a verified module on a minibatch, step by step.
///
/// The batch is simulated in groups of samples, each with its own engine (its own arena and, on
/// the JIT, its own code): a spiking step reads and writes every state, current and spike train
/// of every sample, so a batch whose buffers outgrow the cache runs at memory speed, while a
/// group that fits stays in it. [`Simulator::step`] advances every group by one step;
/// [`Simulator::run`] takes each group through all its steps before the next (on several
/// threads with [`SimOptions::threads`]). No sample's result depends on its group: the
/// outputs are the same for any grouping and thread count.
pub struct Simulator {
    groups: Vec<Group>,
    batch: usize,
    steps_done: u64,
    threads: usize,
    /// Per input: elements per sample.
    input_sizes: Vec<usize>,
    /// Per output: the whole batch's values, joined from the groups on the first read after a
    /// step (unused with one group, whose buffers are read in place).
    joined: Vec<std::cell::OnceCell<Vec<f32>>>,
}

impl Simulator {
    /// A simulator of `module` on `backend` for minibatches of `batch` samples, reset with seed 0.
    pub fn new(module: &Verified, backend: Backend, batch: usize) -> Result<Self, SimError> {
        Self::with_options(module, backend, batch, SimOptions::default())
    }

    /// A simulator on the JIT built with `options` (see [`jit::JitOptions`]), for minibatches
    /// of `batch` samples, reset with seed 0.
    pub fn with_jit_options(
        module: &Verified,
        batch: usize,
        options: jit::JitOptions,
    ) -> Result<Self, SimError> {
        let options = SimOptions {
            jit: options,
            ..SimOptions::default()
        };
        Self::with_options(module, Backend::Jit, batch, options)
    }

    /// A simulator of `module` on `backend` for minibatches of `batch` samples, grouped and
    /// threaded as `options` says, reset with seed 0.
    pub fn with_options(
        module: &Verified,
        backend: Backend,
        batch: usize,
        options: SimOptions,
    ) -> Result<Self, SimError> {
        if batch == 0 {
            return Err(SimError::ZeroBatch);
        }
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
            t => t,
        }
        .min(batch);
        let groups = match (options.group, backend) {
            (0, Backend::Interp) => threads,
            (0, Backend::Jit) => {
                let fit = dataset::samples_fitting_cache(module, threads);
                let balance = if threads > 1 {
                    GROUPS_PER_THREAD * threads
                } else {
                    1
                };
                batch
                    .div_ceil(fit)
                    .max(balance)
                    .min(MAX_AUTO_GROUPS.max(balance))
                    .min(batch)
            }
            (g, _) => batch.div_ceil(g).max(threads).min(batch),
        };
        // Groups as even as can be: the first `batch % groups` one sample larger.
        let spans: Vec<(usize, usize)> = (0..groups)
            .scan(0, |start, k| {
                let len = batch / groups + usize::from(k < batch % groups);
                *start += len;
                Some((*start - len, len))
            })
            .collect();
        let build = |&(start, len): &(usize, usize)| -> Result<Group, SimError> {
            let engine: Box<dyn Engine> = match backend {
                Backend::Interp => Box::new(interp::Interpreter::new(module, len)?),
                Backend::Jit => Box::new(jit::JitEngine::with_options(module, len, options.jit)?),
            };
            Ok(Group { engine, start, len })
        };
        // Compiled on the run's threads too (each group compiles its own code).
        let built: Vec<Group> = if threads > 1 && groups > 1 {
            let per = groups.div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = spans
                    .chunks(per)
                    .map(|part| {
                        let build = &build;
                        scope.spawn(move || part.iter().map(build).collect::<Result<Vec<_>, _>>())
                    })
                    .collect();
                let mut all = Vec::with_capacity(groups);
                for h in handles {
                    all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
                }
                Ok::<_, SimError>(all)
            })?
        } else {
            spans.iter().map(build).collect::<Result<_, _>>()?
        };
        let m: &Module = module;
        Ok(Simulator {
            groups: built,
            batch,
            steps_done: 0,
            threads,
            input_sizes: m
                .inputs
                .iter()
                .map(|&v| m.value(v).ty.num_elements())
                .collect(),
            joined: (0..m.outputs.len()).map(|_| Default::default()).collect(),
        })
    }

    /// The module being simulated.
    pub fn module(&self) -> &Module {
        self.groups[0].engine.module()
    }

    /// The module being simulated, with the verifier's facts (and its fan-outs, computed once
    /// for every simulator of it).
    pub fn verified(&self) -> &Verified {
        self.groups[0].engine.verified()
    }

    /// Minibatch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The sizes of the groups the batch is simulated in (see [`Simulator`]).
    pub fn groups(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.len).collect()
    }

    /// Worker threads [`Simulator::run`] uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Steps run since the last reset.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Restore every state to its initial value; `seed` re-keys `uniform` initial states.
    pub fn reset(&mut self, seed: u64) {
        self.groups.iter_mut().for_each(|g| g.engine.reset(seed));
        self.joined.iter_mut().for_each(|j| drop(j.take()));
        self.steps_done = 0;
    }

    fn check_input(&self, k: usize, got: &[usize], per_step: bool) -> Result<(), SimError> {
        let m = self.module();
        let d = m.value(m.inputs[k]);
        let mut want = vec![self.batch];
        want.extend_from_slice(&d.ty.shape);
        if got == want.as_slice() {
            return Ok(());
        }
        let expected = if per_step {
            format!("(batch={}, {}) or (batch, steps, ...)", self.batch, d.ty)
        } else {
            format!("(batch={}, {})", self.batch, d.ty)
        };
        Err(SimError::InputShape {
            name: d.name.clone(),
            expected,
            got: got.to_vec(),
        })
    }

    /// Step every group once on flat, batch-major inputs of the whole batch (checked).
    fn step_groups(&mut self, inputs: &[&[f32]]) {
        let sizes = &self.input_sizes;
        for g in &mut self.groups {
            let part: Vec<&[f32]> = inputs
                .iter()
                .zip(sizes)
                .map(|(a, &n)| &a[g.start * n..(g.start + g.len) * n])
                .collect();
            g.engine.step(&part);
        }
        self.joined.iter_mut().for_each(|j| drop(j.take()));
        self.steps_done += 1;
    }

    /// Run one step; `inputs[k]` is input `k` as `(batch, *shape)`. Returns nothing: read the
    /// outputs with [`Simulator::output`].
    pub fn step(&mut self, inputs: &[ArrayViewD<f32>]) -> Result<(), SimError> {
        let n = self.module().inputs.len();
        if inputs.len() != n {
            return Err(SimError::InputCount {
                expected: n,
                got: inputs.len(),
            });
        }
        let mut owned = Vec::with_capacity(n);
        for (k, a) in inputs.iter().enumerate() {
            self.check_input(k, a.shape(), false)?;
            owned.push(a.as_standard_layout().into_owned());
        }
        let slices: Vec<&[f32]> = owned
            .iter()
            .map(|a| a.as_slice().expect("standard layout"))
            .collect();
        self.step_groups(&slices);
        Ok(())
    }

    /// Run one step on flat, batch-major input buffers (`inputs[k]` holds input `k` for the
    /// whole batch), read in place.
    pub fn step_flat(&mut self, inputs: &[&[f32]]) -> Result<(), SimError> {
        let m = self.module();
        if inputs.len() != m.inputs.len() {
            return Err(SimError::InputCount {
                expected: m.inputs.len(),
                got: inputs.len(),
            });
        }
        for (k, a) in inputs.iter().enumerate() {
            let d = m.value(m.inputs[k]);
            if a.len() != self.batch * d.ty.num_elements() {
                return Err(SimError::InputShape {
                    name: d.name.clone(),
                    expected: format!(
                        "{} floats (batch={}, {})",
                        self.batch * d.ty.num_elements(),
                        self.batch,
                        d.ty
                    ),
                    got: vec![a.len()],
                });
            }
        }
        self.step_groups(inputs);
        Ok(())
    }

    /// The shape of output `k` for the whole batch.
    fn output_shape(&self, k: usize) -> Vec<usize> {
        let m = self.module();
        let ty = m.operand_type(m.outputs[k].value).expect("verified");
        let mut shape = vec![self.batch];
        shape.extend_from_slice(&ty.shape);
        shape
    }

    /// Output `k` after the last step, as `(batch, *shape)`.
    pub fn output(&self, k: usize) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&self.output_shape(k)), self.output_slice(k).to_vec())
            .expect("engine output size")
    }

    /// Run `steps` steps. Each input is `(batch, *shape)` (held for every step) or
    /// `(batch, steps, *shape)` (one slice per step). Returns one array per output.
    ///
    /// Each group runs all `steps` before the next starts (the groups' samples do not interact),
    /// so a group's buffers stay in the cache for the whole run; with several threads
    /// ([`SimOptions::threads`]) the threads take the groups in turn. The outputs are those of
    /// stepping the whole batch `steps` times.
    pub fn run(
        &mut self,
        steps: usize,
        inputs: &[ArrayViewD<f32>],
        record: Record,
    ) -> Result<Vec<ArrayD<f32>>, SimError> {
        let (held, timed) = self.prepare(steps, inputs)?;
        // The groups' outputs change from here on (even if a thread panics below).
        self.joined.iter_mut().for_each(|j| drop(j.take()));
        let n_out = self.module().outputs.len();
        let shapes: Vec<Vec<usize>> = (0..n_out).map(|k| self.output_shape(k)).collect();
        let sizes = &self.input_sizes;
        let run_group = |g: &mut Group| -> Vec<Vec<f32>> {
            let mut rec: Vec<Vec<f32>> = vec![Vec::new(); n_out];
            let mut step_inputs: Vec<Vec<f32>> = vec![Vec::new(); held.len()];
            for t in 0..steps {
                for (k, a) in held.iter().enumerate() {
                    if timed[k] {
                        let rows = a.slice_axis(Axis(0), (g.start..g.start + g.len).into());
                        let s = &mut step_inputs[k];
                        s.clear();
                        s.extend(rows.index_axis(Axis(1), t).iter().copied());
                    }
                }
                let part: Vec<&[f32]> = held
                    .iter()
                    .enumerate()
                    .map(|(k, a)| {
                        if timed[k] {
                            step_inputs[k].as_slice()
                        } else {
                            let n = sizes[k];
                            &a.as_slice().expect("standard")[g.start * n..(g.start + g.len) * n]
                        }
                    })
                    .collect();
                g.engine.step(&part);
                if record == Record::AllSteps || t + 1 == steps {
                    for (k, r) in rec.iter_mut().enumerate() {
                        r.extend_from_slice(g.engine.output(k));
                    }
                }
            }
            rec
        };
        let per_group: Vec<Vec<Vec<f32>>> = if self.threads <= 1 || self.groups.len() == 1 {
            self.groups.iter_mut().map(run_group).collect()
        } else {
            // Each thread takes the next group not yet taken until none is left.
            let next = std::sync::atomic::AtomicUsize::new(0);
            let slots: Vec<std::sync::Mutex<Option<&mut Group>>> = self
                .groups
                .iter_mut()
                .map(|g| std::sync::Mutex::new(Some(g)))
                .collect();
            let mut done: Vec<(usize, Vec<Vec<f32>>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..self.threads)
                    .map(|_| {
                        let (run_group, next, slots) = (&run_group, &next, &slots);
                        scope.spawn(move || {
                            let mut mine = Vec::new();
                            loop {
                                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(slot) = slots.get(k) else {
                                    break mine;
                                };
                                let g = slot
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .take()
                                    .expect("each group is taken once");
                                mine.push((k, run_group(g)));
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            done.sort_by_key(|(k, _)| *k);
            done.into_iter().map(|(_, r)| r).collect()
        };
        self.steps_done += steps as u64;
        self.joined.iter_mut().for_each(|j| drop(j.take()));
        let all = record == Record::AllSteps;
        let mut outputs = Vec::with_capacity(n_out);
        for (k, mut shape) in shapes.into_iter().enumerate() {
            let per_sample: usize = shape[1..].iter().product();
            let data = if all {
                // A group recorded (step, sample, element); the result is (sample, step, element).
                let mut data = Vec::with_capacity(self.batch * steps * per_sample);
                for (g, r) in self.groups.iter().zip(&per_group) {
                    for b in 0..g.len {
                        for t in 0..steps {
                            let at = (t * g.len + b) * per_sample;
                            data.extend_from_slice(&r[k][at..at + per_sample]);
                        }
                    }
                }
                shape.insert(1, steps);
                data
            } else if steps == 0 {
                // Nothing ran: the values as of the last step (or the reset).
                self.output_slice(k).to_vec()
            } else {
                per_group
                    .iter()
                    .flat_map(|r| r[k].iter().copied())
                    .collect()
            };
            outputs.push(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("recorded shapes"));
        }
        Ok(outputs)
    }

    /// Count spikes inside the following steps where the backend can: the JIT's eight-lane
    /// loops add up their population's spikes (and synaptic operations) while they are in
    /// registers, and [`observe::SpikeCounter::observe`] takes those sums instead of reading the
    /// spike outputs again. The counts are the same either way.
    pub fn count_in_step(&self, on: bool) {
        self.groups.iter().for_each(|g| g.engine.count_in_step(on));
    }

    /// See [`Engine::tally`]; samples are numbered across the whole batch. All or nothing: if
    /// one group did not count exactly (which depends on its data: a NaN, a negative count),
    /// nothing is reported and the answer is false, as for one engine.
    pub fn tally(
        &self,
        k: usize,
        synops: bool,
        out: &mut dyn FnMut(usize, f64, Option<f64>),
    ) -> bool {
        if let [g] = self.groups.as_slice() {
            return g.engine.tally(k, synops, out);
        }
        let mut counted = Vec::with_capacity(self.batch);
        for g in &self.groups {
            let start = g.start;
            let exact = g
                .engine
                .tally(k, synops, &mut |s, c, o| counted.push((start + s, c, o)));
            if !exact {
                return false;
            }
        }
        counted.into_iter().for_each(|(s, c, o)| out(s, c, o));
        true
    }

    /// The flat values of output `k` after the last step, for the whole batch (no copy with
    /// one group; joined from the groups on the first read after a step otherwise).
    pub fn output_slice(&self, k: usize) -> &[f32] {
        if let [g] = self.groups.as_slice() {
            return g.engine.output(k);
        }
        self.joined[k].get_or_init(|| {
            self.groups
                .iter()
                .flat_map(|g| g.engine.output(k).iter().copied())
                .collect()
        })
    }

    /// Check `inputs` for a run of `steps` steps: the arrays in C order, and per input whether
    /// it has a slice per step.
    fn prepare(
        &self,
        steps: usize,
        inputs: &[ArrayViewD<f32>],
    ) -> Result<(Vec<ArrayD<f32>>, Vec<bool>), SimError> {
        let m = self.module();
        let n = m.inputs.len();
        if inputs.len() != n {
            return Err(SimError::InputCount {
                expected: n,
                got: inputs.len(),
            });
        }
        let mut per_step = Vec::with_capacity(n);
        for (k, a) in inputs.iter().enumerate() {
            let rank = m.value(m.inputs[k]).ty.rank();
            let timed = a.ndim() == rank + 2 && a.shape()[1] == steps;
            if timed {
                let mut s = a.shape().to_vec();
                s.remove(1);
                self.check_input(k, &s, true)?;
            } else {
                self.check_input(k, a.shape(), true)?;
            }
            per_step.push(timed);
        }
        let held = inputs
            .iter()
            .map(|a| a.as_standard_layout().into_owned())
            .collect();
        Ok((held, per_step))
    }

    /// As [`Simulator::run`], calling `observe(step, self)` after every step (steps count from
    /// 0). The whole batch advances one step at a time, so that `observe` sees every sample.
    pub fn run_observed(
        &mut self,
        steps: usize,
        inputs: &[ArrayViewD<f32>],
        record: Record,
        observe: &mut dyn FnMut(usize, &Simulator),
    ) -> Result<Vec<ArrayD<f32>>, SimError> {
        let (held, per_step) = self.prepare(steps, inputs)?;
        let n_out = self.module().outputs.len();
        let mut recorded: Vec<Vec<ArrayD<f32>>> = vec![Vec::new(); n_out];
        for t in 0..steps {
            let step_inputs: Vec<Option<ArrayD<f32>>> = held
                .iter()
                .zip(&per_step)
                .map(|(a, &timed)| {
                    timed.then(|| a.index_axis(Axis(1), t).as_standard_layout().into_owned())
                })
                .collect();
            let slices: Vec<&[f32]> = step_inputs
                .iter()
                .zip(&held)
                .map(|(own, a)| own.as_ref().unwrap_or(a).as_slice().expect("standard"))
                .collect();
            self.step_groups(&slices);
            observe(t, self);
            if record == Record::AllSteps {
                for (k, r) in recorded.iter_mut().enumerate() {
                    r.push(self.output(k));
                }
            }
        }
        Ok(match record {
            Record::LastStep => (0..n_out).map(|k| self.output(k)).collect(),
            Record::AllSteps => recorded
                .into_iter()
                .enumerate()
                .map(|(k, r)| {
                    let last = self.output(k);
                    let mut shape = last.shape().to_vec();
                    shape.insert(1, r.len());
                    let data: Vec<f32> = (0..self.batch)
                        .flat_map(|b| {
                            r.iter()
                                .flat_map(move |a| a.index_axis(Axis(0), b).into_iter().copied())
                        })
                        .collect();
                    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("recorded shapes agree")
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    /// A simulator can move to another thread (the Python binding runs it without the GIL).
    #[test]
    fn simulators_are_send() {
        fn send<T: Send>() {}
        send::<super::Simulator>();
        send::<super::jit::JitEngine>();
        send::<super::interp::Interpreter>();
    }

    /// Groups are as even as can be, at least one per thread, never more than samples; an
    /// automatic size keeps the count bounded (each group compiles its own code).
    #[test]
    fn groups_split_the_batch_evenly() {
        use super::{Backend, Record, SimOptions, Simulator};
        let text = "module @m dt=0.001\ninput %j : f32[2]\nstate $v : f32[2] = zeros\n\n\
            %s, %v1 = spiking_relu %j, $v : f32[2], f32[2]\nnext $v = %v1\noutput \"s\" = %s\n";
        let m = snnc_ir::verify(snnc_ir::parse(text).unwrap(), snnc_ir::Target::Any).unwrap();
        let groups = |backend, batch, group, threads| {
            let options = SimOptions {
                group,
                threads,
                ..Default::default()
            };
            Simulator::with_options(&m, backend, batch, options)
                .unwrap()
                .groups()
        };
        assert_eq!(groups(Backend::Jit, 10, 4, 1), [4, 3, 3]);
        assert_eq!(groups(Backend::Jit, 10, 5, 1), [5, 5]);
        assert_eq!(groups(Backend::Jit, 10, 20, 1), [10]);
        assert_eq!(groups(Backend::Jit, 10, 20, 3), [4, 3, 3]);
        assert_eq!(groups(Backend::Jit, 2, 1, 8), [1, 1]);
        assert_eq!(groups(Backend::Interp, 10, 0, 1), [10]);
        assert_eq!(groups(Backend::Interp, 10, 0, 2), [5, 5]);
        // A tiny arena fits any batch in the cache: one group on one thread; on several, four
        // per thread (so that a faster thread can take more of them), never more than samples.
        assert_eq!(groups(Backend::Jit, 1000, 0, 1), [1000]);
        assert_eq!(groups(Backend::Jit, 64, 0, 2), [8; 8]);
        assert_eq!(groups(Backend::Jit, 9, 0, 2), [2, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(groups(Backend::Jit, 3, 0, 2), [1, 1, 1]);
        // No steps: the outputs as they are, and an empty record of steps.
        let mut sim = Simulator::with_options(
            &m,
            Backend::Jit,
            3,
            SimOptions {
                group: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let x = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[3, 2]), 600.0f32);
        let none = sim.run(0, &[x.view()], Record::AllSteps).unwrap();
        assert_eq!(none[0].shape(), [3, 0, 2]);
        let none = sim.run(0, &[x.view()], Record::LastStep).unwrap();
        assert_eq!(none[0].shape(), [3, 2]);
        assert!(none[0].iter().all(|&v| v == 0.0));
    }

    /// A JIT simulator built on one thread runs on another and gives the same spikes.
    #[test]
    fn a_simulator_runs_on_another_thread() {
        use super::{Backend, Record, Simulator};
        let text = "module @m dt=0.001\ninput %j : f32[2]\nstate $v : f32[2] = zeros\n\n\
            %s, %v1 = spiking_relu %j, $v : f32[2], f32[2]\nnext $v = %v1\noutput \"s\" = %s\n";
        let m = snnc_ir::verify(snnc_ir::parse(text).unwrap(), snnc_ir::Target::Any).unwrap();
        let x =
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 2]), vec![600.0, 300.0]).unwrap();
        let run = |mut sim: Simulator, x: ndarray::ArrayD<f32>| {
            sim.run(5, &[x.view()], Record::AllSteps).unwrap()
        };
        let here = run(Simulator::new(&m, Backend::Jit, 1).unwrap(), x.clone());
        let sim = Simulator::new(&m, Backend::Jit, 1).unwrap();
        let there = std::thread::spawn(move || run(sim, x)).join().unwrap();
        assert_eq!(here, there);
        // 600 Hz from v = 0: 0.6, 1.2 (spike), 0.8, 1.4 (spike), 1.0 (spike); a spike is 1/dt high.
        let h = 1.0 / 0.001f32;
        let spikes: Vec<f32> = here[0].iter().step_by(2).copied().collect();
        assert_eq!(spikes, [0.0, h, 0.0, h, h]);
    }
}
