//! Reading a module from any file a user may pass (the driver's [`load`]).

use anyhow::Result;
use snnc_compiler::driver::load;
use snnc_ir::{Module, SourceMap};
use std::path::Path;

/// Read a module from a Keras model (`.keras`, `.h5`), `.sir` text, a `.snn` artifact or `.json`.
/// Text modules come with their source map so verifier errors can name lines.
pub fn load_module(path: &Path) -> Result<(Module, Option<SourceMap>)> {
    let l = load(path)?;
    for w in &l.warnings {
        eprintln!("warning: {w}");
    }
    Ok((l.module, l.source_map))
}
