//! The Rust API as README.md's "Rust API" section shows it, compiled and run: a Keras file
//! converted to a spiking network, a batch simulated in groups on every core, and a data set run
//! with spikes counted and accuracy scored.

use snnc_tests::repo_root;

#[test]
fn the_readme_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    let root = repo_root();
    // --- README: Rust API ---
    use snnc_compiler::passes::{ConvertOptions, SpikeOptions, convert};
    use snnc_runtime::dataset::{self, RunSpec};
    use snnc_runtime::{Backend, Record, SimOptions, Simulator};

    // Convert: the Keras layer graph, then the spiking pipeline (firing rates scaled by 100).
    let keras = snnc_compiler::keras::load(
        &root.join("examples/mnist/model.keras"),
        &Default::default(),
    )?;
    let options = ConvertOptions {
        spiking: Some(SpikeOptions {
            scale: 100.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let module = snnc_ir::verify(convert(keras, &options)?, snnc_ir::Target::Neural)?;
    // (or a compiled artifact: snnc_ir::verify(snnc_ir::load_snn(path)?, Target::Neural)?)

    // A batch of 64 images held for 30 steps, on every core; outputs by index, in module order.
    let images: ndarray::ArrayD<u8> =
        ndarray_npy::read_npy(root.join("examples/mnist/test_images.npy"))?;
    let x = images
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..64))
        .mapv(f32::from);
    let sim_options = SimOptions {
        threads: 0,
        ..Default::default()
    };
    let mut sim = Simulator::with_options(&module, Backend::Jit, 64, sim_options)?;
    let outputs = sim.run(30, &[x.view()], Record::LastStep)?;
    let logits = module
        .outputs
        .iter()
        .position(|o| o.name == "logits")
        .unwrap();
    assert_eq!(outputs[logits].shape(), [64, 10]);

    // A data set: minibatches that fit the cache, every core, spikes counted per sample.
    let labels: ndarray::Array1<i64> =
        ndarray_npy::read_npy(root.join("examples/mnist/test_labels.npy"))?;
    let spec = RunSpec {
        steps: Some(30),
        ..Default::default()
    };
    let labels = labels.as_slice().unwrap();
    let result = dataset::run(
        &module,
        &[x.view()],
        Some(&labels[..64]),
        &spec,
        &mut |_| std::ops::ControlFlow::Continue(()),
    )?;
    println!(
        "{} of 64 correct, {} threads, minibatch {}",
        result.correct.unwrap(),
        result.threads,
        result.batch
    );
    // --- end ---

    // The two ways give the same answer for every image.
    let (name, from_dataset) = &result.outputs[0];
    assert_eq!(name, "logits");
    assert_eq!(from_dataset, &outputs[logits]);
    assert!(result.correct.unwrap() >= 60);
    assert!(
        result
            .spikes
            .iter()
            .all(|(_, per_sample)| per_sample.len() == 64)
    );
    Ok(())
}
