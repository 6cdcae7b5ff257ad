//! NIR export and import: the module imported from an exported graph runs the same network.
//!
//! The MNIST example (two convolutions, two 2×2 max pools, two dense layers) converted with
//! integrate-and-fire neurons and no synapses is exported — its max pools as NIR circuits of
//! Conv2d maps and IF units, not snnc's `sparse` tables — written to bytes, read back, imported,
//! and run next to the module snnc compiles directly, on both backends: every layer's spikes are
//! equal step for step, every circuit spends the same spikes, and the logits agree.

use ndarray::{ArrayD, Axis, IxDyn, Slice};
use snnc_compiler::passes::{
    ConvertOptions, DEFAULT_PIPELINE, InitialVoltage, PassHooks, SpikeOptions, Swap, convert,
    run_pipeline,
};
use snnc_ir::{Module, Target, verify};
use snnc_runtime::{Backend, Record, Simulator};
use snnc_tests::repo_root;

fn mnist() -> Module {
    let dir = repo_root().join("examples/mnist");
    snnc_compiler::keras::load(&dir.join("model.keras"), &Default::default()).unwrap()
}

fn images(n: usize) -> ArrayD<f32> {
    let dir = repo_root().join("examples/mnist");
    let images: ArrayD<u8> = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    images
        .slice_axis(Axis(0), Slice::from(0..n))
        .mapv(f32::from)
}

fn options(initial_voltage: InitialVoltage) -> ConvertOptions {
    ConvertOptions {
        spiking: Some(SpikeOptions {
            scale: 100.0,
            synapse: None,
            initial_voltage,
            relu_neuron: Swap::If,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The exported graph, through the file format, imported again.
fn round_trip(m: &Module, opts: &ConvertOptions) -> (Module, snnc_nir::Graph) {
    let passes: Vec<&str> = DEFAULT_PIPELINE
        .iter()
        .copied()
        .filter(|p| !snnc_nir::export::SKIPPED_PASSES.contains(p))
        .collect();
    let unlowered = run_pipeline(m.clone(), &passes, opts, &mut PassHooks::default()).unwrap();
    let exported = snnc_nir::export::export(&unlowered).unwrap();
    let bytes = snnc_nir::file::to_bytes(&exported.graph).unwrap();
    let graph = snnc_nir::file::from_bytes(&bytes).unwrap();
    assert_eq!(graph, exported.graph);
    let imported = snnc_nir::import::import(&graph, "imported", None).unwrap();
    (imported.module, graph)
}

fn outputs(
    m: &Module,
    x: &ArrayD<f32>,
    steps: usize,
    backend: Backend,
) -> Vec<(String, ArrayD<f32>)> {
    let v = verify(m.clone(), Target::Any).unwrap();
    let mut sim = Simulator::new(&v, backend, x.shape()[0]).unwrap();
    let out = sim.run(steps, &[x.view()], Record::AllSteps).unwrap();
    v.outputs.iter().map(|o| o.name.clone()).zip(out).collect()
}

fn get<'a>(outs: &'a [(String, ArrayD<f32>)], name: &str) -> &'a ArrayD<f32> {
    &outs
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .1
}

fn check(initial_voltage: InitialVoltage) {
    let m = mnist();
    let opts = options(initial_voltage);
    let original = convert(m.clone(), &opts).unwrap();
    let (imported, _) = round_trip(&m, &opts);
    let x = images(6);
    // The imported module reads NIR's channels-first (1, 28, 28): the same bytes for one channel.
    let x_nir = x
        .clone()
        .into_shape_with_order(IxDyn(&[6, 1, 28, 28]))
        .unwrap();
    let steps = 30;
    let h = (0.01f32) / (0.001f32); // spike height at scale 100
    for backend in [Backend::Interp, Backend::Jit] {
        let a = outputs(&original, &x, steps, backend);
        let b = outputs(&imported, &x_nir, steps, backend);
        let mut total = 0.0;
        for layer in ["conv1", "conv2", "dense1"] {
            let sa = get(&a, &format!("spikes/{layer}"));
            let sb = get(&b, &format!("spikes/{layer}"));
            assert_eq!(sa.shape(), sb.shape(), "{layer}");
            for (i, (p, q)) in sa.iter().zip(sb.iter()).enumerate() {
                assert_eq!(*p, q * h, "{layer} element {i} ({backend:?})");
            }
            total += sb.sum();
        }
        assert!(total > 1000.0, "the layers spike ({total})");
        for pool in ["pool1", "pool2"] {
            for level in 0..2 {
                let sa = get(&a, &format!("spikes/{pool}.l{level}.u"));
                let sb = get(&b, &format!("spikes/{pool}_l{level}_u"));
                for t in 0..steps {
                    for s in 0..6 {
                        let na = sa
                            .index_axis(Axis(0), s)
                            .index_axis(Axis(0), t)
                            .mapv(|v| (v / h).round())
                            .sum();
                        let nb = sb.index_axis(Axis(0), s).index_axis(Axis(0), t).sum();
                        assert_eq!(na, nb, "{pool} level {level} step {t} sample {s}");
                    }
                }
            }
        }
        let la = get(&a, "logits");
        let lb = get(&b, "logits");
        for (p, q) in la.iter().zip(lb.iter()) {
            assert!(
                (p - q).abs() <= 1e-4 * p.abs().max(1.0),
                "logits {p} vs {q}"
            );
        }
    }
}

#[test]
fn round_trip_reproduces_spikes_with_uniform_initial_voltages() {
    check(InitialVoltage::Uniform);
}

#[test]
fn round_trip_reproduces_spikes_starting_at_half_threshold() {
    check(InitialVoltage::Fixed(0.5));
}

mod primitives {
    //! Each NIR primitive the import maps to a neuron, a synapse or states, against values
    //! computed by hand from NIR's definition (forward Euler, strict threshold, reset to value).

    use super::*;
    use snnc_nir::{Field, Graph, Node, Primitive};

    fn node(kind: &str, fields: Vec<(&'static str, Field)>) -> Node {
        Node::Prim(Primitive::new(kind, fields))
    }

    fn v(x: &[f32]) -> Field {
        Field::float(&[x.len()], x.to_vec())
    }

    fn graph(nodes: Vec<(&str, Node)>, edges: &[(&str, &str)]) -> Graph {
        Graph {
            nodes: nodes.into_iter().map(|(k, n)| (k.to_string(), n)).collect(),
            edges: edges
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            metadata: Default::default(),
        }
    }

    /// Run on a held input; the named output at every step, for both backends (which agree).
    fn run(g: &Graph, x: &[f32], steps: usize, output: &str) -> Vec<Vec<f32>> {
        let m = snnc_nir::import::import(g, "t", Some(0.001))
            .unwrap()
            .module;
        let x = ArrayD::from_shape_vec(IxDyn(&[1, x.len()]), x.to_vec()).unwrap();
        let a = outputs(&m, &x, steps, Backend::Interp);
        let b = outputs(&m, &x, steps, Backend::Jit);
        assert_eq!(get(&a, output), get(&b, output));
        let y = get(&a, output);
        (0..steps)
            .map(|t| {
                y.index_axis(Axis(0), 0)
                    .index_axis(Axis(0), t)
                    .iter()
                    .copied()
                    .collect()
            })
            .collect()
    }

    #[test]
    fn lif_leaks_fires_above_threshold_and_resets_to_value() {
        // v1 = 0.1·5 = 0.5; v2 = 0.5 + 0.1·(5 − 0.5) = 0.95; v3 = 1.355 > 1: spike, v = 0.
        let g = graph(
            vec![
                ("in", node("Input", vec![("shape", Field::ints(&[1]))])),
                (
                    "lif",
                    node(
                        "LIF",
                        vec![
                            ("tau", v(&[0.01])),
                            ("r", v(&[1.0])),
                            ("v_leak", v(&[0.0])),
                            ("v_threshold", v(&[1.0])),
                            ("v_reset", v(&[0.0])),
                        ],
                    ),
                ),
                ("out", node("Output", vec![("shape", Field::ints(&[1]))])),
            ],
            &[("in", "lif"), ("lif", "out")],
        );
        let y: Vec<f32> = run(&g, &[5.0], 9, "out")
            .into_iter()
            .map(|s| s[0])
            .collect();
        assert_eq!(y, [0., 0., 1., 0., 0., 1., 0., 0., 1.]);
    }

    #[test]
    fn if_without_snnc_metadata_resets_to_v_reset() {
        // r = 1, θ = 1, v_reset = −0.5, input 600 per second: v += 0.6 each step.
        // v: 0.6, 1.2 → spike, −0.5; 0.1, 0.7, 1.3 → spike, −0.5; ...
        let g = graph(
            vec![
                ("in", node("Input", vec![("shape", Field::ints(&[1]))])),
                (
                    "if",
                    node(
                        "IF",
                        vec![
                            ("r", v(&[1.0])),
                            ("v_threshold", v(&[1.0])),
                            ("v_reset", v(&[-0.5])),
                        ],
                    ),
                ),
                ("out", node("Output", vec![("shape", Field::ints(&[1]))])),
            ],
            &[("in", "if"), ("if", "out")],
        );
        let y: Vec<f32> = run(&g, &[600.0], 8, "out")
            .into_iter()
            .map(|s| s[0])
            .collect();
        assert_eq!(y, [0., 1., 0., 0., 1., 0., 0., 1.]);
    }

    #[test]
    fn delay_closes_a_recurrent_loop() {
        // y_t = x + 0.5·y_{t−2}, x = 1: 1, 1, 1.5, 1.5, 1.75, 1.75, ...
        let g = graph(
            vec![
                ("in", node("Input", vec![("shape", Field::ints(&[1]))])),
                ("y", node("Scale", vec![("scale", v(&[1.0]))])),
                ("half", node("Scale", vec![("scale", v(&[0.5]))])),
                ("d", node("Delay", vec![("delay", v(&[0.002]))])),
                ("out", node("Output", vec![("shape", Field::ints(&[1]))])),
            ],
            &[
                ("in", "y"),
                ("half", "y"),
                ("y", "d"),
                ("d", "half"),
                ("y", "out"),
            ],
        );
        let y: Vec<f32> = run(&g, &[1.0], 6, "out")
            .into_iter()
            .map(|s| s[0])
            .collect();
        assert_eq!(y, [1., 1., 1.5, 1.5, 1.75, 1.75]);
    }

    #[test]
    fn threshold_and_integrator() {
        let g = graph(
            vec![
                ("in", node("Input", vec![("shape", Field::ints(&[3]))])),
                (
                    "th",
                    node("Threshold", vec![("threshold", v(&[0.0, 0.5, 1.0]))]),
                ),
                ("acc", node("I", vec![("r", v(&[2.0, 2.0, 2.0]))])),
                ("spikes", node("Output", vec![("shape", Field::ints(&[3]))])),
                ("sum", node("Output", vec![("shape", Field::ints(&[3]))])),
            ],
            &[
                ("in", "th"),
                ("th", "spikes"),
                ("in", "acc"),
                ("acc", "sum"),
            ],
        );
        let s = run(&g, &[-1.0, 0.5, 2.0], 2, "spikes");
        assert_eq!(s[1], [0., 0., 1.]);
        let a = run(&g, &[-1.0, 0.5, 2.0], 3, "sum");
        // v_t = t·dt·r·x.
        for (t, row) in a.iter().enumerate() {
            for (k, &x) in [-1.0f32, 0.5, 2.0].iter().enumerate() {
                let want = (t + 1) as f32 * 0.002 * x;
                assert!((row[k] - want).abs() < 1e-6, "step {t}: {row:?}");
            }
        }
    }
}

/// The Fashion-MNIST VGG (five convolutions, three max pools) and ResNet (batch normalisation
/// folded into the convolutions, residual adds of spikes and currents, strided `same`
/// convolutions with their odd padding cell, global average pooling) survive the round trip:
/// the same spikes per population (the ResNet within rounding of the folded batch
/// normalisation) and the same decisions.
#[test]
fn fashion_networks_round_trip() {
    let dir = repo_root().join("examples/fashion");
    let images: ArrayD<u8> = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    let n = 4;
    let x = images
        .slice_axis(Axis(0), Slice::from(0..n))
        .mapv(f32::from);
    let x_nir = x
        .clone()
        .into_shape_with_order(IxDyn(&[n, 1, 28, 28]))
        .unwrap();
    for model in ["vgg", "resnet"] {
        let m =
            snnc_compiler::keras::load(&dir.join(format!("{model}.keras")), &Default::default())
                .unwrap();
        let opts = options(InitialVoltage::Fixed(0.5));
        let original = convert(m.clone(), &opts).unwrap();
        let (imported, graph) = round_trip(&m, &opts);
        if model == "resnet" {
            let kinds: Vec<&str> = graph.nodes.values().map(|n| n.kind()).collect();
            assert!(
                kinds.contains(&"Scale"),
                "residual adds of spikes and currents"
            );
        }
        let a = outputs(&original, &x, 16, Backend::Jit);
        let b = outputs(&imported, &x_nir, 16, Backend::Jit);
        let total = |o: &[(String, ArrayD<f32>)], h: bool| -> f64 {
            o.iter()
                .filter(|(name, _)| name.starts_with("spikes/"))
                .map(|(_, s)| (s.sum() as f64) / if h { 10.0 } else { 1.0 })
                .sum()
        };
        let (ta, tb) = (total(&a, true), total(&b, false));
        assert!(ta > 1000.0, "{model}: {ta} spikes");
        assert!(
            (ta - tb).abs() <= 1e-4 * ta + 1.0,
            "{model}: {ta} vs {tb} spikes"
        );
        let (la, lb) = (get(&a, "logits"), get(&b, "logits"));
        for s in 0..n {
            let argmax = |l: &ArrayD<f32>| {
                let row = l.index_axis(Axis(0), s).index_axis(Axis(0), 15).to_owned();
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m })
                    .0
            };
            assert_eq!(argmax(la), argmax(lb), "{model} sample {s}");
        }
    }
}

/// `fold_gains` moves every IF gain into the weights before it (every `r` becomes 1, the max-pool
/// circuits' included) and leaves the network's spikes where they were, up to rounding.
#[test]
fn folded_gains_give_the_same_spikes_up_to_rounding() {
    let m = mnist();
    let opts = options(InitialVoltage::Fixed(0.5));
    let passes: Vec<&str> = DEFAULT_PIPELINE
        .iter()
        .copied()
        .filter(|p| !snnc_nir::export::SKIPPED_PASSES.contains(p))
        .collect();
    let unlowered = run_pipeline(m, &passes, &opts, &mut PassHooks::default()).unwrap();
    let plain = snnc_nir::export::export(&unlowered).unwrap().graph;
    let mut folded = plain.clone();
    assert!(snnc_nir::export::fold_gains(&mut folded).is_empty());
    let mut ifs = 0;
    for node in folded.nodes.values() {
        if let snnc_nir::Node::Prim(p) = node
            && p.kind == "IF"
        {
            ifs += 1;
            let Some(snnc_nir::Field::Float { data, .. }) = p.fields.get("r") else {
                panic!("IF without r")
            };
            assert!(data.iter().all(|&r| r == 1.0));
        }
    }
    assert_eq!(ifs, 7);
    let x = images(6)
        .into_shape_with_order(IxDyn(&[6, 1, 28, 28]))
        .unwrap();
    let run = |g: &snnc_nir::Graph| {
        let m = snnc_nir::import::import(g, "g", None).unwrap().module;
        outputs(&m, &x, 30, Backend::Jit)
    };
    let (a, b) = (run(&plain), run(&folded));
    for ((name, sa), (_, sb)) in a.iter().zip(&b) {
        if !name.starts_with("spikes/") {
            continue;
        }
        let (ta, tb) = (sa.sum(), sb.sum());
        assert!(ta > 100.0, "{name}: {ta}");
        assert!((ta - tb).abs() <= 0.005 * ta + 2.0, "{name}: {ta} vs {tb}");
    }
}
