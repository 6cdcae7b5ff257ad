//! Whole-module properties: every .sir file in the repository round-trips through the printer;
//! `.snn` artifacts round-trip and reject damaged files; dumps and error messages are snapshots.

use ndarray::{ArrayD, IxDyn};
use snnc_ir::{
    Builder, ConstData, Module, Neuron, NeuronModel, Op, StateInit, Target, parse, read_snn,
    verify, write_snn,
};
use snnc_runtime::{Backend, Record, Simulator};
use snnc_tests::filetest::FileTest;
use snnc_tests::{files_with_ext, repo_root};
use std::io::{Cursor, Write};

#[test]
fn every_sir_file_round_trips() {
    let root = repo_root();
    let mut n = 0;
    for dir in ["tests/ir", "examples"] {
        for f in files_with_ext(&root.join(dir), "sir") {
            let text = std::fs::read_to_string(&f).unwrap();
            let body = FileTest::parse(&text).map(|t| t.body).unwrap_or(text);
            let Ok(m) = parse(&body) else { continue };
            let printed = m.to_string();
            let again =
                parse(&printed).unwrap_or_else(|e| panic!("{}: reparse failed: {e}", f.display()));
            assert_eq!(again.to_string(), printed, "{}", f.display());
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} files round-tripped");
}

/// A small convolutional spiking network with constants too large to print inline.
fn conv_net() -> Module {
    let mut b = Builder::new("convnet", 0.001);
    let x = b.input("image", &[6, 6, 1]);
    let k: Vec<f32> = (0..3 * 3 * 4)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 10.0)
        .collect();
    let kernel = b.constant_f32("conv1.kernel", &[3, 3, 1, 4], k);
    let bias = b.constant_f32("conv1.bias", &[4], vec![0.1, -0.1, 0.0, 0.2]);
    let c = b
        .op1(
            Op::Conv(snnc_ir::ConvAttrs {
                strides: vec![1, 1],
                padding: snnc_ir::Padding::Valid,
                dilation: vec![1, 1],
                groups: 1,
            }),
            &[x.into(), kernel.into()],
            "conv1",
        )
        .unwrap();
    let j = b
        .op1(Op::Bias, &[c.into(), bias.into()], "conv1.j")
        .unwrap();
    let v = b.state(
        "conv1.v",
        &[4, 4, 4],
        StateInit::Uniform {
            lo: 0.0,
            hi: 1.0,
            seed: 1,
        },
    );
    let r = b
        .op(
            Op::Neuron(Neuron {
                model: NeuronModel::SpikingRelu,
                gain: 100.0,
                amplitude: 0.01,
            }),
            &[j.into(), v.into()],
            "conv1.s",
        )
        .unwrap();
    b.next(v, r[1]);
    let syn = b.state("conv1.syn", &[4, 4, 4], StateInit::Zeros);
    let f = b
        .op1(
            Op::Lowpass { tau: 0.005 },
            &[r[0].into(), syn.into()],
            "conv1.f",
        )
        .unwrap();
    b.next(syn, f);
    let flat = b
        .op1(Op::Reshape { shape: vec![64] }, &[syn.into()], "flat")
        .unwrap();
    let idx: Vec<i32> = (0..64).rev().collect();
    let perm = b.constant_i32("shuffle", &[64], idx);
    let g = b
        .op1(
            Op::Gather { shape: vec![64] },
            &[flat.into(), perm.into()],
            "shuffled",
        )
        .unwrap();
    let w: Vec<f32> = (0..64 * 3)
        .map(|i| ((i * 13 % 7) as f32 - 3.0) / 20.0)
        .collect();
    let wc = b.constant_f32("out.kernel", &[64, 3], w);
    let y = b.op1(Op::Dense, &[g.into(), wc.into()], "logits").unwrap();
    b.output("logits", y);
    b.finish()
}

fn image() -> ArrayD<f32> {
    ArrayD::from_shape_vec(
        IxDyn(&[2, 6, 6, 1]),
        (0..72).map(|i| (i % 9) as f32 / 8.0).collect(),
    )
    .unwrap()
}

#[test]
fn snn_artifact_round_trips_and_runs_identically() {
    let m = conv_net();
    let mut bytes = Cursor::new(Vec::new());
    write_snn(&m, &mut bytes).unwrap();
    let back = read_snn(Cursor::new(bytes.into_inner())).unwrap();
    assert_eq!(back, m);
    let run = |m: Module| {
        let m = verify(m, Target::Neural).unwrap();
        let mut sim = Simulator::new(&m, Backend::Interp, 2).unwrap();
        sim.run(30, &[image().view()], Record::AllSteps).unwrap()
    };
    let a = run(m);
    assert!(a[0].iter().any(|&v| v != 0.0), "the network should respond");
    assert_eq!(run(back), a);
}

#[test]
fn dump_parses_back_with_checksums_and_the_artifact_supplies_values() {
    let m = conv_net();
    let text = m.to_string();
    let dumped = parse(&text).unwrap();
    assert_eq!(dumped.to_string(), text);
    let kernel = dumped.find_constant("conv1.kernel").unwrap();
    assert!(matches!(
        dumped.constant(kernel).data,
        ConstData::External { .. }
    ));
    let v = verify(dumped, Target::Any).unwrap();
    assert!(!v.is_runnable());
}

fn snn_bytes(m: &Module) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    write_snn(m, &mut bytes).unwrap();
    bytes.into_inner()
}

/// Rebuild an archive with one entry replaced (or removed with `None`).
fn patched(bytes: &[u8], entry: &str, content: Option<&[u8]>) -> Vec<u8> {
    let mut src = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).unwrap();
        let data = if name == entry {
            match content {
                Some(c) => c.to_vec(),
                None => continue,
            }
        } else {
            data
        };
        out.start_file(name, opts).unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn damaged_artifacts_give_specific_errors() {
    let m = conv_net();
    let good = snn_bytes(&m);
    let err = |b: Vec<u8>| read_snn(Cursor::new(b)).unwrap_err().to_string();
    let text = m.to_string();
    let kernel_line = text
        .lines()
        .find(|l| l.starts_with("const @conv1.kernel"))
        .unwrap();
    let wrong_sum = text.replace(kernel_line, "const @conv1.kernel : f32[3,3,1,4] #00000000");
    let wrong_shape = text.replace(
        kernel_line,
        &kernel_line.replace("f32[3,3,1,4]", "f32[3,3,2,2]"),
    );
    let cases = [
        ("empty", err(Vec::new())),
        ("truncated", err(good[..good.len() / 2].to_vec())),
        ("not a zip", err(b"module @m dt=0.001\n".to_vec())),
        ("no module", err(patched(&good, "module.sir", None))),
        ("no constants", err(patched(&good, "constants.npz", None))),
        (
            "bad version",
            err(patched(
                &good,
                "meta.json",
                Some(b"{\"format\": \"snn\", \"version\": 9}"),
            )),
        ),
        (
            "bad text",
            err(patched(
                &good,
                "module.sir",
                Some(b"module @m dt=0.001\n%y = frobnicate %x : f32[1]\n"),
            )),
        ),
        (
            "checksum",
            err(patched(&good, "module.sir", Some(wrong_sum.as_bytes()))),
        ),
        (
            "shape",
            err(patched(&good, "module.sir", Some(wrong_shape.as_bytes()))),
        ),
        (
            "bad npz",
            err(patched(&good, "constants.npz", Some(b"garbage"))),
        ),
    ];
    let report: String = cases.iter().map(|(k, e)| format!("{k}: {e}\n")).collect();
    insta::assert_snapshot!("artifact_errors", report);
}

#[test]
fn dumps_are_stable() {
    insta::assert_snapshot!("dump_convnet", conv_net().to_string());
    let xor = std::fs::read_to_string(repo_root().join("examples/xor/xor_spiking.sir")).unwrap();
    insta::assert_snapshot!("dump_xor_spiking", parse(&xor).unwrap().to_string());
    let small =
        parse(&std::fs::read_to_string(repo_root().join("examples/xor/xor.sir")).unwrap()).unwrap();
    insta::assert_json_snapshot!("json_xor", small);
}

#[test]
fn error_messages_are_stable() {
    let mut report = String::new();
    for text in [
        "",
        "module @m dt=0\n",
        "module @m dt=0.001\ninput %x : f32[2\n",
        "module @m dt=0.001\ninput %x : f32[2]\n%y = conv %x {strides=[1], padding=diagonal} : f32[2]\n",
        "module @m dt=0.001\ninput %x : f32[2]\n%y = relu %x : f32[99999999999,99999999999]\n",
        "module @m dt=0.001\nstate $s : f32[2] = uniform(0, 1)\n",
        "module @m dt=0.001\nconst @c : i32[2] = [1.5, 2]\n",
        "module @m dt=0.001\nnext %x = %y\n",
    ] {
        match parse(text) {
            Ok(_) => report.push_str("ok\n"),
            Err(e) => report.push_str(&format!("{e}\n")),
        }
    }
    let m = parse(
        "module @m dt=0.001\ninput %x : f32[2,2,1]\n%y = max_pool %x {pool=[3,3], strides=[1,1], padding=valid} : f32[1,1,1]\noutput \"y\" = %y\n",
    )
    .unwrap();
    report.push_str(&verify(m, Target::Neural).unwrap_err().to_string());
    insta::assert_snapshot!("parse_and_verify_errors", report);
}

/// A reset draws a `uniform` state from the spec's generator for its seed, whether or not an
/// earlier reset drew it (resets with a repeated seed copy the draws kept from the first):
/// seed 0, then 3, then 0 again, on both backends, against `rng::uniform_fill`.
#[test]
fn resets_draw_the_same_states_for_the_same_seed() {
    let m = parse(
        "module @r dt=0.001\ninput %x : f32[3,5]\n\
         state $v : f32[3,5] = uniform(-1, 2, seed=9)\n\
         %y = add %x, $v : f32[3,5]\nnext $v = %y\noutput \"y\" = %y\n",
    )
    .unwrap();
    let m = verify(m, Target::Any).unwrap();
    let want = |seed: u64| {
        let mut v = vec![0.0f32; 15];
        snnc_ir::rng::uniform_fill(&mut v, -1.0, 2.0, 9, seed);
        [v.clone(), v].concat()
    };
    for backend in [Backend::Interp, Backend::Jit] {
        let mut sim = Simulator::new(&m, backend, 2).unwrap();
        let zeros = vec![0.0f32; 30];
        for seed in [0, 3, 0, 3, 3] {
            sim.reset(seed);
            sim.step_flat(&[&zeros]).unwrap();
            assert_eq!(
                sim.output_slice(0),
                &want(seed)[..],
                "{backend:?}, seed {seed}"
            );
        }
        assert_ne!(want(0), want(3));
    }
}
