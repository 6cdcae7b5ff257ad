//! The Keras front-end: `.keras` archives (Keras 3, and Keras 2.12+) and legacy `.h5` files
//! (Keras 2 and Keras 3) become snnc IR in rate mode — every Keras op with its exact meaning,
//! max pooling kept as `max_pool` for the passes to lower.
//!
//! Reading goes: file → ([`files`]) model config JSON and an HDF5 weight store → ([`graph`]) a
//! graph of layer calls, checked for cycles with petgraph → ([`layers`]) one or more IR
//! instructions per call, built with [`snnc_ir::Builder`] so every shape is inferred and checked.

mod error;
mod files;
mod graph;
mod hdf5;
mod layers;
mod philox;
mod weights;

use snnc_ir::Module;
use std::path::Path;

pub use error::{FileError, KerasError, ModelError};
pub use layers::{KerasOptions, supported_layers};

/// Convert a `.keras` or `.h5` file into a module (not yet verified: verify it before running).
pub fn load(path: &Path, options: &KerasOptions) -> Result<Module, KerasError> {
    let bytes = std::fs::read(path).map_err(|source| KerasError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(path, bytes, options)
}

/// Convert a model from its bytes; `path` names it in errors and selects nothing: the format is
/// recognised from the content (zip or HDF5).
pub fn load_bytes(
    path: &Path,
    bytes: Vec<u8>,
    options: &KerasOptions,
) -> Result<Module, KerasError> {
    let file = files::open(bytes).map_err(|why| KerasError::NotKeras {
        path: path.to_path_buf(),
        why,
    })?;
    let model_name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let wrap = |error| KerasError::Model {
        path: path.to_path_buf(),
        error,
    };
    let graph = graph::parse_model(&file.config).map_err(wrap)?;
    layers::convert(&graph, &file.weights, model_name, options, file.is_keras3()).map_err(wrap)
}
