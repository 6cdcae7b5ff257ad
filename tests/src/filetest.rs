//! IR filetests. A filetest is a `.sir` module with a header and expectations in comments:
//!
//! ```text
//! ; test: run            (or `verify`, `parse`)
//! ; steps: 3             (run: steps to simulate, default 1)
//! ; target: neural       (verify: the target, default any)
//! ; input %x = [1, -2]   (run: one sample's values, held for every step)
//! module @m dt=0.001
//! ...
//! ; check: step 1 "y" = [1, 0]
//! ```
//!
//! `run` simulates the module on the interpreter and compares every output at every step with
//! the `; check:` lines (numbers within 1e-5 relative, 1e-6 absolute). `verify` compares the
//! verifier's errors (or `ok`) line by line; `parse` the parse error. `SNNC_BLESS=1` rewrites the
//! `; check:` lines with what the run produced.

use ndarray::{ArrayD, IxDyn};
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
    /// Run a pass (`lower-maxpool`, `lower-maxpool-avg`, `spikify`, `simplify`, `fuse`) and compare the printed result.
    Pass(&'static str),
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
                    "pass lower-maxpool" => Kind::Pass("lower-maxpool"),
                    "pass lower-maxpool-avg" => Kind::Pass("lower-maxpool-avg"),
                    "pass spikify" => Kind::Pass("spikify"),
                    "pass simplify" => Kind::Pass("simplify"),
                    "pass fuse" => Kind::Pass("fuse"),
                    "pass merge" => Kind::Pass("merge"),
                    "pass sink-synapses" => Kind::Pass("sink-synapses"),
                    "pass plan-memory" => Kind::Pass("plan-memory"),
                    other => return Err(format!("unknown test kind `{other}`")),
                });
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

    /// Produce the check lines this test yields now.
    pub fn actual(&self) -> Result<Vec<String>, String> {
        match self.kind {
            Kind::Pass("plan-memory") => {
                let m = parse(&self.body).map_err(|e| e.to_string())?;
                let m = snnc_ir::verify(m, self.target).map_err(|e| e.to_string())?;
                Ok(snnc_ir::MemoryPlan::new(&m)
                    .to_string()
                    .lines()
                    .map(String::from)
                    .collect())
            }
            Kind::Pass(pass) => {
                use snnc_compiler::passes::{
                    MaxPoolMode, SpikeOptions, lower_maxpool, simplify, spikify,
                };
                let m = parse(&self.body).map_err(|e| e.to_string())?;
                let out = match pass {
                    "lower-maxpool" => lower_maxpool(&m, MaxPoolMode::Neural),
                    "lower-maxpool-avg" => lower_maxpool(&m, MaxPoolMode::Avg),
                    "simplify" => simplify(&m),
                    "fuse" => snnc_compiler::passes::fuse(&m),
                    "merge" => snnc_compiler::passes::merge(&m),
                    "sink-synapses" => snnc_compiler::passes::sink_synapses(&m),
                    _ => spikify(
                        &m,
                        &SpikeOptions {
                            scale: 100.0,
                            ..SpikeOptions::default()
                        },
                    ),
                }
                .map_err(|e| e.to_string())?;
                let errors = snnc_ir::check(&out, self.target);
                if !errors.is_empty() {
                    return Err(format!(
                        "the result does not verify:\n{}",
                        snnc_ir::VerifyErrors(errors)
                    ));
                }
                Ok(out.to_string().lines().map(str::to_string).collect())
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
                Ok(snnc_ir::VerifyErrors(errors)
                    .render(Some(&map))
                    .lines()
                    .map(str::to_string)
                    .collect())
            }
            Kind::Run => {
                let m = parse(&self.body).map_err(|e| e.to_string())?;
                let m = verify(m, self.target).map_err(|e| e.to_string())?;
                let mut sim = Simulator::new(&m, Backend::Interp, 1).map_err(|e| e.to_string())?;
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
                    arrays.push(ArrayD::from_shape_vec(IxDyn(&shape), vals).map_err(|_| {
                        format!("input %{} needs {} values", d.name, d.ty.num_elements())
                    })?);
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
        }
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
    let actual = t.actual().map_err(|e| format!("{name}: {e}"))?;
    if t.matches(&actual) {
        return Ok(None);
    }
    let blessed = t.blessed(&actual);
    if bless {
        return Ok(Some(blessed));
    }
    let diff = similar::TextDiff::from_lines(text, &blessed);
    Err(format!(
        "{name}: expectations differ (SNNC_BLESS=1 rewrites them)\n{}",
        diff.unified_diff()
            .context_radius(3)
            .header("expected", "actual")
    ))
}

/// True when `SNNC_BLESS=1`.
pub fn bless_requested() -> bool {
    std::env::var("SNNC_BLESS").is_ok_and(|v| v == "1")
}
