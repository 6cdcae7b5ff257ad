//! How reading a Keras model fails.

use std::path::PathBuf;
use thiserror::Error;

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
        why: FileError,
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
        "layer `{layer}`: unsupported activation `{activation}`; supported: linear, relu, sigmoid, tanh, leaky_relu, softmax, elu, selu, softplus, softsign, swish, silu, gelu, hard_sigmoid, exponential, relu6, mish"
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

/// Why a file's bytes are not a Keras model's container.
#[derive(Debug, Error)]
pub enum FileError {
    /// No bytes at all.
    #[error("the file is empty; expected a .keras archive or an HDF5 .h5 model")]
    Empty,
    /// Neither a zip nor an HDF5 signature.
    #[error("not a Keras model: neither a .keras zip archive nor an HDF5 file")]
    Unrecognised,
    /// The HDF5 reader panicked (caught) on this data.
    #[error("{what}: the HDF5 reader failed on malformed data")]
    Hdf5Panic {
        /// Which HDF5 file.
        what: &'static str,
    },
    /// The HDF5 reader refused the data.
    #[error("{what}: not a readable HDF5 file ({reason})")]
    Hdf5 {
        /// Which HDF5 file.
        what: &'static str,
        /// The reader's message.
        reason: String,
    },
    /// The zip archive is damaged.
    #[error("not a readable .keras archive ({0})")]
    Zip(zip::result::ZipError),
    /// A member the format requires is absent.
    #[error("the .keras archive has no `{0}`")]
    MissingMember(&'static str),
    /// A member cannot be opened.
    #[error("`{name}` in the .keras archive is unreadable ({source})")]
    UnreadableMember {
        /// The member.
        name: &'static str,
        /// The cause.
        source: zip::result::ZipError,
    },
    /// A member larger than snnc reads.
    #[error("`{name}` is {size} bytes, more than snnc reads")]
    MemberTooLarge {
        /// The member.
        name: &'static str,
        /// Its uncompressed size.
        size: u64,
    },
    /// A member fails to decompress.
    #[error("`{name}` in the .keras archive is damaged ({source})")]
    DamagedMember {
        /// The member.
        name: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` does not parse.
    #[error("config.json is not valid JSON ({0})")]
    ConfigJson(serde_json::Error),
    /// The HDF5 root group cannot be read.
    #[error("HDF5 root group unreadable ({0})")]
    RootGroup(String),
    /// A legacy HDF5 file without its model config.
    #[error("an HDF5 file without a `model_config` attribute: weights only, or not a Keras model")]
    NoModelConfig,
    /// The legacy model config does not parse.
    #[error("the `model_config` attribute is not valid JSON ({0})")]
    ModelConfigJson(serde_json::Error),
}
