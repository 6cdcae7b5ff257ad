//! The Keras front-end: `.keras` archives (Keras 3, and Keras 2.12+) and legacy `.h5` files
//! (Keras 2 and Keras 3) become snnc IR in rate mode — every Keras op with its exact meaning,
//! max pooling kept as `max_pool` for the passes to lower.
//!
//! Reading goes: file → ([`files`]) model config JSON and an HDF5 weight store → ([`graph`]) a
//! graph of layer calls, checked for cycles with petgraph → ([`layers`]) one or more IR
//! instructions per call, built with [`snnc_ir::Builder`] so every shape is inferred and checked.

mod files;
mod graph;
mod layers;
mod weights;

use snnc_ir::Module;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use layers::SUPPORTED_LAYERS;

/// What went wrong converting a Keras model. Every variant names the file, layer or weight at
/// fault and what was expected.
#[derive(Debug, Error)]
pub enum KerasError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a Keras model (wrong format, damaged archive, missing entries).
    #[error("{path}: {why}")]
    NotKeras {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// Something inside the model is wrong or unsupported.
    #[error("{path}: {error}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What and where.
        error: ModelError,
    },
}

/// A problem inside a model, independent of the file it came from.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ModelError {
    /// The model config JSON is malformed or lacks a field.
    #[error("model config: {0}")]
    Config(String),
    /// A layer class snnc does not convert.
    #[error(
        "layer `{layer}` has class `{class}`, which snnc cannot convert; supported classes: {supported}"
    )]
    UnknownLayer {
        /// Layer name.
        layer: String,
        /// Its class.
        class: String,
        /// Supported classes, comma separated.
        supported: String,
    },
    /// An activation snnc does not convert.
    #[error(
        "layer `{layer}`: unsupported activation `{activation}`; supported: linear, relu, sigmoid, tanh, leaky_relu, softmax"
    )]
    UnsupportedActivation {
        /// Layer name.
        layer: String,
        /// The activation.
        activation: String,
    },
    /// A layer option snnc does not convert.
    #[error("layer `{layer}`: {what}")]
    Unsupported {
        /// Layer name.
        layer: String,
        /// The option and why.
        what: String,
    },
    /// A weight the layer needs is not in the file.
    #[error("layer `{layer}`: weight {what} is missing from the weights file")]
    MissingWeight {
        /// Layer name.
        layer: String,
        /// Which weight.
        what: String,
    },
    /// A weight whose shape does not match the layer's config.
    #[error(
        "layer `{layer}`: weight `{weight}` has shape {got:?}, the config implies {expected:?}"
    )]
    WeightShape {
        /// Layer name.
        layer: String,
        /// Which weight.
        weight: String,
        /// Shape implied by the config and input.
        expected: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },
    /// The weights file is damaged or has an unexpected layout.
    #[error("weights: {0}")]
    Weights(String),
    /// The layer graph has a cycle.
    #[error("the layer graph has a cycle through layer `{0}`")]
    Cycle(String),
    /// A layer refers to a tensor that does not exist.
    #[error("layer `{layer}` reads `{tensor}`, which no layer produces")]
    DanglingInput {
        /// Layer name.
        layer: String,
        /// The reference, `name[node][tensor]`.
        tensor: String,
    },
    /// Shapes do not fit.
    #[error("layer `{layer}`: {message}")]
    Shape {
        /// Layer name.
        layer: String,
        /// What does not fit.
        message: String,
    },
}

/// Options of the Keras conversion.
#[derive(Clone, Debug)]
pub struct KerasOptions {
    /// Simulation timestep written into the module (seconds).
    pub dt: f64,
}

impl Default for KerasOptions {
    fn default() -> Self {
        KerasOptions { dt: 0.001 }
    }
}

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
    layers::convert(&graph, &file.weights, model_name, options).map_err(wrap)
}
