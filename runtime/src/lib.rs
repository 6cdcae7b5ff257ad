//! # snnc-runtime: simulators for verified snnc modules
//!
//! [`Simulator`] runs a [`Verified`] module step by step on a minibatch. The backend is chosen
//! with [`Backend`]: [`Backend::Interp`] is the reference interpreter ([`interp`]), written for
//! clarity and used to check every faster backend; [`Backend::Jit`] compiles the module into one
//! native step function ([`jit`]). Both run on one arena laid out by the module's
//! [`snnc_ir::MemoryPlan`], share the dense and convolution kernels ([`linear`]), and give the same
//! numbers bit for bit. Both skip the instructions that read only inputs and constants while the
//! inputs stay the same from one step to the next.

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

/// Runs a verified module on a minibatch, step by step.
pub struct Simulator {
    engine: Box<dyn Engine>,
    batch: usize,
    steps_done: u64,
}

impl Simulator {
    /// A simulator of `module` on `backend` for minibatches of `batch` samples, reset with seed 0.
    pub fn new(module: &Verified, backend: Backend, batch: usize) -> Result<Self, SimError> {
        if batch == 0 {
            return Err(SimError::ZeroBatch);
        }
        let engine: Box<dyn Engine> = match backend {
            Backend::Interp => Box::new(interp::Interpreter::new(module, batch)?),
            Backend::Jit => Box::new(jit::JitEngine::new(module, batch)?),
        };
        Ok(Simulator {
            engine,
            batch,
            steps_done: 0,
        })
    }

    /// A simulator on the JIT built with `options` (see [`jit::JitOptions`]), for minibatches
    /// of `batch` samples, reset with seed 0.
    pub fn with_jit_options(
        module: &Verified,
        batch: usize,
        options: jit::JitOptions,
    ) -> Result<Self, SimError> {
        if batch == 0 {
            return Err(SimError::ZeroBatch);
        }
        Ok(Simulator {
            engine: Box::new(jit::JitEngine::with_options(module, batch, options)?),
            batch,
            steps_done: 0,
        })
    }

    /// The module being simulated.
    pub fn module(&self) -> &Module {
        self.engine.module()
    }

    /// Minibatch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Steps run since the last reset.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Restore every state to its initial value; `seed` re-keys `uniform` initial states.
    pub fn reset(&mut self, seed: u64) {
        self.engine.reset(seed);
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
        self.engine.step(&slices);
        self.steps_done += 1;
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
        self.engine.step(inputs);
        self.steps_done += 1;
        Ok(())
    }

    /// Output `k` after the last step, as `(batch, *shape)`.
    pub fn output(&self, k: usize) -> ArrayD<f32> {
        let m = self.module();
        let ty = m.operand_type(m.outputs[k].value).expect("verified");
        let mut shape = vec![self.batch];
        shape.extend_from_slice(&ty.shape);
        ArrayD::from_shape_vec(IxDyn(&shape), self.engine.output(k).to_vec())
            .expect("engine output size")
    }

    /// Run `steps` steps. Each input is `(batch, *shape)` (held for every step) or
    /// `(batch, steps, *shape)` (one slice per step). Returns one array per output.
    pub fn run(
        &mut self,
        steps: usize,
        inputs: &[ArrayViewD<f32>],
        record: Record,
    ) -> Result<Vec<ArrayD<f32>>, SimError> {
        self.run_observed(steps, inputs, record, &mut |_, _| {})
    }

    /// Count spikes inside the following steps where the backend can: the JIT's eight-lane
    /// loops add up their population's spikes (and synaptic operations) while they are in
    /// registers, and [`observe::SpikeCounter::observe`] takes those sums instead of reading the
    /// spike outputs again. The counts are the same either way.
    pub fn count_in_step(&self, on: bool) {
        self.engine.count_in_step(on);
    }

    /// See [`Engine::tally`].
    pub fn tally(
        &self,
        k: usize,
        synops: bool,
        out: &mut dyn FnMut(usize, f64, Option<f64>),
    ) -> bool {
        self.engine.tally(k, synops, out)
    }

    /// The flat values of output `k` after the last step, for the whole batch (no copy).
    pub fn output_slice(&self, k: usize) -> &[f32] {
        self.engine.output(k)
    }

    /// As [`Simulator::run`], calling `observe(step, self)` after every step (steps count from 0).
    pub fn run_observed(
        &mut self,
        steps: usize,
        inputs: &[ArrayViewD<f32>],
        record: Record,
        observe: &mut dyn FnMut(usize, &Simulator),
    ) -> Result<Vec<ArrayD<f32>>, SimError> {
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
        let held: Vec<ArrayD<f32>> = inputs
            .iter()
            .map(|a| a.as_standard_layout().into_owned())
            .collect();
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
            self.engine.step(&slices);
            self.steps_done += 1;
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
