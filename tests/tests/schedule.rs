//! `fixed_relu` and the JIT's schedule by next spike step: the scheduled populations give the
//! interpreter's plain step-by-step spikes, held and changing inputs, resets and long runs alike;
//! the closed form stays within one spike of f32 accumulation over 10,000 steps; the pass picks
//! exactly the populations whose current is held.

use ndarray::ArrayD;
use snnc_ir::semantics::{fixed_relu_step, spiking_step};
use snnc_ir::{Module, NeuronModel, Op, Target, Verified, parse, verify};
use snnc_runtime::Engine;
use snnc_runtime::interp::Interpreter;
use snnc_runtime::jit::JitEngine;

/// A small deterministic generator for the tests' weights and inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + (hi - lo) * ((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// A held layer (dense + bias into `fixed_relu`) feeding a second, time-varying layer; both
/// populations' spikes are outputs.
const TWO_LAYERS: &str = "module @m dt=0.001
input %x : f32[6]
const @w : f32[6,40] = W
const @b : f32[40] = B
const @w2 : f32[40,5] = W2
state $v : f32[40] = uniform(0, 1, seed=3)
state $v2 : f32[5] = zeros

%j = dense %x, @w : f32[40]
%jb = bias %j, @b : f32[40]
%s, %v1 = fixed_relu %jb, $v {gain=30, amplitude=0.001} : f32[40], f32[40]
next $v = %v1
%k = dense %s, @w2 : f32[5]
%t, %v21 = spiking_relu %k, $v2 {gain=1, amplitude=0.001} : f32[5], f32[5]
next $v2 = %v21
output \"s\" = %s
output \"t\" = %t
";

/// The text with its constants `W`, `B`, `W2` filled from a generator seeded `seed`.
fn text(template: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut list = |n: usize| {
        let v: Vec<String> = (0..n)
            .map(|_| format!("{}", rng.uniform(-1.0, 1.0) as f32))
            .collect();
        format!("[{}]", v.join(", "))
    };
    let (w, b, w2) = (list(240), list(40), list(200));
    template
        .replace("= W2", &format!("= {w2}"))
        .replace("= W", &format!("= {w}"))
        .replace("= B", &format!("= {b}"))
}

fn module(template: &str, seed: u64) -> Verified {
    let m: Module = parse(&text(template, seed)).unwrap();
    verify(m, Target::Any).unwrap()
}

/// Step both engines on the same inputs and compare every output on every step.
fn agree(m: &Verified, batch: usize, schedule: &[(usize, &[f32])]) -> usize {
    let mut a = Interpreter::new(m, batch).unwrap();
    let mut b = JitEngine::new(m, batch).unwrap();
    let mut spikes = 0;
    let mut t = 0;
    for &(steps, x) in schedule {
        if steps == 0 {
            a.reset(7);
            b.reset(7);
            continue;
        }
        for _ in 0..steps {
            a.step(&[x]);
            b.step(&[x]);
            t += 1;
            for k in 0..m.outputs.len() {
                let (p, q) = (a.output(k), b.output(k));
                assert_eq!(p, q, "output {k} differs at step {t}");
                spikes += p.iter().filter(|&&v| v != 0.0).count();
            }
        }
    }
    spikes
}

#[test]
fn scheduled_populations_spike_as_stepping_does() {
    let m = module(TWO_LAYERS, 11);
    let jit = JitEngine::new(&m, 3).unwrap();
    assert_eq!(jit.scheduled, 1, "the held population is scheduled");
    let mut rng = Rng::new(5);
    let mut input = |scale: f32| -> Vec<f32> {
        (0..18)
            .map(|_| scale * rng.uniform(-1.0, 3.0) as f32)
            .collect()
    };
    let (x1, x2, x3) = (input(2.0), input(0.3), input(6.0));
    // Held for longer than the wheel's 256 steps (units with long periods go through the far
    // list), a change of inputs in the middle of a stretch, a reset mid-run, and a single step.
    let spikes = agree(
        &m,
        3,
        &[
            (700, &x1),
            (300, &x2),
            (1, &x3),
            (400, &x3),
            (0, &[]),
            (350, &x1),
            (120, &x2),
        ],
    );
    assert!(spikes > 10_000, "the test must see spikes ({spikes})");
}

#[test]
fn a_population_read_elsewhere_steps_every_unit() {
    // An output of the voltage keeps the population out of the schedule; it still agrees.
    let with_v = TWO_LAYERS.replace("output \"t\" = %t", "output \"t\" = %t\noutput \"v\" = %v1");
    let m = module(&with_v, 12);
    assert_eq!(JitEngine::new(&m, 2).unwrap().scheduled, 0);
    let x: Vec<f32> = (0..12).map(|k| k as f32 / 3.0).collect();
    assert!(agree(&m, 2, &[(300, &x)]) > 1000);
}

#[test]
fn closed_form_stays_within_a_spike_of_f32_accumulation() {
    // 2,000 units with drives from 0.001 to 0.9 per step and random initial voltages, 10,000 steps:
    // the fixed-point count and f32 accumulation (`spiking_relu`) against the exact count
    // ⌊v₀ + t·d⌋ in f64, with `d` the f32 drive.
    let mut rng = Rng::new(1);
    let p = (1.0f32, 1.0f32, 1.0f32);
    let steps = 10_000;
    let mut worst = (0i64, 0i64);
    for _ in 0..2000 {
        let d = rng.uniform(0.001, 0.9) as f32;
        let v0 = rng.uniform(0.0, 1.0) as f32;
        let (mut vf, mut vx) = (v0, v0);
        let (mut nf, mut nx) = (0i64, 0i64);
        for _ in 0..steps {
            let (y, v1) = spiking_step(&NeuronModel::SpikingRelu, p, d, vf);
            nf += y as i64;
            vf = v1;
            let (y, v1) = fixed_relu_step(p, d, vx);
            nx += y as i64;
            vx = v1;
        }
        let exact = (f64::from(v0) + steps as f64 * f64::from(d)).floor() as i64;
        worst.0 = worst.0.max((nx - exact).abs());
        worst.1 = worst.1.max((nf - exact).abs());
        assert!((nx - nf).abs() <= 1, "fixed {nx}, f32 {nf}, exact {exact}");
    }
    // The fixed-point count is within one spike of the exact one; f32 accumulation drifts too.
    assert!(worst.0 <= 1, "fixed-point drift {}", worst.0);
    assert!(worst.1 <= 1, "f32 drift {}", worst.1);
}

#[test]
fn the_pass_picks_populations_with_held_currents() {
    let m = parse(&text(&TWO_LAYERS.replace("fixed_relu", "spiking_relu"), 1)).unwrap();
    let (out, n) = snnc_compiler::passes::fixed_neurons(&m);
    assert_eq!(n, 1);
    let models: Vec<NeuronModel> = out
        .insts
        .iter()
        .filter_map(|i| match &i.op {
            Op::Neuron(n) => Some(n.model.clone()),
            _ => None,
        })
        .collect();
    // The second layer reads the first one's spikes (a state, through the population): it
    // stays a spiking ReLU.
    assert_eq!(models, [NeuronModel::FixedRelu, NeuronModel::SpikingRelu]);
}

/// The MNIST example, spiking at scale 100, through the default pipeline (and `fixed-neurons`
/// when `fixed`), with its test images as floats.
fn mnist(fixed: bool) -> (Verified, Vec<f32>) {
    let dir = snnc_tests::repo_root().join("examples/mnist");
    let m = snnc_compiler::keras::load(&dir.join("model.keras"), &Default::default()).unwrap();
    let opts = snnc_compiler::passes::ConvertOptions {
        spiking: Some(snnc_compiler::passes::SpikeOptions {
            scale: 100.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut passes = snnc_compiler::passes::DEFAULT_PIPELINE.to_vec();
    if fixed {
        passes.push("fixed-neurons");
    }
    let hooks = &mut snnc_compiler::passes::PassHooks::default();
    let m = snnc_compiler::passes::run_pipeline(m, &passes, &opts, hooks).unwrap();
    let images: ArrayD<u8> = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    let x = images.iter().map(|&p| f32::from(p)).collect();
    (verify(m, Target::Neural).unwrap(), x)
}

#[test]
fn the_mnist_example_schedules_its_first_layer_and_agrees() {
    let (m, images) = mnist(true);
    assert_eq!(JitEngine::new(&m, 1).unwrap().scheduled, 1);
    let batch = 4;
    let n = 28 * 28;
    let (x, x2) = (&images[..batch * n], &images[batch * n..2 * batch * n]);
    assert!(agree(&m, batch, &[(60, x), (40, x2), (0, &[]), (30, x2)]) > 1000);
}

#[test]
fn held_inputs_give_what_recomputing_gives() {
    // SPEC §2.2 rule 1: while the inputs are bitwise unchanged, both backends keep the results of
    // instructions that read only inputs and constants. Against recomputation: the same images,
    // with one zero pixel's sign flipped on every other step (-0 and +0 differ in bits, so no
    // step counts as held, and the first convolution runs every step), give the same outputs.
    for fixed in [false, true] {
        let (m, images) = mnist(fixed);
        let batch = 3;
        let x = &images[..batch * 784];
        let zero = x.iter().position(|&v| v == 0.0).unwrap();
        let mut flipped = x.to_vec();
        flipped[zero] = -0.0;
        let make = |jit: bool| -> Box<dyn Engine> {
            if jit {
                Box::new(JitEngine::new(&m, batch).unwrap())
            } else {
                Box::new(Interpreter::new(&m, batch).unwrap())
            }
        };
        for jit in [false, true] {
            let (mut held, mut fresh) = (make(jit), make(jit));
            let mut spikes = 0;
            for t in 0..40 {
                held.step(&[x]);
                fresh.step(&[if t % 2 == 0 { x } else { &flipped }]);
                for k in 0..m.outputs.len() {
                    assert_eq!(held.output(k), fresh.output(k), "output {k} at step {t}");
                    spikes += held.output(k).iter().filter(|&&v| v != 0.0).count();
                }
            }
            assert!(spikes > 1000);
        }
    }
}
