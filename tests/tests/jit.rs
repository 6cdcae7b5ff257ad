//! The JIT against the interpreter: every `run` filetest, every Keras fixture (rate pipeline) and
//! the spiking MNIST example give the same outputs on both backends — rate and spiking alike,
//! spike for spike, because the emitted loops keep the interpreter's f32 operation order.

use ndarray::{ArrayD, IxDyn};
use snnc_ir::{Target, Verified, parse, verify};
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
    let run = |backend| {
        let mut sim = Simulator::new(m, backend, batch).unwrap();
        sim.run(steps, &views, Record::AllSteps).unwrap()
    };
    (run(Backend::Interp), run(Backend::Jit))
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
    for dir in ["keras3", "keras2"] {
        let root = repo_root().join("tests/fixtures").join(dir);
        for f in files_with_ext(&root, "keras") {
            let m = snnc_compiler::keras::load(&f, &Default::default()).unwrap();
            let m = verify(
                snnc_compiler::passes::convert(m, &Default::default()).unwrap(),
                Target::Any,
            )
            .unwrap();
            let name = f.file_stem().unwrap().to_str().unwrap();
            let mut npz = ndarray_npy::NpzReader::new(
                std::fs::File::open(root.join(format!("{name}.io.npz"))).unwrap(),
            )
            .unwrap();
            let inputs: Vec<ArrayD<f32>> = m
                .inputs
                .iter()
                .map(|&v| npz.by_name(&format!("input_{}", m.value(v).name)).unwrap())
                .collect();
            let (a, b) = both(&m, &inputs, 1);
            assert_same(&f.display().to_string(), &a, &b);
        }
    }
}

#[test]
fn spiking_mnist_agrees_spike_for_spike() {
    let dir = repo_root().join("examples/mnist");
    let m = snnc_compiler::keras::load(&dir.join("model.keras"), &Default::default()).unwrap();
    let opts = snnc_compiler::passes::ConvertOptions {
        spiking: Some(snnc_compiler::passes::SpikeOptions {
            scale: 200.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = verify(
        snnc_compiler::passes::convert(m, &opts).unwrap(),
        Target::Neural,
    )
    .unwrap();
    let images: ArrayD<u8> = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    let x = images
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..8))
        .mapv(f32::from);
    let (a, b) = both(&m, &[x], 25);
    assert_same("spiking mnist", &a, &b);
    let spikes: f32 = a
        .iter()
        .zip(&m.outputs)
        .filter(|(_, o)| o.name.starts_with("spikes/"))
        .map(|(x, _)| x.sum())
        .sum();
    assert!(spikes > 0.0);
}
