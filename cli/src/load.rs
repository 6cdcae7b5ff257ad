//! Reading a module from any file a user may pass.

use anyhow::{Context, Result, bail};
use snnc_ir::{Module, SourceMap};
use std::path::Path;

/// Read a module from a Keras model (`.keras`, `.h5`), `.sir` text, a `.snn` artifact or `.json`. Text modules come with their
/// source map so verifier errors can name lines.
pub fn load_module(path: &Path) -> Result<(Module, Option<SourceMap>)> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "snn" => {
            let m = snnc_ir::load_snn(path).with_context(|| format!("{}", path.display()))?;
            Ok((m, None))
        }
        "json" => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let m: Module = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a snnc JSON module", path.display()))?;
            Ok((m, None))
        }
        "sir" => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
            let (m, map) = snnc_ir::parse_with_source_map(&text).map_err(|e| {
                anyhow::anyhow!("{}:{}:{}: {}", path.display(), e.line, e.col, e.message)
            })?;
            Ok((m, Some(map)))
        }
        "keras" | "h5" | "hdf5" => {
            let m =
                snnc_compiler::keras::load(path, &snnc_compiler::keras::KerasOptions::default())?;
            Ok((m, None))
        }
        _ => bail!(
            "{}: unknown file type; expected .keras, .h5, .sir, .snn or .json",
            path.display()
        ),
    }
}
