//! `lower-maxpool` and `spikify`: the rate circuit equals `max_pool`, the spiking circuit counts
//! spikes as the maximum of its inputs' counts, spikify has NengoDL's semantics, and the MNIST
//! example converts to spikes with the ANN's accuracy.

use ndarray::{ArrayD, IxDyn};
use snnc_compiler::passes::{
    ConvertOptions, InitialVoltage, MaxPoolMode, SpikeOptions, convert, lower_maxpool, spikify,
};
use snnc_ir::{
    Builder, Module, Neuron, NeuronModel, Op, Padding, PoolAttrs, StateInit, Target, parse, verify,
};
use snnc_runtime::{Backend, Record, Simulator};
use snnc_tests::repo_root;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn run1(m: &Module, x: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    let v = verify(m.clone(), Target::Any).unwrap_or_else(|e| panic!("{e}\n{m}"));
    let mut sim = Simulator::new(&v, Backend::Interp, x.shape()[0]).unwrap();
    sim.run(1, &[x.view()], Record::LastStep).unwrap()
}

fn pool_module(shape: &[usize], op: Op) -> Module {
    let mut b = Builder::new("pool", 0.001);
    let x = b.input("x", shape);
    let y = b.op1(op, &[x.into()], "pool").unwrap();
    b.output("y", y);
    b.finish()
}

#[test]
fn rate_circuit_equals_max_pool() {
    let p = |pool: &[usize], strides: &[usize], padding| {
        Op::MaxPool(PoolAttrs {
            pool: pool.to_vec(),
            strides: strides.to_vec(),
            padding,
        })
    };
    let cases: Vec<(Vec<usize>, Op)> = vec![
        (vec![8, 3], p(&[2], &[2], Padding::Valid)),
        (vec![9, 2], p(&[3], &[1], Padding::Valid)),
        (vec![7, 2], p(&[3], &[2], Padding::Same)),
        (vec![6, 6, 2], p(&[2, 2], &[2, 2], Padding::Valid)),
        (vec![7, 7, 3], p(&[3, 3], &[2, 2], Padding::Valid)),
        (vec![7, 6, 2], p(&[3, 3], &[2, 2], Padding::Same)),
        (vec![5, 5, 1], p(&[2, 2], &[1, 1], Padding::Same)),
        (vec![4, 4, 4, 2], p(&[2, 2, 2], &[2, 2, 2], Padding::Valid)),
        (vec![5, 4, 3], Op::GlobalMaxPool),
        (vec![10, 4], Op::GlobalMaxPool),
    ];
    for (i, (shape, op)) in cases.into_iter().enumerate() {
        let m = pool_module(&shape, op);
        let lowered = lower_maxpool(&m, MaxPoolMode::Neural).unwrap();
        assert!(
            snnc_ir::check(&lowered, Target::Neural).is_empty(),
            "case {i}: not neural:\n{lowered}"
        );
        let mut full = vec![3];
        full.extend(&shape);
        let x =
            ArrayD::from_shape_vec(IxDyn(&full), data(full.iter().product(), i as u64)).unwrap();
        let want = run1(&m, &x).remove(0);
        let got = run1(&lowered, &x).remove(0);
        assert_eq!(want.shape(), got.shape());
        for (g, w) in got.iter().zip(want.iter()) {
            assert!(
                (g - w).abs() <= 2e-6 * (1.0 + w.abs()),
                "case {i}: circuit {g}, max_pool {w}"
            );
        }
        // k − 1 units per window of k cells.
        let windows = snnc_compiler::passes::lower_maxpool::pool_windows(
            &shape,
            match &m.insts[0].op {
                Op::MaxPool(p) => Some(p),
                _ => None,
            },
        )
        .unwrap();
        let units: usize = lowered
            .insts
            .iter()
            .filter(|inst| matches!(&inst.op, Op::Neuron(_)))
            .map(|inst| lowered.value(inst.results[0]).ty.num_elements())
            .sum();
        assert_eq!(
            units,
            windows.iter().map(|w| w.len() - 1).sum::<usize>(),
            "case {i}"
        );
    }
}

#[test]
fn avg_and_keep_modes() {
    let m = pool_module(
        &[4, 4, 1],
        Op::MaxPool(PoolAttrs {
            pool: vec![2, 2],
            strides: vec![2, 2],
            padding: Padding::Valid,
        }),
    );
    let avg = lower_maxpool(&m, MaxPoolMode::Avg).unwrap();
    assert!(matches!(avg.insts[0].op, Op::AvgPool(_)));
    assert_eq!(
        lower_maxpool(&m, MaxPoolMode::Keep).unwrap().to_string(),
        m.to_string()
    );
}

/// Four spiking populations at different rates pooled by the IF circuit: after 1000 steps the
/// circuit's cumulative spike count equals the largest input count within one spike.
#[test]
fn spiking_circuit_counts_the_maximum() {
    let text = "module @m dt=0.001
input %j : f32[1,4,1]
state $v : f32[1,4,1] = uniform(0, 1, seed=3)
%s, %v1 = spiking_relu %j, $v {gain=100, amplitude=0.01} : f32[1,4,1], f32[1,4,1]
next $v = %v1
%p = max_pool %s {pool=[1,4], strides=[1,4], padding=valid} : f32[1,1,1]
output \"pool\" = %p
output \"inputs\" = %s
";
    let m = parse(text).unwrap();
    let lowered = lower_maxpool(&m, MaxPoolMode::Neural).unwrap();
    assert!(
        lowered
            .insts
            .iter()
            .any(|i| matches!(&i.op, Op::Neuron(n) if n.model == NeuronModel::IfNeuron))
    );
    let v = verify(lowered, Target::Neural).unwrap();
    let mut sim = Simulator::new(&v, Backend::Interp, 1).unwrap();
    // Rates (Hz) that cross: input 2 leads early, input 0 overtakes.
    let k_pool = v.outputs.iter().position(|o| o.name == "pool").unwrap();
    let k_in = v.outputs.iter().position(|o| o.name == "inputs").unwrap();
    let (mut out, mut ins) = (0.0f64, [0.0f64; 4]);
    let mut worst: f64 = 0.0;
    for t in 0..1000 {
        let j = if t < 300 {
            [0.2, 0.5, 0.9, 0.0]
        } else {
            [1.6, 0.5, 0.1, -0.3]
        };
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 4, 1]), j.to_vec()).unwrap();
        sim.step(&[x.view()]).unwrap();
        out += sim
            .output(k_pool)
            .iter()
            .map(|&s| s as f64 * 0.001 / 0.01)
            .sum::<f64>();
        for (c, &s) in ins.iter_mut().zip(sim.output(k_in).iter()) {
            *c += s as f64 * 0.001 / 0.01;
        }
        let max_in = ins.iter().copied().fold(f64::MIN, f64::max);
        worst = worst.max((out - max_in).abs());
    }
    let max_in = ins.iter().copied().fold(f64::MIN, f64::max);
    assert!(max_in > 100.0, "inputs should spike: {ins:?}");
    assert!(
        (out - max_in).abs() <= 1.0,
        "pool count {out}, max input count {max_in}"
    );
    assert!(
        worst <= 2.0,
        "the count tracks the maximum at every step (worst gap {worst})"
    );
}

#[test]
fn spikify_has_nengo_semantics() {
    let text = "module @m dt=0.001
input %x : f32[3]
%y = relu %x : f32[3]
output \"y\" = %y
";
    let m = parse(text).unwrap();
    let s = 5.0;
    let opts = SpikeOptions {
        scale: s,
        synapse: None,
        initial_voltage: InitialVoltage::Fixed(0.0),
        ..SpikeOptions::default()
    };
    let spiking = spikify(&m, &opts).unwrap();
    let inst = &spiking.insts[0];
    let Op::Neuron(n) = &inst.op else {
        panic!("{spiking}")
    };
    assert_eq!(
        (n.model.clone(), n.gain, n.amplitude),
        (NeuronModel::SpikingRelu, s, 1.0 / s)
    );
    assert!(spiking.find_output("spikes/y").is_some());
    let v = verify(spiking, Target::Neural).unwrap();
    let mut sim = Simulator::new(&v, Backend::Interp, 1).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![2.0, 13.7, -1.0]).unwrap();
    let out = sim.run(1000, &[x.view()], Record::AllSteps).unwrap();
    let height = 1.0 / (0.001 * s as f32);
    for k in 0..3 {
        let mut count = 0.0;
        for t in 0..1000 {
            let o = out[0][[0, t, k]];
            assert!(
                o == 0.0 || (o / height - (o / height).round()).abs() < 1e-4,
                "a spike has height 1/(dt·S): {o}"
            );
            count += o / height;
        }
        // rate = relu(x)·S spikes per second for 1 s.
        let want = (x[[0, k]].max(0.0) as f64 * s) as f32;
        assert!(
            (count - want).abs() <= 1.0,
            "input {k}: {count} spikes, expected {want} ± 1"
        );
    }
    // With a synapse, readers see the filtered spikes one step late.
    let delayed = spikify(
        &m,
        &SpikeOptions {
            scale: s,
            ..SpikeOptions::default()
        },
    )
    .unwrap();
    let y = delayed.find_output("y").unwrap();
    assert!(matches!(y.value, snnc_ir::Operand::State(_)), "{delayed}");
    // Every ReLU becomes spiking; a softmax readout stays.
    let mut b = Builder::new("m", 0.001);
    let x = b.input("x", &[2]);
    let r = b
        .op1(
            Op::Neuron(Neuron {
                model: NeuronModel::LeakyRelu {
                    negative_slope: 0.1,
                },
                gain: 1.0,
                amplitude: 1.0,
            }),
            &[x.into()],
            "l",
        )
        .unwrap();
    let sm = b.op1(Op::Softmax, &[r.into()], "sm").unwrap();
    b.output("p", sm);
    let st = b.state("unused", &[1], StateInit::Zeros);
    b.next(st, st);
    let out = spikify(&b.finish(), &SpikeOptions::default()).unwrap();
    assert!(out.to_string().contains("spiking_leaky_relu"), "{out}");
}

/// The MNIST example, 200 images, spiking at scale 200 with the neural max-pool circuit: the
/// accuracy at step 40 is a regression guard (measured 98.5% on 1000 images at step 60).
#[test]
fn mnist_spiking_regression() {
    let dir = repo_root().join("examples/mnist");
    let m = snnc_compiler::keras::load(&dir.join("model.keras"), &Default::default()).unwrap();
    let opts = ConvertOptions {
        max_pool: MaxPoolMode::Neural,
        spiking: Some(SpikeOptions {
            scale: 200.0,
            ..SpikeOptions::default()
        }),
    };
    let m = verify(convert(m, &opts).unwrap(), Target::Neural).unwrap();
    let images: ArrayD<u8> = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    let labels: ndarray::Array1<i64> = ndarray_npy::read_npy(dir.join("test_labels.npy")).unwrap();
    let n = 200;
    let x = images
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .mapv(f32::from);
    let mut sim = Simulator::new(&m, Backend::Interp, n).unwrap();
    let logits_k = m.outputs.iter().position(|o| o.name == "logits").unwrap();
    let out = sim
        .run(40, &[x.view()], Record::LastStep)
        .unwrap()
        .remove(logits_k);
    let correct = (0..n)
        .filter(|&i| {
            let row = out.index_axis(ndarray::Axis(0), i);
            let best = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            best as i64 == labels[i]
        })
        .count();
    assert!(correct >= 195, "spiking MNIST: {correct}/200 at step 40");
}

/// `sink-synapses` moves a lowpass below the linear maps reading it; in real arithmetic nothing
/// changes, so over 60 steps of sparse, changing spike-like inputs every output stays within f32
/// rounding of the original's, and the moved module really has the synapses after the maps.
#[test]
fn sink_synapses_keeps_the_outputs() {
    let mut b = Builder::new("s", 0.001);
    let s_in = b.input("s", &[6, 6, 2]);
    let k = b.constant_f32("k", &[3, 3, 2, 3], data(54, 7));
    let w = b.constant_f32("w", &[72, 4], data(288, 8));
    let bias = b.constant_f32("b", &[3], vec![0.5, -0.25, 1.0]);
    let filtered = |b: &mut Builder, name: &str, tau: f64| {
        let st = b.state(name, &[6, 6, 2], StateInit::Zeros);
        let f = b
            .op1(
                Op::Lowpass { tau },
                &[s_in.into(), st.into()],
                &format!("f{name}"),
            )
            .unwrap();
        b.next(st, f);
        st
    };
    let a = filtered(&mut b, "a", 0.005);
    let c = filtered(&mut b, "c", 0.02);
    let conv = Op::Conv(snnc_ir::ConvAttrs {
        strides: vec![1, 1],
        padding: Padding::Same,
        dilation: vec![1, 1],
        groups: 1,
    });
    let y = b.op1(conv, &[a.into(), k.into()], "conv").unwrap();
    let y = b.op1(Op::Bias, &[y.into(), bias.into()], "biased").unwrap();
    let flat = b
        .op1(Op::Reshape { shape: vec![72] }, &[c.into()], "flat")
        .unwrap();
    let d = b.op1(Op::Dense, &[flat.into(), w.into()], "d").unwrap();
    b.output("conv", y);
    b.output("dense", d);
    let m = b.finish();
    let sunk = snnc_compiler::passes::sink_synapses(&m).unwrap();
    let text = sunk.to_string();
    assert!(text.contains("%conv = conv %s, @k"), "{text}");
    assert!(text.contains("%d = dense %flat, @w"), "{text}");
    assert!(!text.contains("$a :") && !text.contains("$c :"), "{text}");
    let (m, sunk) = (
        verify(m, Target::Any).unwrap(),
        verify(sunk, Target::Any).unwrap(),
    );
    let mut sims = [
        Simulator::new(&m, Backend::Interp, 2).unwrap(),
        Simulator::new(&sunk, Backend::Interp, 2).unwrap(),
    ];
    for t in 0..60u64 {
        // About one element in eight spikes, with height 1/dt.
        let x: Vec<f32> = data(144, t + 1)
            .into_iter()
            .map(|v| if v > 1.5 { 1000.0 } else { 0.0 })
            .collect();
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 6, 6, 2]), x).unwrap();
        let [a, b] = sims
            .each_mut()
            .map(|s| s.run(1, &[x.view()], Record::LastStep).unwrap());
        for (p, q) in a.iter().zip(&b) {
            for (u, v) in p.iter().zip(q.iter()) {
                assert!(
                    (u - v).abs() <= 1e-4 * u.abs().max(1.0),
                    "step {t}: {u} vs {v}"
                );
            }
        }
        assert!(
            t == 0 || a[1].iter().any(|&v| v != 0.0),
            "step {t}: the dense output is all zero"
        );
    }
}

/// The circuit numbers its units so that neighbouring units read neighbouring inputs: in a
/// channels-last 2×2 pool, unit `j + 1` is the same pair of window cells one channel further, so
/// a runtime can load four units' operands as one vector (the JIT does).
#[test]
fn circuit_units_read_consecutive_channels() {
    let m = pool_module(
        &[4, 4, 8],
        Op::MaxPool(PoolAttrs {
            pool: vec![2, 2],
            strides: vec![2, 2],
            padding: Padding::Valid,
        }),
    );
    let lowered = lower_maxpool(&m, MaxPoolMode::Neural).unwrap();
    for level in ["l0", "l1"] {
        let name = format!("pool.{level}.idx");
        let c = lowered
            .constants
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} in\n{lowered}"));
        let snnc_ir::ConstData::I32(idx) = &c.data else {
            panic!("{name} is not i32")
        };
        // Entries (row, column), two per unit: +a then −b.
        let units = idx.len() / 4;
        for j in 0..units - 1 {
            if (j + 1) % 8 == 0 {
                continue; // the next window position
            }
            for t in 0..2 {
                let (col, next) = (idx[4 * j + 2 * t + 1], idx[4 * (j + 1) + 2 * t + 1]);
                assert_eq!(next, col + 1, "{name}: unit {j} term {t}");
            }
        }
    }
}
