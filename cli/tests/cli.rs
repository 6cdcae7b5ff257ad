//! The `snnc` binary end to end: exit codes, outputs and error messages.

use ndarray::{Array1, Array2, Array3, ArrayD};
use ndarray_npy::{NpzReader, ReadNpyExt, write_npy};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn snnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed with exit status 2 and `msg` in its error output.
fn assert_fails(o: &Output, msg: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    assert!(
        stderr(o).contains(msg),
        "expected `{msg}` in: {}",
        stderr(o)
    );
}

/// A fresh scratch directory per test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snnc-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The XOR example network computed by hand: logits = [0.5 − h1 + 2·h2, h1 − 2·h2].
fn xor_logits(x: &[f32]) -> [f32; 2] {
    let h1 = (x[0] + x[1]).max(0.0);
    let h2 = (x[0] + x[1] - 1.0).max(0.0);
    [0.5 - h1 + 2.0 * h2, h1 - 2.0 * h2]
}

#[test]
fn dump_is_idempotent_and_json_round_trips() {
    let dir = scratch("dump");
    let first = snnc(&["dump", "examples/xor/xor_spiking.sir"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let y = dir.join("y.sir");
    std::fs::write(&y, first.stdout.clone()).unwrap();
    let second = snnc(&["dump", s(&y)]);
    assert_eq!(stdout(&second), stdout(&first));
    let json = snnc(&["dump", "examples/xor/xor_spiking.sir", "--format", "json"]);
    assert!(json.status.success());
    let j = dir.join("m.json");
    std::fs::write(&j, json.stdout).unwrap();
    assert_eq!(stdout(&snnc(&["dump", s(&j)])), stdout(&first));
}

#[test]
fn verify_reports_ok_or_every_error_with_its_line() {
    let ok = snnc(&[
        "verify",
        "examples/xor/xor_spiking.sir",
        "--target",
        "neural",
    ]);
    assert_eq!((ok.status.code(), stdout(&ok).as_str()), (Some(0), "ok\n"));
    let bad = snnc(&["verify", "tests/ir/verify/errors.sir"]);
    assert_eq!(bad.status.code(), Some(1));
    let out = stdout(&bad);
    assert!(
        out.contains("tests/ir/verify/errors.sir: line 13: `%y`: another value has the same name"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 12, "{out}");
    let neural = snnc(&["verify", "tests/ir/verify/neural.sir", "--target", "neural"]);
    assert_eq!(neural.status.code(), Some(1));
    let any = snnc(&["verify", "tests/ir/verify/neural.sir"]);
    assert_eq!(any.status.code(), Some(0));
    let parse_error = snnc(&["verify", "tests/ir/parse/unknown_op.sir"]);
    assert_fails(&parse_error, "unknown_op.sir:5:6: unknown op `relu2`");
}

#[test]
fn diff_exit_codes_and_report() {
    let same = snnc(&["diff", "examples/xor/xor.sir", "examples/xor/xor.sir"]);
    assert_eq!(same.status.code(), Some(0));
    let d = snnc(&[
        "diff",
        "examples/xor/xor.sir",
        "examples/xor/xor_spiking.sir",
    ]);
    assert_eq!(d.status.code(), Some(1));
    let out = stdout(&d);
    assert!(out.contains("module name: @xor → @xor_spiking"), "{out}");
    assert!(out.contains("state $hidden.v: added"), "{out}");
    assert!(
        out.contains("changed: %out.j = dense %hidden, @out.kernel : f32[2]"),
        "{out}"
    );
    let missing = snnc(&["diff", "examples/xor/xor.sir", "nope.sir"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("nope.sir"));

    let dir = scratch("diff");
    let text = std::fs::read_to_string(repo().join("examples/xor/xor.sir")).unwrap();
    let b = dir.join("b.sir");
    std::fs::write(&b, text.replace("[0, -1]", "[0, -1.001]")).unwrap();
    let close = snnc(&["diff", "examples/xor/xor.sir", s(&b), "--atol", "0.01"]);
    assert_eq!(close.status.code(), Some(0), "{}", stdout(&close));
    let far = snnc(&["diff", "examples/xor/xor.sir", s(&b)]);
    assert!(
        stdout(&far).contains("const @hidden.bias: 1 of 2 values differ (max abs diff"),
        "{}",
        stdout(&far)
    );
}

#[test]
fn run_reproduces_the_hand_computed_network_and_accuracy() {
    let dir = scratch("run");
    let x = Array2::<f32>::read_npy(
        std::fs::File::open(repo().join("examples/xor/inputs.npy")).unwrap(),
    )
    .unwrap();
    let labels = Array1::<i64>::read_npy(
        std::fs::File::open(repo().join("examples/xor/labels.npy")).unwrap(),
    )
    .unwrap();
    let out = dir.join("logits.npy");
    let r = snnc(&[
        "run",
        "examples/xor/xor.sir",
        "--input",
        "examples/xor/inputs.npy",
        "--labels",
        "examples/xor/labels.npy",
        "--batch",
        "7",
        "--output",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let logits = Array2::<f32>::read_npy(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(logits.shape(), &[200, 2]);
    let mut correct = 0;
    for (i, row) in x.outer_iter().enumerate() {
        let want = xor_logits(row.as_slice().unwrap());
        assert!((logits[[i, 0]] - want[0]).abs() < 1e-5 && (logits[[i, 1]] - want[1]).abs() < 1e-5);
        if (want[1] > want[0]) as i64 == labels[i] {
            correct += 1;
        }
    }
    let line = format!("accuracy: {:.4} ({correct}/200)", correct as f64 / 200.0);
    assert!(
        stdout(&r).contains(&line),
        "expected `{line}` in\n{}",
        stdout(&r)
    );
}

#[test]
fn run_all_steps_per_step_inputs_and_npz() {
    let dir = scratch("steps");
    // (n=3, steps=4, 2): inputs switch on at step 3.
    let mut x = Array3::<f32>::zeros((3, 4, 2));
    for n in 0..3 {
        for t in 2..4 {
            x[[n, t, 0]] = 1.0;
            x[[n, t, 1]] = n as f32 * 0.5;
        }
    }
    let xin = dir.join("x.npy");
    write_npy(&xin, &x).unwrap();
    let out = dir.join("all.npy");
    let r = snnc(&[
        "run",
        "examples/xor/xor.sir",
        "--input",
        &format!("x={}", s(&xin)),
        "--all-steps",
        "--output",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(stdout(&r).contains("steps: 4"), "{}", stdout(&r));
    let y = ArrayD::<f32>::read_npy(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(y.shape(), &[3, 4, 2]);
    for n in 0..3 {
        for t in 0..4 {
            let want = xor_logits(&[x[[n, t, 0]], x[[n, t, 1]]]);
            assert!((y[[n, t, 0]] - want[0]).abs() < 1e-6 && (y[[n, t, 1]] - want[1]).abs() < 1e-6);
        }
    }
    // Several outputs go to .npz keyed by name.
    let npz = dir.join("o.npz");
    let r = snnc(&[
        "run",
        "tests/ir/run/synapses.sir",
        "--input",
        &format!("x={}", s(&dir.join("two.npy"))),
        "--output",
        s(&npz),
    ]);
    assert_eq!(r.status.code(), Some(2), "missing input file is an error");
    write_npy(dir.join("two.npy"), &Array2::<f32>::ones((2, 2))).unwrap();
    let r = snnc(&[
        "run",
        "tests/ir/run/synapses.sir",
        "--input",
        s(&dir.join("two.npy")),
        "--steps",
        "3",
        "--output",
        s(&npz),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let mut z = NpzReader::new(std::fs::File::open(&npz).unwrap()).unwrap();
    let mut names = z.names().unwrap();
    names.sort();
    assert_eq!(names, ["alpha", "lowpass_delayed"]);
    let lp: ArrayD<f32> = z.by_name("lowpass_delayed").unwrap();
    // Delayed lowpass after 3 steps of a unit step: 1 − e^{−2·dt/τ}, τ = 0.01.
    assert!((lp[[0, 0]] - (1.0 - (-0.2f32).exp())).abs() < 1e-6, "{lp}");
}

#[test]
fn run_errors_are_one_line_and_never_touch_inputs() {
    let dir = scratch("errors");
    let wrong = dir.join("wrong.npy");
    write_npy(&wrong, &Array2::<f32>::zeros((4, 3))).unwrap();
    for backend in ["jit", "interp"] {
        let r = snnc(&[
            "run",
            "examples/xor/xor.sir",
            "--input",
            s(&wrong),
            "--backend",
            backend,
        ]);
        assert_fails(&r, "wrong.npy: input `x`: shape [4, 3] fits neither (n, 2)");
    }

    // --output naming an input file is refused and the input is left intact.
    let inp = dir.join("in.npy");
    write_npy(&inp, &Array2::<f32>::ones((2, 2))).unwrap();
    let before = std::fs::read(&inp).unwrap();
    let r = snnc(&[
        "run",
        "examples/xor/xor.sir",
        "--input",
        s(&inp),
        "--output",
        s(&inp),
    ]);
    assert_fails(&r, "would overwrite an input file");
    assert_eq!(std::fs::read(&inp).unwrap(), before);

    let labels = dir.join("labels.npy");
    write_npy(&labels, &Array1::<i64>::zeros(3)).unwrap();
    let r = snnc(&[
        "run",
        "examples/xor/xor.sir",
        "--input",
        s(&inp),
        "--labels",
        s(&labels),
    ]);
    assert!(
        stderr(&r).contains("3 labels for 2 samples"),
        "{}",
        stderr(&r)
    );

    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"\x93NUMPY garbage").unwrap();
    let r = snnc(&["run", "examples/xor/xor.sir", "--input", s(&junk)]);
    assert_fails(&r, "junk.npy: not a readable numeric .npy array");

    let snn = dir.join("broken.snn");
    std::fs::write(&snn, b"PK\x03\x04 not really").unwrap();
    let r = snnc(&["run", s(&snn), "--input", s(&inp)]);
    assert_fails(&r, "broken.snn: not a readable .snn archive");

    let r = snnc(&["run", "tests/ir/verify/errors.sir", "--input", s(&inp)]);
    assert!(stderr(&r).contains("does not verify"), "{}", stderr(&r));
    {
        let o = &r;
        assert!(!stderr(o).contains("panicked"));
    }
}

#[test]
fn run_accepts_snn_artifacts() {
    let dir = scratch("snn");
    let text = std::fs::read_to_string(repo().join("tests/ir/run/conv2d.sir")).unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("; check:"))
        .collect::<Vec<_>>()
        .join("\n");
    let m = snnc_ir::parse(&body).unwrap();
    let path = dir.join("conv.snn");
    snnc_ir::save_snn(&m, &path).unwrap();
    let x: Vec<f32> = (1..=20).map(|v| v as f32).collect();
    let xin = dir.join("x.npy");
    write_npy(
        &xin,
        &ndarray::Array4::from_shape_vec((1, 4, 5, 1), x).unwrap(),
    )
    .unwrap();
    let out = dir.join("o.npz");
    let r = snnc(&["run", s(&path), "--input", s(&xin), "--output", s(&out)]);
    assert!(r.status.success(), "{}", stderr(&r));
    let mut z = NpzReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let same: ArrayD<f32> = z.by_name("same").unwrap();
    assert_eq!(same[[0, 0, 0, 0]], 1.0 + 20.0 + 600.0 + 7000.0);
    let dumped = snnc(&["dump", s(&path)]);
    assert_eq!(stdout(&dumped), m.to_string());
}

#[test]
fn compile_and_run_keras_models() {
    let dir = scratch("keras");
    let fixture = "tests/fixtures/keras3/maxpool2d.keras";
    let ir = snnc(&["compile", fixture, "--max-pool", "keep"]);
    assert!(ir.status.success(), "{}", stderr(&ir));
    // By default max pooling becomes a neural circuit.
    let lowered = stdout(&snnc(&["compile", fixture]));
    assert!(!lowered.contains(" = max_pool "), "{lowered}");
    assert!(
        lowered.contains("%max_pooling2d.l0.j = sparse %conv2d_3"),
        "{lowered}"
    );
    assert!(
        stdout(&ir).contains("max_pool %conv2d_3 {pool=[3,3], strides=[2,2], padding=same}"),
        "{}",
        stdout(&ir)
    );
    let json = snnc(&["compile", fixture, "--emit", "json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&json.stdout).is_ok());

    let snn = dir.join("m.snn");
    let c = snnc(&["compile", fixture, "-o", s(&snn)]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(
        stdout(&c).starts_with(&format!("wrote {}", s(&snn))),
        "{}",
        stdout(&c)
    );

    // Inputs and expected outputs from the fixture's npz, run from .keras and from .snn.
    let mut io = NpzReader::new(
        std::fs::File::open(repo().join("tests/fixtures/keras3/maxpool2d.io.npz")).unwrap(),
    )
    .unwrap();
    let names = io.names().unwrap();
    let input_name = names
        .iter()
        .find(|n| n.starts_with("input_"))
        .unwrap()
        .clone();
    let output_name = names
        .iter()
        .find(|n| n.starts_with("output_"))
        .unwrap()
        .clone();
    let x: ArrayD<f32> = io.by_name(&input_name).unwrap();
    let want: ArrayD<f32> = io.by_name(&output_name).unwrap();
    let xin = dir.join("x.npy");
    write_npy(&xin, &x).unwrap();
    for model in [fixture, s(&snn)] {
        let out = dir.join("y.npy");
        let r = snnc(&["run", model, "--input", s(&xin), "--output", s(&out)]);
        assert!(r.status.success(), "{}", stderr(&r));
        let got = ArrayD::<f32>::read_npy(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(got.shape(), want.shape());
        for (g, w) in got.iter().zip(want.iter()) {
            assert!(
                (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                "{model}: {g} vs keras {w}"
            );
        }
    }

    let bad = dir.join("bad.keras");
    std::fs::write(&bad, b"PK\x03\x04 nope").unwrap();
    let r = snnc(&["compile", s(&bad)]);
    assert_fails(&r, "bad.keras: not a readable .keras archive");
    let r = snnc(&["compile", fixture, "-o", fixture]);
    assert_fails(&r, "would overwrite the model");
}

#[test]
fn spiking_conversion_flags() {
    let base = [
        "run",
        "examples/xor/xor.sir",
        "--input",
        "examples/xor/inputs.npy",
        "--labels",
        "examples/xor/labels.npy",
    ];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        snnc(&a)
    };
    let r = with(&[
        "--spiking",
        "--scale-firing-rates",
        "1000",
        "--steps",
        "50",
        "--accuracy-at",
        "10,50",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    assert!(out.contains("accuracy at step 10: "), "{out}");
    let spikes_line = out
        .lines()
        .find(|l| l.starts_with("spikes per sample: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(spikes_line.contains("(hidden "), "{spikes_line}");
    // The spiking network is converted from the rate one: same module, spiking twin, synapse.
    let c = snnc(&[
        "compile",
        "examples/xor/xor.sir",
        "--spiking",
        "--scale-firing-rates",
        "hidden=50",
        "--synapse",
        "0.01",
        "--initial-voltage",
        "0.5",
    ]);
    let ir = stdout(&c);
    assert!(
        ir.contains("spiking_relu %hidden.jb, $hidden.v {gain=50, amplitude=0.02}"),
        "{ir}"
    );
    // The synapse filters the connection after its weights, as Nengo builds it (`sink-synapses`).
    assert!(ir.contains("%out.j = dense %hidden, @out.kernel"), "{ir}");
    assert!(ir.contains("lowpass %out.j, $out.j.syn {tau=0.01}"), "{ir}");
    assert!(ir.contains("%logits = bias $out.j.syn, @out.bias"), "{ir}");
    assert!(ir.contains("uniform(0.5, 0.5, seed=0)"), "{ir}");
    for (args, msg) in [
        (vec!["--swap", "relu=lif"], "need --spiking"),
        (
            vec!["--spiking", "--scale-firing-rates", "0"],
            "scale_firing_rates must be a positive number",
        ),
        (
            vec!["--spiking", "--steps", "5", "--accuracy-at", "9"],
            "outside the 5 steps",
        ),
        (
            vec!["--spiking", "--initial-voltage", "high"],
            "neither `uniform` nor a number",
        ),
        (vec!["--dt", "0"], "dt must be a positive"),
    ] {
        let r = with(&args);
        assert_eq!(r.status.code(), Some(2), "{args:?}");
        assert!(stderr(&r).contains(msg), "{args:?}: {}", stderr(&r));
    }
}

#[test]
fn bench_reports_both_backends() {
    let r = snnc(&[
        "bench",
        "examples/xor/xor_spiking.sir",
        "--steps",
        "5",
        "--runs",
        "2",
        "--batch",
        "4",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    for needle in [
        "interp: setup",
        "jit: setup",
        "µs/step",
        "jit / interp time per step:",
    ] {
        assert!(out.contains(needle), "{needle} missing in\n{out}");
    }
    // A spiking network: spikes and synaptic operations per step, and the time per operation.
    let r = snnc(&[
        "bench",
        "examples/mnist/model.keras",
        "--spiking",
        "--scale-firing-rates",
        "100",
        "--input",
        "examples/mnist/test_images.npy",
        "--steps",
        "5",
        "--runs",
        "1",
        "--backend",
        "jit",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    let line = out
        .lines()
        .find(|l| l.starts_with("activity per step"))
        .unwrap_or_else(|| panic!("no activity line in\n{out}"));
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // Spikes, synaptic operations, and what counting them added per step (a difference of
    // two timings, which the machine's load may make negative).
    assert!(
        numbers.len() == 3 && numbers[0] > 0.0 && numbers[1] > numbers[0] && numbers[2].is_finite(),
        "{line}"
    );
    assert!(out.contains("ns per synaptic operation"), "{out}");
    // The JIT's eight-lane loops against its 128-bit ones, side by side.
    let r = snnc(&[
        "bench",
        "examples/mnist/model.keras",
        "--spiking",
        "--steps",
        "2",
        "--runs",
        "1",
        "--backend",
        "lanes",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    for needle in [
        "jit-128: setup",
        "jit: setup",
        "jit / jit-128 time per step:",
    ] {
        assert!(out.contains(needle), "{needle} missing in\n{out}");
    }
    let r = snnc(&[
        "bench",
        "examples/xor/xor.sir",
        "--batch",
        "4",
        "--threads",
        "2",
        "--steps",
        "3",
        "--runs",
        "1",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    // Four groups per thread where the JIT chooses, at most one per sample; the interpreter's
    // batch split between the threads.
    for needle in [
        "jit: 4 groups of 1/1/1/1 samples, each run through all 3 steps in turn, on 2 threads",
        "interp: 2 groups of 2/2 samples",
    ] {
        assert!(
            stdout(&r).contains(needle),
            "{needle} missing in\n{}",
            stdout(&r)
        );
    }
    let r = snnc(&["bench", "examples/xor/xor.sir", "--runs", "0"]);
    assert_eq!(r.status.code(), Some(2));
    // Two models timed run by run in turn: each line, and their ratio per backend.
    let r = snnc(&[
        "bench",
        "examples/xor/xor.sir",
        "--against",
        "examples/xor/xor_spiking.sir",
        "--steps",
        "3",
        "--runs",
        "3",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    for needle in [
        "B: examples/xor/xor_spiking.sir",
        "B interp: setup",
        " B jit: setup",
        "B jit / B interp time per step:",
        "B interp / interp time per step:",
        "B jit / jit time per step:",
    ] {
        assert!(out.contains(needle), "{needle} missing in\n{out}");
    }
    // A model with other inputs cannot be timed against it.
    let r = snnc(&[
        "bench",
        "examples/xor/xor.sir",
        "--against",
        "examples/mnist/model.keras",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", stdout(&r));
    assert!(stdout(&r).is_empty(), "{}", stdout(&r));
    assert!(
        stderr(&r).contains("its inputs differ from examples/xor/xor.sir's"),
        "{}",
        stderr(&r)
    );
    // Real samples: 4 of them cycle through a batch of 3 and, varied, through the steps.
    let r = snnc(&[
        "bench",
        "examples/xor/xor_spiking.sir",
        "--input",
        "examples/xor/inputs.npy",
        "--steps",
        "5",
        "--runs",
        "2",
        "--batch",
        "3",
        "--vary-inputs",
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(
        stdout(&r).contains("samples from examples/xor/inputs.npy"),
        "{}",
        stdout(&r)
    );
    // Samples of the wrong shape are an error naming the file, not a crash.
    let r = snnc(&[
        "bench",
        "examples/xor/xor_spiking.sir",
        "--input",
        "examples/xor/labels.npy",
    ]);
    assert_fails(&r, "examples/xor/labels.npy");
}

#[test]
fn merge_reports_its_counts_and_changes_no_output() {
    // The spiking MNIST example with `merge` after the default passes: the three synapses merge;
    // every neuron population is computed in one loop with the op feeding it and stays.
    let dir = scratch("merge");
    let (merged, plain) = (dir.join("merged.snn"), dir.join("plain.snn"));
    let compile = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "compile",
            "examples/mnist/model.keras",
            "--spiking",
            "--scale-firing-rates",
            "200",
            "--time-passes",
            "-o",
            s(out),
        ];
        a.extend_from_slice(extra);
        snnc(&a)
    };
    let c = compile(
        &merged,
        &[
            "--passes",
            "spikify,lower-maxpool,simplify,sink-synapses,fuse,merge",
        ],
    );
    assert!(c.status.success(), "{}", stderr(&c));
    // What merges where is the merge filetest's subject (tests/ir/pass/merge.sir); here the
    // report must say it merged something into fewer instructions.
    let err = stderr(&c);
    let counts: Vec<usize> = err
        .split("(merged ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(|s| {
            s.split(' ')
                .filter_map(|w| w.parse().ok())
                .collect::<Vec<usize>>()
        })
        .unwrap_or_default();
    assert!(
        matches!(counts[..], [n, m] if n > m && m >= 1),
        "expected `(merged N neuron/synapse instructions into M)`: {err}"
    );
    let c = compile(&plain, &["--no-verify-each"]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(!stderr(&c).contains("pass merge"), "{}", stderr(&c));
    let all = ArrayD::<u8>::read_npy(
        std::fs::File::open(repo().join("examples/mnist/test_images.npy")).unwrap(),
    )
    .unwrap();
    let images = all
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..3))
        .mapv(f32::from);
    let x = dir.join("x.npy");
    write_npy(&x, &images).unwrap();
    let mut outs = Vec::new();
    let mut spike_lines = Vec::new();
    for (model, backend) in [(&plain, "interp"), (&merged, "interp"), (&merged, "jit")] {
        let o = dir.join(format!("o-{backend}-{}.npz", outs.len()));
        let r = snnc(&[
            "run",
            s(model),
            "--input",
            s(&x),
            "--steps",
            "12",
            "--backend",
            backend,
            "--output",
            s(&o),
            "--all-steps",
        ]);
        assert!(r.status.success(), "{}", stderr(&r));
        let spikes = stdout(&r)
            .lines()
            .find(|l| l.starts_with("spikes per sample: "))
            .unwrap_or_else(|| panic!("{}", stdout(&r)))
            .to_string();
        spike_lines.push(spikes);
        let mut npz = NpzReader::new(std::fs::File::open(&o).unwrap()).unwrap();
        let mut names = npz.names().unwrap();
        names.sort();
        let arrays: Vec<(String, ArrayD<f32>)> = names
            .into_iter()
            .map(|n| (n.clone(), npz.by_name(&n).unwrap()))
            .collect();
        outs.push(arrays);
    }
    assert_eq!(outs[0].len(), 1, "the logits at every step");
    assert_eq!(outs[0][0].1.shape(), [3, 12, 10]);
    assert_eq!(outs[0], outs[1], "merge changed the interpreter's outputs");
    assert_eq!(outs[0], outs[2], "the merged module differs on the JIT");
    assert!(outs[0].iter().all(|(_, a)| a.iter().any(|&v| v != 0.0)));
    // Every population is still counted, each with its own spikes.
    assert_eq!(spike_lines[0], spike_lines[1]);
    assert_eq!(spike_lines[0], spike_lines[2]);
    assert!(
        spike_lines[0].contains("pool1.l0.u") && spike_lines[0].contains("dense1"),
        "{}",
        spike_lines[0]
    );
}

#[test]
fn bench_disasm_prints_the_generated_code() {
    let o = snnc(&["bench", "examples/xor/xor_spiking.sir", "--disasm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // One function: a prologue, blocks, and a return, and no benchmark lines.
    assert!(text.contains("block0"), "{text}");
    assert!(text.contains("ret"), "{text}");
    assert!(!text.contains("steps/s"), "{text}");
}

/// NengoDL's `scale_firing_rates` and `synapse` on a rate network: a ReLU's output is unchanged
/// by the scale (gain × s, amplitude ÷ s), a synapse filters what reads the population, and a
/// sigmoid (no amplitude in Nengo) changes, with a warning.
#[test]
fn rate_mode_scales_and_synapses() {
    let c = snnc(&[
        "compile",
        "examples/xor/xor.sir",
        "--scale-firing-rates",
        "5",
        "--synapse",
        "0.01",
    ]);
    assert!(c.status.success(), "{}", stderr(&c));
    let ir = stdout(&c);
    assert!(
        ir.contains("= relu %hidden.jb {gain=5, amplitude=0.2}"),
        "{ir}"
    );
    assert!(ir.contains("lowpass"), "{ir}");
    assert!(!ir.contains("spiking"), "{ir}");
    let dir = scratch("rate_mode");
    let out = |name: &str, extra: &[&str]| {
        let path = dir.join(name);
        let mut args = vec![
            "run",
            "examples/xor/xor.sir",
            "--input",
            "examples/xor/inputs.npy",
            "--output",
            path.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let r = snnc(&args);
        assert!(r.status.success(), "{}", stderr(&r));
        ArrayD::<f32>::read_npy(std::fs::File::open(&path).unwrap()).unwrap()
    };
    let plain = out("plain.npy", &[]);
    let scaled = out("scaled.npy", &["--scale-firing-rates", "5"]);
    for (a, b) in plain.iter().zip(scaled.iter()) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }
    // With a synapse the first step sees the filtered (here: one step of) hidden rates.
    let filtered = out("filtered.npy", &["--synapse", "0.01"]);
    assert!(
        plain.iter().zip(filtered.iter()).any(|(a, b)| a != b),
        "a synapse changes the first step"
    );
    // A sigmoid has no amplitude in Nengo: the scale changes it, and the user is told.
    let text = std::fs::read_to_string(repo().join("examples/xor/xor.sir"))
        .unwrap()
        .replace("= relu %hidden.jb", "= sigmoid %hidden.jb");
    let sig = dir.join("sigmoid.sir");
    std::fs::write(&sig, text).unwrap();
    let c = snnc(&[
        "compile",
        sig.to_str().unwrap(),
        "--scale-firing-rates",
        "5",
    ]);
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(
        stderr(&c).contains("warning: `hidden` (sigmoid) has no amplitude"),
        "{}",
        stderr(&c)
    );
    assert!(
        stdout(&c).contains("sigmoid %hidden.jb {gain=5}"),
        "{}",
        stdout(&c)
    );
}

/// The first `n` MNIST test images as float32, written to `dir/x.npy`, and their labels.
fn mnist_slice(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let all = ArrayD::<u8>::read_npy(
        std::fs::File::open(repo().join("examples/mnist/test_images.npy")).unwrap(),
    )
    .unwrap();
    let images = all
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .mapv(f32::from);
    let labels = ArrayD::<i64>::read_npy(
        std::fs::File::open(repo().join("examples/mnist/test_labels.npy")).unwrap(),
    )
    .unwrap()
    .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
    .to_owned();
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    write_npy(&x, &images).unwrap();
    write_npy(&y, &labels).unwrap();
    (x, y)
}

/// Every array of an `.npz` whose dtype is `T`, by name.
fn npz_arrays<T: ndarray_npy::ReadableElement>(p: &Path) -> Vec<(String, ArrayD<T>)> {
    let mut npz = NpzReader::new(std::fs::File::open(p).unwrap()).unwrap();
    let names = npz.names().unwrap();
    names
        .into_iter()
        .filter_map(|n| {
            npz.by_name(&n)
                .ok()
                .map(|a| (n.trim_end_matches(".npy").to_string(), a))
        })
        .collect()
}

fn get<'a, T>(arrays: &'a [(String, ArrayD<T>)], name: &str) -> &'a ArrayD<T> {
    &arrays
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no array `{name}`"))
        .1
}

#[test]
fn probes_record_every_step_and_change_no_result() {
    let dir = scratch("probes");
    let (x, _) = mnist_slice(&dir, 5);
    let snn = dir.join("net.snn");
    let c = snnc(&[
        "compile",
        "examples/mnist/model.keras",
        "--spiking",
        "--scale-firing-rates",
        "200",
        "-o",
        s(&snn),
    ]);
    assert!(c.status.success(), "{}", stderr(&c));
    let probes = "conv1,dense1,dense1:value,dense1:voltage,dense1:input,dense1:synapse,flatten";
    let mut probed_by_backend = Vec::new();
    for backend in ["interp", "jit"] {
        let run = |out: &Path, extra: &[&str]| {
            let mut a = vec![
                "run",
                s(&snn),
                "--input",
                s(&x),
                "--steps",
                "12",
                "--backend",
                backend,
                "--all-steps",
                "--save-spikes",
                "--output",
                s(out),
            ];
            a.extend_from_slice(extra);
            let r = snnc(&a);
            assert!(r.status.success(), "{}", stderr(&r));
            r
        };
        let (plain, probed) = (dir.join("plain.npz"), dir.join("probed.npz"));
        let r0 = run(&plain, &[]);
        let r1 = run(&probed, &["--probe", probes]);
        let spikes = |r: &Output| {
            stdout(r)
                .lines()
                .find(|l| l.starts_with("spikes per sample"))
                .map(str::to_string)
        };
        assert_eq!(spikes(&r0), spikes(&r1), "probing changed the spike counts");
        let (f0, f1) = (npz_arrays::<f32>(&plain), npz_arrays::<f32>(&probed));
        let counts = npz_arrays::<i32>(&probed);
        // Probing changes no output, bit for bit.
        assert_eq!(get(&f0, "logits"), get(&f1, "logits"));
        assert_eq!(get(&f0, "spikes/conv1"), get(&f1, "spikes/conv1"));
        // Spike probes are int32 counts per step whose sums are the run's spike counts.
        let conv1 = get(&counts, "conv1");
        assert_eq!(conv1.shape(), [5, 12, 26, 26, 16]);
        let totals = get(&f0, "spikes/conv1");
        for b in 0..5 {
            let sum: i64 = conv1
                .index_axis(ndarray::Axis(0), b)
                .iter()
                .map(|&c| c as i64)
                .sum();
            assert_eq!(sum as f32, totals[[b]], "sample {b}");
        }
        assert!(conv1.iter().any(|&c| c > 0) && conv1.iter().all(|&c| c >= 0));
        // The value view of a population is its spike heights: count · amplitude / dt.
        let (heights, dense1) = (get(&f1, "dense1:value"), get(&counts, "dense1"));
        assert_eq!(heights.shape(), [5, 12, 64]);
        for (h, &c) in heights.iter().zip(dense1.iter()) {
            let want = c as f32 * 5.0;
            assert!((h - want).abs() <= 1e-6 * want, "height {h}, count {c}");
        }
        // Voltages of spiking ReLUs stay in [0, 1) after the step; the flattened pool output
        // has the pool's 800 elements.
        let v = get(&f1, "dense1:voltage");
        assert!(
            v.iter().all(|&v| (0.0..1.0).contains(&v)),
            "voltage outside [0, 1)"
        );
        assert_eq!(get(&f1, "flatten").shape(), [5, 12, 800]);
        // The input current reads the synapse's state at the start of the step: step t's input
        // is bias + the synapse state probed after step t − 1.
        let (j, syn) = (get(&f1, "dense1:input"), get(&f1, "dense1:synapse"));
        let j0 = j.index_axis(ndarray::Axis(1), 0).to_owned(); // synapse state 0: the bias
        for t in 1..12 {
            let jt = j.index_axis(ndarray::Axis(1), t);
            let st = syn.index_axis(ndarray::Axis(1), t - 1);
            for ((a, b0), s) in jt.iter().zip(j0.iter()).zip(st.iter()) {
                assert!((a - (b0 + s)).abs() <= 1e-5 * (1.0 + a.abs()), "step {t}");
            }
        }
        probed_by_backend.push((f1, counts));
    }
    assert_eq!(
        probed_by_backend[0], probed_by_backend[1],
        "the backends' probes differ"
    );

    // Rate mode: the probed pool output is the 2×2 max of the probed convolution output,
    // computed here by hand (through the neural max-pool circuit in snnc).
    let out = dir.join("rate.npz");
    let r = snnc(&[
        "run",
        "examples/mnist/model.keras",
        "--input",
        s(&x),
        "--probe",
        "conv2,pool2",
        "--output",
        s(&out),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let a = npz_arrays::<f32>(&out);
    let (conv2, pool2) = (get(&a, "conv2"), get(&a, "pool2"));
    assert_eq!(conv2.shape(), [5, 1, 11, 11, 32]);
    assert_eq!(pool2.shape(), [5, 1, 5, 5, 32]);
    for b in 0..5 {
        for i in 0..5 {
            for j in 0..5 {
                for c in 0..32 {
                    let mut m = f32::NEG_INFINITY;
                    for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        m = m.max(conv2[[b, 0, 2 * i + di, 2 * j + dj, c]]);
                    }
                    let p = pool2[[b, 0, i, j, c]];
                    assert!((p - m).abs() <= 1e-5 * (1.0 + m.abs()), "{p} vs {m}");
                }
            }
        }
    }

    // Bad probes: one line naming the probe and what exists.
    let bad = |probe: &str, output: bool| {
        let mut a = vec!["run", s(&snn), "--input", s(&x), "--probe", probe];
        if output {
            a.extend_from_slice(&["--output", "/tmp/snnc-never-written.npz"]);
        }
        snnc(&a)
    };
    assert_fails(
        &bad("conv9", true),
        "probe `conv9`: no layer, population, value or state is named `conv9`",
    );
    assert_fails(&bad("conv9", true), "conv1, conv2");
    assert_fails(
        &bad("flatten:voltage", true),
        "`flatten` is not a spiking population (populations: ",
    );
    assert_fails(&bad("conv1:colour", true), "unknown view");
    assert_fails(
        &bad("conv1", false),
        "--probe records into --output FILE.npz",
    );
    assert_fails(&bad("logits", true), "already has an output of that name");
    assert!(!Path::new("/tmp/snnc-never-written.npz").exists());
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        p.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn report_draws_the_diagnosis_figures() {
    let dir = scratch("report");
    let (x, y) = mnist_slice(&dir, 40);
    let rep = dir.join("report");
    let r = snnc(&[
        "run",
        "examples/mnist/model.keras",
        "--input",
        s(&x),
        "--labels",
        s(&y),
        "--spiking",
        "--scale-firing-rates",
        "200",
        "--steps",
        "20",
        "--accuracy-at",
        "10",
        "--report",
        s(&rep),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let out = stdout(&r);
    assert!(out.contains("wrote report"), "{out}");
    // Only the steps asked for are printed, though the report scores every step.
    assert_eq!(out.matches("accuracy at step").count(), 1, "{out}");
    let text = |f: &str| std::fs::read_to_string(rep.join(f)).unwrap();
    let pops = [
        "conv1",
        "pool1.l0.u",
        "pool1.l1.u",
        "conv2",
        "pool2.l0.u",
        "pool2.l1.u",
        "dense1",
    ];

    let acc = text("accuracy.svg");
    for want in [
        "accuracy (%)",
        "step (dt = 1 ms)",
        "spiking, scale 200",
        "ANN (rate network, 1 step)",
        ">\n100\n<",
        ">\n20\n<",
    ] {
        assert!(acc.contains(want), "accuracy.svg lacks `{want}`");
    }
    // One line per run: a polyline through 20 steps.
    assert!(acc.contains("<polyline"), "no accuracy curve");

    let rates = text("rates.svg");
    assert!(rates.contains("firing rate of active neurons (Hz, log scale)"));
    assert!(rates.contains("neurons (%)"));
    for p in pops {
        assert!(
            rates.contains(&format!("{p} (")),
            "rates.svg lacks panel `{p}`"
        );
    }
    assert!(rates.contains("% silent") && rates.contains("% saturated"));
    assert!(
        rates.contains(">\n1k\n<"),
        "the rate axis reaches one spike per step (1 kHz)"
    );

    let spikes = text("spikes.svg");
    for want in ["spikes per sample", "synaptic operations per sample"] {
        assert!(spikes.contains(want), "spikes.svg lacks `{want}`");
    }
    for p in pops {
        assert!(
            spikes.contains(&format!(">\n{p}\n<")),
            "spikes.svg lacks `{p}`"
        );
    }

    assert_eq!(png_size(&rep.join("accuracy.png")), (900, 540));
    assert_eq!(png_size(&rep.join("rates.png")), (3 * 380, 60 + 3 * 280));
    assert_eq!(png_size(&rep.join("raster.png")), (80 + 3 * 320, 560));
    assert!(std::fs::metadata(rep.join("raster.png")).unwrap().len() > 5_000);

    // The report's numbers agree with the run's, and dense1's synaptic operations are its
    // spikes times the 10 logits each spike reaches.
    let md = text("report.md");
    let row = |p: &str| -> Vec<String> {
        md.lines()
            .find(|l| l.starts_with(&format!("| {p} |")))
            .unwrap_or_else(|| panic!("no row for {p}: {md}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let spikes_line = out
        .lines()
        .find(|l| l.starts_with("spikes per sample"))
        .unwrap();
    for p in pops {
        let cells = row(p);
        let printed = spikes_line
            .split(&format!("{p} "))
            .nth(1)
            .and_then(|r| r.split([',', ')']).next())
            .unwrap();
        assert_eq!(cells[6], printed, "{p}: report and run disagree");
    }
    let d = row("dense1");
    let (sp, syn): (f64, f64) = (d[6].parse().unwrap(), d[7].parse().unwrap());
    assert!(
        (syn - 10.0 * sp).abs() <= 10.0,
        "dense1: {syn} synaptic ops for {sp} spikes"
    );
    assert!(md.contains("| spiking, scale 200 |"), "{md}");
    assert!(md.contains("## Spike raster: dense1"), "{md}");

    // --raster picks the layer; a name that is no population is an error naming it.
    let r = snnc(&[
        "run",
        "examples/mnist/model.keras",
        "--input",
        s(&x),
        "--spiking",
        "--steps",
        "5",
        "--report",
        s(&rep),
        "--raster",
        "nope",
    ]);
    assert_fails(&r, "--raster nope");
    let r = snnc(&[
        "run",
        "examples/mnist/model.keras",
        "--input",
        s(&x),
        "--raster",
        "conv1",
    ]);
    assert_fails(&r, "--raster draws into the --report directory");
}

/// The number after `prefix` on the line of `out` that starts with it.
fn printed_number(out: &str, prefix: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{prefix}` in:\n{out}"))
}

/// `snnc sweep` runs each setting as `snnc run` would: its accuracy at each step and its spikes
/// and synaptic operations per sample equal those `run` prints for the same flags; the CSV holds
/// the same numbers and the ANN's accuracy.
#[test]
fn sweep_rows_equal_single_runs() {
    let dir = scratch("sweep");
    let (images, labels) = mnist_slice(&dir, 40);
    let csv = dir.join("sweep.csv");
    let o = snnc(&[
        "sweep",
        "examples/mnist/model.keras",
        "--input",
        s(&images),
        "--labels",
        s(&labels),
        "--steps",
        "12",
        "--at",
        "6,12",
        "--scales",
        "100,300",
        "--synapses",
        "0.005,none",
        "--csv",
        s(&csv),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let table = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(table.lines().count(), 1 + 1 + 4, "{table}");
    assert!(table.starts_with(
        "setting,accuracy_at_6,accuracy_at_12,spikes_per_sample,synops_per_sample\nANN (rate),"
    ));
    for (scale, synapse) in [
        ("100", "0.005"),
        ("300", "0.005"),
        ("100", "none"),
        ("300", "none"),
    ] {
        let run = snnc(&[
            "run",
            "examples/mnist/model.keras",
            "--input",
            s(&images),
            "--labels",
            s(&labels),
            "--steps",
            "12",
            "--accuracy-at",
            "6",
            "--spiking",
            "--scale-firing-rates",
            scale,
            "--synapse",
            synapse,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        let out = stdout(&run);
        let number = |prefix: &str| printed_number(&out, prefix);
        // Without a synapse both read the output's mean since the first step by default.
        let readout = if synapse == "none" { "mean" } else { "last" };
        let setting = format!("scale {scale}, synapse {synapse}, v0 uniform, readout {readout}");
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("\"{setting}\"")))
            .unwrap_or_else(|| panic!("no row {setting}:\n{table}"));
        let cells: Vec<f64> = row
            .rsplitn(5, ',')
            .take(4)
            .map(|c| c.parse().unwrap())
            .collect();
        let (synops, spikes, at12, at6) = (cells[0], cells[1], cells[2], cells[3]);
        assert_eq!(at6, number("accuracy at step 6: "), "{setting}");
        assert_eq!(at12, number("accuracy: "), "{setting}");
        assert_eq!(spikes.round(), number("spikes per sample: "), "{setting}");
        assert_eq!(
            synops.round(),
            number("synaptic operations per sample: "),
            "{setting}"
        );
        assert!(text.contains(&setting), "{text}");
    }
}

/// `--target-steps`: the search is reported on stderr (every setting tried, with predicted and
/// measured agreement and spikes, the chosen one marked), the network answers with the mean
/// readout, and bad combinations are refused with the flag named.
#[test]
fn target_steps_reports_its_search() {
    let dir = scratch("target_steps");
    let (images, labels) = mnist_slice(&dir, 40);
    let o = snnc(&[
        "run",
        "examples/mnist/model.keras",
        "--input",
        s(&images),
        "--labels",
        s(&labels),
        "--steps",
        "8",
        "--spiking",
        "--normalize-rates",
        "examples/mnist/calibration_images.npy",
        "--target-steps",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "target: the rate network's decision on 99.0% of the calibration samples by step 8"
        ),
        "{err}"
    );
    let chosen: Vec<&str> = err
        .lines()
        .filter(|l| l.trim_start().starts_with("* "))
        .collect();
    assert_eq!(chosen.len(), 1, "{err}");
    assert!(chosen[0].contains("measured") && chosen[0].contains("spikes per sample"));
    let out = stdout(&o);
    let acc = printed_number(&out, "accuracy: ");
    assert!(acc >= 0.9, "{out}");
    for (args, want) in [
        (
            vec!["--spiking", "--target-steps", "8"],
            "--target-steps needs --normalize-rates",
        ),
        (
            vec![
                "--spiking",
                "--normalize-rates",
                "examples/mnist/calibration_images.npy",
                "--target-steps",
                "0",
            ],
            "target_steps must be at least 1",
        ),
        (
            vec![
                "--spiking",
                "--normalize-rates",
                "examples/mnist/calibration_images.npy",
                "--target-steps",
                "8",
                "--target-agreement",
                "1.5",
            ],
            "target_agreement must be in (0, 1]",
        ),
    ] {
        let mut a = vec!["run", "examples/mnist/model.keras", "--input", s(&images)];
        a.extend(args);
        let o = snnc(&a);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
}

/// `snnc export` then `snnc run` on the NIR file: the same accuracy and the same spikes per
/// population as the Keras model converted with the same flags; `import` writes a module that
/// runs; bad requests fail with the layer or file named.
#[test]
fn nir_export_import_and_run() {
    let dir = scratch("nir");
    let net = dir.join("mnist.nir");
    let flags = [
        "--spiking",
        "--swap",
        "relu=if",
        "--synapse",
        "none",
        "--scale-firing-rates",
        "100",
        "--initial-voltage",
        "0.5",
    ];
    let mut args = vec!["export", "examples/mnist/model.keras", "-o", s(&net)];
    args.extend(flags);
    args.extend(["--check-rates", "examples/mnist/calibration_images.npy"]);
    let o = snnc(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("10512 in max-pool circuits"),
        "{}",
        stdout(&o)
    );
    // At scale 100 the dense layer needs several spikes in some steps: the export says so.
    assert!(stderr(&o).contains("`dense1`") && stderr(&o).contains("more than one spike"));

    let images: ArrayD<u8> = ArrayD::<u8>::read_npy(
        std::fs::File::open(repo().join("examples/mnist/test_images.npy")).unwrap(),
    )
    .unwrap();
    let labels: ArrayD<i64> = ArrayD::<i64>::read_npy(
        std::fs::File::open(repo().join("examples/mnist/test_labels.npy")).unwrap(),
    )
    .unwrap();
    let n = 40;
    let x = images
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .mapv(f32::from)
        .into_shape_with_order(ndarray::IxDyn(&[n, 1, 28, 28]))
        .unwrap();
    let y = labels
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .to_owned();
    let (xin, yin) = (dir.join("x.npy"), dir.join("y.npy"));
    write_npy(&xin, &x).unwrap();
    write_npy(&yin, &y).unwrap();
    let run = |model: &str, input: &str, extra: &[&str]| {
        let mut a = vec![
            "run",
            model,
            "--input",
            input,
            "--labels",
            s(&yin),
            "--steps",
            "15",
        ];
        a.extend(["--readout", "mean"]);
        a.extend(extra);
        let o = snnc(&a);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let hwc = dir.join("hwc.npy");
    write_npy(
        &hwc,
        &images
            .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
            .mapv(f32::from),
    )
    .unwrap();
    let from_nir = run(s(&net), s(&xin), &[]);
    let from_keras = run("examples/mnist/model.keras", s(&hwc), &flags);
    let line = |out: &str, key: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(line(&from_nir, "accuracy"), line(&from_keras, "accuracy"));
    let total = |out: &str| {
        line(out, "spikes per sample")
            .split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        total(&from_nir),
        total(&from_keras),
        "{from_nir}\n{from_keras}"
    );

    let snn = dir.join("imported.snn");
    let o = snnc(&["import", s(&net), "-o", s(&snn)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        line(&run(s(&snn), s(&xin), &[]), "accuracy"),
        line(&from_nir, "accuracy")
    );

    // A rate network, an already lowered module, a file that is not NIR.
    assert_fails(
        &snnc(&[
            "export",
            "examples/mnist/model.keras",
            "-o",
            s(&dir.join("r.nir")),
        ]),
        "`conv1` (relu)",
    );
    let lowered = dir.join("lowered.snn");
    assert!(
        snnc(&[
            "compile",
            "examples/mnist/model.keras",
            "--spiking",
            "-o",
            s(&lowered)
        ])
        .status
        .success()
    );
    assert_fails(
        &snnc(&["export", s(&lowered), "-o", s(&dir.join("l.nir"))]),
        "sparse",
    );
    let bogus = dir.join("bogus.nir");
    std::fs::write(&bogus, b"not a graph").unwrap();
    assert_fails(&snnc(&["import", s(&bogus)]), "bogus.nir");
    assert_fails(&snnc(&["export", s(&net), "-o", s(&net)]), "overwrite");
    assert_eq!(std::fs::read(&bogus).unwrap(), b"not a graph");
}

/// `--layer-synapse` sets one layer's synapse, names that match no layer are a warning, and
/// `--readout` takes `window:K` and `filtered[:TAU]` (and refuses anything else, naming it).
#[test]
fn layer_synapses_and_readouts() {
    let o = snnc(&[
        "compile",
        "examples/mnist/model.keras",
        "--spiking",
        "--synapse",
        "none",
        "--layer-synapse",
        "dense1=0.002",
        "--layer-synapse",
        "conv9=none",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ir = stdout(&o);
    let taus: Vec<&str> = ir
        .lines()
        .filter(|l| l.contains("= lowpass "))
        .map(|l| {
            l.split("tau=")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(|c| c != '}')
        })
        .collect();
    assert_eq!(taus, ["0.002}"], "{ir}");
    assert!(stderr(&o).contains("`conv9`"), "{}", stderr(&o));
    assert_fails(
        &snnc(&[
            "compile",
            "examples/mnist/model.keras",
            "--spiking",
            "--layer-synapse",
            "dense1",
        ]),
        "LAYER=TAU",
    );
    let run = |readout: &str| {
        snnc(&[
            "run",
            "examples/mnist/model.keras",
            "--spiking",
            "--input",
            "examples/mnist/test_images.npy",
            "--labels",
            "examples/mnist/test_labels.npy",
            "--samples",
            "0:20",
            "--steps",
            "6",
            "--readout",
            readout,
        ])
    };
    for ok in ["window:3", "filtered", "filtered:0.01"] {
        let o = run(ok);
        assert!(o.status.success(), "{ok}: {}", stderr(&o));
        assert!(stdout(&o).contains("accuracy"), "{ok}");
    }
    let o = run("window:0");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("window:0"), "{}", stderr(&o));
}
