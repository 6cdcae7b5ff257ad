//! The JIT against the interpreter: every `run` filetest, every Keras fixture (rate pipeline) and
//! the spiking MNIST example give the same outputs on both backends — rate and spiking alike,
//! spike for spike, because the emitted loops keep the interpreter's f32 operation order. The JIT
//! runs twice, with its eight-lane AVX2 loops (where the CPU has AVX2) and with Cranelift's
//! 128-bit loops only, and the two must agree too.

use ndarray::{ArrayD, IxDyn};
use snnc_ir::{Target, Verified, parse, verify};
use snnc_runtime::jit::JitOptions;
use snnc_runtime::{Backend, Record, Simulator};
use snnc_tests::filetest::{FileTest, Kind};
use snnc_tests::{files_with_ext, repo_root};

fn both(
    m: &Verified,
    inputs: &[ArrayD<f32>],
    steps: usize,
) -> (Vec<ArrayD<f32>>, Vec<ArrayD<f32>>) {
    let batch = inputs[0].shape()[0];
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    let run = |mut sim: Simulator| sim.run(steps, &views, Record::AllSteps).unwrap();
    let jit = run(Simulator::new(m, Backend::Jit, batch).unwrap());
    let options = JitOptions {
        narrow: true,
        ..Default::default()
    };
    let narrow = run(Simulator::with_jit_options(m, batch, options).unwrap());
    assert_same(
        "the JIT's 128-bit loops against its eight-lane ones",
        &narrow,
        &jit,
    );
    (run(Simulator::new(m, Backend::Interp, batch).unwrap()), jit)
}

fn assert_same(name: &str, a: &[ArrayD<f32>], b: &[ArrayD<f32>]) {
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.shape(), y.shape(), "{name} output {k}");
        for (i, (p, q)) in x.iter().zip(y.iter()).enumerate() {
            assert!(
                p == q || (p.is_nan() && q.is_nan()),
                "{name} output {k} element {i}: interp {p}, jit {q}"
            );
        }
    }
}

#[test]
fn run_filetests_agree() {
    let mut n = 0;
    for f in files_with_ext(&repo_root().join("tests/ir/run"), "sir") {
        let t = FileTest::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert_eq!(t.kind, Kind::Run);
        let m = verify(parse(&t.body).unwrap(), Target::Any).unwrap();
        let inputs: Vec<ArrayD<f32>> = m
            .inputs
            .iter()
            .map(|&v| {
                let d = m.value(v);
                let vals = &t.inputs.iter().find(|(n, _)| *n == d.name).unwrap().1;
                let mut shape = vec![2];
                shape.extend(&d.ty.shape);
                let twice: Vec<f32> = vals.iter().chain(vals.iter()).map(|x| x * 1.5).collect();
                ArrayD::from_shape_vec(IxDyn(&shape), twice).unwrap()
            })
            .collect();
        let (a, b) = both(&m, &inputs, t.steps.max(3));
        assert_same(&f.display().to_string(), &a, &b);
        n += 1;
    }
    assert!(n >= 6);
}

#[test]
fn keras_fixtures_agree_after_the_rate_pipeline() {
    // NengoDL's family brings keras-spiking's neurons and filters, and TimeDistributed.
    for dir in ["keras3", "keras2", "nengodl/tf213"] {
        let root = repo_root().join("tests/fixtures").join(dir);
        for f in files_with_ext(&root, "keras") {
            let name = f.file_stem().unwrap().to_str().unwrap();
            if !root.join(format!("{name}.io.npz")).exists() {
                continue; // a model that must be refused (keras_conformance.rs checks it)
            }
            let m = snnc_compiler::keras::load(&f, &Default::default()).unwrap();
            let m = verify(
                snnc_compiler::passes::convert(m, &Default::default()).unwrap(),
                Target::Any,
            )
            .unwrap();
            let mut npz = ndarray_npy::NpzReader::new(
                std::fs::File::open(root.join(format!("{name}.io.npz"))).unwrap(),
            )
            .unwrap();
            let inputs: Vec<ArrayD<f32>> = m
                .inputs
                .iter()
                .map(|&v| npz.by_name(&format!("input_{}", m.value(v).name)).unwrap())
                .collect();
            // A temporal model's inputs carry their time axis: run one step per time step.
            let steps = m
                .inputs
                .iter()
                .zip(&inputs)
                .find(|(v, a)| a.ndim() == m.value(**v).ty.shape.len() + 2)
                .map_or(1, |(_, a)| a.shape()[1]);
            let (a, b) = both(&m, &inputs, steps);
            assert_same(&f.display().to_string(), &a, &b);
        }
    }
}

/// The MNIST example converted to spiking at firing-rate scale `scale` (default pipeline), and
/// its test images.
fn spiking_mnist(scale: f64) -> (Verified, ArrayD<u8>) {
    let dir = repo_root().join("examples/mnist");
    let m = snnc_compiler::keras::load(&dir.join("model.keras"), &Default::default()).unwrap();
    let opts = snnc_compiler::passes::ConvertOptions {
        spiking: Some(snnc_compiler::passes::SpikeOptions {
            scale,
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = snnc_compiler::passes::convert(m, &opts).unwrap();
    let images = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    (verify(m, Target::Neural).unwrap(), images)
}

/// The first `n` images, as the network's f32 inputs.
fn first_images(images: &ArrayD<u8>, n: usize) -> ArrayD<f32> {
    images
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .mapv(f32::from)
}

/// `m` with every max-pool circuit level's input current (each `sparse` result) an output too: a
/// level whose current is stored has no eight-lane loop of its own shape and takes the loop that
/// tests each part as it goes.
fn with_level_currents_probed(m: &Verified) -> Verified {
    let mut module = m.clone().into_inner();
    let currents: Vec<_> = module
        .insts
        .iter()
        .filter(|i| matches!(i.op, snnc_ir::Op::Sparse { .. }))
        .map(|i| i.results[0])
        .collect();
    assert!(!currents.is_empty(), "the example has max-pool circuits");
    for v in currents {
        module.outputs.push(snnc_ir::Output {
            name: format!("current/{}", module.value(v).name),
            value: snnc_ir::Operand::Value(v),
            kind: Default::default(),
        });
    }
    verify(module, Target::Neural).unwrap()
}

#[test]
fn spiking_mnist_agrees_spike_for_spike() {
    let (m, images) = spiking_mnist(200.0);
    let x = first_images(&images, 8);
    let (a, b) = both(&m, std::slice::from_ref(&x), 25);
    assert_same("spiking mnist", &a, &b);
    let probed = with_level_currents_probed(&m);
    let (p, q) = both(&probed, &[x], 25);
    assert_same("spiking mnist, level currents probed", &p, &q);
    // The probes change nothing else.
    for (o, k) in m.outputs.iter().zip(0..) {
        let j = probed
            .outputs
            .iter()
            .position(|p| p.name == o.name)
            .unwrap();
        assert_same(&o.name, &a[k..k + 1], &p[j..j + 1]);
    }
    let spikes: f32 = a
        .iter()
        .zip(&m.outputs)
        .filter(|(_, o)| o.name.starts_with("spikes/"))
        .map(|(x, _)| x.sum())
        .sum();
    assert!(spikes > 0.0);
}

/// Random valid modules: a chain over `[len, c]` tensors drawn from every op family the JIT emits
/// or hands to the shared kernels, with states, spiking and rate neurons, synapses and an add that
/// joins two branches.
mod random_modules {
    use super::*;
    use proptest::prelude::*;
    use snnc_ir::{
        Builder, ConvAttrs, Neuron, NeuronModel, Op, Operand, Padding, PoolAttrs, StateInit,
        ValueId,
    };

    #[derive(Clone, Debug)]
    enum Step {
        Neuron(u8, f64),
        Lowpass(f64),
        Alpha(f64),
        /// A lowpass read through its state by a dense map (what `sink-synapses` moves).
        SynapseDense(usize),
        Bias,
        Scale(bool),
        Dense(usize),
        Conv(usize, usize, bool, bool),
        Pool(bool, usize),
        Gather,
        /// A gather that moves runs of four consecutive elements (as max-pool circuits do).
        GatherRuns,
        Sparse(usize),
        AddEarlier,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            // Few distinct parameters, so that branches share some and `merge` has work.
            3 => (
                prop_oneof![Just(5u8), Just(7), Just(0), Just(9), 0u8..10],
                prop_oneof![Just(1.0f64), Just(7.5), 0.5f64..60.0]
            )
                .prop_map(|(k, g)| Step::Neuron(k, g)),
            2 => prop_oneof![Just(0.005f64), 0.001f64..0.05].prop_map(Step::Lowpass),
            1 => (1usize..6).prop_map(Step::SynapseDense),
            1 => prop_oneof![Just(0.005f64), 0.0f64..0.05].prop_map(Step::Alpha),
            1 => Just(Step::Bias),
            1 => any::<bool>().prop_map(Step::Scale),
            1 => (1usize..6).prop_map(Step::Dense),
            1 => (1usize..4, 1usize..3, any::<bool>(), any::<bool>())
                .prop_map(|(k, s, same, grouped)| Step::Conv(k, s, same, grouped)),
            1 => (any::<bool>(), 1usize..4).prop_map(|(max, k)| Step::Pool(max, k)),
            1 => Just(Step::Gather),
            1 => Just(Step::GatherRuns),
            1 => (1usize..4).prop_map(Step::Sparse),
            1 => Just(Step::AddEarlier),
        ]
    }

    fn consts(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + 1) * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// One chain of `steps` per entry of `chains`, each starting from the input (parallel
    /// branches; an `AddEarlier` may join a value of an earlier branch), each with its output.
    fn build(chains: &[Vec<Step>], len: usize, c: usize) -> Option<snnc_ir::Module> {
        let mut b = Builder::new("random", 0.001);
        let input = b.input("x", &[len, c]);
        let mut seen: Vec<ValueId> = vec![input];
        for (ci, steps) in chains.iter().enumerate() {
            let cur = chain(&mut b, &mut seen, input, (ci, steps))?;
            b.output(&format!("out{ci}"), cur);
        }
        Some(b.finish())
    }

    fn chain(
        b: &mut Builder,
        seen: &mut Vec<ValueId>,
        input: ValueId,
        (ci, steps): (usize, &[Step]),
    ) -> Option<ValueId> {
        let mut cur = input;
        for (k, s) in steps.iter().enumerate() {
            let shape = b.module().value(cur).ty.shape.clone();
            let n: usize = shape.iter().product();
            let last = *shape.last()?;
            let name = format!("b{ci}v{k}");
            let k = k + 10 * ci;
            let x = Operand::Value(cur);
            cur = match s {
                Step::Neuron(kind, gain) => {
                    let model = match kind {
                        0 => NeuronModel::Relu,
                        1 => NeuronModel::LeakyRelu {
                            negative_slope: 0.1,
                        },
                        2 => NeuronModel::Sigmoid,
                        3 => NeuronModel::Tanh,
                        4 => NeuronModel::LifRate {
                            tau_rc: 0.02,
                            tau_ref: 0.002,
                        },
                        5 => NeuronModel::SpikingRelu,
                        6 => NeuronModel::SpikingLeakyRelu {
                            negative_slope: 0.2,
                        },
                        7 => NeuronModel::IfNeuron,
                        8 => NeuronModel::LeakyIf { decay: 0.9 },
                        _ => NeuronModel::Lif {
                            tau_rc: 0.02,
                            tau_ref: 0.002,
                            min_voltage: 0.0,
                        },
                    };
                    let op = Op::Neuron(Neuron {
                        model: model.clone(),
                        gain: *gain,
                        amplitude: 1.0 / gain,
                    });
                    let mut args = vec![x];
                    let mut states = Vec::new();
                    for j in 0..model.num_states() {
                        let st = b.state(
                            &format!("{name}.s{j}"),
                            &shape,
                            StateInit::Uniform {
                                lo: 0.0,
                                hi: 1.0,
                                seed: k as u64,
                            },
                        );
                        args.push(Operand::State(st));
                        states.push(st);
                    }
                    let r = b.op(op, &args, &name).ok()?;
                    for (st, v) in states.iter().zip(&r[1..]) {
                        b.next(*st, *v);
                    }
                    if model.is_spiking() {
                        b.output(&format!("{name}.spikes"), r[0]);
                    }
                    r[0]
                }
                Step::Lowpass(tau) => {
                    let st = b.state(&format!("{name}.syn"), &shape, StateInit::Zeros);
                    let r = b
                        .op1(Op::Lowpass { tau: *tau }, &[x, Operand::State(st)], &name)
                        .ok()?;
                    b.next(st, r);
                    r
                }
                Step::Alpha(tau) => {
                    let y = b.state(&format!("{name}.y"), &shape, StateInit::Zeros);
                    let z = b.state(&format!("{name}.z"), &shape, StateInit::Zeros);
                    let r = b
                        .op(
                            Op::Alpha { tau: *tau },
                            &[x, Operand::State(y), Operand::State(z)],
                            &name,
                        )
                        .ok()?;
                    b.next(y, r[0]);
                    b.next(z, r[1]);
                    r[0]
                }
                Step::SynapseDense(out) => {
                    let st = b.state(&format!("{name}.syn"), &shape, StateInit::Zeros);
                    let r = b
                        .op1(
                            Op::Lowpass { tau: 0.005 },
                            &[x, Operand::State(st)],
                            &format!("{name}.f"),
                        )
                        .ok()?;
                    b.next(st, r);
                    let w =
                        b.constant_f32(&format!("{name}.w"), &[last, *out], consts(last * out, k));
                    b.op1(Op::Dense, &[Operand::State(st), Operand::Const(w)], &name)
                        .ok()?
                }
                Step::Bias => {
                    let cst = b.constant_f32(&format!("{name}.b"), &[last], consts(last, k));
                    b.op1(Op::Bias, &[x, Operand::Const(cst)], &name).ok()?
                }
                Step::Scale(scalar) => {
                    let sh: &[usize] = if *scalar { &[] } else { &shape };
                    let cst =
                        b.constant_f32(&format!("{name}.s"), sh, consts(sh.iter().product(), k));
                    b.op1(Op::Scale, &[x, Operand::Const(cst)], &name).ok()?
                }
                Step::Dense(out) => {
                    let w =
                        b.constant_f32(&format!("{name}.w"), &[last, *out], consts(last * out, k));
                    b.op1(Op::Dense, &[x, Operand::Const(w)], &name).ok()?
                }
                Step::Conv(kw, stride, same, grouped) => {
                    if shape.len() != 2 {
                        continue;
                    }
                    let groups = if *grouped && last % 2 == 0 { 2 } else { 1 };
                    let cout = 2 * groups;
                    let w = b.constant_f32(
                        &format!("{name}.k"),
                        &[*kw, last / groups, cout],
                        consts(kw * last / groups * cout, k),
                    );
                    let attrs = ConvAttrs {
                        strides: vec![*stride],
                        dilation: vec![1],
                        padding: if *same { Padding::Same } else { Padding::Valid },
                        groups,
                    };
                    match b.op1(Op::Conv(attrs), &[x, Operand::Const(w)], &name) {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                }
                Step::Pool(max, kw) => {
                    if shape.len() != 2 {
                        continue;
                    }
                    let attrs = PoolAttrs {
                        pool: vec![*kw],
                        strides: vec![*kw],
                        padding: Padding::Same,
                    };
                    let op = if *max {
                        Op::MaxPool(attrs)
                    } else {
                        Op::AvgPool(attrs)
                    };
                    b.op1(op, &[x], &name).ok()?
                }
                Step::Gather | Step::GatherRuns => {
                    let quads = n / 4;
                    let idx: Vec<i32> = (0..n)
                        .map(|i| match s {
                            Step::Gather => ((i * 5 + 3) % n) as i32,
                            _ if i / 4 < quads => (((i / 4 * 3 + 1) % quads) * 4 + i % 4) as i32,
                            _ => i as i32,
                        })
                        .collect();
                    let t = b.constant_i32(&format!("{name}.idx"), &[n], idx);
                    b.op1(
                        Op::Gather {
                            shape: shape.clone(),
                        },
                        &[x, Operand::Const(t)],
                        &name,
                    )
                    .ok()?
                }
                Step::Sparse(per_row) => {
                    let mut idx = Vec::new();
                    for r in 0..n {
                        for t in 0..*per_row {
                            idx.extend([r as i32, ((r * 3 + t * 7) % n) as i32]);
                        }
                    }
                    let nnz = idx.len() / 2;
                    let t = b.constant_i32(&format!("{name}.idx"), &[nnz, 2], idx);
                    let w = b.constant_f32(&format!("{name}.w"), &[nnz], consts(nnz, k));
                    b.op1(
                        Op::Sparse {
                            shape: shape.clone(),
                        },
                        &[x, Operand::Const(t), Operand::Const(w)],
                        &name,
                    )
                    .ok()?
                }
                Step::AddEarlier => {
                    let Some(&other) = seen
                        .iter()
                        .find(|v| b.module().value(**v).ty.shape == shape)
                    else {
                        continue;
                    };
                    b.op1(Op::Add, &[x, Operand::Value(other)], &name).ok()?
                }
            };
            seen.push(cur);
        }
        Some(cur)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        /// Both backends agree on the module, and on it after `merge`, spike for spike with
        /// the unmerged module on the interpreter.
        fn backends_agree(
            chains in proptest::collection::vec(proptest::collection::vec(step(), 1..8), 1..4),
            len in 1usize..9,
            // Eight and sixteen channels: broadcast constants the eight-lane loops take.
            c in prop_oneof![1usize..5, Just(8), Just(16)],
            batch in 1usize..4,
        ) {
            let Some(m) = build(&chains, len, c) else { return Ok(()) };
            let m = verify(m, Target::Any).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let n = len * c * batch;
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
            let x = ArrayD::from_shape_vec(IxDyn(&[batch, len, c]), x).unwrap();
            let (a, b) = both(&m, std::slice::from_ref(&x), 6);
            assert_same(&format!("{chains:?}\n{}", *m), &a, &b);
            let merged = snnc_compiler::passes::merge(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let merged = verify(merged, Target::Any).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (c, d) = both(&merged, std::slice::from_ref(&x), 6);
            let what = format!("merged {chains:?}\n{}", *merged);
            assert_same(&what, &a, &c);
            assert_same(&what, &a, &d);
            // After `sink-synapses` the outputs change by rounding only (checked in
            // tests/passes.rs); here both backends must still agree on the moved module.
            let sunk = snnc_compiler::passes::sink_synapses(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let sunk = verify(sunk, Target::Any).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (e, f) = both(&sunk, std::slice::from_ref(&x), 6);
            assert_same(&format!("sunk {chains:?}\n{}", *sunk), &e, &f);
        }
    }
}

/// A batch simulated in groups (each with its own code and arena) gives what the whole batch
/// stepped at once gives, spike for spike: `run` taking each group through all its steps on two
/// threads, with held and with per-step inputs, a run continued from where the last one stopped,
/// and `step` advancing every group in turn.
#[test]
fn groups_and_threads_give_the_whole_batch() {
    use snnc_runtime::SimOptions;
    let (m, images) = spiking_mnist(100.0);
    let batch = 7;
    let x = first_images(&images, batch);
    let build = |backend, group, threads| {
        let options = SimOptions {
            group,
            threads,
            ..Default::default()
        };
        Simulator::with_options(&m, backend, batch, options).unwrap()
    };
    let mut whole = build(Backend::Interp, batch, 1);
    let mut grouped = build(Backend::Jit, 3, 2);
    assert_eq!(whole.groups(), [7]);
    assert_eq!(grouped.groups(), [3, 2, 2]);
    assert_eq!(grouped.threads(), 2);
    let held = [x.view()];
    let a = whole.run(12, &held, Record::AllSteps).unwrap();
    let b = grouped.run(12, &held, Record::AllSteps).unwrap();
    assert_same("12 held steps, in groups", &a, &b);
    // Spikes happened, in every sample.
    let k = m
        .outputs
        .iter()
        .position(|o| o.name == "spikes/conv1")
        .unwrap();
    for s in 0..batch {
        assert!(
            b[k].index_axis(ndarray::Axis(0), s)
                .iter()
                .any(|&v| v != 0.0)
        );
    }
    // Runs continue from the states the last one left.
    let a = whole.run(5, &held, Record::LastStep).unwrap();
    let b = grouped.run(5, &held, Record::LastStep).unwrap();
    assert_same("5 more steps", &a, &b);
    assert_eq!(grouped.steps_done(), 17);
    // A new image every step: (batch, steps, 28, 28, 1), sample `b` at step `t` image `b + t`.
    let steps = 6;
    let timed = ndarray::Array::from_shape_fn((batch, steps, 28, 28, 1), |(b, t, i, j, c)| {
        f32::from(images[[b + t, i, j, c]])
    })
    .into_dyn();
    whole.reset(0);
    grouped.reset(0);
    let a = whole.run(steps, &[timed.view()], Record::AllSteps).unwrap();
    let b = grouped
        .run(steps, &[timed.view()], Record::AllSteps)
        .unwrap();
    assert_same("per-step inputs, in groups", &a, &b);
    // Step by step, every group in turn; outputs read after each step.
    whole.reset(0);
    grouped.reset(0);
    for t in 0..4 {
        whole.step(&held).unwrap();
        grouped.step(&held).unwrap();
        for k in 0..m.outputs.len() {
            assert_eq!(
                whole.output_slice(k),
                grouped.output_slice(k),
                "step {t} output {k}"
            );
            assert_eq!(whole.output(k), grouped.output(k), "step {t} output {k}");
        }
    }
}

/// Spikes counted inside the step (the eight-lane loops' sums) are the spikes counted by reading
/// the outputs after it, population by population and sample by sample, synaptic operations
/// included.
#[test]
fn counting_in_the_step_agrees_with_counting_after_it() {
    let (m, images) = spiking_mnist(100.0);
    let batch = 3;
    let x = first_images(&images, batch);
    // As converted, every population is one of the eight-lane loops'. With the circuit levels'
    // currents probed, the levels' loop tests each part per chunk, counting included (and
    // conv2's chain is left to Cranelift's loop).
    counting_agrees(&with_level_currents_probed(&m), &x, batch, |name| {
        name.starts_with("spikes/pool")
    });
    counting_agrees(&m, &x, batch, |_| true);
}

/// A group whose in-step count is not exact (here one sample's pixel of 10³⁰, whose units fire
/// more spikes a step than f32 sums count exactly) makes the whole batch's tally give way to
/// counting the outputs: the exact groups' samples are not counted twice, and every sample's
/// counts are those of the whole batch counted after the step.
#[test]
fn an_inexact_group_leaves_the_count_to_the_outputs() {
    use snnc_runtime::observe::SpikeCounter;
    let (m, images) = spiking_mnist(100.0);
    let batch = 3;
    let mut x = first_images(&images, batch);
    x[[0, 14, 14, 0]] = 1e30;
    let count = |inside: bool, group: usize| {
        let options = snnc_runtime::SimOptions {
            group,
            ..Default::default()
        };
        let mut sim = Simulator::with_options(&m, Backend::Jit, batch, options).unwrap();
        sim.count_in_step(inside);
        let mut counter = SpikeCounter::new(&m, batch).with_synops(&m);
        sim.run_observed(10, &[x.view()], Record::LastStep, &mut |_, s| {
            counter.observe(s)
        })
        .unwrap();
        (counter.counts().to_vec(), counter.synops().to_vec())
    };
    let after = count(false, batch);
    assert_eq!(after, count(true, 2));
    assert_eq!(after, count(true, batch));
    // Sample 0 fired beyond what the in-step sums count exactly; the others did not.
    let (counts, _) = &after;
    let most = |s: usize| counts.iter().map(|r| r[s]).fold(0.0, f64::max);
    assert!(most(0) > f64::from(1 << 21), "{}", most(0));
    assert!(most(1) < 1e5 && most(2) < 1e5);
}

fn counting_agrees(m: &Verified, x: &ArrayD<f32>, batch: usize, must_count: fn(&str) -> bool) {
    use snnc_runtime::observe::SpikeCounter;
    let count = |inside: bool, group: usize| {
        let options = snnc_runtime::SimOptions {
            group,
            ..Default::default()
        };
        let mut sim = Simulator::with_options(m, Backend::Jit, batch, options).unwrap();
        sim.count_in_step(inside);
        let mut counter = SpikeCounter::new(m, batch).with_synops(m);
        let mut per_step = Vec::new();
        sim.run_observed(20, &[x.view()], Record::LastStep, &mut |_, s| {
            counter.observe(s);
            per_step.push((counter.counts().to_vec(), counter.synops().to_vec()));
        })
        .unwrap();
        // Where the eight-lane loops run, the step did count the populations that must be
        // theirs.
        #[cfg(target_arch = "x86_64")]
        if inside && std::arch::is_x86_feature_detected!("avx2") {
            let mut checked = 0;
            for &(k, _) in counter.outputs() {
                let name = &m.outputs[k].name;
                if must_count(name) {
                    assert!(
                        sim.tally(k, true, &mut |_, _, _| {}),
                        "{name} counted in the step"
                    );
                    checked += 1;
                }
            }
            assert!(checked > 0, "some population must be counted in the step");
        }
        per_step
    };
    let (after, inside) = (count(false, batch), count(true, batch));
    assert_eq!(after, inside);
    // In groups (numbered across the batch by `Simulator::tally`).
    assert_eq!(after, count(true, 2));
    let (spikes, _) = after.last().unwrap();
    assert!(spikes.iter().flatten().sum::<f64>() > 0.0);
}

/// A chain whose population reads an earlier result than the step before it (the synapse, not
/// the bias after it), kept only in the generated loop's registers: the eight-lane loops must not
/// read it from memory (they leave such a chain to the generated loop).
#[test]
fn a_chain_reading_past_its_previous_step_agrees() {
    let text = "module @m dt=0.001\ninput %x : f32[4,16]\nconst @c : f32[16] = [0.1, -0.2, 0.3, \
        0.4, 0.5, 0.6, -0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, -1.4, 1.5, 1.6]\n\
        state $s : f32[4,16] = zeros\nstate $v : f32[4,16] = uniform(0, 1, seed=1)\n\n\
        %f = lowpass %x, $s {tau=0.005} : f32[4,16]\n\
        %b = bias %f, @c : f32[4,16]\n\
        %y, %v1 = spiking_relu %f, $v {gain=50, amplitude=0.02} : f32[4,16], f32[4,16]\n\
        next $s = %b\nnext $v = %v1\noutput \"y\" = %y\n";
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    let x: Vec<f32> = (0..2 * 64).map(|i| (i % 13) as f32 * 7.0).collect();
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 4, 16]), x).unwrap();
    let (a, b) = both(&m, &[x], 30);
    assert_same("a chain reading past its previous step", &a, &b);
    assert!(a[0].iter().any(|&v| v != 0.0), "the population spikes");
}
