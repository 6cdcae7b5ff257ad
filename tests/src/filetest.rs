//! IR filetests. A filetest is a `.sir` module with a header and expectations in comments:
//!
//! ```text
//! ; test: run            (or `verify`, `parse`, `pass NAME`, `pass plan-memory`)
//! ; backends: interp jit (run: the backends to run on, each checked; default both)
//! ; steps: 3             (run: steps to simulate, default 1)
//! ; target: neural       (the verification target, default any)
//! ; options: spiking scale=100 max-pool=avg   (pass: the conversion options it runs under)
//! ; input %x = [1, -2]   (run: one sample's values, held for every step)
//! module @m dt=0.001
//! ...
//! ; check: step 1 "y" = [1, 0]
//! ```
//!
//! `run` simulates the module on every backend named and compares every output at every step
//! with the `; check:` lines (numbers within 1e-5 relative, 1e-6 absolute), each backend on its
//! own. `pass NAME` runs the pass of that name from the compiler's one registry
//! ([`snnc_compiler::passes::ALL_PASSES`]) under the `; options:` and compares the printed
//! module; `pass plan-memory` prints the memory plan. `verify` compares the verifier's errors
//! (or `ok`) line by line; `parse` the parse error. `SNNC_BLESS=1` rewrites the `; check:` lines
//! with what the first backend produced.
//!
//! Options: `spiking` (spikify with NengoDL's defaults), `scale=S`, `synapse=T` or
//! `synapse=none`, `swap=lif`, `initial-voltage=V`, `max-pool=neural|avg|keep`.

use ndarray::{ArrayD, IxDyn};
use snnc_compiler::passes::{
    ConvertOptions, InitialVoltage, MaxPoolMode, SpikeOptions, Swap, pass_named,
};
use snnc_ir::ops::format_f32;
use snnc_ir::{Target, parse, parse_with_source_map, verify};
use snnc_runtime::{Backend, Record, Simulator};

/// The kind of a filetest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Run and compare outputs.
    Run,
    /// Verify and compare errors.
    Verify,
    /// Parse and compare the error.
    Parse,
    /// Run the named pass (or print the memory plan, `plan-memory`) and compare the result.
    Pass(String),
}

/// The backends a `run` filetest names.
fn parse_backends(s: &str) -> Result<Vec<Backend>, String> {
    s.split_whitespace()
        .map(|b| match b {
            "interp" => Ok(Backend::Interp),
            "jit" => Ok(Backend::Jit),
            other => Err(format!("unknown backend `{other}` (interp, jit)")),
        })
        .collect()
}

/// The conversion options of an `; options:` line.
fn parse_options(s: &str) -> Result<ConvertOptions, String> {
    let mut opts = ConvertOptions::default();
    let mut spiking = SpikeOptions::default();
    let mut spike = false;
    for word in s.split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("`{word}`: not a number"))
        };
        match key {
            "spiking" => spike = true,
            "scale" => spiking.scale = num(value)?,
            "synapse" if value == "none" => spiking.synapse = None,
            "synapse" => spiking.synapse = Some(num(value)?),
            "swap" if value == "lif" => spiking.relu_neuron = Swap::Lif,
            "swap" if value == "if" => spiking.relu_neuron = Swap::If,
            "initial-voltage" => spiking.initial_voltage = InitialVoltage::Fixed(num(value)?),
            "max-pool" => {
                opts.max_pool = match value {
                    "neural" => MaxPoolMode::Neural,
                    "avg" => MaxPoolMode::Avg,
                    "keep" => MaxPoolMode::Keep,
                    _ => return Err(format!("`{word}`: max-pool is neural, avg or keep")),
                }
            }
            _ => return Err(format!("unknown option `{word}`")),
        }
    }
    opts.spiking = spike.then_some(spiking);
    Ok(opts)
}

/// A parsed filetest.
#[derive(Clone, Debug)]
pub struct FileTest {
    /// Kind.
    pub kind: Kind,
    /// Steps to run.
    pub steps: usize,
    /// Verification target.
    pub target: Target,
    /// Inputs by name (without `%`).
    pub inputs: Vec<(String, Vec<f32>)>,
    /// The `; check:` lines, without the prefix.
    pub checks: Vec<String>,
    /// Backends a `run` test runs on.
    pub backends: Vec<Backend>,
    /// Options a `pass` test runs under.
    pub options: ConvertOptions,
    /// The source without the `; check:` lines.
    pub body: String,
}

const CHECK: &str = "; check: ";

fn parse_list(s: &str) -> Result<Vec<f32>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or(format!("expected [..], got `{s}`"))?;
    if inner.trim().is_empty() {
        return Ok(vec![]);
    }
    inner
        .split(',')
        .map(|x| {
            let x = x.trim();
            match x {
                "nan" => Ok(f32::NAN),
                "inf" => Ok(f32::INFINITY),
                "-inf" => Ok(f32::NEG_INFINITY),
                _ => x
                    .parse::<f32>()
                    .map_err(|_| format!("`{x}` is not a number")),
            }
        })
        .collect()
}

impl FileTest {
    /// Read the header and checks of a filetest.
    pub fn parse(text: &str) -> Result<FileTest, String> {
        let mut t = FileTest {
            kind: Kind::Run,
            steps: 1,
            target: Target::Any,
            inputs: Vec::new(),
            checks: Vec::new(),
            backends: vec![Backend::Interp, Backend::Jit],
            options: ConvertOptions::default(),
            body: String::new(),
        };
        let mut kind = None;
        for line in text.lines() {
            if let Some(c) = line.strip_prefix(CHECK) {
                t.checks.push(c.to_string());
                continue;
            }
            if line.trim() == CHECK.trim() {
                t.checks.push(String::new());
                continue;
            }
            t.body.push_str(line);
            t.body.push('\n');
            if let Some(k) = line.strip_prefix("; test: ") {
                kind = Some(match k.trim() {
                    "run" => Kind::Run,
                    "verify" => Kind::Verify,
                    "parse" => Kind::Parse,
                    pass if pass.starts_with("pass ") => {
                        let name = pass["pass ".len()..].trim();
                        if name != "plan-memory" && pass_named(name).is_none() {
                            return Err(format!("no pass named `{name}`"));
                        }
                        Kind::Pass(name.to_string())
                    }
                    other => return Err(format!("unknown test kind `{other}`")),
                });
            } else if let Some(s) = line.strip_prefix("; backends: ") {
                t.backends = parse_backends(s)?;
            } else if let Some(s) = line.strip_prefix("; options: ") {
                t.options = parse_options(s)?;
            } else if let Some(s) = line.strip_prefix("; steps: ") {
                t.steps = s.trim().parse().map_err(|_| format!("bad steps `{s}`"))?;
            } else if let Some(s) = line.strip_prefix("; target: ") {
                t.target = match s.trim() {
                    "neural" => Target::Neural,
                    "any" => Target::Any,
                    other => return Err(format!("unknown target `{other}`")),
                };
            } else if let Some(s) = line.strip_prefix("; input %") {
                let (name, vals) = s.split_once('=').ok_or("expected `; input %name = [..]`")?;
                t.inputs.push((name.trim().to_string(), parse_list(vals)?));
            }
        }
        t.kind = kind.ok_or("missing `; test: run|verify|parse` header")?;
        while t.body.ends_with("\n\n") {
            t.body.pop();
        }
        Ok(t)
    }

    /// Produce the check lines this test yields now (for `run`, on each backend in turn).
    pub fn actual(&self) -> Result<Vec<Vec<String>>, String> {
        if self.kind == Kind::Run {
            return self
                .backends
                .iter()
                .map(|&b| self.run_on(b))
                .collect::<Result<_, _>>();
        }
        self.result().map(|r| vec![r])
    }

    fn result(&self) -> Result<Vec<String>, String> {
        let lines = |s: String| s.lines().map(str::to_string).collect::<Vec<_>>();
        match &self.kind {
            Kind::Pass(pass) if pass == "plan-memory" => {
                let m = parse(&self.body).map_err(|e| e.to_string())?;
                let m = snnc_ir::verify(m, self.target).map_err(|e| e.to_string())?;
                Ok(lines(snnc_ir::MemoryPlan::new(&m).to_string()))
            }
            Kind::Pass(pass) => {
                let m = parse(&self.body).map_err(|e| e.to_string())?;
                let p = pass_named(pass).ok_or(format!("no pass named `{pass}`"))?;
                let out = match p.run(&m, &self.options).map_err(|e| e.to_string())? {
                    Some(outcome) => outcome.module,
                    None => return Err(format!("`{pass}` has nothing to do under these options")),
                };
                let errors = snnc_ir::check(&out, self.target);
                if !errors.is_empty() {
                    return Err(format!(
                        "the result does not verify:\n{}",
                        snnc_ir::VerifyErrors(errors)
                    ));
                }
                Ok(lines(out.to_string()))
            }
            Kind::Parse => match parse(&self.body) {
                Ok(_) => Ok(vec!["ok".into()]),
                Err(e) => Ok(vec![e.to_string()]),
            },
            Kind::Verify => {
                let (m, map) = parse_with_source_map(&self.body).map_err(|e| e.to_string())?;
                let errors = snnc_ir::check(&m, self.target);
                if errors.is_empty() {
                    return Ok(vec!["ok".into()]);
                }
                Ok(lines(snnc_ir::VerifyErrors(errors).render(Some(&map))))
            }
            Kind::Run => unreachable!("run tests run per backend"),
        }
    }

    fn run_on(&self, backend: Backend) -> Result<Vec<String>, String> {
        let m = parse(&self.body).map_err(|e| e.to_string())?;
        let m = verify(m, self.target).map_err(|e| e.to_string())?;
        let mut sim = Simulator::new(&m, backend, 1).map_err(|e| e.to_string())?;
        let mut arrays = Vec::new();
        for &v in &m.inputs {
            let d = m.value(v);
            let vals = self
                .inputs
                .iter()
                .find(|(n, _)| *n == d.name)
                .map(|(_, v)| v.clone())
                .ok_or(format!("no `; input %{} = [..]` line", d.name))?;
            let mut shape = vec![1];
            shape.extend_from_slice(&d.ty.shape);
            arrays.push(
                ArrayD::from_shape_vec(IxDyn(&shape), vals).map_err(|_| {
                    format!("input %{} needs {} values", d.name, d.ty.num_elements())
                })?,
            );
        }
        let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
        let outs = sim
            .run(self.steps, &views, Record::AllSteps)
            .map_err(|e| e.to_string())?;
        let mut lines = Vec::new();
        for t in 0..self.steps {
            for (k, o) in m.outputs.iter().enumerate() {
                let vals: Vec<String> = outs[k]
                    .index_axis(ndarray::Axis(0), 0)
                    .index_axis(ndarray::Axis(0), t)
                    .iter()
                    .map(|&x| format_f32(x))
                    .collect();
                lines.push(format!(
                    "step {} {:?} = [{}]",
                    t + 1,
                    o.name,
                    vals.join(", ")
                ));
            }
        }
        Ok(lines)
    }

    /// Compare actual to expected check lines; numbers within tolerance for `run` tests.
    pub fn matches(&self, actual: &[String]) -> bool {
        if actual.len() != self.checks.len() {
            return false;
        }
        actual.iter().zip(&self.checks).all(|(a, e)| {
            if a == e {
                return true;
            }
            if self.kind != Kind::Run {
                return false;
            }
            let split = |s: &str| {
                s.split_once(" = ")
                    .map(|(h, v)| (h.to_string(), parse_list(v)))
            };
            match (split(a), split(e)) {
                (Some((ha, Ok(va))), Some((he, Ok(ve)))) => {
                    ha == he
                        && va.len() == ve.len()
                        && va.iter().zip(&ve).all(|(x, y)| {
                            (x.is_nan() && y.is_nan())
                                || x == y
                                || (x - y).abs() <= 1e-6 + 1e-5 * y.abs()
                        })
                }
                _ => false,
            }
        })
    }

    /// The file rewritten with `actual` as its check lines (appended after the body).
    pub fn blessed(&self, actual: &[String]) -> String {
        let mut out = self.body.clone();
        for a in actual {
            out.push_str(CHECK);
            out.push_str(a);
            out.push('\n');
        }
        out
    }
}

/// Run one filetest's text. `Ok(None)` when it passes; `Ok(Some(new_text))` when it fails and
/// `bless` is set; `Err(report)` with a unified diff when it fails.
pub fn run_filetest(name: &str, text: &str, bless: bool) -> Result<Option<String>, String> {
    let t = FileTest::parse(text).map_err(|e| format!("{name}: {e}"))?;
    let results = t.actual().map_err(|e| format!("{name}: {e}"))?;
    let Some(actual) = results.iter().find(|a| !t.matches(a)) else {
        return Ok(None);
    };
    let backend = match (&t.kind, results.iter().position(|a| a == actual)) {
        (Kind::Run, Some(k)) => format!(" on the {:?} backend", t.backends[k]).to_lowercase(),
        _ => String::new(),
    };
    // Blessing writes what every backend agrees on; backends that disagree are a failure.
    if bless && results.iter().all(|a| *a == results[0]) {
        return Ok(Some(t.blessed(&results[0])));
    }
    let expected = t.blessed(actual);
    let diff = similar::TextDiff::from_lines(text, &expected);
    Err(format!(
        "{name}: expectations differ{backend} (SNNC_BLESS=1 rewrites them)\n{}",
        diff.unified_diff()
            .context_radius(3)
            .header("expected", "actual")
    ))
}

/// True when `SNNC_BLESS=1`.
pub fn bless_requested() -> bool {
    std::env::var("SNNC_BLESS").is_ok_and(|v| v == "1")
}
