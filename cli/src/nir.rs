//! `snnc export` and `snnc import`: NIR graphs in and out (the `snnc-nir` crate does the work).

use crate::convert::{ConvertArgs, load_verified};
use anyhow::{Context, Result, bail};
use clap::Args;
use snnc_nir::{Node, file};
use std::path::{Path, PathBuf};

/// `snnc export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The model: a Keras file, or a module not yet lowered by `lower-maxpool`.
    pub model: PathBuf,
    /// The NIR file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub convert: ConvertArgs,
}

/// `snnc import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The NIR file.
    pub file: PathBuf,
    /// Write the module as a .snn artifact (else print its IR).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Time step (s) of the forward-Euler discretisation [default: the graph's `dt` metadata, else 0.001].
    #[arg(long)]
    pub dt: Option<f64>,
}

fn same_file(a: &Path, b: &Path) -> bool {
    b.exists() && a.canonicalize().ok() == b.canonicalize().ok()
}

pub fn export(args: ExportArgs) -> Result<u8> {
    if same_file(&args.model, &args.output) {
        bail!("-o {} would overwrite the model", args.output.display());
    }
    let mut convert = args.convert.clone();
    // The export writes max pooling as its own circuit of NIR primitives: run every pass but
    // `lower-maxpool`.
    let passes: Vec<String> = convert
        .passes
        .clone()
        .unwrap_or_else(|| {
            snnc_compiler::passes::DEFAULT_PIPELINE
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
        .into_iter()
        .filter(|p| p != "lower-maxpool")
        .collect();
    convert.passes = Some(passes);
    let m = load_verified(&args.model, &convert)?;
    let exported = snnc_nir::export::export(&m)?;
    for w in &exported.warnings {
        eprintln!("warning: {w}");
    }
    file::write(&args.output, &exported.graph)?;
    let g = &exported.graph;
    let (mut units, mut circuit) = (0usize, 0usize);
    for n in g.nodes.values() {
        if let Node::Prim(p) = n
            && p.kind == "IF"
        {
            let k = p.fields.get("r").map_or(0, |f| f.shape().iter().product());
            units += k;
            if p.metadata.contains_key("circuit") {
                circuit += k;
            }
        }
    }
    println!(
        "wrote {} ({} nodes, {} edges, {units} IF units of which {circuit} in max-pool circuits, dt = {} s)",
        args.output.display(),
        g.nodes.len(),
        g.edges.len(),
        m.dt
    );
    Ok(0)
}

pub fn import(args: ImportArgs) -> Result<u8> {
    let imported = snnc_nir::import::import_file(&args.file, args.dt)?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let m = snnc_ir::verify(imported.module, snnc_ir::Target::Any).map_err(|e| {
        anyhow::anyhow!(
            "{}: the imported module does not verify:\n{e}",
            args.file.display()
        )
    })?;
    match args.output {
        Some(out) => {
            if same_file(&args.file, &out) {
                bail!("-o {} would overwrite the NIR file", out.display());
            }
            snnc_ir::save_snn(&m, &out).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} ops, {} inputs, {} outputs, dt = {} s)",
                out.display(),
                m.insts.len(),
                m.inputs.len(),
                m.outputs.len(),
                m.dt
            );
        }
        None => print!("{}", *m),
    }
    Ok(0)
}
