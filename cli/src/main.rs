//! `snnc`: compile, inspect and simulate spiking neural networks.

mod bench;
mod convert;
mod load;
mod nir;
mod npy;
mod report;
mod run;
mod sweep;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use load::load_module;
use snnc_ir::Target;
use snnc_ir::diff::{Tolerance, diff};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "snnc",
    version,
    about = "Compile Keras models into spiking neural networks and simulate them fast"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum TargetArg {
    Any,
    Neural,
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Ir,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a Keras model (.keras or .h5) into an snnc module: write a .snn artifact with
    /// `-o`, or print the IR.
    Compile {
        /// The model.
        model: PathBuf,
        /// Write the compiled module as a .snn artifact.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// What to print when no `-o` is given.
        #[arg(long, value_enum, default_value = "ir")]
        emit: Emit,
        #[command(flatten)]
        convert: convert::ConvertArgs,
    },
    /// Print a module (.sir text, .snn artifact, .json, or a Keras model) in canonical text or JSON.
    Dump {
        /// The module file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Print the memory plan (every value's and state's place in the arena) instead.
        #[arg(long)]
        memory_plan: bool,
    },
    /// Check a module; prints `ok` or every error with its line.
    Verify {
        /// The module file.
        file: PathBuf,
        /// `neural` also rejects ops a neural substrate cannot run (max_pool, batch_norm, softmax).
        #[arg(long, value_enum, default_value = "any")]
        target: TargetArg,
    },
    /// Structural difference of two modules. Exit 0 when equal, 1 when different, 2 on error.
    Diff {
        /// The old module.
        a: PathBuf,
        /// The new module.
        b: PathBuf,
        /// Relative tolerance for constant values.
        #[arg(long, default_value_t = 0.0)]
        rtol: f64,
        /// Absolute tolerance for constant values.
        #[arg(long, default_value_t = 0.0)]
        atol: f64,
    },
    /// Run a module on inputs from .npy files.
    Run(run::RunArgs),
    /// Time setup (JIT compilation) and steps on each backend, side by side.
    Bench(bench::BenchArgs),
    /// Run a grid of conversion settings (scales, synapses, initial voltages, calibrated
    /// scales) and print accuracy at several steps with spikes and synaptic operations per
    /// sample, as text and `--csv`.
    Sweep(sweep::SweepArgs),
    /// Convert a model and write it as a NIR graph (channels first, spikes of size 1, max
    /// pooling as a circuit of Conv2d maps and IF units) for neuromorphic toolchains.
    Export(nir::ExportArgs),
    /// Read a NIR graph (forward Euler with `--dt`) and write it as a .snn artifact, or print it.
    Import(nir::ImportArgs),
    /// Join the `--output` files of runs on consecutive `--samples` ranges, in the order given.
    Merge {
        /// The parts, first samples first.
        parts: Vec<PathBuf>,
        /// The merged file (.npz, or .npy for a single array).
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Exit status for a difference found (`diff`) or a module that does not verify (`verify`).
const EXIT_FINDING: u8 = 1;
/// Exit status for an error.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // Output piped into `head` and the like: stop quietly when the reader goes away, as other
    // command-line tools do, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn dispatch(cmd: Command) -> Result<u8> {
    match cmd {
        Command::Compile {
            model,
            output,
            emit,
            convert,
        } => {
            let m = convert::load_verified(&model, &convert)?;
            match output {
                Some(out) => {
                    if out.exists() && out.canonicalize().ok() == model.canonicalize().ok() {
                        bail!("-o {} would overwrite the model", out.display());
                    }
                    snnc_ir::save_snn(&m, &out)
                        .with_context(|| format!("writing {}", out.display()))?;
                    let params: usize = m.constants.iter().map(|c| c.ty.num_elements()).sum();
                    println!(
                        "wrote {} ({} ops, {} inputs, {} outputs, {params} parameters)",
                        out.display(),
                        m.insts.len(),
                        m.inputs.len(),
                        m.outputs.len()
                    );
                }
                None => match emit {
                    Emit::Ir => print!("{}", *m),
                    Emit::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&*m).context("serialising to JSON")?
                    ),
                },
            }
            Ok(0)
        }
        Command::Dump {
            file,
            format,
            memory_plan,
        } => {
            let (m, _) = load_module(&file)?;
            if memory_plan {
                let m = snnc_ir::verify(m, snnc_ir::Target::Any).map_err(|e| {
                    anyhow::anyhow!("{}: the module does not verify:\n{e}", file.display())
                })?;
                print!("{}", snnc_ir::MemoryPlan::new(&m));
                return Ok(0);
            }
            match format {
                Format::Text => print!("{m}"),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&m).context("serialising to JSON")?
                ),
            }
            Ok(0)
        }
        Command::Verify { file, target } => {
            let (m, map) = load_module(&file)?;
            let target = if target == TargetArg::Neural {
                Target::Neural
            } else {
                Target::Any
            };
            let errors = snnc_ir::check(&m, target);
            if errors.is_empty() {
                println!("ok");
                Ok(0)
            } else {
                let rendered = snnc_ir::VerifyErrors(errors).render(map.as_ref());
                for line in rendered.lines() {
                    println!("{}: {line}", file.display());
                }
                Ok(EXIT_FINDING)
            }
        }
        Command::Diff { a, b, rtol, atol } => {
            if !(rtol >= 0.0 && atol >= 0.0) {
                bail!("--rtol and --atol must be non-negative");
            }
            let (ma, _) = load_module(&a)?;
            let (mb, _) = load_module(&b)?;
            let lines = diff(&ma, &mb, Tolerance { rtol, atol });
            if lines.is_empty() {
                println!("no differences");
                Ok(0)
            } else {
                println!("--- {}\n+++ {}", a.display(), b.display());
                for l in &lines {
                    println!("{l}");
                }
                println!(
                    "{} difference{}",
                    lines.len(),
                    if lines.len() == 1 { "" } else { "s" }
                );
                Ok(EXIT_FINDING)
            }
        }
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::bench(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Export(args) => nir::export(args),
        Command::Import(args) => nir::import(args),
        Command::Merge { parts, output } => {
            let n = npy::merge(&parts, &output)?;
            println!(
                "wrote {} ({n} samples from {} files)",
                output.display(),
                parts.len()
            );
            Ok(0)
        }
    }
}
