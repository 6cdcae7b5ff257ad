//! Every Keras fixture (tests/fixtures/{keras3,keras2,tf212,tf213,tf214}, written by Keras 3 and
//! tf.keras 2.15, 2.12, 2.13 and 2.14 running tests/fixtures/generate.py) is
//! converted and run for one step on the interpreter; each output must match `model.predict`
//! within |snnc − keras| ≤ 1e-5 + 1e-4·|keras|.

use ndarray::ArrayD;
use ndarray_npy::NpzReader;
use serde_json::Value;
use snnc_compiler::keras::{KerasOptions, load};
use snnc_ir::{Target, verify};
use snnc_runtime::{Backend, Record, Simulator};
use snnc_tests::repo_root;

/// Convert and run one fixture file; `Err` describes the first mismatch or failure.
fn check_fixture(dir: &str, file: &str, io: &str, lowered: bool) -> Result<usize, String> {
    let root = repo_root().join("tests/fixtures").join(dir);
    let mut module = load(&root.join(file), &KerasOptions::default()).map_err(|e| e.to_string())?;
    if lowered {
        // The rate pipeline (max pooling as neurons, simplify) must not change the outputs.
        module = snnc_compiler::passes::convert(module, &Default::default())
            .map_err(|e| e.to_string())?;
        if module
            .insts
            .iter()
            .any(|i| matches!(i.op, snnc_ir::Op::MaxPool(_) | snnc_ir::Op::GlobalMaxPool))
        {
            return Err("max pooling left after lower-maxpool".into());
        }
    }
    let module = verify(module, Target::Any)
        .map_err(|e| format!("does not verify:\n{e}\n{module}", module = ""))?;
    let mut npz = NpzReader::new(std::fs::File::open(root.join(io)).unwrap()).unwrap();
    let mut inputs = Vec::new();
    for &v in &module.inputs {
        let name = &module.value(v).name;
        let a: ArrayD<f32> = npz
            .by_name(&format!("input_{name}"))
            .map_err(|e| format!("input {name}: {e}"))?;
        inputs.push(a);
    }
    let batch = inputs[0].shape()[0];
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    // A temporal model's inputs have a time axis: one step per time step, every step recorded,
    // as Keras's `(n, steps, ...)` outputs are.
    let timed = module
        .inputs
        .iter()
        .zip(&inputs)
        .any(|(&v, a)| a.ndim() == module.value(v).ty.shape.len() + 2);
    let outs = if timed {
        let spec = snnc_runtime::dataset::RunSpec {
            batch,
            backend: Backend::Interp,
            all_steps: true,
            ..Default::default()
        };
        snnc_runtime::dataset::run(&module, &views, None, &spec, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?
        .outputs
        .into_iter()
        .map(|(_, a)| a)
        .collect()
    } else {
        let mut sim = Simulator::new(&module, Backend::Interp, batch).map_err(|e| e.to_string())?;
        sim.run(1, &views, Record::LastStep)
            .map_err(|e| e.to_string())?
    };
    let mut compared = 0;
    for (o, got) in module.outputs.iter().zip(outs) {
        let want: ArrayD<f32> = npz
            .by_name(&format!("output_{}", o.name))
            .map_err(|e| format!("output {}: {e}", o.name))?;
        if want.shape() != got.shape() {
            return Err(format!(
                "output {}: shape {:?}, keras {:?}",
                o.name,
                got.shape(),
                want.shape()
            ));
        }
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            if (g - w).abs() > 1e-5 + 1e-4 * w.abs() {
                return Err(format!(
                    "output {} element {i}: snnc {g}, keras {w}",
                    o.name
                ));
            }
            compared += 1;
        }
    }
    Ok(compared)
}

/// A fixture NengoDL converts only with a TensorFlow fallback: loading must fail, cleanly, with
/// an error containing `expected` (the layer's name, or what is wrong).
fn check_refused(dir: &str, file: &str, expected: &str) -> Result<(), String> {
    let path = repo_root().join("tests/fixtures").join(dir).join(file);
    match load(&path, &KerasOptions::default()) {
        Ok(_) => Err(format!(
            "converted, but should be refused naming `{expected}`"
        )),
        Err(e) if e.to_string().contains(expected) => Ok(()),
        Err(e) => Err(format!("refused without naming `{expected}`: {e}")),
    }
}

fn run_dir(dir: &str) {
    run_dir_expecting(dir, 40);
}

/// Every fixture in `dir`'s manifest matches, or is refused as the manifest says; at least
/// `min_files` fixture files are checked.
fn run_dir_expecting(dir: &str, min_files: usize) {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root()
                .join("tests/fixtures")
                .join(dir)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut passed = 0;
    for f in manifest["fixtures"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        for file in f["files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            if let Some(expected) = f["error"].as_str() {
                match check_refused(dir, file, expected) {
                    Ok(()) => passed += 1,
                    Err(e) => failures.push(format!("{dir}/{file}: {e}")),
                }
                continue;
            }
            for lowered in [false, true] {
                match check_fixture(dir, file, &format!("{name}.io.npz"), lowered) {
                    Ok(n) => {
                        assert!(n > 0);
                        passed += 1;
                    }
                    Err(e) => failures.push(format!("{dir}/{file} (lowered: {lowered}): {e}")),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} passed, {} failed:\n{}",
        passed,
        failures.len(),
        failures.join("\n")
    );
    assert!(passed >= min_files, "only {passed} fixture files");
}

#[test]
fn keras3_fixtures_match_model_predict() {
    run_dir("keras3");
}

#[test]
fn keras2_fixtures_match_model_predict() {
    run_dir("keras2");
}

/// tf.keras 2.12 and 2.13 name the weight groups of `.keras` archives under
/// `_layer_checkpoint_dependencies/` with a counter that skips a number after every layer with
/// weights; 2.14 counts without gaps there; 2.15 moved them to `layers/`.
#[test]
fn tf212_fixtures_match_model_predict() {
    run_dir("tf212");
}

#[test]
fn tf213_fixtures_match_model_predict() {
    run_dir("tf213");
}

#[test]
fn tf214_fixtures_match_model_predict() {
    run_dir("tf214");
}

/// The models of NengoDL's own converter tests (`nengo_dl/tests/test_converter.py`), saved by
/// tf.keras 2.13 (the last TensorFlow NengoDL 3.6 runs on), tf.keras 2.15 and Keras 3.
#[test]
fn nengodl_tf213_fixtures_match_model_predict() {
    run_dir_expecting("nengodl/tf213", 90);
}

#[test]
fn nengodl_tf215_fixtures_match_model_predict() {
    run_dir_expecting("nengodl/keras2", 90);
}

#[test]
fn nengodl_keras3_fixtures_match_model_predict() {
    run_dir_expecting("nengodl/keras3", 70);
}

/// The IR dumps of a representative handful read like the model summary.
#[test]
fn keras_dumps_are_stable() {
    for (dir, file) in [
        ("keras3", "maxpool2d.keras"),
        ("keras3", "functional_branches.keras"),
        ("keras3", "conv_groups_channels_first.keras"),
        ("keras2", "nested.h5"),
        ("keras2", "activations.keras"),
    ] {
        let path = repo_root().join("tests/fixtures").join(dir).join(file);
        let m = load(&path, &KerasOptions::default()).unwrap();
        insta::assert_snapshot!(format!("{dir}_{file}"), m.to_string());
    }
}

/// The MNIST example: the trained model reproduces Keras's logits on the committed test images.
#[test]
fn mnist_example_matches_keras() {
    example_matches_keras("mnist", "model.keras", "keras_logits.npy");
}

/// The Fashion-MNIST examples (a VGG-style CNN and a small ResNet with batch normalisation).
#[test]
fn fashion_examples_match_keras() {
    example_matches_keras("fashion", "vgg.keras", "vgg_logits.npy");
    example_matches_keras("fashion", "resnet.keras", "resnet_logits.npy");
}

/// An example's model on its first 100 committed test images, against Keras's logits.
fn example_matches_keras(example: &str, model: &str, logits: &str) {
    let dir = repo_root().join("examples").join(example);
    let module = load(&dir.join(model), &KerasOptions::default()).unwrap();
    let module = verify(module, Target::Any).unwrap();
    let images: ArrayD<u8> = ndarray_npy::read_npy(dir.join("test_images.npy")).unwrap();
    let want: ndarray::Array2<f32> = ndarray_npy::read_npy(dir.join(logits)).unwrap();
    let n = 100;
    let x = images
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..n))
        .mapv(f32::from);
    let mut sim = Simulator::new(&module, Backend::Interp, n).unwrap();
    let got = sim.run(1, &[x.view()], Record::LastStep).unwrap().remove(0);
    for i in 0..n {
        for k in 0..10 {
            let (g, w) = (got[[i, k]], want[[i, k]]);
            assert!(
                (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                "{example}/{model} image {i} logit {k}: snnc {g}, keras {w}"
            );
        }
    }
}

/// Keras 2 files with old-h5py attributes: fixed-length byte strings for `model_config` and
/// `weight_names`, and `weight_names` split into `weight_names0`, `weight_names1`.
#[test]
fn legacy_fixed_length_and_chunked_attributes() {
    for name in ["conv2d_fixed_strings", "nested_fixed_strings"] {
        for lowered in [false, true] {
            let n = check_fixture(
                "variants",
                &format!("{name}.h5"),
                &format!("{name}.io.npz"),
                lowered,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(n > 0);
        }
    }
}
