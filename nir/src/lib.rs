//! NIR, the Neuromorphic Intermediate Representation, for snnc: the graph model ([`Graph`]), its
//! HDF5 file layout ([`file`]), export of a converted snnc module ([`export`]) and import of any
//! NIR graph into an snnc module ([`import`]).
//!
//! A NIR file stores every node parameter as one dataset. This crate keeps that model: a node is
//! its type name and a map of named fields (float arrays, integer arrays or text), so reading and
//! writing never lose a field, and the meaning of each field lives in `export` and `import`.

pub mod export;
pub mod file;
pub mod import;

use std::collections::BTreeMap;

/// The NIR version whose data model this crate writes (the `nir` Python package's version).
pub const NIR_VERSION: &str = "1.0.8";

/// A field of a node: one dataset of the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// Floating-point data (stored as float32), row-major.
    Float {
        /// Shape (empty for a scalar).
        shape: Vec<usize>,
        /// Elements.
        data: Vec<f32>,
    },
    /// Integer data (stored as int64), row-major.
    Int {
        /// Shape (empty for a scalar).
        shape: Vec<usize>,
        /// Elements.
        data: Vec<i64>,
    },
    /// A text scalar (such as a `padding` of `"same"`).
    Text(String),
}

impl Field {
    /// A float array.
    pub fn float(shape: &[usize], data: Vec<f32>) -> Field {
        Field::Float {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A 1-D integer array.
    pub fn ints(data: &[i64]) -> Field {
        Field::Int {
            shape: vec![data.len()],
            data: data.to_vec(),
        }
    }

    /// An integer scalar.
    pub fn int(x: i64) -> Field {
        Field::Int {
            shape: Vec::new(),
            data: vec![x],
        }
    }

    /// A float scalar.
    pub fn scalar(x: f32) -> Field {
        Field::Float {
            shape: Vec::new(),
            data: vec![x],
        }
    }

    /// The shape (empty for text).
    pub fn shape(&self) -> &[usize] {
        match self {
            Field::Float { shape, .. } | Field::Int { shape, .. } => shape,
            Field::Text(_) => &[],
        }
    }
}

/// A primitive node: its NIR type name and fields.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Primitive {
    /// The type name as the file spells it (`Affine`, `Conv2d`, `IF`, ...).
    pub kind: String,
    /// Fields by name.
    pub fields: BTreeMap<String, Field>,
    /// The node's `metadata` group.
    pub metadata: BTreeMap<String, Field>,
}

impl Primitive {
    /// A node of type `kind` with the given fields.
    pub fn new(kind: &str, fields: impl IntoIterator<Item = (&'static str, Field)>) -> Primitive {
        Primitive {
            kind: kind.to_string(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            metadata: BTreeMap::new(),
        }
    }
}

/// A node: a primitive or a nested graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A primitive.
    Prim(Primitive),
    /// A nested graph (`NIRGraph`).
    Graph(Graph),
}

impl Node {
    /// The type name as the file spells it.
    pub fn kind(&self) -> &str {
        match self {
            Node::Prim(p) => &p.kind,
            Node::Graph(_) => "NIRGraph",
        }
    }
}

/// A NIR graph: named nodes and directed edges; several edges into one node are summed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Edges `(source, destination)`, in order.
    pub edges: Vec<(String, String)>,
    /// The graph's `metadata` group.
    pub metadata: BTreeMap<String, Field>,
}

/// What went wrong reading, writing, exporting or importing a NIR graph.
#[derive(Debug, thiserror::Error)]
pub enum NirError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The file's structure is not a NIR graph.
    #[error("{path}: not a NIR graph: {message}")]
    Format {
        /// The file.
        path: String,
        /// What was expected.
        message: String,
    },
    /// A node cannot be imported.
    #[error("NIR node `{node}` ({kind}): {message}")]
    Node {
        /// The node's name (nested graphs joined by `.`).
        node: String,
        /// Its type.
        kind: String,
        /// What is wrong or unsupported.
        message: String,
    },
    /// The graph as a whole cannot be imported (edges, cycles, inputs).
    #[error("NIR graph: {0}")]
    Graph(String),
    /// A module instruction cannot be exported.
    #[error("cannot export `{value}` ({op}) to NIR: {message}")]
    Export {
        /// The value (layer) it computes.
        value: String,
        /// Its op.
        op: String,
        /// Why.
        message: String,
    },
}
