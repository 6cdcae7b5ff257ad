//! The checks of NengoDL's converter tests (`nengo_dl/tests/test_converter.py`) that are about
//! conversion options rather than one model's outputs, on the NengoDL fixture family (saved
//! by tf.keras 2.13; `keras_conformance.rs` checks every model of the family against
//! `model.predict`).

use ndarray::{ArrayD, IxDyn};
use snnc_compiler::driver::{CompileHooks, Flags, compile};
use snnc_compiler::passes::InitialVoltage;
use snnc_ir::Verified;
use snnc_runtime::Backend;
use snnc_runtime::dataset::{RunSpec, run};
use snnc_tests::repo_root;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    repo_root()
        .join("tests/fixtures/nengodl/tf213")
        .join(format!("{name}.keras"))
}

fn convert(name: &str, flags: &Flags) -> (Verified, Vec<String>) {
    let (m, report) = compile(&fixture(name), flags, CompileHooks::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (m, report.warnings)
}

/// Every output at every step, `(n, steps, ...)`, on both backends (which must agree).
fn run_all(m: &Verified, x: &ArrayD<f32>, steps: usize) -> Vec<ArrayD<f32>> {
    let go = |backend| {
        let spec = RunSpec {
            steps: Some(steps),
            batch: x.shape()[0],
            backend,
            all_steps: true,
            ..Default::default()
        };
        run(m, &[x.view()], None, &spec, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .outputs
        .into_iter()
        .map(|(_, a)| a)
        .collect::<Vec<_>>()
    };
    let interp = go(Backend::Interp);
    assert_eq!(interp, go(Backend::Jit), "the backends disagree");
    interp
}

/// `test_scale_firing_rates_cases`: a ReLU on the input and a `Dense` (weight 1, bias 50) with
/// ReLU, spiking, input 100 held for 100 steps, no synapse. A scale `s` gives spikes of height
/// `1/(dt·s)` at `(input [+ 50])·s` Hz, for the global scale and for per-layer scales (the
/// others keeping 1).
#[test]
fn scale_firing_rates_cases() {
    /// (global scale, per-layer scales, expected scale of each output)
    type Case<'a> = (Option<f64>, &'a [(&'a str, f64)], [f64; 2]);
    let cases: [Case; 3] = [
        (Some(5.0), &[], [5.0, 5.0]),
        (None, &[("re_lu", 3.0), ("dense", 4.0)], [3.0, 4.0]),
        (None, &[("dense", 3.0)], [1.0, 3.0]),
    ];
    let (steps, dt, input) = (100, 0.001, 100.0f32);
    for (scale, layers, expected) in cases {
        let flags = Flags {
            spiking: true,
            scale,
            layer_scales: layers.iter().map(|&(l, s)| (l.to_string(), s)).collect(),
            synapse: Some(None),
            ..Default::default()
        };
        let (m, _) = convert("scale_firing_rates_cases", &flags);
        let x = ArrayD::from_elem(IxDyn(&[1, 1]), input);
        let outs = run_all(&m, &x, steps);
        for (k, (out, rate)) in outs.iter().zip(expected).enumerate() {
            let height = out.iter().cloned().fold(0.0f32, f32::max);
            assert!(
                (f64::from(height) - 1.0 / dt / rate).abs() < 1e-3 * (1.0 / dt / rate),
                "{scale:?} {layers:?} output {k}: spike height {height}, want {}",
                1.0 / dt / rate
            );
            let count = out.iter().filter(|&&v| v != 0.0).count() as f64;
            let drive = if k == 0 { 100.0 } else { 150.0 };
            let want = drive * rate * steps as f64 * dt;
            assert!(
                (count - want).abs() <= 1.0,
                "{scale:?} {layers:?} output {k}: {count} spikes, want {want} ± 1"
            );
        }
    }
}

/// `test_activation_swap` (ReLU to spiking ReLU): the converted network equals two spiking ReLU
/// populations wired one to one, simulated here with plain loops (voltages from zero, no
/// synapse), on time-varying input: spike for spike.
#[test]
fn relu_swap_equals_hand_built_spiking_network() {
    let flags = Flags {
        spiking: true,
        synapse: Some(None),
        initial_voltage: Some(InitialVoltage::Fixed(0.0)),
        ..Default::default()
    };
    let (m, _) = convert("activation_swap_relu", &flags);
    let (n, steps, units) = (4, 50, 100);
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let x = ArrayD::from_shape_fn(IxDyn(&[n, steps, units]), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 200.0
    });
    let got = run_all(&m, &x, steps).remove(0);
    let dt = 0.001f32;
    let step = |v: &mut f32, j: f32| {
        *v += j.max(0.0) * dt;
        let spikes = v.floor();
        *v -= spikes;
        1.0 / dt * spikes
    };
    let mut total = 0;
    for i in 0..n {
        let (mut v0, mut v1) = (vec![0.0f32; units], vec![0.0f32; units]);
        for t in 0..steps {
            for u in 0..units {
                let s0 = step(&mut v0[u], x[[i, t, u]]);
                let s1 = step(&mut v1[u], s0);
                total += (s1 != 0.0) as usize;
                assert_eq!(got[[i, t, u]], s1, "sample {i} step {t} unit {u}");
            }
        }
    }
    assert!(
        total > 100,
        "only {total} spikes: the test would not see a difference"
    );
}

/// `test_synapse`: `synapse=0.1` in rate mode filters what leaves the ReLU layer (the output
/// reading it, and the next layer) and nothing after the linear layer. With a held input, the
/// filtered value after `t` steps is `(1 − a^(t−1))` of the ReLU output (a = e^(−dt/τ), one
/// step of delay), so the outputs approach Keras's from the bias-only response.
#[test]
fn rate_mode_synapse_filters_the_relu_layer() {
    let flags = Flags {
        synapse: Some(Some(0.1)),
        ..Default::default()
    };
    let (m, _) = convert("synapse", &flags);
    let text = m.to_string();
    assert_eq!(text.matches("lowpass").count(), 1, "{text}");
    let x = ArrayD::from_elem(IxDyn(&[1, 1]), 0.7f32);
    // Keras's outputs for this input, from the rate network itself (no flags).
    let (rate, _) = convert("synapse", &Flags::default());
    let keras = run_all(&rate, &x, 1);
    let steps = 40;
    let outs = run_all(&m, &x, steps);
    let a = (-0.001f64 / 0.1).exp();
    for t in 0..steps {
        let c = 1.0 - a.powi(t as i32);
        for u in 0..10 {
            let relu = f64::from(keras[0][[0, 0, u]]);
            let filtered = f64::from(outs[0][[0, t, u]]);
            assert!(
                (filtered - c * relu).abs() < 1e-5,
                "step {t} unit {u}: {filtered} vs {}",
                c * relu
            );
            let bias_only = f64::from(outs[1][[0, 0, u]]);
            let want = (1.0 - c) * bias_only + c * f64::from(keras[1][[0, 0, u]]);
            let got = f64::from(outs[1][[0, t, u]]);
            assert!(
                (got - want).abs() < 1e-5,
                "step {t} unit {u}: {got} vs {want}"
            );
        }
    }
}

/// `test_scale_firing_rates` in rate mode: a ReLU's output does not change with the scale
/// (gain × 5, amplitude ÷ 5); a sigmoid has no amplitude, so its output changes, with a warning
/// naming the layer (NengoDL warns the same and its `verify` fails).
#[test]
fn rate_mode_scale_keeps_relu_and_warns_for_sigmoid() {
    let flags = Flags {
        scale: Some(5.0),
        ..Default::default()
    };
    let x = ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![-0.5, 0.3, 2.0]).unwrap();
    let (relu, warnings) = convert("scale_firing_rates_relu", &flags);
    assert!(warnings.is_empty(), "{warnings:?}");
    let (plain, _) = convert("scale_firing_rates_relu", &Flags::default());
    assert_eq!(run_all(&relu, &x, 1), run_all(&plain, &x, 1));

    let (sigmoid, warnings) = convert("scale_firing_rates_sigmoid", &flags);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("activation") && w.contains("amplitude")),
        "{warnings:?}"
    );
    let got = run_all(&sigmoid, &x, 1).remove(0);
    for (i, &xi) in [-0.5f32, 0.3, 2.0].iter().enumerate() {
        let want = 1.0 / (1.0 + (-5.0 * xi).exp());
        assert!(
            (got[[i, 0, 0]] - want).abs() < 1e-6,
            "{} vs {want}",
            got[[i, 0, 0]]
        );
    }
    assert!(
        (got[[2, 0, 0]] - 1.0 / (1.0 + (-2.0f32).exp())).abs() > 0.1,
        "unchanged"
    );
}
