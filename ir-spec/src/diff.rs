//! Structural difference of two modules: what a reviewer wants to see when a pass or a new
//! model version changes the IR. Instructions are matched by their first result's name, then
//! the rest by position; constants, states and outputs by name.

use crate::module::{ConstData, Module, Operand};
use crate::print::{inst_text, quote, state_init_text};
use std::collections::{HashMap, HashSet};

/// Tolerance for comparing constant values: equal when `|a − b| ≤ atol + rtol·|b|`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

/// Every difference between `a` and `b`, one human-readable line each, in module order.
/// Empty when the modules are equal (within `tol` for constant values).
pub fn diff(a: &Module, b: &Module, tol: Tolerance) -> Vec<String> {
    let mut out = Vec::new();
    if a.name != b.name {
        out.push(format!("module name: @{} → @{}", a.name, b.name));
    }
    if a.dt != b.dt {
        out.push(format!("dt: {} → {}", a.dt, b.dt));
    }

    let inputs = |m: &Module| -> Vec<(String, String)> {
        m.inputs
            .iter()
            .map(|v| (m.value(*v).name.clone(), m.value(*v).ty.to_string()))
            .collect()
    };
    keyed(&mut out, "input", "%", &inputs(a), &inputs(b));

    let states = |m: &Module| -> Vec<(String, String)> {
        m.states
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    format!("{} = {}", s.ty, state_init_text(m, &s.init)),
                )
            })
            .collect()
    };
    keyed(&mut out, "state", "$", &states(a), &states(b));

    // Constants: by name; values within tolerance.
    let bc: HashMap<&str, usize> = b
        .constants
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let ac: HashSet<&str> = a.constants.iter().map(|c| c.name.as_str()).collect();
    for c in &a.constants {
        let Some(&j) = bc.get(c.name.as_str()) else {
            out.push(format!("const @{}: removed ({})", c.name, c.ty));
            continue;
        };
        let d = &b.constants[j];
        if c.ty != d.ty {
            out.push(format!("const @{}: type {} → {}", c.name, c.ty, d.ty));
            continue;
        }
        if let Some(line) = compare_data(&c.name, &c.data, &d.data, tol) {
            out.push(line);
        }
    }
    for d in &b.constants {
        if !ac.contains(d.name.as_str()) {
            out.push(format!("const @{}: added ({})", d.name, d.ty));
        }
    }

    // Instructions: by first result name, then by position among the unmatched.
    let key = |m: &Module, i: usize| {
        m.insts[i]
            .results
            .first()
            .map(|r| m.value(*r).name.clone())
            .unwrap_or_default()
    };
    let b_by_name: HashMap<String, usize> = (0..b.insts.len()).map(|i| (key(b, i), i)).collect();
    let mut pairs = Vec::new();
    let mut a_left = Vec::new();
    let mut b_used = vec![false; b.insts.len()];
    for i in 0..a.insts.len() {
        match b_by_name.get(&key(a, i)) {
            Some(&j) if !b_used[j] => {
                b_used[j] = true;
                pairs.push((i, j));
            }
            _ => a_left.push(i),
        }
    }
    let mut b_left: Vec<usize> = (0..b.insts.len()).filter(|&j| !b_used[j]).collect();
    let n = a_left.len().min(b_left.len());
    for k in 0..n {
        pairs.push((a_left[k], b_left[k]));
    }
    let a_removed: Vec<usize> = a_left.split_off(n);
    let b_added: Vec<usize> = b_left.split_off(n);
    pairs.sort();
    for (i, j) in pairs {
        let (x, y) = (inst_line(a, i), inst_line(b, j));
        if x != y {
            out.push(format!("changed: {x}\n     to: {y}"));
        }
    }
    for i in a_removed {
        out.push(format!("removed: {}", inst_line(a, i)));
    }
    for j in b_added {
        out.push(format!("  added: {}", inst_line(b, j)));
    }

    let nexts = |m: &Module| -> Vec<(String, String)> {
        m.nexts
            .iter()
            .map(|n| {
                (
                    m.operand_name(Operand::State(n.state)),
                    m.operand_name(n.value),
                )
            })
            .collect()
    };
    keyed(&mut out, "next", "", &nexts(a), &nexts(b));
    let outputs = |m: &Module| -> Vec<(String, String)> {
        m.outputs
            .iter()
            .map(|o| (quote(&o.name), m.operand_name(o.value)))
            .collect()
    };
    keyed(&mut out, "output", "", &outputs(a), &outputs(b));
    out
}

/// Compare named entries described by one string each.
fn keyed(
    out: &mut Vec<String>,
    what: &str,
    sigil: &str,
    a: &[(String, String)],
    b: &[(String, String)],
) {
    let bm: HashMap<&str, &str> = b.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let am: HashSet<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
    for (k, v) in a {
        match bm.get(k.as_str()) {
            None => out.push(format!("{what} {sigil}{k}: removed ({v})")),
            Some(w) if *w != v => out.push(format!("{what} {sigil}{k}: {v} → {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !am.contains(k.as_str()) {
            out.push(format!("{what} {sigil}{k}: added ({v})"));
        }
    }
}

fn inst_line(m: &Module, i: usize) -> String {
    inst_text(m, &m.insts[i])
}

fn compare_data(name: &str, a: &ConstData, b: &ConstData, tol: Tolerance) -> Option<String> {
    let as_f64 = |d: &ConstData| -> Option<Vec<f64>> {
        match d {
            ConstData::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            ConstData::I32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            ConstData::External { .. } => None,
        }
    };
    match (as_f64(a), as_f64(b)) {
        (Some(x), Some(y)) => {
            let (mut max_abs, mut max_rel, mut beyond) = (0.0f64, 0.0f64, 0usize);
            for (p, q) in x.iter().zip(&y) {
                let d = (p - q).abs();
                let within = d <= tol.atol + tol.rtol * q.abs() || (p.is_nan() && q.is_nan());
                let bad = !within;
                if bad {
                    beyond += 1;
                }
                max_abs = max_abs.max(d);
                if q.abs() > 0.0 {
                    max_rel = max_rel.max(d / q.abs());
                }
            }
            (beyond > 0).then(|| {
                format!(
                    "const @{name}: {beyond} of {} values differ (max abs diff {max_abs:e}, max rel diff {max_rel:e})",
                    x.len()
                )
            })
        }
        _ => (a.checksum() != b.checksum()).then(|| {
            format!(
                "const @{name}: checksum #{:08x} → #{:08x}",
                a.checksum(),
                b.checksum()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const A: &str = "module @m dt=0.001
input %x : f32[2]
const @w : f32[2] = [1, 2]
state $v : f32[2] = zeros

%y = relu %x : f32[2]
%z = bias %y, @w : f32[2]
next $v = %z
output \"z\" = %z
";

    #[test]
    fn equal_modules_have_no_differences() {
        let a = parse(A).unwrap();
        assert!(diff(&a, &a, Tolerance::default()).is_empty());
    }

    #[test]
    fn reports_ops_constants_states_and_outputs() {
        let a = parse(A).unwrap();
        let b = parse(
            &A.replace("[1, 2]", "[1, 2.5]")
                .replace("relu %x", "sigmoid %x")
                .replace(
                    "state $v : f32[2] = zeros",
                    "state $v : f32[2] = uniform(0, 1, seed=0)",
                )
                .replace("output \"z\" = %z", "output \"y\" = %y"),
        )
        .unwrap();
        let d = diff(&a, &b, Tolerance::default());
        let text = d.join("\n");
        assert!(
            text.contains("changed: %y = relu %x : f32[2]\n     to: %y = sigmoid %x : f32[2]"),
            "{text}"
        );
        assert!(
            text.contains("const @w: 1 of 2 values differ (max abs diff 5e-1"),
            "{text}"
        );
        assert!(
            text.contains("state $v: f32[2] = zeros → f32[2] = uniform(0, 1, seed=0)"),
            "{text}"
        );
        assert!(text.contains("output \"z\": removed (%z)"), "{text}");
        assert!(text.contains("output \"y\": added (%y)"), "{text}");
        assert!(
            diff(
                &a,
                &b,
                Tolerance {
                    rtol: 0.0,
                    atol: 0.6
                }
            )
            .iter()
            .all(|l| !l.contains("@w"))
        );
    }
}
