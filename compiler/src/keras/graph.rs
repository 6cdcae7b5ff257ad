//! The layer graph of a Keras model config: layers, the calls made of them, and the tensors
//! each call reads. Both Keras 3 (`__keras_tensor__` with `keras_history`) and Keras 2 (nested
//! lists) inbound-node encodings; Sequential, Functional and nested models.

use super::ModelError;
use petgraph::graph::DiGraph;
use serde_json::Value;
use std::collections::HashMap;

/// A tensor produced by a layer call: `layer`'s `node`-th call, output `tensor`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorRef {
    /// Producing layer.
    pub layer: String,
    /// Which call of it.
    pub node: usize,
    /// Which of its outputs.
    pub tensor: usize,
}

impl std::fmt::Display for TensorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}][{}]", self.layer, self.node, self.tensor)
    }
}

/// One layer of a container.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Layer name (unique in its container).
    pub name: String,
    /// Keras class name.
    pub class: String,
    /// The layer's `config` object.
    pub config: Value,
    /// For each call, the tensors it reads.
    pub calls: Vec<Vec<TensorRef>>,
    /// For a nested model, its own graph.
    pub inner: Option<Container>,
}

/// A model: its layers in config order, its inputs and outputs.
#[derive(Clone, Debug)]
pub struct Container {
    /// Model name.
    pub name: String,
    /// `Sequential` or `Functional` (or `Model`).
    pub class: String,
    /// Layers in config order.
    pub layers: Vec<Layer>,
    /// Input tensors (each an InputLayer's output).
    pub inputs: Vec<TensorRef>,
    /// Output tensors.
    pub outputs: Vec<TensorRef>,
    /// The references are Keras 2's (`[layer, node, tensor, kwargs]` lists): a nested model's
    /// node 0 there is the node its own construction made, so its calls are nodes 1, 2, …
    /// (Keras 3 and the chains snnc builds for Sequential models count calls from 0).
    pub keras2_nodes: bool,
}

fn cfg_err(msg: impl Into<String>) -> ModelError {
    ModelError::Config(msg.into())
}

/// Classes that hold a nested model.
pub fn is_model_class(class: &str) -> bool {
    matches!(class, "Sequential" | "Functional" | "Model")
}

/// Parse the top-level `{"class_name", "config"}` object.
pub fn parse_model(v: &Value) -> Result<Container, ModelError> {
    let class = v
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| cfg_err("no `class_name` at the top level; is this a Keras model?"))?;
    if !is_model_class(class) {
        return Err(cfg_err(format!(
            "the top-level object is a `{class}`, expected a Sequential or Functional model"
        )));
    }
    let config = v
        .get("config")
        .ok_or_else(|| cfg_err("no `config` at the top level"))?;
    parse_container(class, config)
}

fn layer_name(v: &Value) -> Option<String> {
    v.get("name")
        .or_else(|| v.get("config").and_then(|c| c.get("name")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A `[name, node, tensor]` triple (Keras 2 adds a fourth kwargs element).
fn triple(v: &Value) -> Option<TensorRef> {
    let a = v.as_array()?;
    Some(TensorRef {
        layer: a.first()?.as_str()?.to_string(),
        node: a.get(1)?.as_u64()? as usize,
        tensor: a.get(2)?.as_u64()? as usize,
    })
}

/// `input_layers` / `output_layers`: one flat triple or a list of triples.
fn triples(v: Option<&Value>, what: &str) -> Result<Vec<TensorRef>, ModelError> {
    let v = v.ok_or_else(|| cfg_err(format!("a functional model without `{what}`")))?;
    if let Some(t) = triple(v) {
        return Ok(vec![t]);
    }
    v.as_array()
        .and_then(|a| a.iter().map(triple).collect::<Option<Vec<_>>>())
        .ok_or_else(|| {
            cfg_err(format!(
                "`{what}` is not a list of [layer, node, tensor] triples"
            ))
        })
}

/// Every `__keras_tensor__` in a Keras 3 call's arguments, depth first.
fn keras3_tensors(v: &Value, out: &mut Vec<TensorRef>) {
    match v {
        Value::Object(o) => {
            if o.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__") {
                if let Some(t) = o
                    .get("config")
                    .and_then(|c| c.get("keras_history"))
                    .and_then(triple)
                {
                    out.push(t);
                }
            } else {
                o.values().for_each(|x| keras3_tensors(x, out));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keras3_tensors(x, out)),
        _ => {}
    }
}

fn parse_inbound(layer: &str, v: Option<&Value>) -> Result<Vec<Vec<TensorRef>>, ModelError> {
    let Some(nodes) = v.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut calls = Vec::new();
    for node in nodes {
        let mut refs = Vec::new();
        match node {
            Value::Object(o) => keras3_tensors(o.get("args").unwrap_or(&Value::Null), &mut refs),
            Value::Array(items) => {
                for it in items {
                    refs.push(triple(it).ok_or_else(|| {
                        cfg_err(format!("layer `{layer}`: malformed inbound node {it}"))
                    })?);
                }
            }
            other => {
                return Err(cfg_err(format!(
                    "layer `{layer}`: malformed inbound node {other}"
                )));
            }
        }
        calls.push(refs);
    }
    Ok(calls)
}

fn parse_layer(v: &Value) -> Result<Layer, ModelError> {
    let class = v
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| cfg_err(format!("a layer without `class_name`: {}", short(v))))?
        .to_string();
    let name = layer_name(v).ok_or_else(|| cfg_err(format!("a `{class}` layer without a name")))?;
    let config = v.get("config").cloned().unwrap_or(Value::Null);
    let calls = parse_inbound(&name, v.get("inbound_nodes"))?;
    let inner = if is_model_class(&class) {
        Some(parse_container(&class, &config)?)
    } else {
        None
    };
    Ok(Layer {
        name,
        class,
        config,
        calls,
        inner,
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(80).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// The batch shape an input layer (or the first layer of a Sequential) declares.
pub fn declared_batch_shape(config: &Value) -> Option<&Vec<Value>> {
    config
        .get("batch_shape")
        .or_else(|| config.get("batch_input_shape"))
        .and_then(Value::as_array)
}

fn parse_container(class: &str, config: &Value) -> Result<Container, ModelError> {
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("model")
        .to_string();
    let raw_layers = config
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| cfg_err(format!("model `{name}` has no `layers` list")))?;
    let mut layers = raw_layers
        .iter()
        .map(parse_layer)
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashMap::new();
    for l in &layers {
        if seen.insert(l.name.clone(), ()).is_some() {
            return Err(cfg_err(format!(
                "model `{name}` has two layers named `{}`",
                l.name
            )));
        }
    }
    if class == "Sequential" {
        // Chain the layers; synthesise the input layer Keras 2 leaves implicit.
        if layers.first().is_none_or(|l| l.class != "InputLayer") {
            let shape = layers
                .first()
                .and_then(|l| declared_batch_shape(&l.config))
                .cloned()
                .or_else(|| {
                    config
                        .get("build_input_shape")
                        .and_then(Value::as_array)
                        .cloned()
                })
                .ok_or_else(|| {
                    cfg_err(format!("Sequential model `{name}` declares no input shape"))
                })?;
            let input_name = format!("{name}_input");
            layers.insert(
                0,
                Layer {
                    name: input_name,
                    class: "InputLayer".into(),
                    config: serde_json::json!({ "batch_shape": shape }),
                    calls: Vec::new(),
                    inner: None,
                },
            );
        }
        for i in 1..layers.len() {
            let prev = layers[i - 1].name.clone();
            layers[i].calls = vec![vec![TensorRef {
                layer: prev,
                node: 0,
                tensor: 0,
            }]];
        }
        let first = TensorRef {
            layer: layers[0].name.clone(),
            node: 0,
            tensor: 0,
        };
        let last = TensorRef {
            layer: layers.last().expect("input layer exists").name.clone(),
            node: 0,
            tensor: 0,
        };
        return Ok(Container {
            name,
            class: class.into(),
            layers,
            inputs: vec![first],
            outputs: vec![last],
            keras2_nodes: false,
        });
    }
    let inputs = triples(config.get("input_layers"), "input_layers")?;
    let outputs = triples(config.get("output_layers"), "output_layers")?;
    let keras2_nodes = raw_layers.iter().any(|l| {
        l.get("inbound_nodes")
            .and_then(Value::as_array)
            .is_some_and(|nodes| nodes.iter().any(Value::is_array))
    });
    Ok(Container {
        name,
        class: class.into(),
        layers,
        inputs,
        outputs,
        keras2_nodes,
    })
}

impl Container {
    /// Layer index by name.
    pub fn index(&self) -> HashMap<&str, usize> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect()
    }
}

/// The calls of a container in an order where every call's inputs come first: config order
/// whenever it allows, and an error naming a layer on a cycle. Returns `(layer, call)` pairs.
pub fn call_order(c: &Container) -> Result<Vec<(usize, usize)>, ModelError> {
    let index = c.index();
    let mut g: DiGraph<(usize, usize), ()> = DiGraph::new();
    let mut node_of = HashMap::new();
    for (i, l) in c.layers.iter().enumerate() {
        let n_calls = if l.class == "InputLayer" {
            1
        } else {
            l.calls.len()
        };
        for k in 0..n_calls {
            node_of.insert((i, k), g.add_node((i, k)));
        }
    }
    for (i, l) in c.layers.iter().enumerate() {
        for (k, call) in l.calls.iter().enumerate() {
            for t in call {
                let &p = index
                    .get(t.layer.as_str())
                    .ok_or_else(|| ModelError::DanglingInput {
                        layer: l.name.clone(),
                        tensor: t.to_string(),
                    })?;
                let producer = resolve_node(c, &c.layers[p], t.node).ok_or_else(|| {
                    ModelError::DanglingInput {
                        layer: l.name.clone(),
                        tensor: t.to_string(),
                    }
                })?;
                g.add_edge(node_of[&(p, producer)], node_of[&(i, k)], ());
            }
        }
    }
    if let Err(cycle) = petgraph::algo::toposort(&g, None) {
        let (i, _) = g[cycle.node_id()];
        return Err(ModelError::Cycle(c.layers[i].name.clone()));
    }
    // Config order where possible: repeatedly take the first ready call.
    let mut done = vec![false; g.node_count()];
    let mut order = Vec::with_capacity(g.node_count());
    while order.len() < g.node_count() {
        let next = g
            .node_indices()
            .find(|&n| {
                !done[n.index()]
                    && g.neighbors_directed(n, petgraph::Direction::Incoming)
                        .all(|p| done[p.index()])
            })
            .expect("acyclic graphs always have a ready node");
        done[next.index()] = true;
        order.push(g[next]);
    }
    Ok(order)
}

/// Map a node index of a reference in container `c` to the index of the layer's call: the same
/// number, except for a nested model in a Keras 2 config, whose calls are numbered from 1 (see
/// [`Container::keras2_nodes`]). `None` when the reference names no call.
pub fn resolve_node(c: &Container, layer: &Layer, node: usize) -> Option<usize> {
    let n = if layer.class == "InputLayer" {
        1
    } else {
        layer.calls.len()
    };
    let call = if c.keras2_nodes && layer.inner.is_some() {
        node.checked_sub(1)?
    } else {
        node
    };
    (call < n).then_some(call)
}
