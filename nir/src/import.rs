//! Import: any NIR graph as an snnc module, discretised with a step `dt` (SPEC.md, "NIR").
//!
//! - Inputs keep NIR's channels-first shape (`(C, H, W)`); a `transpose` moves them to snnc's
//!   channels-last layout, and outputs are transposed back, so a module imported from NIR reads and
//!   writes data as the NIR graph's producer did.
//! - Several edges into one node are summed (`add`); nested graphs are flattened, their members
//!   named `graph.node`.
//! - Neurons step as NIR's consumers step them: forward Euler from `v = 0`, a spike when
//!   `v > v_threshold`, at most one per step, then `v = v_reset` — snnc's `leaky_if` on
//!   `u = (v − v_reset)/(v_threshold − v_reset)`. `IF`: `v += dt·r·I`. `LIF`:
//!   `v += dt/τ·(v_leak − v + r·I)`. `CubaLIF`/`CubaLI`: first the synaptic current,
//!   `I += dt/τ_syn·(w_in·x − I)`, then the voltage from the new current. `I`: `v += dt·r·x`.
//!   `Threshold`: 1 where `x > threshold`. Every spike is 1.
//! - An `IF` node written by snnc's own export (metadata `reset_amount`) becomes the `if_neuron`
//!   it came from: reset by subtraction, so the round trip is exact.
//! - `LI` (τ, r, v_leak): `v += dt/τ·(v_leak − v + r·I)`, as a `lowpass` whose decay
//!   `e^(−dt/τ')` equals `1 − dt/τ` (up to rounding), on `r·I + v_leak`.
//! - `Delay`: `round(delay/dt)` one-step states; a cycle through a Delay is a recurrent network.
//! - `Affine`/`Linear` → `dense` (+ `bias`); `Scale` → `scale`; `Conv1d`/`Conv2d` → `pad` when
//!   the padding is explicit, `conv`, `bias`; `AvgPool2d` → `pad`, `avg_pool`; `SumPool2d` → the
//!   same times the window size; `Flatten` → `transpose` to channels first and `reshape`.

use crate::{Field, Graph, NirError, Node, Primitive};
use snnc_ir::builder::Builder;
use snnc_ir::{
    ConvAttrs, Module, Neuron, NeuronModel, Op, Operand, OutputKind, Padding, PoolAttrs, StateId,
    StateInit,
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
        delays: HashMap::new(),
        warnings: Vec::new(),
    };
    // A Delay's output is its states, readable from the start of the step: create them first,
    // so nodes before it in the order (a feedback loop) can read it.
    for (n, p) in &flat.nodes {
        if p.kind == "Delay" {
            im.delay_states(n, p)?;
        }
    }
    for n in &order {
        im.node(n, &flat)?;
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
        if f.nodes[a].kind == "Delay" {
            continue;
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
            "a cycle runs through {} without a Delay node: NIR's nodes would have to wait for each other within one step",
            list(&stuck)
        )));
    }
    Ok(order)
}

struct Importer {
    b: Builder,
    dt: f64,
    /// Each node's output: what reads it and its NIR shape.
    vals: HashMap<String, (Operand, Vec<usize>)>,
    /// Each Delay node's chain of states, oldest last.
    delays: HashMap<String, Vec<StateId>>,
    warnings: Vec<String>,
}

type Out = Result<(Operand, Vec<usize>), NirError>;

/// The snnc (channels-last) shape of a NIR (channels-first) shape.
fn snnc_shape(nir: &[usize]) -> Vec<usize> {
    match nir.len() {
        0 | 1 => nir.to_vec(),
        _ => nir[1..]
            .iter()
            .copied()
            .chain(std::iter::once(nir[0]))
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

fn uniform(v: &[f32]) -> Option<f32> {
    v.iter().all(|&x| x == v[0]).then(|| v[0])
}

impl Importer {
    fn nerr(&self, node: &str, p: &Primitive, message: impl Into<String>) -> NirError {
        NirError::Node {
            node: node.to_string(),
            kind: p.kind.clone(),
            message: message.into(),
        }
    }

    /// Add one single-result op.
    fn op(
        &mut self,
        node: &str,
        p: &Primitive,
        op: Op,
        args: &[Operand],
        name: &str,
    ) -> Result<Operand, NirError> {
        match self.b.op1(op, args, name) {
            Ok(v) => Ok(Operand::Value(v)),
            Err(e) => Err(self.nerr(node, p, e.to_string())),
        }
    }

    fn shape_of(&self, o: Operand) -> Vec<usize> {
        self.b
            .module()
            .operand_type(o)
            .map(|t| t.shape.clone())
            .unwrap_or_default()
    }

    /// A float field, as (shape, data).
    fn floats<'p>(
        &self,
        node: &str,
        p: &'p Primitive,
        field: &str,
    ) -> Result<(&'p [usize], &'p [f32]), NirError> {
        match p.fields.get(field) {
            Some(Field::Float { shape, data })
                if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(data.len()) =>
            {
                Err(self.nerr(
                    node,
                    p,
                    format!(
                        "field `{field}` declares shape {shape:?} but holds {} values",
                        data.len()
                    ),
                ))
            }
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

    /// An integer field as `n` non-negative sizes (one value broadcasts).
    fn sizes(
        &self,
        node: &str,
        p: &Primitive,
        field: &str,
        n: usize,
        default: Option<usize>,
    ) -> Result<Vec<usize>, NirError> {
        let v: Vec<usize> = match p.fields.get(field) {
            Some(Field::Int { data, .. }) if data.iter().all(|&x| (0..=1 << 20).contains(&x)) => {
                data.iter().map(|&x| x as usize).collect()
            }
            Some(Field::Float { data, .. })
                if data
                    .iter()
                    .all(|&x| (0.0..1e6).contains(&x) && x.fract() == 0.0) =>
            {
                data.iter().map(|&x| x as usize).collect()
            }
            None => match default {
                Some(d) => vec![d],
                None => return Err(self.nerr(node, p, format!("missing field `{field}`"))),
            },
            Some(_) => {
                return Err(self.nerr(
                    node,
                    p,
                    format!("field `{field}` must hold non-negative integers"),
                ));
            }
        };
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

    /// A per-neuron parameter: an array of the data's NIR shape, or one value, in snnc order.
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
        if data.iter().any(|x| !x.is_finite()) {
            return Err(self.nerr(
                node,
                p,
                format!("field `{field}` holds a value that is not finite"),
            ));
        }
        Ok(to_snnc(nshape, data))
    }

    /// A time constant that must be one value for the whole node, longer than `dt`.
    fn time_constant(
        &self,
        node: &str,
        p: &Primitive,
        field: &str,
        nshape: &[usize],
    ) -> Result<f64, NirError> {
        let tau = self.param(node, p, field, nshape, None)?;
        let Some(t) = uniform(&tau) else {
            return Err(self.nerr(
                node,
                p,
                format!("`{field}` differs between neurons; snnc takes one per node"),
            ));
        };
        let t = t as f64;
        if !(t >= self.dt && t.is_finite()) {
            return Err(self.nerr(node, p, format!(
                "`{field}` = {t} s is shorter than dt = {} s: forward Euler would overshoot (import with a smaller --dt)",
                self.dt
            )));
        }
        Ok(t)
    }

    /// The summed input of a node.
    fn input(&mut self, node: &str, p: &Primitive, f: &Flat) -> Out {
        let srcs: Vec<String> = f
            .edges
            .iter()
            .filter(|(_, d)| d == node)
            .map(|(s, _)| s.clone())
            .collect();
        if srcs.is_empty() {
            return Err(self.nerr(node, p, "has no input edge"));
        }
        let mut ins = Vec::new();
        for s in &srcs {
            match self.vals.get(s.as_str()) {
                Some(v) => ins.push(v.clone()),
                None => return Err(self.nerr(node, p, format!("input `{s}` produced nothing"))),
            }
        }
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
            return Ok(ins.swap_remove(0));
        }
        let args: Vec<Operand> = ins.iter().map(|(v, _)| *v).collect();
        let v = self.op(node, p, Op::Add, &args, &format!("{node}.sum"))?;
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
        let out = match kind {
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
                let v = Operand::Value(self.b.input(node, &nshape));
                (self.transposed(node, p, v, &nshape, true)?, nshape)
            }
            "Output" => {
                let (x, nshape) = self.input(node, p, f)?;
                let y = self.transposed(node, p, x, &nshape, false)?;
                self.b.output(node, y);
                (x, nshape)
            }
            "Affine" | "Linear" => self.affine(node, p, f)?,
            "Scale" => {
                let (x, nshape) = self.input(node, p, f)?;
                let s = self.param(node, p, "scale", &nshape, None)?;
                (self.scale(node, p, x, &nshape, s, node)?, nshape)
            }
            "Conv1d" | "Conv2d" => self.conv(node, p, f)?,
            "AvgPool2d" | "SumPool2d" => self.pool(node, p, f)?,
            "Flatten" => self.flatten_node(node, p, f)?,
            "IF" => {
                let (x, nshape) = self.input(node, p, f)?;
                if let Some(Field::Float { data, .. }) = p.metadata.get("reset_amount")
                    && data.len() == 1
                {
                    (self.if_subtract(node, p, x, &nshape, data[0])?, nshape)
                } else {
                    (self.leaky(node, p, x, &nshape, None, node)?, nshape)
                }
            }
            "LIF" => {
                let (x, nshape) = self.input(node, p, f)?;
                let tau = self.time_constant(node, p, "tau", &nshape)?;
                (
                    self.leaky(node, p, x, &nshape, Some((tau, "v_leak")), node)?,
                    nshape,
                )
            }
            "CubaLIF" => {
                let (x, nshape) = self.input(node, p, f)?;
                let syn = self.synapse(node, p, x, &nshape)?;
                let tau = self.time_constant(node, p, "tau_mem", &nshape)?;
                (
                    self.leaky(node, p, syn, &nshape, Some((tau, "v_leak")), node)?,
                    nshape,
                )
            }
            "LI" => {
                let (x, nshape) = self.input(node, p, f)?;
                let tau = self.time_constant(node, p, "tau", &nshape)?;
                (self.li(node, p, x, &nshape, tau, node)?, nshape)
            }
            "CubaLI" => {
                let (x, nshape) = self.input(node, p, f)?;
                let syn = self.synapse(node, p, x, &nshape)?;
                let tau = self.time_constant(node, p, "tau_mem", &nshape)?;
                (self.li(node, p, syn, &nshape, tau, node)?, nshape)
            }
            "I" => {
                let (x, nshape) = self.input(node, p, f)?;
                let r = self.param(node, p, "r", &nshape, Some(1.0))?;
                let dt = self.dt as f32;
                let step = r.iter().map(|&r| r * dt).collect();
                let inc = self.scale(node, p, x, &nshape, step, &format!("{node}.step"))?;
                let state =
                    self.b
                        .state(&format!("{node}.v"), &snnc_shape(&nshape), StateInit::Zeros);
                let v = self.op(node, p, Op::Add, &[state.into(), inc], node)?;
                self.b.next(state, v);
                (v, nshape)
            }
            "Threshold" => {
                let (x, nshape) = self.input(node, p, f)?;
                let theta = self.param(node, p, "threshold", &nshape, None)?;
                // v = x − θ + 1 each step with nothing kept: a spike exactly when x > θ.
                let shifted: Vec<f32> = theta.iter().map(|&t| 1.0 - t).collect();
                let sshape = snnc_shape(&nshape);
                let c = self
                    .b
                    .constant_f32(&format!("{node}.offset"), &sshape, shifted);
                let j = self.op(
                    node,
                    p,
                    Op::Bias,
                    &[x, c.into()],
                    &format!("{node}.shifted"),
                )?;
                let state = self
                    .b
                    .state(&format!("{node}.v"), &sshape, StateInit::Zeros);
                let op = Op::Neuron(Neuron {
                    model: NeuronModel::LeakyIf { decay: 0.0 },
                    gain: 1.0 / self.dt,
                    amplitude: self.dt,
                });
                let r = self
                    .b
                    .op_named(op, &[j, state.into()], &[node, &format!("{node}.v1")]);
                let r = r.map_err(|e| self.nerr(node, p, e.to_string()))?;
                self.b.next(state, r[1]);
                (Operand::Value(r[0]), nshape)
            }
            "Delay" => {
                let (x, nshape) = self.input(node, p, f)?;
                let chain = self.delays.get(node).cloned().unwrap_or_default();
                let declared = self.vals.get(node).map(|v| v.1.clone()).unwrap_or_default();
                if declared != nshape {
                    return Err(self.nerr(
                        node,
                        p,
                        format!("`delay` has shape {declared:?}; its input has shape {nshape:?}"),
                    ));
                }
                let mut prev = x;
                for s in chain {
                    self.b.next(s, prev);
                    prev = Operand::State(s);
                }
                return Ok(());
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

    /// The states of a Delay node: `round(delay/dt)` steps of one-step states; the node's output
    /// is the last of them.
    fn delay_states(&mut self, node: &str, p: &Primitive) -> Result<(), NirError> {
        let (shape, data) = self.floats(node, p, "delay")?;
        let nshape = if shape.is_empty() {
            vec![1]
        } else {
            shape.to_vec()
        };
        let nshape = self.shape_field(node, p, nshape)?;
        let Some(d) = uniform(data) else {
            return Err(self.nerr(
                node,
                p,
                "delays differ between neurons; snnc takes one per node",
            ));
        };
        let steps = (d as f64 / self.dt).round();
        if !(1.0..=10_000.0).contains(&steps)
            || ((d as f64) - steps * self.dt).abs() > 1e-3 * self.dt.max(d as f64)
        {
            return Err(self.nerr(
                node,
                p,
                format!(
                    "a delay of {d} s is not a whole number (1 to 10000) of steps of dt = {} s",
                    self.dt
                ),
            ));
        }
        let sshape = snnc_shape(&nshape);
        let chain: Vec<StateId> = (0..steps as usize)
            .map(|k| {
                self.b
                    .state(&format!("{node}.d{k}"), &sshape, StateInit::Zeros)
            })
            .collect();
        let last = *chain.last().expect("at least one step");
        self.delays.insert(node.to_string(), chain);
        self.vals
            .insert(node.to_string(), (Operand::State(last), nshape));
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

    /// NIR's channels-first data to snnc's channels-last layout (`last`), or back.
    fn transposed(
        &mut self,
        node: &str,
        p: &Primitive,
        v: Operand,
        nshape: &[usize],
        last: bool,
    ) -> Result<Operand, NirError> {
        let perm: Vec<usize> = match (nshape.len(), last) {
            (2, _) => vec![1, 0],
            (3, true) => vec![1, 2, 0],
            (3, false) => vec![2, 0, 1],
            _ => return Ok(v),
        };
        let name = format!("{node}.{}", if last { "hwc" } else { "chw" });
        self.op(node, p, Op::Transpose { perm }, &[v], &name)
    }

    /// `x · s` elementwise (`s` in snnc order); nothing when every factor is 1.
    fn scale(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        s: Vec<f32>,
        name: &str,
    ) -> Result<Operand, NirError> {
        if s.iter().all(|&v| v == 1.0) && name != node {
            return Ok(x);
        }
        let c = self
            .b
            .constant_f32(&format!("{name}.factor"), &snnc_shape(nshape), s);
        self.op(node, p, Op::Scale, &[x, c.into()], name)
    }

    /// `x + c` elementwise (`c` in snnc order); nothing when every term is 0.
    fn offset(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        c: Vec<f32>,
        name: &str,
    ) -> Result<Operand, NirError> {
        if c.iter().all(|&v| v == 0.0) {
            return Ok(x);
        }
        let k = self
            .b
            .constant_f32(&format!("{name}.offset"), &snnc_shape(nshape), c);
        self.op(node, p, Op::Bias, &[x, k.into()], name)
    }

    /// Explicit symmetric padding: a `pad` op (channels-last) when any is non-zero.
    fn pad(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        pads: &[usize],
    ) -> Result<Operand, NirError> {
        if pads.iter().all(|&q| q == 0) {
            return Ok(x);
        }
        let mut spec: Vec<[usize; 2]> = pads.iter().map(|&q| [q, q]).collect();
        spec.push([0, 0]);
        self.op(
            node,
            p,
            Op::Pad { pads: spec },
            &[x],
            &format!("{node}.pad"),
        )
    }

    fn affine(&mut self, node: &str, p: &Primitive, f: &Flat) -> Out {
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
        let mut y = self.op(node, p, Op::Dense, &[x, kc.into()], node)?;
        if p.kind == "Affine" {
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
            y = self.op(
                node,
                p,
                Op::Bias,
                &[y, bc.into()],
                &format!("{node}.biased"),
            )?;
        }
        Ok((y, vec![o]))
    }

    fn flatten_node(&mut self, node: &str, p: &Primitive, f: &Flat) -> Out {
        let (x, nshape) = self.input(node, p, f)?;
        let int = |k: &str, d: i64| match p.fields.get(k) {
            Some(Field::Int { data, .. }) if data.len() == 1 => data[0],
            _ => d,
        };
        let (start, end) = (int("start_dim", 0), int("end_dim", -1));
        let r = nshape.len() as i64;
        if start != 0 || !(end == -1 || end == r - 1) {
            return Err(self.nerr(node, p, format!(
                "flattens axes {start}..={end} of {nshape:?}; snnc imports a Flatten of every axis (start_dim=0, end_dim=-1)"
            )));
        }
        let y = self.transposed(node, p, x, &nshape, false)?;
        let total: usize = nshape.iter().product();
        if nshape.len() == 1 {
            return Ok((y, nshape));
        }
        let y = self.op(node, p, Op::Reshape { shape: vec![total] }, &[y], node)?;
        Ok((y, vec![total]))
    }

    fn conv(&mut self, node: &str, p: &Primitive, f: &Flat) -> Out {
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
        if let Some(Field::Int { data, .. }) = p.fields.get("input_shape")
            && data
                .iter()
                .map(|&v| v as usize)
                .ne(nshape[1..].iter().copied())
        {
            return Err(self.nerr(
                node,
                p,
                format!(
                    "declares input_shape {data:?}; its input is {:?}",
                    &nshape[1..]
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
        let mut y = self.op(node, p, Op::Conv(attrs), &[x, kc.into()], node)?;
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
            y = self.op(
                node,
                p,
                Op::Bias,
                &[y, bc.into()],
                &format!("{node}.biased"),
            )?;
        }
        let out = self.shape_of(y);
        let nshape_out = std::iter::once(out[d])
            .chain(out[..d].iter().copied())
            .collect();
        Ok((y, nshape_out))
    }

    fn pool(&mut self, node: &str, p: &Primitive, f: &Flat) -> Out {
        let (x, nshape) = self.input(node, p, f)?;
        if nshape.len() != 3 {
            return Err(self.nerr(
                node,
                p,
                format!("input of shape {nshape:?}; expected (C, H, W)"),
            ));
        }
        let kernel = self.sizes(node, p, "kernel_size", 2, None)?;
        let strides = match p.fields.get("stride") {
            Some(_) => self.sizes(node, p, "stride", 2, None)?,
            None => kernel.clone(),
        };
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
        let sum = p.kind == "SumPool2d";
        let name = if sum {
            format!("{node}.mean")
        } else {
            node.to_string()
        };
        let mut y = self.op(node, p, Op::AvgPool(attrs), &[x], &name)?;
        if sum {
            let c = nshape[0];
            let k = (kernel[0] * kernel[1]) as f32;
            let sc = self
                .b
                .constant_f32(&format!("{node}.window"), &[c], vec![k; c]);
            y = self.op(node, p, Op::Scale, &[y, sc.into()], node)?;
        }
        let out = self.shape_of(y);
        Ok((y, vec![out[2], out[0], out[1]]))
    }

    /// An `IF` node written by snnc's export: integrate-and-fire with reset by subtraction of
    /// `amount` (the module's own `if_neuron`, bit for bit).
    fn if_subtract(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        amount: f32,
    ) -> Result<Operand, NirError> {
        let r = self.param(node, p, "r", nshape, Some(1.0))?;
        let theta = self.param(node, p, "v_threshold", nshape, None)?;
        if !(amount > 0.0 && amount.is_finite()) {
            return Err(self.nerr(node, p, format!("reset_amount {amount} must be positive")));
        }
        let gain: Vec<f32> = r.iter().map(|&r| r / amount).collect();
        let v0: Vec<f32> = theta.iter().map(|&t| 1.0 - t / amount).collect();
        self.neuron(node, p, x, nshape, gain, v0, NeuronModel::IfNeuron, node)
    }

    /// NIR's `IF` (no `tau`) or `LIF` as `leaky_if` on `u = (v − v_reset)/(θ − v_reset)`, which
    /// starts at `−v_reset/(θ − v_reset)` (the voltage starts at 0), spikes above 1 and resets to
    /// 0. With a leak (`tau`, and `v_leak` as the name of the rest voltage's field):
    /// `u ← (1 − dt/τ)·u + dt·(r·I + v_leak − v_reset)/(τ·(θ − v_reset))`.
    #[allow(clippy::too_many_arguments)]
    fn leaky(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        leak: Option<(f64, &str)>,
        name: &str,
    ) -> Result<Operand, NirError> {
        let r = self.param(node, p, "r", nshape, Some(1.0))?;
        let theta = self.param(node, p, "v_threshold", nshape, None)?;
        let reset = self.param(node, p, "v_reset", nshape, Some(0.0))?;
        let (tau, rest) = match leak {
            Some((tau, field)) => (tau, self.param(node, p, field, nshape, Some(0.0))?),
            None => (1.0, vec![0.0; r.len()]),
        };
        let n = r.len();
        let (mut gain, mut bias, mut v0) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for k in 0..n {
            let d = theta[k] - reset[k];
            if !(d > 0.0 && d.is_finite()) {
                return Err(self.nerr(node, p, format!(
                    "neuron {k}: v_threshold {} is not above v_reset {}; the reset must lower the voltage",
                    theta[k], reset[k]
                )));
            }
            let c = (1.0 / (tau * d as f64)) as f32;
            gain.push(r[k] * c);
            bias.push((rest[k] - reset[k]) * c);
            v0.push(-reset[k] / d);
        }
        let decay = if leak.is_some() {
            1.0 - self.dt / tau
        } else {
            1.0
        };
        // The leak's rest voltage enters as a constant current: j = gain·I + bias.
        let (x, gain) = if bias.iter().all(|&b| b == 0.0) {
            (x, gain)
        } else {
            let scaled = self.scale(node, p, x, nshape, gain, &format!("{node}.current"))?;
            (
                self.offset(node, p, scaled, nshape, bias, &format!("{node}.rest"))?,
                vec![1.0; n],
            )
        };
        self.neuron(
            node,
            p,
            x,
            nshape,
            gain,
            v0,
            NeuronModel::LeakyIf { decay },
            name,
        )
    }

    /// A spiking population with per-neuron gains and initial voltages; spikes of size 1.
    #[allow(clippy::too_many_arguments)]
    fn neuron(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        gain: Vec<f32>,
        v0: Vec<f32>,
        model: NeuronModel,
        name: &str,
    ) -> Result<Operand, NirError> {
        let sshape = snnc_shape(nshape);
        let (current, g) = match uniform(&gain) {
            Some(g) => (x, g as f64),
            None => (
                self.scale(node, p, x, nshape, gain, &format!("{node}.gain"))?,
                1.0,
            ),
        };
        let init = if v0.iter().all(|&v| v == 0.0) {
            StateInit::Zeros
        } else {
            StateInit::Const(self.b.constant_f32(&format!("{node}.v0"), &sshape, v0))
        };
        let state = self.b.state(&format!("{node}.v"), &sshape, init);
        let op = Op::Neuron(Neuron {
            model,
            gain: g,
            amplitude: self.dt,
        });
        let r = self
            .b
            .op_named(op, &[current, state.into()], &[name, &format!("{name}.v1")]);
        let res = r.map_err(|e| self.nerr(node, p, e.to_string()))?;
        self.b.next(state, res[1]);
        self.b.output_of_kind(
            &format!("spikes/{node}"),
            res[0],
            OutputKind::Spikes {
                population: node.to_string(),
                amplitude: self.dt,
            },
        );
        Ok(Operand::Value(res[0]))
    }

    /// The synaptic current of a `CubaLIF`/`CubaLI`: forward Euler on `τ_syn·İ = −I + w_in·x`.
    fn synapse(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
    ) -> Result<Operand, NirError> {
        let tau = self.time_constant(node, p, "tau_syn", nshape)?;
        let w_in = self.param(node, p, "w_in", nshape, Some(1.0))?;
        let x = self.scale(node, p, x, nshape, w_in, &format!("{node}.w_in"))?;
        self.euler_lowpass(node, p, x, nshape, tau, &format!("{node}.syn"))
    }

    /// `LI` (τ, r, v_leak): `v ← v + dt/τ·(v_leak − v + r·I)`, as a lowpass on `r·I + v_leak`.
    fn li(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        tau: f64,
        name: &str,
    ) -> Result<Operand, NirError> {
        let r = self.param(node, p, "r", nshape, Some(1.0))?;
        let leak = self.param(node, p, "v_leak", nshape, Some(0.0))?;
        let x = self.scale(node, p, x, nshape, r, &format!("{node}.current"))?;
        let x = self.offset(node, p, x, nshape, leak, &format!("{node}.leak"))?;
        self.euler_lowpass(node, p, x, nshape, tau, name)
    }

    /// Forward Euler `y ← y + dt/τ·(x − y)` as snnc's `lowpass`, whose decay `e^(−dt/τ')` is
    /// `1 − dt/τ` for `τ' = −dt/ln(1 − dt/τ)` (up to rounding; `τ = dt` passes `x` through).
    fn euler_lowpass(
        &mut self,
        node: &str,
        p: &Primitive,
        x: Operand,
        nshape: &[usize],
        tau: f64,
        name: &str,
    ) -> Result<Operand, NirError> {
        let keep = 1.0 - self.dt / tau;
        if keep <= 0.0 {
            return Ok(x);
        }
        let tau_zoh = -self.dt / keep.ln();
        let state = self.b.state(
            &format!("{name}.state"),
            &snnc_shape(nshape),
            StateInit::Zeros,
        );
        let y = self.op(
            node,
            p,
            Op::Lowpass { tau: tau_zoh },
            &[x, state.into()],
            name,
        )?;
        self.b.next(state, y);
        Ok(y)
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
        assert!(im.warnings.is_empty());
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

        // A field whose data disagrees with its declared shape (possible in a graph built in
        // code): an error, not an out-of-bounds read.
        let mut g = small();
        if let Some(Node::Prim(p)) = g.nodes.get_mut("lin") {
            p.fields
                .insert("weight".into(), Field::float(&[2, 3], vec![0.; 4]));
        }
        let e = error(&g);
        assert!(e.contains("`lin`") && e.contains("holds 4 values"), "{e}");

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
