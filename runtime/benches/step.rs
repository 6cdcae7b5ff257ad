//! Per-step cost of single layers and of the MNIST example, interpreter against JIT, side by side.
//!
//! `cargo bench -p snnc-runtime` (add `-- dense` etc. to pick one group). Each group measures both
//! backends in one run, so their ratio is meaningful on a noisy machine even when absolute times
//! drift. The multiply-adds per step are set as the throughput, so criterion also reports elements
//! per second (one element = one multiply-add). Layer benchmarks change their input every step;
//! the MNIST ones run both ways (`held`: the image stays, so input-only work is skipped; `varied`),
//! on the example's real test images.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{ArrayD, IxDyn};
use snnc_ir::{Target, Verified, parse, verify};
use snnc_runtime::{Backend, Simulator};
use std::hint::black_box;
use std::path::Path;

/// A module from IR text in which every `const … = random` line gets deterministic values in
/// [-0.5, 0.5).
fn module(text: &str) -> Verified {
    let filled: Vec<String> = text
        .lines()
        .map(|line| match line.strip_suffix("= random") {
            Some(head) => {
                let dims =
                    &head[head.find('[').expect("shape") + 1..head.find(']').expect("shape")];
                let n: usize = dims
                    .split(',')
                    .map(|d| d.trim().parse::<usize>().unwrap())
                    .product();
                let values: Vec<String> = (0..n)
                    .map(|i| format!("{}", ((i * 7919) % 1000) as f32 / 1000.0 - 0.5))
                    .collect();
                format!("{head}= [{}]", values.join(", "))
            }
            None => line.to_string(),
        })
        .collect();
    let m = parse(&filled.join("\n")).expect("benchmark IR parses");
    verify(m, Target::Any).expect("benchmark IR verifies")
}

fn inputs(m: &Verified, batch: usize, seed: usize) -> Vec<ArrayD<f32>> {
    m.inputs
        .iter()
        .map(|&v| {
            let mut shape = vec![batch];
            shape.extend(&m.value(v).ty.shape);
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|i| ((i * 7919 + seed * 31) % 256) as f32 / 256.0)
                .collect();
            ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape")
        })
        .collect()
}

/// Benchmark one step of `m` on both backends at each batch size. With `vary`, consecutive steps
/// get different inputs, so nothing can be skipped as input-only work; otherwise the inputs are
/// held, as for an image shown for many steps.
fn bench_module(
    c: &mut Criterion,
    group: &str,
    m: &Verified,
    macs: u64,
    batches: &[usize],
    vary: bool,
) {
    bench_module_on(c, group, (m, macs), batches, vary, &|batch, seed| {
        inputs(m, batch, seed)
    });
}

/// [`bench_module`] with inputs from `make(batch, k)`, `k` = 0 or 1 (the two alternating sets).
fn bench_module_on(
    c: &mut Criterion,
    group: &str,
    (m, macs): (&Verified, u64),
    batches: &[usize],
    vary: bool,
    make: &dyn Fn(usize, usize) -> Vec<ArrayD<f32>>,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20);
    for &batch in batches {
        g.throughput(Throughput::Elements(macs * batch as u64));
        let sets = [make(batch, 0), make(batch, usize::from(vary))];
        let views: Vec<Vec<_>> = sets
            .iter()
            .map(|xs| xs.iter().map(|a| a.view()).collect())
            .collect();
        for (name, backend) in [("interp", Backend::Interp), ("jit", Backend::Jit)] {
            let mut sim = Simulator::new(m, backend, batch).expect("simulator");
            let mut t = 0;
            g.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter(|| {
                    t += 1;
                    sim.step(black_box(&views[t % 2])).expect("step")
                })
            });
        }
    }
    g.finish();
}

fn dense(c: &mut Criterion) {
    let m = module(
        "module @dense dt=0.001\ninput %x : f32[800]\nconst @w : f32[800,64] = random\n\
         %y = dense %x, @w : f32[64]\noutput \"y\" = %y\n",
    );
    bench_module(c, "dense 800x64", &m, 800 * 64, &[1, 64], true);
}

fn conv(c: &mut Criterion) {
    let m = module(
        "module @conv dt=0.001\ninput %x : f32[13,13,16]\nconst @k : f32[3,3,16,32] = random\n\
         %y = conv %x, @k {strides=[1,1], padding=valid} : f32[11,11,32]\noutput \"y\" = %y\n",
    );
    bench_module(
        c,
        "conv 13x13x16 3x3x32",
        &m,
        11 * 11 * 32 * 144,
        &[1, 64],
        true,
    );
}

/// Dense and convolution reading a spike train at several densities (the fraction of inputs that
/// spike in a step, each spike of height 10), new spikes every step: the event-driven kernels'
/// cost against activity. Throughput counts the dense-equivalent multiply-adds.
fn spike_density(c: &mut Criterion) {
    let dense = module(
        "module @dense dt=0.001\ninput %x : f32[800]\nconst @w : f32[800,64] = random\n\
         %y = dense %x, @w : f32[64]\noutput \"y\" = %y\n",
    );
    let conv = module(
        "module @conv dt=0.001\ninput %x : f32[13,13,16]\nconst @k : f32[3,3,16,32] = random\n\
         %y = conv %x, @k {strides=[1,1], padding=valid} : f32[11,11,32]\noutput \"y\" = %y\n",
    );
    for (name, m, macs) in [
        ("dense 800x64", &dense, 800 * 64),
        ("conv 13x13x16 3x3x32", &conv, 11 * 11 * 32 * 144),
    ] {
        for density in [0.01, 0.04, 0.16, 0.5] {
            let spikes = |batch: usize, seed: usize| -> Vec<ArrayD<f32>> {
                inputs(m, batch, seed)
                    .into_iter()
                    .map(|a| {
                        // A fixed pseudo-random pattern per seed, `density` of it spiking.
                        let mut k = seed as u64 * 0x9E37_79B9_7F4A_7C15 + 1;
                        a.mapv(|_| {
                            k = snnc_ir::rng::splitmix64(k);
                            if ((k >> 40) as f64) < density * (1u64 << 24) as f64 {
                                10.0
                            } else {
                                0.0
                            }
                        })
                    })
                    .collect()
            };
            let group = format!("{name}, {}% of inputs spiking", density * 100.0);
            bench_module_on(c, &group, (m, macs), &[1, 64], true, &spikes);
        }
    }
}

/// A population of 10,816 units (the MNIST example's conv1) under a held current that makes a
/// given fraction of them spike per step: `spiking_relu` (every unit stepped, one fused f32x4
/// loop) against `fixed_relu` (scheduled by next spike step: the stretch's first step steps and
/// schedules every unit, later ones visit the units due). One iteration is a reset and a stretch
/// of 30 or 300 held steps; divide by the steps for the time per step.
fn held_population(c: &mut Criterion) {
    let n = 10_816;
    let models: Vec<(&str, Verified)> = ["spiking_relu", "fixed_relu"]
        .into_iter()
        .map(|model| {
            let text = format!(
                "module @p dt=0.001\ninput %j : f32[{n}]\nstate $v : f32[{n}] = uniform(0, 1, seed=1)\n\
                 %s, %v1 = {model} %j, $v : f32[{n}], f32[{n}]\nnext $v = %v1\noutput \"s\" = %s\n"
            );
            (model, module(&text))
        })
        .collect();
    for density in [0.01, 0.04, 0.16] {
        let mut g = c.benchmark_group(format!(
            "held population of {n}, {}% spiking per step",
            density * 100.0
        ));
        g.sample_size(20);
        // Drives spread around `density` spikes per step (gain 1, dt 1 ms: j = 1000·d).
        let j: Vec<f32> = (0..n)
            .map(|i| 1000.0 * density as f32 * (0.5 + (i % 101) as f32 / 100.0))
            .collect();
        let x = ArrayD::from_shape_vec(IxDyn(&[1, n]), j).expect("shape");
        let view = [x.view()];
        for (model, m) in &models {
            for steps in [30usize, 300] {
                let mut sim = Simulator::new(m, Backend::Jit, 1).expect("simulator");
                g.bench_function(BenchmarkId::new(*model, steps), |b| {
                    b.iter(|| {
                        sim.reset(0);
                        for _ in 0..steps {
                            sim.step(black_box(&view)).expect("step");
                        }
                    })
                });
            }
        }
        g.finish();
    }
}

/// `matrixmultiply` alone on the GEMM shapes behind the conv and dense benchmarks at batch 64
/// (conv: 64·11·11 output positions × 3·3·16 taps × 32 channels; dense: 64 × 800 × 64), for the
/// fraction of the crate's own throughput the whole layer step reaches.
fn gemm_alone(c: &mut Criterion) {
    let mut g = c.benchmark_group("matrixmultiply alone");
    g.sample_size(20);
    for (name, m, k, n) in [("conv b64", 64 * 121, 144, 32), ("dense b64", 64, 800, 64)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 97) as f32 / 97.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 89) as f32 / 89.0 - 0.5).collect();
        let mut out = vec![0f32; m * n];
        g.throughput(Throughput::Elements((m * k * n) as u64));
        g.bench_function(name, |bench| {
            bench.iter(|| {
                // SAFETY: a is m×k, b is k×n and out is m×n, all row-major and dense.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn neurons(c: &mut Criterion) {
    let m = module(
        "module @pop dt=0.001\ninput %j : f32[10000]\nstate $v : f32[10000] = uniform(0, 1, seed=0)\n\
         state $s : f32[10000] = zeros\n\
         %y, %v1 = spiking_relu %j, $v {gain=50, amplitude=0.02} : f32[10000], f32[10000]\n\
         next $v = %v1\n%f = lowpass %y, $s {tau=0.005} : f32[10000]\nnext $s = %f\n\
         output \"f\" = %f\n",
    );
    bench_module(
        c,
        "spiking relu + lowpass x10000",
        &m,
        10_000,
        &[1, 64],
        true,
    );
}

/// Fused integrate-and-fire chains (a population alone, and `lowpass → bias → population` as
/// `sink-synapses` leaves them) and the spiking MNIST example: the JIT with its eight-lane AVX2
/// loops against the JIT with Cranelift's 128-bit loops only (`jit-128`), new currents every
/// step.
fn lanes(c: &mut Criterion) {
    let chains = [
        (
            "spiking relu x10816",
            module(
                "module @pop dt=0.001\ninput %j : f32[26,26,16]\n\
                 state $v : f32[26,26,16] = uniform(0, 1, seed=0)\n\
                 %y, %v1 = spiking_relu %j, $v {gain=100, amplitude=0.01} : f32[26,26,16], f32[26,26,16]\n\
                 next $v = %v1\noutput \"y\" = %y\n",
            ),
        ),
        (
            "lowpass bias spiking relu x3872",
            module(
                "module @chain dt=0.001\ninput %x : f32[11,11,32]\nconst @b : f32[32] = random\n\
                 state $s : f32[11,11,32] = zeros\nstate $v : f32[11,11,32] = uniform(0, 1, seed=0)\n\
                 %f = lowpass %x, $s {tau=0.005} : f32[11,11,32]\nnext $s = %f\n\
                 %j = bias $s, @b : f32[11,11,32]\n\
                 %y, %v1 = spiking_relu %j, $v {gain=100, amplitude=0.01} : f32[11,11,32], f32[11,11,32]\n\
                 next $v = %v1\noutput \"y\" = %y\n",
            ),
        ),
    ];
    let mut g = c.benchmark_group("eight lanes against 128-bit loops");
    g.sample_size(20);
    let narrow = snnc_runtime::jit::JitOptions {
        narrow: true,
        ..Default::default()
    };
    let mnist = {
        let m = snnc_compiler::passes::convert(mnist_keras(), &mnist_options(Some(100.0)));
        verify(m.expect("converts"), Target::Any).expect("verifies")
    };
    for batch in [1, 64] {
        for (name, m) in chains
            .iter()
            .map(|(n, m)| (*n, m))
            .chain([("mnist spiking", &mnist)])
        {
            let sets = if name == "mnist spiking" {
                [mnist_images(batch, 0), mnist_images(batch, 0)]
            } else {
                [inputs(m, batch, 0), inputs(m, batch, 1)]
            };
            let views: Vec<Vec<_>> = sets
                .iter()
                .map(|xs| xs.iter().map(|a| a.view()).collect())
                .collect();
            for (how, options) in [("jit-128", narrow), ("jit", Default::default())] {
                let mut sim = Simulator::with_jit_options(m, batch, options).expect("simulator");
                let mut t = 0;
                g.bench_function(BenchmarkId::new(format!("{name} {how}"), batch), |b| {
                    b.iter(|| {
                        t += 1;
                        sim.step(black_box(&views[t % 2])).expect("step")
                    })
                });
            }
        }
    }
    g.finish();
}

/// The MNIST example's Keras model.
fn mnist_keras() -> snnc_ir::Module {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist/model.keras");
    snnc_compiler::keras::load(&path, &Default::default()).expect("MNIST example")
}

/// Conversion options: rate, or spiking with this firing-rate scale.
fn mnist_options(spiking: Option<f64>) -> snnc_compiler::passes::ConvertOptions {
    snnc_compiler::passes::ConvertOptions {
        spiking: spiking.map(|scale| snnc_compiler::passes::SpikeOptions {
            scale,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mnist(c: &mut Criterion) {
    let keras = mnist_keras();
    for (name, spiking) in [("mnist rate", None), ("mnist spiking", Some(200.0))] {
        let opts = mnist_options(spiking);
        let m = snnc_compiler::passes::convert(keras.clone(), &opts).expect("converts");
        let m = verify(m, Target::Any).expect("verifies");
        // conv1 26·26·16·9 + conv2 11·11·32·144 + dense 800·64 + 64·10
        let macs = 97_344 + 557_568 + 51_200 + 640;
        for (how, vary) in [("held", false), ("varied", true)] {
            let group = format!("{name} {how}");
            bench_module_on(c, &group, (&m, macs), &[1, 64], vary, &mnist_images);
        }
    }
}

/// `batch` MNIST test images (set `k` starts at image `k·batch`), as the network sees them in
/// use: a spiking network's cost depends on how much it spikes.
fn mnist_images(batch: usize, k: usize) -> Vec<ArrayD<f32>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist/test_images.npy");
    let all: ArrayD<u8> = ndarray_npy::read_npy(path).expect("MNIST test images");
    let n = all.shape()[0];
    let picked: Vec<f32> = (0..batch)
        .flat_map(|b| {
            all.index_axis(ndarray::Axis(0), (k * batch + b) % n)
                .iter()
                .map(|&v| f32::from(v))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut shape = vec![batch];
    shape.extend(&all.shape()[1..]);
    vec![ArrayD::from_shape_vec(IxDyn(&shape), picked).expect("shape")]
}

/// Spiking MNIST on the JIT with the pipeline's optional passes left out or in, on real test
/// images changing every step: without `sink-synapses` (the convolution and dense layers read
/// filtered, dense tensors), the default pipeline, and the default followed by `merge` (which
/// gives up cache locality and, where it merges a neuron, that neuron's fused loop).
fn pipeline(c: &mut Criterion) {
    let keras = mnist_keras();
    let opts = mnist_options(Some(200.0));
    let default = snnc_compiler::passes::DEFAULT_PIPELINE;
    let variants: [(&str, Vec<&str>); 3] = [
        (
            "without sink-synapses",
            default
                .iter()
                .copied()
                .filter(|&p| p != "sink-synapses")
                .collect(),
        ),
        ("default", default.to_vec()),
        ("default + merge", [default, &["merge"]].concat()),
    ];
    let mut g = c.benchmark_group("mnist spiking varied, pipeline");
    g.sample_size(30);
    for batch in [1, 64] {
        for (name, passes) in &variants {
            let m = snnc_compiler::passes::run_pipeline(
                keras.clone(),
                passes,
                &opts,
                &mut Default::default(),
            )
            .expect("converts");
            let m = verify(m, Target::Any).expect("verifies");
            let sets = [mnist_images(batch, 0), mnist_images(batch, 1)];
            let views: Vec<Vec<_>> = sets
                .iter()
                .map(|xs| xs.iter().map(|a| a.view()).collect())
                .collect();
            let mut sim = Simulator::new(&m, Backend::Jit, batch).expect("simulator");
            let mut t = 0;
            g.bench_function(BenchmarkId::new(*name, batch), |b| {
                b.iter(|| {
                    t += 1;
                    sim.step(black_box(&views[t % 2])).expect("step")
                })
            });
        }
    }
    g.finish();
}

/// What a data-set run (`snnc run`, `sweep`, Python's `run`) adds to every step: counting each
/// population's spikes and synaptic operations (`SpikeCounter::observe`), next to the step
/// itself, on the spiking MNIST example (scale 100, JIT, real test images, counted after 20
/// steps) at batch 1 and 32.
fn spike_counting(c: &mut Criterion) {
    let keras = mnist_keras();
    let opts = mnist_options(Some(100.0));
    let m = snnc_compiler::passes::convert(keras, &opts).expect("converts");
    let m = verify(m, Target::Any).expect("verifies");
    let mut g = c.benchmark_group("spike counting");
    for batch in [1, 32] {
        let x = mnist_images(batch, 0);
        let views: Vec<_> = x.iter().map(|a| a.view()).collect();
        let mut sim = Simulator::new(&m, Backend::Jit, batch).expect("JIT");
        for _ in 0..20 {
            sim.step(&views).expect("steps");
        }
        let mut counter = snnc_runtime::observe::SpikeCounter::new(&m, batch).with_synops(&m);
        // Counted right after a step, as a run counts (the step has pushed much of its spike
        // outputs out of the cache), and alone (again and again on the same outputs, in cache).
        g.bench_function(BenchmarkId::new("step", batch), |b| {
            b.iter(|| sim.step(&views).expect("steps"))
        });
        g.bench_function(BenchmarkId::new("step then count", batch), |b| {
            b.iter(|| {
                sim.step(&views).expect("steps");
                counter.observe(&sim);
                black_box(counter.counts());
            })
        });
        g.bench_function(BenchmarkId::new("count alone", batch), |b| {
            b.iter(|| {
                counter.observe(&sim);
                black_box(counter.counts());
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    dense,
    conv,
    spike_density,
    held_population,
    gemm_alone,
    neurons,
    lanes,
    mnist,
    pipeline,
    spike_counting
);
criterion_main!(benches);
