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
    /// Inputs `(n, *input_shape)` on which to run the exported graph and check that no unit needs
    /// two spikes in one step (NIR's consumers emit at most one) [default: the
    /// `--normalize-rates` data, if given].
    #[arg(long, value_name = "DATA.npy")]
    pub check_rates: Option<PathBuf>,
    /// Steps the rate check simulates.
    #[arg(long, default_value_t = 50)]
    pub check_steps: usize,
    /// Fold each IF node's gain `r` into the weights of the map that feeds it, so every `r` is 1
    /// (for consumers that ignore `r`, such as Norse, and neurons without an input gain). The
    /// same network, rounded differently.
    #[arg(long)]
    pub fold_gains: bool,
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
    // The export writes max pooling as its own circuit of NIR primitives, and NIR's IF steps a
    // float voltage: run every pass but `lower-maxpool` and `fixed-neurons`.
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
        .filter(|p| !snnc_nir::export::SKIPPED_PASSES.contains(&p.as_str()))
        .collect();
    convert.passes = Some(passes);
    let m = load_verified(&args.model, &convert)?;
    let mut exported = snnc_nir::export::export(&m)?;
    if args.fold_gains {
        let left = snnc_nir::export::fold_gains(&mut exported.graph);
        exported.warnings.extend(left);
    }
    for w in &exported.warnings {
        eprintln!("warning: {w}");
    }
    file::write(&args.output, &exported.graph)?;
    match args
        .check_rates
        .as_ref()
        .or(args.convert.normalize_rates.as_ref())
    {
        Some(data) => {
            let x = crate::npy::read_f32(data)?;
            for w in check_rates(&exported.graph, &x, args.check_steps)? {
                eprintln!("warning: {w}");
            }
        }
        None => eprintln!(
            "note: pass --check-rates DATA.npy to check that no unit needs two spikes in one step (NIR's consumers emit at most one)"
        ),
    }
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

/// Run `graph` as snnc imports it on up to 32 samples of `x` (snnc's channels-last layout) for
/// `steps` steps; one warning per population in which some unit needs more than one spike in a
/// step.
fn check_rates(
    graph: &snnc_nir::Graph,
    x: &ndarray::ArrayD<f32>,
    steps: usize,
) -> Result<Vec<String>> {
    use ndarray::{Axis, Slice};
    let imported = snnc_nir::import::import(graph, "check", None)?;
    let m = snnc_ir::verify(imported.module, snnc_ir::Target::Any)
        .map_err(|e| anyhow::anyhow!("the exported graph does not import cleanly:\n{e}"))?;
    let n = x.shape().first().copied().unwrap_or(0).min(32);
    if n == 0 {
        bail!("--check-rates: the data holds no samples");
    }
    let x = x.slice_axis(Axis(0), Slice::from(0..n));
    // snnc's (n, H, W, C) is NIR's (n, C, H, W).
    let x = match x.ndim() {
        4 => x.permuted_axes(ndarray::IxDyn(&[0, 3, 1, 2])),
        3 => x.permuted_axes(ndarray::IxDyn(&[0, 2, 1])),
        _ => x,
    }
    .as_standard_layout()
    .to_owned();
    let mut sim = snnc_runtime::Simulator::new(&m, snnc_runtime::Backend::Jit, n)
        .map_err(|e| anyhow::anyhow!("--check-rates: {e}"))?;
    let out = sim
        .run(steps, &[x.view()], snnc_runtime::Record::AllSteps)
        .map_err(|e| anyhow::anyhow!("--check-rates: {e}"))?;
    let mut warnings = Vec::new();
    for (o, a) in m.outputs.iter().zip(&out) {
        let snnc_ir::OutputKind::Spikes { population, .. } = &o.kind else {
            continue;
        };
        let over = a.iter().filter(|&&c| c > 1.0).count();
        if over > 0 {
            let max = a.iter().fold(0f32, |m, &c| m.max(c));
            warnings.push(format!(
                "`{population}`: {over} unit-steps of {} ({:.3}%) need more than one spike (up to {max}) on the first {n} samples over {steps} steps; NIR's consumers emit at most one, so they fall behind there: lower this layer's --scale-firing-rates",
                a.len(),
                100.0 * over as f64 / a.len() as f64
            ));
        }
    }
    if warnings.is_empty() {
        eprintln!(
            "rates: no unit needs two spikes in one step on the first {n} samples over {steps} steps"
        );
    }
    Ok(warnings)
}
