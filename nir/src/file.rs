//! The NIR file: HDF5 written by `hdf5-pure`, read by `hdf5-reader`. Nothing else in snnc
//! touches NIR's HDF5.
//!
//! Layout (what the `nir` package writes and reads): `/version` (text), `/node` the top graph.
//! A graph group holds `type` = `"NIRGraph"`, `edges` (an `(E, 2)` array of text), `nodes/<name>`
//! (one group per node) and an optional `metadata` group; a node group holds `type` (its class
//! name), one dataset per field, and an optional `metadata` group. Floats are written as float32,
//! integers as int64; both float32 and float64 are read.

use crate::{Field, Graph, NIR_VERSION, NirError, Node, Primitive};
use hdf5_pure::{FileBuilder, GroupBuilder};
use hdf5_reader::group::Group;
use hdf5_reader::{Datatype, Hdf5File};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Largest number of elements a field may declare (2^28, 1 GiB of float32): a corrupt file
/// declaring more is refused before anything is allocated.
const MAX_ELEMENTS: u64 = 1 << 28;

/// How deeply graphs may nest (a hostile file could nest groups without end).
const MAX_DEPTH: usize = 32;

/// Write `graph` as a NIR file at `path`. The bytes are built in memory first, so a failure
/// leaves no partial file.
pub fn write(path: &Path, graph: &Graph) -> Result<(), NirError> {
    let bytes = to_bytes(graph).map_err(|message| NirError::File {
        path: path.display().to_string(),
        message,
    })?;
    std::fs::write(path, bytes).map_err(|e| NirError::File {
        path: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}

/// The bytes of a NIR file holding `graph`.
pub fn to_bytes(graph: &Graph) -> Result<Vec<u8>, String> {
    let mut b = FileBuilder::new();
    b.create_dataset("version")
        .with_vlen_strings(&[NIR_VERSION])
        .with_shape(&[]);
    let mut node = b.create_group("node");
    write_graph(&mut node, graph);
    b.add_group(node.finish());
    b.finish().map_err(|e| format!("cannot encode HDF5: {e}"))
}

fn write_text(g: &mut GroupBuilder, name: &str, text: &str) {
    g.create_dataset(name)
        .with_vlen_strings(&[text])
        .with_shape(&[]);
}

fn write_field(g: &mut GroupBuilder, name: &str, f: &Field) {
    match f {
        Field::Float { shape, data } => {
            let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            g.create_dataset(name)
                .with_f32_data(data)
                .with_shape(&shape);
        }
        Field::Int { shape, data } => {
            let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            g.create_dataset(name)
                .with_i64_data(data)
                .with_shape(&shape);
        }
        Field::Text(t) => write_text(g, name, t),
    }
}

fn write_metadata(g: &mut GroupBuilder, metadata: &BTreeMap<String, Field>) {
    if metadata.is_empty() {
        return;
    }
    let mut m = g.create_group("metadata");
    for (k, f) in metadata {
        write_field(&mut m, k, f);
    }
    g.add_group(m.finish());
}

fn write_graph(g: &mut GroupBuilder, graph: &Graph) {
    write_text(g, "type", "NIRGraph");
    let flat: Vec<&str> = graph
        .edges
        .iter()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    g.create_dataset("edges")
        .with_vlen_strings(&flat)
        .with_shape(&[graph.edges.len() as u64, 2]);
    let mut nodes = g.create_group("nodes");
    for (name, node) in &graph.nodes {
        let mut n = nodes.create_group(name);
        match node {
            Node::Graph(sub) => write_graph(&mut n, sub),
            Node::Prim(p) => {
                write_text(&mut n, "type", &p.kind);
                for (k, f) in &p.fields {
                    write_field(&mut n, k, f);
                }
                write_metadata(&mut n, &p.metadata);
            }
        }
        nodes.add_group(n.finish());
    }
    g.add_group(nodes.finish());
    write_metadata(g, &graph.metadata);
}

/// Read the NIR file at `path`. A file that is not HDF5, or not laid out as a NIR graph, is an
/// error naming the file and what was expected; a panic inside the HDF5 reader on malformed
/// bytes is caught and reported the same way.
pub fn read(path: &Path) -> Result<Graph, NirError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NirError::File {
        path: p.clone(),
        message: format!("cannot read: {e}"),
    })?;
    from_bytes(&bytes).map_err(|message| NirError::Format { path: p, message })
}

/// Parse the bytes of a NIR file.
pub fn from_bytes(bytes: &[u8]) -> Result<Graph, String> {
    guarded("the file", || {
        let file = Hdf5File::from_bytes(bytes).map_err(|e| format!("not an HDF5 file ({e})"))?;
        let root = file
            .root_group()
            .map_err(|e| format!("no root group ({e})"))?;
        let node = root
            .group("node")
            .map_err(|_| "no `node` group at the top of the file".to_string())?;
        read_graph(&node, "node", 0)
    })
}

/// Run a reader access, turning a panic into an error about `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(format!("{what}: the HDF5 reader failed on malformed data")))
}

fn member_names(g: &Group, at: &str) -> Result<(Vec<String>, Vec<String>), String> {
    g.member_names()
        .map_err(|e| format!("`{at}`: cannot list members ({e})"))
}

fn read_text(g: &Group, name: &str, at: &str) -> Result<String, String> {
    let ds = g
        .dataset(name)
        .map_err(|_| format!("`{at}` has no `{name}` dataset"))?;
    if let Ok(s) = ds.read_string() {
        return Ok(s);
    }
    match ds.read_strings() {
        Ok(v) if v.len() == 1 => Ok(v.into_iter().next().unwrap_or_default()),
        Ok(v) => Err(format!(
            "`{at}/{name}`: expected one text, found {}",
            v.len()
        )),
        Err(e) => Err(format!("`{at}/{name}`: expected text ({e})")),
    }
}

fn read_field(g: &Group, name: &str, at: &str) -> Result<Field, String> {
    let ds = g
        .dataset(name)
        .map_err(|e| format!("`{at}/{name}`: cannot open ({e})"))?;
    let shape: Vec<usize> = ds.shape().iter().map(|&d| d as usize).collect();
    let elements = ds
        .shape()
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "`{at}/{name}` declares shape {shape:?}, more than the {MAX_ELEMENTS} elements a field may have"
            )
        })?;
    let _ = elements;
    let bad = |e: hdf5_reader::error::Error| format!("`{at}/{name}`: cannot read ({e})");
    let floats = |v: Vec<f32>| Field::Float {
        shape: shape.clone(),
        data: v,
    };
    let ints = |v: Vec<i64>| Field::Int {
        shape: shape.clone(),
        data: v,
    };
    match ds.dtype() {
        Datatype::FloatingPoint { size: 4, .. } => Ok(floats(
            ds.read_array::<f32>()
                .map_err(bad)?
                .iter()
                .copied()
                .collect(),
        )),
        Datatype::FloatingPoint { size: 8, .. } => Ok(floats(
            ds.read_array::<f64>()
                .map_err(bad)?
                .iter()
                .map(|&x| x as f32)
                .collect(),
        )),
        Datatype::FixedPoint { size, signed, .. } => {
            let v: Vec<i64> = match (size, signed) {
                (8, true) => ds
                    .read_array::<i64>()
                    .map_err(bad)?
                    .iter()
                    .copied()
                    .collect(),
                (4, true) => ds
                    .read_array::<i32>()
                    .map_err(bad)?
                    .iter()
                    .map(|&x| x as i64)
                    .collect(),
                (1, false) => ds
                    .read_array::<u8>()
                    .map_err(bad)?
                    .iter()
                    .map(|&x| x as i64)
                    .collect(),
                (1, true) => ds
                    .read_array::<i8>()
                    .map_err(bad)?
                    .iter()
                    .map(|&x| x as i64)
                    .collect(),
                _ => {
                    return Err(format!(
                        "`{at}/{name}`: unsupported integer of {size} bytes"
                    ));
                }
            };
            Ok(ints(v))
        }
        Datatype::String { .. } | Datatype::VarLen { .. } => {
            let text = read_text(g, name, at)?;
            Ok(Field::Text(text))
        }
        other => Err(format!(
            "`{at}/{name}`: unsupported datatype {other:?}; expected numbers or text"
        )),
    }
}

fn read_metadata(g: &Group, at: &str) -> Result<BTreeMap<String, Field>, String> {
    let mut out = BTreeMap::new();
    let Ok(m) = g.group("metadata") else {
        return Ok(out);
    };
    let at = format!("{at}/metadata");
    let (_, datasets) = member_names(&m, &at)?;
    for d in datasets {
        // Metadata is informative: a field snnc cannot read is skipped, not an error.
        if let Ok(f) = read_field(&m, &d, &at) {
            out.insert(d, f);
        }
    }
    Ok(out)
}

fn read_graph(g: &Group, at: &str, depth: usize) -> Result<Graph, String> {
    if depth > MAX_DEPTH {
        return Err(format!("`{at}`: graphs nested more than {MAX_DEPTH} deep"));
    }
    let kind = read_text(g, "type", at)?;
    if kind != "NIRGraph" {
        return Err(format!("`{at}` has type `{kind}`; expected `NIRGraph`"));
    }
    let mut graph = Graph {
        metadata: read_metadata(g, at)?,
        ..Graph::default()
    };
    let nodes = g
        .group("nodes")
        .map_err(|_| format!("`{at}` has no `nodes` group"))?;
    let (names, _) = member_names(&nodes, &format!("{at}/nodes"))?;
    for name in names {
        let here = format!("{at}/nodes/{name}");
        let n = nodes
            .group(&name)
            .map_err(|e| format!("`{here}`: cannot open ({e})"))?;
        let kind = read_text(&n, "type", &here)?;
        let node = if kind == "NIRGraph" {
            Node::Graph(read_graph(&n, &here, depth + 1)?)
        } else {
            let mut p = Primitive {
                kind,
                metadata: read_metadata(&n, &here)?,
                ..Primitive::default()
            };
            let (_, datasets) = member_names(&n, &here)?;
            for d in datasets.into_iter().filter(|d| d != "type") {
                let f = read_field(&n, &d, &here)?;
                p.fields.insert(d, f);
            }
            Node::Prim(p)
        };
        graph.nodes.insert(name, node);
    }
    let edges = g
        .dataset("edges")
        .map_err(|_| format!("`{at}` has no `edges` dataset"))?;
    let shape = edges.shape().to_vec();
    let flat = if shape.iter().product::<u64>() == 0 {
        Vec::new()
    } else {
        edges
            .read_strings()
            .map_err(|e| format!("`{at}/edges`: expected an (E, 2) array of node names ({e})"))?
    };
    let empty = flat.is_empty() && shape.iter().product::<u64>() == 0;
    if !empty && (shape.len() != 2 || shape[1] != 2 || flat.len() as u64 != shape[0] * 2) {
        return Err(format!(
            "`{at}/edges` has shape {shape:?}; expected (E, 2) node names"
        ));
    }
    graph.edges = flat
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect();
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Graph {
        let mut g = Graph::default();
        g.nodes.insert(
            "input".into(),
            Node::Prim(Primitive::new("Input", [("shape", Field::ints(&[3]))])),
        );
        let mut lin = Primitive::new(
            "Affine",
            [
                (
                    "weight",
                    Field::float(&[2, 3], vec![1., 2., 3., 4., 5., 6.]),
                ),
                ("bias", Field::float(&[2], vec![0.5, -0.5])),
            ],
        );
        lin.metadata.insert("note".into(), Field::Text("x".into()));
        g.nodes.insert("lin".into(), Node::Prim(lin));
        let mut inner = Graph::default();
        inner.nodes.insert(
            "s".into(),
            Node::Prim(Primitive::new(
                "Scale",
                [("scale", Field::float(&[2], vec![2., 3.]))],
            )),
        );
        g.nodes.insert("sub".into(), Node::Graph(inner));
        g.nodes.insert(
            "output".into(),
            Node::Prim(Primitive::new(
                "Output",
                [("shape", Field::ints(&[2])), ("groups", Field::int(1))],
            )),
        );
        g.edges = vec![
            ("input".into(), "lin".into()),
            ("lin".into(), "output".into()),
        ];
        g.metadata.insert("dt".into(), Field::scalar(0.001));
        g
    }

    #[test]
    fn round_trip_through_bytes() {
        let g = sample();
        let bytes = to_bytes(&g).unwrap();
        assert_eq!(from_bytes(&bytes).unwrap(), g);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_bytes(b"not hdf5 at all").is_err());
        let bytes = to_bytes(&sample()).unwrap();
        for cut in [8, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for k in (0..bytes.len()).step_by(37) {
            let mut b = bytes.clone();
            b[k] ^= 0xA5;
            let _ = from_bytes(&b);
        }
    }
}
