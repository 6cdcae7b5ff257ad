//! `snnc bench`: compile time and time per step of a model on each backend, measured side by side.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use ndarray::{ArrayD, IxDyn};
use snnc_runtime::{Backend, Record, Simulator};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BenchBackend {
    Interp,
    Jit,
    Both,
    /// The JIT with its eight-lane AVX2 loops against the JIT with Cranelift's 128-bit loops
    /// only (`jit-128`).
    Lanes,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The model (.keras, .h5, .sir or .snn).
    model: PathBuf,
    /// Steps per timed run.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs per backend (the median is reported, after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: BenchBackend,
    /// Worker threads: the batch's groups (see --group) are shared out among them, each group
    /// run through all its steps by one thread (0: one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Samples per group: the JIT simulates the batch in groups, each with its own code and
    /// arena, and a run takes each group through all its steps in turn, so that a group's
    /// buffers stay in the cache (0: as many samples as fit a share of the last-level cache, at
    /// least one group per thread; the batch size: one group, every sample stepped in turn).
    #[arg(long, default_value_t = 0)]
    group: usize,
    /// Give every step different input values. By default inputs are held (as for images), so
    /// the work that depends only on them runs once per run rather than every step.
    #[arg(long)]
    vary_inputs: bool,
    /// Real input samples instead of the synthetic pattern: `FILE.npy` (or `NAME=FILE.npy` per
    /// input), shape `(n, *input_shape)`. Sample `b` of the batch is sample `b mod n`; with
    /// --vary-inputs, step `t` shows sample `(b + t·batch) mod n`. A spiking network's cost
    /// depends on how much it spikes, so measure it on the data it is for.
    #[arg(long = "input", value_name = "FILE.npy")]
    inputs: Vec<String>,
    /// Also run a profiled JIT build and print where a step's time goes, per instruction (fused
    /// chains count at their first instruction; the clock reads add about 50 ns per entry).
    #[arg(long)]
    profile: bool,
    /// A second model to time against the first, run by run in turn on the same inputs, with the
    /// same conversion flags (e.g. the same network compiled with other passes); prints both and
    /// their ratio.
    #[arg(long, value_name = "MODEL")]
    against: Option<PathBuf>,
    /// Print the machine code the JIT generates for the module (Cranelift's disassembly) and
    /// exit without benchmarking.
    #[arg(long)]
    disasm: bool,
    #[command(flatten)]
    convert: crate::convert::ConvertArgs,
}

pub fn bench(args: BenchArgs) -> Result<u8> {
    if args.batch == 0 || args.steps == 0 || args.runs == 0 {
        bail!("--batch, --steps and --runs must be at least 1");
    }
    let m = crate::convert::load_verified(&args.model, &args.convert)?;
    if args.disasm {
        let options = snnc_runtime::jit::JitOptions {
            disassemble: true,
            ..Default::default()
        };
        let jit = snnc_runtime::jit::JitEngine::with_options(&m, args.batch, options)?;
        print!("{}", jit.disassembly().unwrap_or(""));
        return Ok(0);
    }
    let other = match &args.against {
        Some(path) => {
            let o = crate::convert::load_verified(path, &args.convert)?;
            let same_inputs = o.inputs.len() == m.inputs.len()
                && o.inputs
                    .iter()
                    .zip(&m.inputs)
                    .all(|(&a, &b)| o.value(a).ty == m.value(b).ty);
            if !same_inputs {
                bail!(
                    "{}: its inputs differ from {}'s; --against needs a model with the same inputs",
                    path.display(),
                    args.model.display()
                );
            }
            Some(o)
        }
        None => None,
    };
    let steps_axis = if args.vary_inputs { args.steps } else { 1 };
    let files = if args.inputs.is_empty() {
        Vec::new()
    } else {
        crate::run::input_files(&m, &args.inputs)?
    };
    // The given samples, or deterministic inputs in [0, 1); held for every step or
    // (`--vary-inputs`) new every step.
    let mut inputs: Vec<ArrayD<f32>> = Vec::with_capacity(m.inputs.len());
    for (k, &v) in m.inputs.iter().enumerate() {
        let ty = &m.value(v).ty;
        let mut shape = vec![args.batch];
        if args.vary_inputs {
            shape.push(args.steps);
        }
        shape.extend(&ty.shape);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match files.get(k) {
            None => (0..n)
                .map(|i| ((i as u64).wrapping_mul(2654435761) % 1000) as f32 / 1000.0)
                .collect(),
            Some(path) => {
                let data = crate::npy::read_f32(path)?;
                if data.ndim() != ty.rank() + 1 || data.shape()[1..] != ty.shape[..] {
                    bail!(
                        "{}: shape {:?} does not fit input `{}` {ty}; expected (n, *shape)",
                        path.display(),
                        data.shape(),
                        m.value(v).name
                    );
                }
                let samples = data.shape()[0];
                if samples == 0 {
                    bail!("{}: holds no samples", path.display());
                }
                let data = data.as_standard_layout();
                let flat = data.as_slice().expect("standard layout");
                let per = ty.num_elements();
                let mut out = Vec::with_capacity(n);
                for b in 0..args.batch {
                    for t in 0..steps_axis {
                        let s = (b + t * args.batch) % samples;
                        out.extend_from_slice(&flat[s * per..(s + 1) * per]);
                    }
                }
                out
            }
        };
        inputs.push(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape matches"));
    }
    let inst_macs: Vec<usize> = m
        .insts
        .iter()
        .map(|inst| {
            let shape = |k: usize| {
                inst.args
                    .get(k)
                    .and_then(|&a| m.operand_type(a))
                    .map(|t| t.shape.clone())
                    .unwrap_or_default()
            };
            match inst.op {
                snnc_ir::Op::Dense | snnc_ir::Op::Conv(_) => {
                    snnc_runtime::linear::LinearPlan::new(&inst.op, &shape(0), &shape(1))
                        .map_or(0, |p| p.macs())
                }
                snnc_ir::Op::Sparse { .. } => shape(2).iter().product(),
                _ => 0,
            }
        })
        .collect();
    let all_macs: usize = inst_macs.iter().sum();
    // With held inputs, input-only instructions run once per run, not every step.
    let invariant = &m.info().invariant;
    let macs: usize = inst_macs
        .iter()
        .zip(invariant)
        .filter(|(_, inv)| args.vary_inputs || !**inv)
        .map(|(n, _)| n)
        .sum();
    let views: Vec<_> = inputs.iter().map(|a| a.view()).collect();
    // Each contender: its name, backend, and whether the JIT keeps to 128-bit loops.
    let backends: Vec<(&str, Backend, bool)> = match args.backend {
        BenchBackend::Interp => vec![("interp", Backend::Interp, false)],
        BenchBackend::Jit => vec![("jit", Backend::Jit, false)],
        BenchBackend::Both => vec![
            ("interp", Backend::Interp, false),
            ("jit", Backend::Jit, false),
        ],
        BenchBackend::Lanes => vec![
            ("jit-128", Backend::Jit, true),
            ("jit", Backend::Jit, false),
        ],
    };
    let held = if args.vary_inputs {
        "new every step"
    } else {
        "held (input-only work runs once per run)"
    };
    let source = if args.inputs.is_empty() {
        "synthetic values in [0, 1) (give real samples with --input)".to_string()
    } else {
        format!("samples from {}", args.inputs.join(", "))
    };
    println!(
        "model: {}  ops: {}  batch: {}  steps per run: {}  runs: {}  inputs: {held}, {source}",
        args.model.display(),
        m.insts.len(),
        args.batch,
        args.steps,
        args.runs,
    );
    println!(
        "multiply-adds per sample and step: {macs} run, {all_macs} in the model ({:.2} MFLOP per step at this batch; dense-equivalent: the kernels skip zero inputs, so a spiking layer does fewer, and GFLOP/s below counts these)",
        2.0 * macs as f64 * args.batch as f64 / 1e6
    );
    // Spikes and synaptic operations per step, counted in a run of their own (after the timed
    // ones would do as well: every run starts from the same reset), so that cost per synaptic
    // operation is visible next to the time per step.
    let activity = {
        let mut sim = Simulator::new(&m, Backend::Jit, args.batch)?;
        let mut counter = snnc_runtime::observe::SpikeCounter::new(&m, args.batch).with_synops(&m);
        if counter.is_empty() {
            None
        } else {
            // The count's own cost, what `snnc run` (and every data-set run) adds to a step:
            // runs that count (inside the step where the JIT can, then after it) alternate with
            // runs that do not, and the medians are compared.
            let (mut plain, mut counted) = (Vec::new(), Vec::new());
            let per_step = |t0: Instant| t0.elapsed().as_secs_f64() * 1e6 / args.steps as f64;
            for _ in 0..3 {
                sim.count_in_step(false);
                sim.reset(0);
                let t0 = Instant::now();
                // Step by step, as the counted run below must (a plain `run` would take each
                // group through all its steps in turn, which is not what counting is added to).
                sim.run_observed(args.steps, &views, Record::LastStep, &mut |_, _| {})?;
                plain.push(per_step(t0));
                sim.count_in_step(true);
                sim.reset(0);
                counter.clear();
                let t0 = Instant::now();
                sim.run_observed(args.steps, &views, Record::LastStep, &mut |_, s| {
                    counter.observe(s)
                })?;
                counted.push(per_step(t0));
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let counting = median(&mut counted) - median(&mut plain);
            let per_step =
                |rows: &[Vec<f64>]| rows.iter().flatten().sum::<f64>() / args.steps as f64;
            Some((
                per_step(counter.counts()),
                per_step(counter.synops()),
                counting,
            ))
        }
    };
    if let Some((spikes, synops, counting)) = activity {
        println!(
            "activity per step (whole batch): {spikes:.0} spikes, {synops:.0} synaptic operations (spikes × fan-out); counting them added {counting:.1} µs per step (the median of three counted runs against three plain ones, alternating; the count runs inside the step where the JIT can: what a data-set run, `snnc run`, pays on top of the step)"
        );
    }
    let mut medians = Vec::new();
    let sim_options = |jit| snnc_runtime::SimOptions {
        jit,
        group: args.group,
        threads: args.threads,
    };
    let run_all = |sim: &mut Simulator| -> Result<()> {
        sim.run(args.steps, &views, Record::LastStep)?;
        Ok(())
    };
    // Every contender (each backend, on the model and on `--against`'s), built first and then
    // timed run by run in turn, so that a change in the machine's load reaches all of them alike.
    struct Contender {
        name: String,
        sim: Simulator,
        compile: std::time::Duration,
        per_step: Vec<f64>,
    }
    let mut contenders: Vec<Contender> = Vec::new();
    for (model, label) in std::iter::once((&m, "")).chain(other.iter().map(|o| (o, "B "))) {
        for &(name, backend, narrow) in &backends {
            let t0 = Instant::now();
            let jit = snnc_runtime::jit::JitOptions {
                narrow,
                ..Default::default()
            };
            let sim = Simulator::with_options(model, backend, args.batch, sim_options(jit))?;
            contenders.push(Contender {
                name: format!("{label}{name}"),
                sim,
                compile: t0.elapsed(),
                per_step: Vec::with_capacity(args.runs),
            });
        }
    }
    for c in &contenders {
        let groups = c.sim.groups();
        if groups.len() > 1 || c.sim.threads() > 1 {
            println!(
                "{:>6}: {} group{} of {} samples, each run through all {} steps in turn, on {} thread{}",
                c.name,
                groups.len(),
                if groups.len() == 1 { "" } else { "s" },
                groups
                    .iter()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                args.steps,
                c.sim.threads(),
                if c.sim.threads() == 1 { "" } else { "s" },
            );
        }
    }
    for c in &mut contenders {
        run_all(&mut c.sim)?;
    }
    for _ in 0..args.runs {
        for c in &mut contenders {
            c.sim.reset(0);
            let t = Instant::now();
            run_all(&mut c.sim)?;
            c.per_step
                .push(t.elapsed().as_secs_f64() * 1e6 / args.steps as f64);
        }
    }
    if let Some(path) = &args.against {
        println!(
            "B: {} (same inputs and flags; runs alternate with the model's)",
            path.display()
        );
    }
    for c in &mut contenders {
        let per_step = &mut c.per_step;
        per_step.sort_by(f64::total_cmp);
        let median = per_step[per_step.len() / 2];
        medians.push(median);
        println!(
            "{:>6}: setup {:>9.2} ms   {:>10.1} µs/step   {:>9.1} steps/s   {:>6.2} GFLOP/s   (min {:.1}, max {:.1} µs/step){}",
            c.name,
            c.compile.as_secs_f64() * 1e3,
            median,
            1e6 / median,
            2.0 * macs as f64 * args.batch as f64 / (median * 1e3),
            per_step[0],
            per_step[per_step.len() - 1],
            match activity {
                Some((_, synops, _)) if synops > 0.0 && other.is_none() => {
                    format!("   {:.1} ns per synaptic operation", median * 1e3 / synops)
                }
                _ => String::new(),
            }
        );
    }
    if args.profile {
        print_profile(&m, &inputs, &args)?;
    }
    let n = backends.len();
    if n == 2 {
        let (first, second) = (backends[0].0, backends[1].0);
        for (k, label) in [(0, ""), (2, "B ")].into_iter().take(medians.len() / 2) {
            let (a, b) = (medians[k], medians[k + 1]);
            println!(
                "{label}{second} / {label}{first} time per step: {:.3} ({second} {:.2}× faster)",
                b / a,
                a / b
            );
        }
    }
    if other.is_some() {
        for (k, &(name, _, _)) in backends.iter().enumerate() {
            let (a, b) = (medians[k], medians[n + k]);
            println!(
                "B {name} / {name} time per step: {:.3} (B {})",
                b / a,
                if b < a {
                    format!("{:.2}× faster", a / b)
                } else {
                    format!("{:.2}× slower", b / a)
                }
            );
        }
    }
    Ok(0)
}

/// Run a profiled JIT build for `--steps` steps after a warm-up and print the costliest
/// instructions.
fn print_profile(m: &snnc_ir::Verified, inputs: &[ArrayD<f32>], args: &BenchArgs) -> Result<()> {
    use snnc_runtime::Engine;
    let options = snnc_runtime::jit::JitOptions {
        profile: true,
        ..Default::default()
    };
    let mut jit = snnc_runtime::jit::JitEngine::with_options(m, args.batch, options)?;
    let step_input = |t: usize| -> Vec<Vec<f32>> {
        inputs
            .iter()
            .map(|a| {
                if args.vary_inputs {
                    a.index_axis(ndarray::Axis(1), t).iter().copied().collect()
                } else {
                    a.iter().copied().collect()
                }
            })
            .collect()
    };
    let run = |jit: &mut snnc_runtime::jit::JitEngine| {
        for t in 0..args.steps {
            let owned = step_input(t);
            let slices: Vec<&[f32]> = owned.iter().map(Vec::as_slice).collect();
            jit.step(&slices);
        }
    };
    run(&mut jit);
    let warm: Vec<std::time::Duration> = jit.profile().expect("profiled").per_inst.clone();
    let warm_steps = jit.profile().expect("profiled").steps;
    run(&mut jit);
    let p = jit.profile().expect("profiled");
    let steps = (p.steps - warm_steps) as f64;
    let mut rows: Vec<(usize, f64)> = p
        .per_inst
        .iter()
        .zip(&warm)
        .enumerate()
        .map(|(i, (t, w))| (i, (*t - *w).as_secs_f64() * 1e6 / steps))
        .collect();
    let total: f64 = rows.iter().map(|r| r.1).sum();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "profile (jit, {} steps): {:.1} µs/step inside the step function; {} instructions emitted \
         natively ({} of them sharing a fused loop with the one before), {} handed to host kernels (dense, convolution, index maps, batch norm, softmax)",
        steps, total, jit.emitted.0, jit.fused, jit.emitted.1
    );
    for (i, us) in rows.iter().take(12).filter(|r| r.1 > 0.0) {
        let inst = &m.insts[*i];
        println!(
            "  {:>8.1} µs {:>5.1}%  #{i:<3} {:<14} %{}",
            us,
            100.0 * us / total.max(f64::MIN_POSITIVE),
            inst.op.name(),
            (0..inst.groups())
                .map(|g| m.value(inst.group(g).1[0]).name.as_str())
                .collect::<Vec<_>>()
                .join(" + %")
        );
    }
    Ok(())
}
