//! Import: any NIR graph as an snnc module, discretised with a step `dt` (SPEC.md, "NIR").
//!
//! - Inputs keep NIR's channels-first shape (`(C, H, W)`); a `transpose` moves them to snnc's
//!   channels-last layout, and outputs are transposed back, so a module imported from NIR reads and
//!   writes data as the NIR graph's producer did.
//! - Several edges into one node are summed (`add`); nested graphs are flattened, their members
//!   named `graph.node`.
//! - `IF` (r, θ, v_reset): forward Euler from `v = 0`, `v += dt·r·I`; a spike when `v ≥ θ`, after
//!   which `v` drops by `D` — the node's `reset_amount` metadata when snnc wrote it, else
//!   `θ − v_reset` (exactly NIR's reset to `v_reset` whenever the voltage lands on the threshold).
//!   As an `if_neuron` on `u = (v − θ)/D + 1`: gain `r/D`, initial voltage `1 − θ/D`, amplitude
//!   `dt` (each spike is 1).
//! - `LI` (τ, r, v_leak): forward Euler, `v += dt/τ·(v_leak − v + r·I)`, as a `lowpass` whose
//!   decay `e^(−dt/τ')` equals `1 − dt/τ` (up to rounding), on `r·I + v_leak`.
//! - `Affine`/`Linear` → `dense` (+ `bias`); `Scale` → `scale`; `Conv1d`/`Conv2d` → `pad` when
//!   the padding is explicit, `conv`, `bias`; `AvgPool2d` → `pad`, `avg_pool`; `SumPool2d` → the
//!   same times the window size; `Flatten` → `transpose` to channels first and `reshape`.

use crate::{Field, Graph, NirError, Node, Primitive};
use snnc_ir::builder::Builder;
use snnc_ir::{
    ConvAttrs, Module, Neuron, NeuronModel, Op, Operand, OutputKind, Padding, PoolAttrs, StateInit,
    ValueId,
};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A module imported from NIR, with what the import had to assume.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The module.
    pub module: Module,
    /// Notes on assumptions (reset rule, threshold comparison), each naming its nodes.
    pub warnings: Vec<String>,
}

/// The largest number of elements any one imported tensor may have.
const MAX_ELEMENTS: usize = 1 << 28;

/// Import `graph` with time step `dt` (seconds); `None` takes the graph's `dt` metadata (as
/// snnc's export writes it), else 1 ms.
pub fn import(graph: &Graph, name: &str, dt: Option<f64>) -> Result<Imported, NirError> {
    let meta_dt = match graph.metadata.get("dt") {
        // Stored as float32: take the shortest decimal that reads back as it (0.001, not
        // 0.0010000000474974513).
        Some(Field::Float { data, .. }) if data.len() == 1 => data[0].to_string().parse().ok(),
        _ => None,
    };
    let dt = dt.or(meta_dt).unwrap_or(0.001);
    if !(dt.is_finite() && dt > 0.0) {
        return Err(NirError::Graph(format!(
            "dt must be a positive number of seconds, not {dt}"
        )));
    }
    let mut flat = Flat::default();
    flatten(graph, "", &mut flat, 0)?;
    let order = topo_order(&flat)?;
    let mut im = Importer {
        b: Builder::new(name, dt),
        dt,
        vals: HashMap::new(),
        warnings: Vec::new(),
        foreign_if: Vec::new(),
    };
    for n in &order {
        im.node(n, &flat)?;
    }
    if !im.foreign_if.is_empty() {
        im.warnings.push(format!(
            "IF nodes {} carry no reset rule: snnc fires at v ≥ θ and subtracts θ − v_reset (NIR's reset to v_reset when v lands on θ); consumers that reset to v_reset lose the overshoot",
            list(&im.foreign_if)
        ));
    }
    Ok(Imported {
        module: im.b.finish(),
        warnings: im.warnings,
    })
}

fn list(v: &[String]) -> String {
    let shown: Vec<String> = v.iter().take(5).map(|s| format!("`{s}`")).collect();
    if v.len() > 5 {
        format!("{} and {} more", shown.join(", "), v.len() - 5)
    } else {
        shown.join(", ")
    }
}

/// A graph with nested graphs flattened: primitives by full name, edges between them.
#[derive(Default)]
struct Flat {
    nodes: BTreeMap<String, Primitive>,
    edges: Vec<(String, String)>,
    /// Inputs and outputs of nested graphs: pass-through nodes.
    passes: std::collections::BTreeSet<String>,
}

fn flatten(g: &Graph, prefix: &str, out: &mut Flat, depth: usize) -> Result<(), NirError> {
    if depth > 32 {
        return Err(NirError::Graph(format!(
            "graph `{prefix}` nested more than 32 deep"
        )));
    }
    // The node an edge endpoint names: `G` for a nested graph means its one Input (as a
    // destination) or its one Output (as a source); `G.B` addresses a member directly.
    let endpoint = |name: &str, as_source: bool| -> Result<String, NirError> {
        let (head, rest) = match name.split_once('.') {
            Some((h, r)) if g.nodes.contains_key(h) && !g.nodes.contains_key(name) => (h, Some(r)),
            _ => (name, None),
        };
        match (g.nodes.get(head), rest) {
            (None, _) => Err(NirError::Graph(format!(
                "edge names `{prefix}{name}`, which is not a node of the graph"
            ))),
            (Some(Node::Graph(sub)), None) => {
                let want = if as_source { "Output" } else { "Input" };
                let ends: Vec<&String> = sub
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.kind() == want)
                    .map(|(k, _)| k)
                    .collect();
                match ends.as_slice() {
                    [one] => Ok(format!("{prefix}{head}.{one}")),
                    _ => Err(NirError::Graph(format!(
                        "edge names nested graph `{prefix}{head}`, which has {} {want} nodes: name one as `{head}.<node>`",
                        ends.len()
                    ))),
                }
            }
            (Some(_), None) => Ok(format!("{prefix}{head}")),
            (Some(Node::Graph(_)), Some(r)) => Ok(format!("{prefix}{head}.{r}")),
            (Some(_), Some(_)) => Err(NirError::Graph(format!(
                "edge names `{prefix}{name}`, but `{prefix}{head}` is not a graph"
            ))),
        }
    };
    for (a, b) in &g.edges {
        out.edges.push((endpoint(a, true)?, endpoint(b, false)?));
    }
    for (name, node) in &g.nodes {
        let full = format!("{prefix}{name}");
        match node {
            Node::Graph(sub) => flatten(sub, &format!("{full}."), out, depth + 1)?,
            Node::Prim(p) => {
                if depth > 0 && matches!(p.kind.as_str(), "Input" | "Output") {
                    out.passes.insert(full.clone());
                }
                out.nodes.insert(full, p.clone());
            }
        }
    }
    Ok(())
}

/// Nodes in an order where every node comes after all its sources (Kahn's algorithm).
fn topo_order(f: &Flat) -> Result<Vec<String>, NirError> {
    let mut indeg: BTreeMap<&str, usize> = f.nodes.keys().map(|k| (k.as_str(), 0)).collect();
    let mut succ: HashMap<&str, Vec<&str>> = HashMap::new();
    for (a, b) in &f.edges {
        for e in [a, b] {
            if !f.nodes.contains_key(e) {
                return Err(NirError::Graph(format!(
                    "edge names `{e}`, which is not a node of the graph"
                )));
            }
        }
        *indeg.get_mut(b.as_str()).expect("checked") += 1;
        succ.entry(a.as_str()).or_default().push(b.as_str());
    }
    let mut queue: VecDeque<&str> = indeg
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::new();
    while let Some(n) = queue.pop_front() {
        order.push(n.to_string());
        for &s in succ.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            let d = indeg.get_mut(s).expect("checked");
            *d -= 1;
            if *d == 0 {
                queue.push_back(s);
            }
        }
    }
    if order.len() < f.nodes.len() {
        let stuck: Vec<String> = indeg
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(k, _)| k.to_string())
            .collect();
        return Err(NirError::Graph(format!(
            "a cycle runs through {}; snnc imports feed-forward graphs (a cycle would need a Delay node, which the import does not support yet)",
            list(&stuck)
        )));
    }
    Ok(order)
}

struct Importer {
    b: Builder,
    dt: f64,
    /// Each node's output: the snnc value and its NIR shape.
    vals: HashMap<String, (ValueId, Vec<usize>)>,
    warnings: Vec<String>,
    foreign_if: Vec<String>,
}

/// The snnc (channels-last) shape of a NIR (channels-first) shape.
fn snnc_shape(nir: &[usize]) -> Vec<usize> {
    match nir.len() {
        0 | 1 => nir.to_vec(),
        r => nir[1..]
            .iter()
            .copied()
            .chain(std::iter::once(nir[0]))
            .take(r)
            .collect(),
    }
}

/// Data in NIR (channels-first) order to snnc (channels-last) order.
fn to_snnc(nir: &[usize], data: &[f32]) -> Vec<f32> {
    if nir.len() < 2 {
        return data.to_vec();
    }
    let c = nir[0];
    let sp: usize = nir[1..].iter().product();
    let mut out = vec![0f32; data.len()];
    for ch in 0..c {
        for p in 0..sp {
            out[p * c + ch] = data[ch * sp + p];
        }
    }
    out
}

impl Importer {
    fn nerr(&self, node: &str, p: &Primitive, message: impl Into<String>) -> NirError {
        NirError::Node {
            node: node.to_string(),
            kind: p.kind.clone(),
            message: message.into(),
        }
    }

    fn build<T>(
        &self,
        node: &str,
        p: &Primitive,
        r: Result<T, snnc_ir::BuildError>,
    ) -> Result<T, NirError> {
        r.map_err(|e| self.nerr(node, p, e.to_string()))
    }

    /// A float field, as (shape, data).
    fn floats<'p>(
        &self,
        node: &str,
        p: &'p Primitive,
        field: &str,
    ) -> Result<(&'p [usize], &'p [f32]), NirError> {
        match p.fields.get(field) {
            Some(Field::Float { shape, data }) => Ok((shape, data)),
            Some(Field::Int { .. }) => Err(self.nerr(
                node,
                p,
                format!("field `{field}` holds integers; expected floats"),
            )),
            Some(Field::Text(_)) => Err(self.nerr(
                node,
                p,
                format!("field `{field}` holds text; expected floats"),
            )),
            None => Err(self.nerr(node, p, format!("missing field `{field}`"))),
        }
    }

    /// An integer field as a list of non-negative sizes.
    fn sizes(
        &self,
        node: &str,
        p: &Primitive,
        field: &str,
        n: usize,
        default: Option<usize>,
    ) -> Result<Vec<usize>, NirError> {
        match p.fields.get(field) {
            Some(Field::Int { data, .. }) if data.iter().all(|&x| (0..=1 << 20).contains(&x)) => {
                let v: Vec<usize> = data.iter().map(|&x| x as usize).collect();
                match v.len() {
                    1 => Ok(vec![v[0]; n]),
                    k if k == n => Ok(v),
                    k => Err(self.nerr(
                        node,
                        p,
                        format!("field `{field}` has {k} values; expected 1 or {n}"),
                    )),
                }
            }
            Some(Field::Float { data, .. })
                if data
                    .iter()
                    .all(|&x| x >= 0.0 && x.fract() == 0.0 && x < 1e6) =>
            {
                let v: Vec<usize> = data.iter().map(|&x| x as usize).collect();
                match v.len() {
                    1 => Ok(vec![v[0]; n]),
                    k if k == n => Ok(v),
                    k => Err(self.nerr(
                        node,
                        p,
                        format!("field `{field}` has {k} values; expected 1 or {n}"),
                    )),
                }
            }
            None if default.is_some() => Ok(vec![default.unwrap_or(0); n]),
            None => Err(self.nerr(node, p, format!("missing field `{field}`"))),
            Some(_) => Err(self.nerr(
                node,
                p,
                format!("field `{field}` must hold non-negative integers"),
            )),
        }
    }

    /// A per-neuron parameter: a full array of the data's NIR shape, or a scalar, in snnc order.
    fn param(
        &self,
        node: &str,
        p: &Primitive,
        field: &str,
        nshape: &[usize],
        default: Option<f32>,
    ) -> Result<Vec<f32>, NirError> {
        let n: usize = nshape.iter().product();
        if !p.fields.contains_key(field)
            && let Some(d) = default
        {
            return Ok(vec![d; n]);
        }
        let (shape, data) = self.floats(node, p, field)?;
        if data.len() == 1 {
            return Ok(vec![data[0]; n]);
        }
        if data.len() != n {
            return Err(self.nerr(
                node,
                p,
                format!(
                    "field `{field}` has shape {shape:?}; the node's input has shape {nshape:?}"
                ),
            ));
        }
        Ok(to_snnc(nshape, data))
    }

    /// The summed input of a node.
    fn input(
        &mut self,
        node: &str,
        p: &Primitive,
        f: &Flat,
    ) -> Result<(ValueId, Vec<usize>), NirError> {
        let srcs: Vec<&String> = f
            .edges
            .iter()
            .filter(|(_, d)| d == node)
            .map(|(s, _)| s)
            .collect();
        if srcs.is_empty() {
            return Err(self.nerr(node, p, "has no input edge"));
        }
        let ins: Vec<(ValueId, Vec<usize>)> = srcs
            .iter()
            .map(|s| {
                self.vals
                    .get(s.as_str())
                    .cloned()
                    .ok_or_else(|| self.nerr(node, p, format!("input `{s}` produced nothing")))
            })
            .collect::<Result<_, _>>()?;
        if let Some((_, other)) = ins.iter().find(|(_, s)| *s != ins[0].1) {
            return Err(self.nerr(
                node,
                p,
                format!(
                    "its input edges carry shapes {:?} and {other:?}, which cannot be summed",
                    ins[0].1
                ),
            ));
        }
        if ins.len() == 1 {
            return Ok(ins[0].clone());
        }
        let args: Vec<Operand> = ins.iter().map(|(v, _)| Operand::Value(*v)).collect();
        let v = self.b.op1(Op::Add, &args, &format!("{node}.sum"));
        let v = self.build(node, p, v)?;
        Ok((v, ins[0].1.clone()))
    }

    fn node(&mut self, node: &str, f: &Flat) -> Result<(), NirError> {
        let p = &f.nodes[node];
        let kind = p.kind.as_str();
        if f.passes.contains(node) {
            let x = self.input(node, p, f)?;
            self.vals.insert(node.to_string(), x);
            return Ok(());
        }
        let out: (ValueId, Vec<usize>) = match kind {
            "Input" => {
                let nshape: Vec<usize> = match p.fields.get("shape") {
                    Some(Field::Int { data, .. }) if data.iter().all(|&x| x > 0) => {
                        data.iter().map(|&x| x.min(1 << 30) as usize).collect()
                    }
                    _ => {
                        return Err(self.nerr(
                            node,
                            p,
                            "missing or invalid `shape` (positive integers)",
                        ));
                    }
                };
                let nshape = self.shape_field(node, p, nshape)?;
                let v = self.b.input(node, &nshape);
                let v = self.channels_last(node, p, v, &nshape)?;
                (v, nshape)
            }
            "Output" => {
                let (x, nshape) = self.input(node, p, f)?;
                let y = self.channels_first(node, p, x, &nshape)?;
                self.b.output(node, y);
                (x, nshape)
            }
            "Affine" | "Linear" => {
                let (x, nshape) = self.input(node, p, f)?;
                let (wshape, w) = self.floats(node, p, "weight")?;
                if wshape.len() != 2 || nshape.len() != 1 || wshape[1] != nshape[0] {
                    return Err(self.nerr(node, p, format!(
                        "weight of shape {wshape:?} cannot take input of shape {nshape:?} (NIR's Affine takes 1-D input of the weight's second axis)"
                    )));
                }
                let (o, n) = (wshape[0], wshape[1]);
                let mut k = vec![0f32; n * o];
                for r in 0..o {
                    for c in 0..n {
                        k[c * o + r] = w[r * n + c];
                    }
                }
                let kc = self.b.constant_f32(&format!("{node}.weight"), &[n, o], k);
                let y = self.b.op1(Op::Dense, &[x.into(), kc.into()], node);
                let mut y = self.build(node, p, y)?;
                if kind == "Affine" {
                    let (bshape, bias) = self.floats(node, p, "bias")?;
                    if bias.len() != o {
                        return Err(self.nerr(
                            node,
                            p,
                            format!("bias of shape {bshape:?}; expected ({o},)"),
                        ));
                    }
                    let bc = self
                        .b
                        .constant_f32(&format!("{node}.bias"), &[o], bias.to_vec());
                    let r = self
                        .b
                        .op1(Op::Bias, &[y.into(), bc.into()], &format!("{node}.biased"));
                    y = self.build(node, p, r)?;
                }
                (y, vec![o])
            }
            "Scale" => {
                let (x, nshape) = self.input(node, p, f)?;
                let s = self.param(node, p, "scale", &nshape, None)?;
                let sc = self
                    .b
                    .constant_f32(&format!("{node}.scale"), &snnc_shape(&nshape), s);
                let y = self.b.op1(Op::Scale, &[x.into(), sc.into()], node);
                (self.build(node, p, y)?, nshape)
            }
            "Conv1d" | "Conv2d" => self.conv(node, p, f)?,
            "AvgPool2d" | "SumPool2d" => self.pool(node, p, f)?,
            "Flatten" => {
                let (x, nshape) = self.input(node, p, f)?;
                let start = match p.fields.get("start_dim") {
                    Some(Field::Int { data, .. }) if data.len() == 1 => data[0],
                    _ => 0,
                };
                let end = match p.fields.get("end_dim") {
                    Some(Field::Int { data, .. }) if data.len() == 1 => data[0],
                    _ => -1,
                };
                let r = nshape.len() as i64;
                if start != 0 || !(end == -1 || end == r - 1) {
                    return Err(self.nerr(node, p, format!(
                        "flattens axes {start}..={end} of {nshape:?}; snnc imports a Flatten of every axis (start_dim=0, end_dim=-1)"
                    )));
                }
                let y = self.channels_first(node, p, x, &nshape)?;
                let total: usize = nshape.iter().product();
                let y = if nshape.len() == 1 {
                    y
                } else {
                    let r = self
                        .b
                        .op1(Op::Reshape { shape: vec![total] }, &[y.into()], node);
                    self.build(node, p, r)?
                };
                (y, vec![total])
            }
            "IF" => self.if_node(node, p, f)?,
            "LI" => self.li_node(node, p, f)?,
            "LIF" | "CubaLIF" | "CubaLI" | "I" | "Threshold" | "Delay" => {
                return Err(self.nerr(node, p, format!(
                    "snnc's import does not support `{kind}` yet (it imports Affine, Linear, Scale, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, IF and LI)"
                )));
            }
            other => {
                return Err(self.nerr(
                    node,
                    p,
                    format!("`{other}` is not a NIR primitive snnc knows"),
                ));
            }
        };
        self.vals.insert(node.to_string(), out);
        Ok(())
    }

    fn shape_field(
        &self,
        node: &str,
        p: &Primitive,
        shape: Vec<usize>,
    ) -> Result<Vec<usize>, NirError> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if shape.is_empty() || shape.len() > 3 || n.is_none_or(|n| n == 0 || n > MAX_ELEMENTS) {
            return Err(self.nerr(node, p, format!(
                "shape {shape:?}: snnc imports data of 1 to 3 axes (channels first) with at most {MAX_ELEMENTS} elements"
            )));
        }
        Ok(shape)
    }

    fn channels_last(
        &mut self,
        node: &str,
        p: &Primitive,
        v: ValueId,
        nshape: &[usize],
    ) -> Result<ValueId, NirError> {
        let perm: Vec<usize> = match nshape.len() {
            2 => vec![1, 0],
            3 => vec![1, 2, 0],
            _ => return Ok(v),
        };
        let r = self
            .b
            .op1(Op::Transpose { perm }, &[v.into()], &format!("{node}.hwc"));
        self.build(node, p, r)
    }

    fn channels_first(
        &mut self,
        node: &str,
        p: &Primitive,
        v: ValueId,
        nshape: &[usize],
    ) -> Result<ValueId, NirError> {
        let perm: Vec<usize> = match nshape.len() {
            2 => vec![1, 0],
            3 => vec![2, 0, 1],
            _ => return Ok(v),
        };
        let r = self
            .b
            .op1(Op::Transpose { perm }, &[v.into()], &format!("{node}.chw"));
        self.build(node, p, r)
    }

    /// Explicit symmetric padding: a `pad` op (channels-last) when any is non-zero.
    fn pad(
        &mut self,
        node: &str,
        p: &Primitive,
        x: ValueId,
        pads: &[usize],
    ) -> Result<ValueId, NirError> {
        if pads.iter().all(|&q| q == 0) {
            return Ok(x);
        }
        let mut spec: Vec<[usize; 2]> = pads.iter().map(|&q| [q, q]).collect();
        spec.push([0, 0]);
        let r = self
            .b
            .op1(Op::Pad { pads: spec }, &[x.into()], &format!("{node}.pad"));
        self.build(node, p, r)
    }

    fn conv(
        &mut self,
        node: &str,
        p: &Primitive,
        f: &Flat,
    ) -> Result<(ValueId, Vec<usize>), NirError> {
        let (x, nshape) = self.input(node, p, f)?;
        let (wshape, w) = self.floats(node, p, "weight")?;
        let d = if p.kind == "Conv1d" { 1 } else { 2 };
        if wshape.len() != d + 2 || nshape.len() != d + 1 {
            return Err(self.nerr(node, p, format!(
                "weight of shape {wshape:?} on input of shape {nshape:?}: expected (C_out, C_in/groups, k...) on (C_in, spatial...) with {d} spatial axes"
            )));
        }
        let groups = self.sizes(node, p, "groups", 1, Some(1))?[0].max(1);
        let (cout, cin_g) = (wshape[0], wshape[1]);
        if cin_g * groups != nshape[0] || cout % groups != 0 {
            return Err(self.nerr(
                node,
                p,
                format!(
                    "weight {wshape:?} with groups={groups} does not take {} input channels",
                    nshape[0]
                ),
            ));
        }
        let strides = self.sizes(node, p, "stride", d, Some(1))?;
        let dilation = self.sizes(node, p, "dilation", d, Some(1))?;
        if strides.contains(&0) || dilation.contains(&0) {
            return Err(self.nerr(node, p, "stride and dilation must be at least 1"));
        }
        let (x, padding) = match p.fields.get("padding") {
            Some(Field::Text(t)) if t == "same" => (x, Padding::Same),
            Some(Field::Text(t)) if t == "valid" => (x, Padding::Valid),
            Some(Field::Text(t)) => {
                return Err(self.nerr(
                    node,
                    p,
                    format!("padding `{t}`; expected `same`, `valid` or sizes"),
                ));
            }
            _ => {
                let pads = self.sizes(node, p, "padding", d, Some(0))?;
                (self.pad(node, p, x, &pads)?, Padding::Valid)
            }
        };
        let taps: usize = wshape[2..].iter().product();
        // NIR [cout, cin/g, k...] → snnc [k..., cin/g, cout].
        let mut k = vec![0f32; w.len()];
        for co in 0..cout {
            for ci in 0..cin_g {
                for t in 0..taps {
                    k[(t * cin_g + ci) * cout + co] = w[(co * cin_g + ci) * taps + t];
                }
            }
        }
        let mut kshape: Vec<usize> = wshape[2..].to_vec();
        kshape.extend([cin_g, cout]);
        let kc = self.b.constant_f32(&format!("{node}.weight"), &kshape, k);
        let attrs = ConvAttrs {
            strides,
            padding,
            dilation,
            groups,
        };
        let y = self.b.op1(Op::Conv(attrs), &[x.into(), kc.into()], node);
        let mut y = self.build(node, p, y)?;
        if p.fields.contains_key("bias") {
            let (_, bias) = self.floats(node, p, "bias")?;
            if bias.len() != cout {
                return Err(self.nerr(
                    node,
                    p,
                    format!("bias has {} values; expected {cout}", bias.len()),
                ));
            }
            let bc = self
                .b
                .constant_f32(&format!("{node}.bias"), &[cout], bias.to_vec());
            let r = self
                .b
                .op1(Op::Bias, &[y.into(), bc.into()], &format!("{node}.biased"));
            y = self.build(node, p, r)?;
        }
        let out = self.b.module().value(y).ty.shape.clone();
        let nshape_out = std::iter::once(out[d])
            .chain(out[..d].iter().copied())
            .collect();
        Ok((y, nshape_out))
    }

    fn pool(
        &mut self,
        node: &str,
        p: &Primitive,
        f: &Flat,
    ) -> Result<(ValueId, Vec<usize>), NirError> {
        let (x, nshape) = self.input(node, p, f)?;
        if nshape.len() != 3 {
            return Err(self.nerr(
                node,
                p,
                format!("input of shape {nshape:?}; expected (C, H, W)"),
            ));
        }
        let kernel = self.sizes(node, p, "kernel_size", 2, None)?;
        let strides = self
            .sizes(node, p, "stride", 2, None)
            .unwrap_or_else(|_| kernel.clone());
        let pads = self.sizes(node, p, "padding", 2, Some(0))?;
        if kernel.contains(&0) || strides.contains(&0) {
            return Err(self.nerr(node, p, "kernel and stride must be at least 1"));
        }
        let x = self.pad(node, p, x, &pads)?;
        let attrs = PoolAttrs {
            pool: kernel.clone(),
            strides,
            padding: Padding::Valid,
        };
        let name = if p.kind == "SumPool2d" {
            format!("{node}.mean")
        } else {
            node.to_string()
        };
        let y = self.b.op1(Op::AvgPool(attrs), &[x.into()], &name);
        let mut y = self.build(node, p, y)?;
        if p.kind == "SumPool2d" {
            let c = nshape[0];
            let k = (kernel[0] * kernel[1]) as f32;
            let sc = self
                .b
                .constant_f32(&format!("{node}.window"), &[c], vec![k; c]);
            let r = self.b.op1(Op::Scale, &[y.into(), sc.into()], node);
            y = self.build(node, p, r)?;
        }
        let out = self.b.module().value(y).ty.shape.clone();
        Ok((y, vec![out[2], out[0], out[1]]))
    }

    fn if_node(
        &mut self,
        node: &str,
        p: &Primitive,
        f: &Flat,
    ) -> Result<(ValueId, Vec<usize>), NirError> {
        let (x, nshape) = self.input(node, p, f)?;
        let r = self.param(node, p, "r", &nshape, Some(1.0))?;
        let theta = self.param(node, p, "v_threshold", &nshape, None)?;
        let reset = self.param(node, p, "v_reset", &nshape, Some(0.0))?;
        let amount = match p.metadata.get("reset_amount") {
            Some(Field::Float { data, .. }) if data.len() == 1 => Some(data[0]),
            _ => None,
        };
        if amount.is_none() {
            self.foreign_if.push(node.to_string());
        }
        let n = r.len();
        let mut gain = Vec::with_capacity(n);
        let mut v0 = Vec::with_capacity(n);
        for k in 0..n {
            let dd = amount.unwrap_or(theta[k] - reset[k]);
            if !(dd > 0.0 && dd.is_finite()) {
                return Err(self.nerr(node, p, format!(
                    "neuron {k}: v_threshold {} is not above v_reset {}; the reset must lower the voltage",
                    theta[k], reset[k]
                )));
            }
            gain.push(r[k] / dd);
            v0.push(1.0 - theta[k] / dd);
        }
        let sshape = snnc_shape(&nshape);
        let (current, g) = if gain.iter().all(|&g| g == gain[0]) {
            (x, gain[0] as f64)
        } else {
            let gc = self.b.constant_f32(&format!("{node}.r"), &sshape, gain);
            let y = self.b.op1(
                Op::Scale,
                &[x.into(), gc.into()],
                &format!("{node}.current"),
            );
            (self.build(node, p, y)?, 1.0)
        };
        let init = if v0.iter().all(|&v| v == 0.0) {
            StateInit::Zeros
        } else {
            StateInit::Const(self.b.constant_f32(&format!("{node}.v0"), &sshape, v0))
        };
        let state = self.b.state(&format!("{node}.v"), &sshape, init);
        let op = Op::Neuron(Neuron {
            model: NeuronModel::IfNeuron,
            gain: g,
            amplitude: self.dt,
        });
        let r = self.b.op_named(
            op,
            &[current.into(), state.into()],
            &[node, &format!("{node}.v1")],
        );
        let res = self.build(node, p, r)?;
        self.b.next(state, res[1]);
        self.b.output_of_kind(
            &format!("spikes/{node}"),
            res[0],
            OutputKind::Spikes {
                population: node.to_string(),
                amplitude: self.dt,
            },
        );
        Ok((res[0], nshape))
    }

    fn li_node(
        &mut self,
        node: &str,
        p: &Primitive,
        f: &Flat,
    ) -> Result<(ValueId, Vec<usize>), NirError> {
        let (x, nshape) = self.input(node, p, f)?;
        let tau = self.param(node, p, "tau", &nshape, None)?;
        let r = self.param(node, p, "r", &nshape, Some(1.0))?;
        let leak = self.param(node, p, "v_leak", &nshape, Some(0.0))?;
        if tau.iter().any(|&t| t != tau[0]) {
            return Err(self.nerr(
                node,
                p,
                "time constants differ between neurons; snnc's lowpass takes one",
            ));
        }
        let t = tau[0] as f64;
        if !(t > self.dt && t.is_finite()) {
            return Err(self.nerr(
                node,
                p,
                format!(
                    "tau {t} s is not longer than dt {} s: forward Euler would not decay",
                    self.dt
                ),
            ));
        }
        let sshape = snnc_shape(&nshape);
        let mut cur = x;
        if r.iter().any(|&v| v != 1.0) {
            let rc = self.b.constant_f32(&format!("{node}.r"), &sshape, r);
            let y = self.b.op1(
                Op::Scale,
                &[cur.into(), rc.into()],
                &format!("{node}.current"),
            );
            cur = self.build(node, p, y)?;
        }
        if leak.iter().any(|&v| v != 0.0) {
            let lc = self
                .b
                .constant_f32(&format!("{node}.v_leak"), &sshape, leak);
            let y = self
                .b
                .op1(Op::Bias, &[cur.into(), lc.into()], &format!("{node}.leak"));
            cur = self.build(node, p, y)?;
        }
        let tau_zoh = -self.dt / (1.0 - self.dt / t).ln();
        let state = self
            .b
            .state(&format!("{node}.v"), &sshape, StateInit::Zeros);
        let y = self.b.op1(
            Op::Lowpass { tau: tau_zoh },
            &[cur.into(), state.into()],
            node,
        );
        let y = self.build(node, p, y)?;
        self.b.next(state, y);
        Ok((y, nshape))
    }
}

/// Read a NIR file and import it (the CLI's and Python's entry point).
pub fn import_file(path: &std::path::Path, dt: Option<f64>) -> Result<Imported, NirError> {
    let graph = crate::file::read(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "nir".into());
    import(&graph, &name, dt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Primitive;

    fn prim(kind: &str, fields: Vec<(&'static str, Field)>) -> Node {
        Node::Prim(Primitive::new(kind, fields))
    }

    /// Input(3) → Affine → IF → Output.
    fn small() -> Graph {
        let mut g = Graph::default();
        g.nodes.insert(
            "in".into(),
            prim("Input", vec![("shape", Field::ints(&[3]))]),
        );
        g.nodes.insert(
            "lin".into(),
            prim(
                "Affine",
                vec![
                    (
                        "weight",
                        Field::float(&[2, 3], vec![1., 0., 0., 0., 1., 0.]),
                    ),
                    ("bias", Field::float(&[2], vec![0., 0.])),
                ],
            ),
        );
        g.nodes.insert(
            "spk".into(),
            prim(
                "IF",
                vec![
                    ("r", Field::float(&[2], vec![1., 1.])),
                    ("v_threshold", Field::float(&[2], vec![1., 1.])),
                    ("v_reset", Field::float(&[2], vec![0., 0.])),
                ],
            ),
        );
        g.nodes.insert(
            "out".into(),
            prim("Output", vec![("shape", Field::ints(&[2]))]),
        );
        g.edges = [("in", "lin"), ("lin", "spk"), ("spk", "out")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        g
    }

    fn error(g: &Graph) -> String {
        match import(g, "t", Some(0.001)) {
            Ok(_) => panic!("imported a bad graph"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_graph_imports_and_verifies() {
        let im = import(&small(), "t", Some(0.001)).unwrap();
        snnc_ir::verify(im.module, snnc_ir::Target::Neural).unwrap();
        assert!(im.warnings.iter().any(|w| w.contains("`spk`")));
    }

    #[test]
    fn bad_graphs_name_the_node() {
        let mut g = small();
        g.nodes.insert("lin".into(), prim("MaxPool2d", vec![]));
        assert!(error(&g).contains("`lin` (MaxPool2d)"), "{}", error(&g));

        let mut g = small();
        if let Some(Node::Prim(p)) = g.nodes.get_mut("lin") {
            p.fields.remove("weight");
        }
        let e = error(&g);
        assert!(
            e.contains("`lin`") && e.contains("missing field `weight`"),
            "{e}"
        );

        let mut g = small();
        g.edges.push(("spk".into(), "ghost".into()));
        assert!(error(&g).contains("`ghost`"), "{}", error(&g));

        let mut g = small();
        if let Some(Node::Prim(p)) = g.nodes.get_mut("lin") {
            p.fields
                .insert("weight".into(), Field::float(&[2, 4], vec![0.; 8]));
        }
        let e = error(&g);
        assert!(e.contains("`lin`") && e.contains("[2, 4]"), "{e}");

        let mut g = small();
        if let Some(Node::Prim(p)) = g.nodes.get_mut("spk") {
            p.fields
                .insert("v_reset".into(), Field::float(&[2], vec![2., 2.]));
        }
        let e = error(&g);
        assert!(e.contains("`spk`") && e.contains("v_reset"), "{e}");

        let mut g = small();
        if let Some(Node::Prim(p)) = g.nodes.get_mut("spk") {
            p.fields.insert("r".into(), Field::float(&[5], vec![1.; 5]));
        }
        let e = error(&g);
        assert!(e.contains("`spk`") && e.contains("`r`"), "{e}");
    }

    #[test]
    fn a_cycle_without_delay_is_refused() {
        let mut g = small();
        g.edges.push(("spk".into(), "lin".into()));
        let e = error(&g);
        assert!(
            e.contains("cycle") && e.contains("`lin`") && e.contains("`spk`"),
            "{e}"
        );
    }

    #[test]
    fn nested_graphs_flatten_and_edges_sum() {
        let inner = small();
        let mut g = Graph::default();
        g.nodes.insert(
            "x".into(),
            prim("Input", vec![("shape", Field::ints(&[3]))]),
        );
        g.nodes.insert("net".into(), Node::Graph(inner));
        g.nodes.insert(
            "twice".into(),
            prim("Scale", vec![("scale", Field::float(&[2], vec![2., 2.]))]),
        );
        g.nodes.insert(
            "y".into(),
            prim("Output", vec![("shape", Field::ints(&[2]))]),
        );
        g.edges = [
            ("x", "net"),
            ("net", "twice"),
            ("net.spk", "y"),
            ("twice", "y"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let im = import(&g, "nested", Some(0.001)).unwrap();
        let m = snnc_ir::verify(im.module, snnc_ir::Target::Any).unwrap();
        assert!(
            m.insts.iter().any(|i| i.op == Op::Add),
            "edges into `y` are summed"
        );
        assert!(m.find_output("spikes/net.spk").is_some());
    }
}
