//! # snnc-report: the figures conversion users diagnose a network with
//!
//! From the numbers of one run (`snnc run --report DIR`), [`write`] draws
//!
//! - `accuracy.svg`/`.png`: accuracy against step, one line per run compared, the ANN's as a
//!   dashed reference line;
//! - `rates.svg`/`.png`: per layer, the distribution of firing rates over its neurons, with the
//!   silent and saturated (at least one spike per step) fractions marked;
//! - `raster.png`: the spikes of one layer's neurons over time for a few samples;
//! - `spikes.svg`/`.png`: spikes and synaptic operations per sample, per layer;
//! - `report.md`, which ties them together with the numbers.
//!
//! Figures are drawn with `plotters` (SVG and bitmap backends); text is laid out and rendered
//! with the DejaVu Sans font compiled into the binary, so a machine without system fonts draws
//! the same figures.

#![deny(missing_docs)]

use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Once;
use thiserror::Error;

/// Why the report could not be written.
#[derive(Debug, Error)]
pub enum ReportError {
    /// Creating the directory or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Drawing a figure failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The figure.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Accuracy at each step of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend entry (the settings of the run).
    pub label: String,
    /// `(step, accuracy in [0, 1])`, steps counted from 1.
    pub points: Vec<(usize, f64)>,
}

/// One neuron population of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The population (the Keras layer it converts, or a max-pool circuit level).
    pub name: String,
    /// Firing rate of every neuron in Hz, averaged over samples and steps.
    pub rates_hz: Vec<f64>,
    /// Spikes per sample over the run.
    pub spikes_per_sample: f64,
    /// Synaptic operations (spikes × fan-out) per sample over the run.
    pub synops_per_sample: f64,
}

impl Layer {
    /// Fraction of neurons that never spiked.
    pub fn silent(&self) -> f64 {
        fraction(&self.rates_hz, |r| r == 0.0)
    }

    /// Fraction of neurons at or above `limit_hz` (one spike per step).
    pub fn saturated(&self, limit_hz: f64) -> f64 {
        fraction(&self.rates_hz, |r| r >= limit_hz * (1.0 - 1e-9))
    }

    /// Mean firing rate over the neurons, Hz.
    pub fn mean_rate(&self) -> f64 {
        self.rates_hz.iter().sum::<f64>() / self.rates_hz.len().max(1) as f64
    }
}

fn fraction(xs: &[f64], f: impl Fn(f64) -> bool) -> f64 {
    xs.iter().filter(|&&x| f(x)).count() as f64 / xs.len().max(1) as f64
}

/// The spikes of one layer for a few samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Raster {
    /// The layer.
    pub layer: String,
    /// Neurons in the layer.
    pub neurons: usize,
    /// The neurons shown (indices into the layer), in order; row `r` of the raster is
    /// `shown[r]`.
    pub shown: Vec<usize>,
    /// Steps per sample.
    pub steps: usize,
    /// The samples shown, in order.
    pub samples: Vec<RasterSample>,
}

/// One sample of a [`Raster`].
#[derive(Clone, Debug, PartialEq)]
pub struct RasterSample {
    /// Its label, if known.
    pub label: Option<i64>,
    /// Its spikes as `(step from 0, row)` pairs.
    pub spikes: Vec<(usize, usize)>,
}

/// Everything one report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What was run (the model file and its settings), for titles.
    pub title: String,
    /// Samples simulated.
    pub samples: usize,
    /// Steps per sample.
    pub steps: usize,
    /// Timestep in seconds (a rate of `1/dt` is one spike per step).
    pub dt: f64,
    /// Accuracy curves (empty without labels).
    pub accuracy: Vec<Series>,
    /// A reference accuracy drawn as a dashed line, e.g. the ANN's (`(label, accuracy)`).
    pub reference: Option<(String, f64)>,
    /// The populations, in network order.
    pub layers: Vec<Layer>,
    /// A raster, if asked for.
    pub raster: Option<Raster>,
}

static FONT: Once = Once::new();

/// Register the embedded font under the family name every figure uses.
fn font() {
    FONT.call_once(|| {
        // DejaVu Sans parses; nothing else can fail here.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draw with both backends: `name.svg` and, if `png`, `name.png`.
fn both(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    png: bool,
    svg: bool,
    draw: &dyn for<'a> Fn(Canvas<'a>) -> DrawResult,
    written: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    let mut run = |path: PathBuf, bitmap: bool| -> Result<(), ReportError> {
        let canvas = if bitmap {
            Canvas::Bitmap(BitMapBackend::new(&path, size).into_drawing_area())
        } else {
            Canvas::Svg(SVGBackend::new(&path, size).into_drawing_area())
        };
        draw(canvas).map_err(|message| ReportError::Draw {
            path: path.clone(),
            message,
        })?;
        written.push(path);
        Ok(())
    };
    if svg {
        run(dir.join(format!("{name}.svg")), false)?;
    }
    if png {
        run(dir.join(format!("{name}.png")), true)?;
    }
    Ok(())
}

/// A drawing area on either backend.
enum Canvas<'a> {
    Svg(DrawingArea<SVGBackend<'a>, Shift>),
    Bitmap(DrawingArea<BitMapBackend<'a>, Shift>),
}

/// Run `$body` with `$area` bound to the canvas's drawing area, whatever its backend.
macro_rules! on_canvas {
    ($canvas:expr, |$area:ident| $body:expr) => {
        match $canvas {
            Canvas::Svg($area) => $body,
            Canvas::Bitmap($area) => $body,
        }
    };
}

fn accuracy_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let steps = r
        .accuracy
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .max()
        .unwrap_or(r.steps)
        .max(2);
    let low = r
        .accuracy
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(r.reference.iter().map(|x| x.1))
        .fold(1.0f64, f64::min);
    // Start the axis at a round number below the lowest point, at most at 0.
    let y0 = ((low * 10.0).floor() / 10.0).clamp(0.0, 0.9) * 100.0;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("Accuracy over time — {}", r.title),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..steps as f64, y0..101f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(steps.min(10))
        .x_desc(format!("step (dt = {} ms)", r.dt * 1e3))
        .y_desc("accuracy (%)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    for (k, s) in r.accuracy.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|&(t, a)| (t as f64, a * 100.0)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    if let Some((label, a)) = &r.reference {
        let y = a * 100.0;
        let dashes = (0..)
            .map(|i| i as f64 * 2.0)
            .take_while(|&x| x < steps as f64);
        chart
            .draw_series(dashes.map(|x| {
                PathElement::new(
                    vec![(x.max(1.0), y), ((x + 1.0).min(steps as f64), y)],
                    BLACK.stroke_width(1),
                )
            }))
            .map_err(err)?
            .label(format!("{label}: {:.1}%", y))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 10, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Histogram of the active neurons' rates in `bins` bins of equal width in log space over
/// `[low, high]`, as fractions of all neurons (silent neurons are left out; rates outside the
/// range go to the end bins).
fn histogram(rates: &[f64], low: f64, high: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins];
    let n = rates.len().max(1) as f64;
    let span = (high / low).ln();
    for &r in rates.iter().filter(|&&r| r > 0.0 && r.is_finite()) {
        let b = ((r / low).ln() / span * bins as f64).floor().max(0.0) as usize;
        h[b.min(bins - 1)] += 1.0 / n;
    }
    h
}

/// The decade range `[10^a, 10^b]` a log axis of these positive values needs.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let a = lo.max(1e-3).log10().floor();
    let b = hi.max(lo * 10.0).log10().ceil();
    (10f64.powf(a), 10f64.powf(b.max(a + 1.0)))
}

fn rates_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let limit = 1.0 / r.dt;
    let root = root
        .titled(
            &format!(
                "Firing rates per layer — {} ({} samples × {} steps; red line: one spike per step)",
                r.title, r.samples, r.steps
            ),
            ("sans-serif", 18),
        )
        .map_err(err)?;
    // One rate axis for every panel: from the lowest rate a run can show (one spike over all
    // samples and steps) to one spike per step or the highest rate.
    let floor = 1.0 / (r.samples.max(1) as f64 * r.steps.max(1) as f64 * r.dt);
    let lowest = r
        .layers
        .iter()
        .flat_map(|l| l.rates_hz.iter().copied())
        .filter(|&x| x > 0.0 && x.is_finite())
        .fold(limit, f64::min)
        .max(floor);
    let highest = r
        .layers
        .iter()
        .flat_map(|l| l.rates_hz.iter().copied())
        .filter(|x| x.is_finite())
        .fold(limit, f64::max)
        .min(1e12);
    let (low, high) = decades(lowest, highest * 1.01);
    let cols = if r.layers.len() > 4 { 3 } else { 2 }.min(r.layers.len().max(1));
    let rows = r.layers.len().div_ceil(cols).max(1);
    let panels = root.split_evenly((rows, cols));
    const BINS: usize = 25;
    for (layer, area) in r.layers.iter().zip(&panels) {
        let h = histogram(&layer.rates_hz, low, high, BINS);
        let ymax = h.iter().cloned().fold(0.0, f64::max).max(1e-3) * 100.0 * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} ({} neurons): {:.0}% silent, {:.1}% saturated",
                    layer.name,
                    layer.rates_hz.len(),
                    layer.silent() * 100.0,
                    layer.saturated(limit) * 100.0
                ),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((low..high).log_scale(), 0f64..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("firing rate of active neurons (Hz, log scale)")
            .y_desc("neurons (%)")
            .x_label_formatter(&|x| si(*x))
            .y_label_formatter(&|y| {
                if ymax < 5.0 {
                    format!("{y:.1}")
                } else {
                    format!("{y:.0}")
                }
            })
            .y_labels(5)
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        let edge = |b: usize| low * (high / low).powf(b as f64 / BINS as f64);
        chart
            .draw_series(h.iter().enumerate().map(|(b, &f)| {
                Rectangle::new(
                    [(edge(b), 0.0), (edge(b + 1), f * 100.0)],
                    PALETTE[0].mix(0.8).filled(),
                )
            }))
            .map_err(err)?;
        // One spike per step: the most a ReLU unit should fire.
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(limit, 0.0), (limit, ymax)],
                PALETTE[3].stroke_width(2),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

fn raster_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    ras: &Raster,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "Spike raster of {} ({} of {} neurons shown)",
                ras.layer,
                ras.shown.len(),
                ras.neurons
            ),
            ("sans-serif", 20),
        )
        .map_err(err)?;
    let panels = root.split_evenly((1, ras.samples.len().max(1)));
    for (k, (RasterSample { label, spikes }, area)) in ras.samples.iter().zip(&panels).enumerate() {
        let rows = ras.shown.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(
                match label {
                    Some(l) => format!("sample {k} (label {l})"),
                    None => format!("sample {k}"),
                },
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(if k == 0 { 52 } else { 16 })
            .build_cartesian_2d(0f64..ras.steps as f64, 0f64..rows as f64)
            .map_err(err)?;
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(format!("step (dt = {} ms)", r.dt * 1e3))
            .disable_mesh()
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 12));
        if k == 0 {
            mesh.y_desc("neuron (row)").y_labels(6);
        } else {
            mesh.y_labels(0);
        }
        mesh.draw().map_err(err)?;
        chart
            .draw_series(spikes.iter().map(|&(t, row)| {
                Rectangle::new(
                    [
                        (t as f64 + 0.1, row as f64 + 0.1),
                        (t as f64 + 0.9, row as f64 + 0.9),
                    ],
                    BLACK.filled(),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// A number with a unit prefix, for axis ticks (`12k`, `3.4M`).
fn si(x: f64) -> String {
    let (v, u) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}{u}")
    } else {
        format!("{v:.1}{u}")
    }
}

fn spikes_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "Spikes and synaptic operations per sample — {}: {} spikes, {} synaptic operations in all",
                r.title,
                si(r.layers.iter().map(|l| l.spikes_per_sample).sum()),
                si(r.layers.iter().map(|l| l.synops_per_sample).sum())
            ),
            ("sans-serif", 20),
        )
        .map_err(err)?;
    let halves = root.split_evenly((1, 2));
    let n = r.layers.len();
    let names: Vec<String> = r.layers.iter().map(|l| l.name.clone()).collect();
    let label_width = names.iter().map(|s| s.len()).max().unwrap_or(4) as u32 * 8 + 16;
    for (k, area) in halves.iter().enumerate() {
        let (desc, color, get): (&str, RGBColor, fn(&Layer) -> f64) = if k == 0 {
            ("spikes per sample", PALETTE[0], |l| l.spikes_per_sample)
        } else {
            ("synaptic operations per sample", PALETTE[1], |l| {
                l.synops_per_sample
            })
        };
        let top = r
            .layers
            .iter()
            .map(get)
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max)
            .clamp(1.0, 1e15)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_width)
            // `a..b` segmented has a segment for every value of `a..=b`.
            .build_cartesian_2d(0f64..top, (0..n.max(2) - 1).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(desc)
            .x_labels(5)
            .x_label_formatter(&|x| si(*x))
            .y_labels(n)
            .y_label_formatter(&|y| match y {
                // Network order from the top.
                SegmentValue::CenterOf(i) if *i < n => names[n - 1 - i].clone(),
                _ => String::new(),
            })
            .disable_y_mesh()
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(r.layers.iter().enumerate().map(|(i, l)| {
                let row = n - 1 - i;
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (get(l), SegmentValue::Exact(row + 1)),
                    ],
                    color.mix(0.85).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(err)?;
        chart
            .draw_series(r.layers.iter().enumerate().map(|(i, l)| {
                Text::new(
                    si(get(l)),
                    (get(l) + top * 0.01, SegmentValue::CenterOf(n - 1 - i)),
                    ("sans-serif", 11),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Write the figures and `report.md` into `dir` (created if missing); returns the files written.
pub fn write(dir: &Path, r: &Report) -> Result<Vec<PathBuf>, ReportError> {
    font();
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Io {
        path: dir.into(),
        message: e.to_string(),
    })?;
    let mut written = Vec::new();
    if !r.accuracy.is_empty() {
        both(
            dir,
            "accuracy",
            (900, 540),
            true,
            true,
            &|c| on_canvas!(c, |a| accuracy_figure(&a, r)),
            &mut written,
        )?;
    }
    if !r.layers.is_empty() {
        let cols = if r.layers.len() > 4 { 3 } else { 2 }.min(r.layers.len()) as u32;
        let rows = r.layers.len().div_ceil(cols as usize) as u32;
        both(
            dir,
            "rates",
            ((380 * cols).max(760), 60 + 280 * rows),
            true,
            true,
            &|c| on_canvas!(c, |a| rates_figure(&a, r)),
            &mut written,
        )?;
        both(
            dir,
            "spikes",
            (1000, 120 + 34 * r.layers.len() as u32),
            true,
            true,
            &|c| on_canvas!(c, |a| spikes_figure(&a, r)),
            &mut written,
        )?;
    }
    if let Some(ras) = &r.raster {
        let width = 80 + 320 * ras.samples.len().max(1) as u32;
        both(
            dir,
            "raster",
            (width, 560),
            true,
            false,
            &|c| on_canvas!(c, |a| raster_figure(&a, r, ras)),
            &mut written,
        )?;
    }
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(r)).map_err(|e| ReportError::Io {
        path: md.clone(),
        message: e.to_string(),
    })?;
    written.push(md);
    Ok(written)
}

/// The text of `report.md`.
pub fn markdown(r: &Report) -> String {
    let limit = 1.0 / r.dt;
    let mut s = String::new();
    let _ = writeln!(s, "# snnc run report: {}\n", r.title);
    let _ = writeln!(
        s,
        "{} samples, {} steps of {} ms each.\n",
        r.samples,
        r.steps,
        r.dt * 1e3
    );
    if !r.accuracy.is_empty() {
        let _ = writeln!(s, "## Accuracy over time\n\n![accuracy](accuracy.svg)\n");
        let marks: Vec<usize> = {
            let mut m: Vec<usize> = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
                .into_iter()
                .filter(|&t| t < r.steps)
                .collect();
            m.push(r.steps);
            m
        };
        let _ = write!(s, "| run |");
        for t in &marks {
            let _ = write!(s, " step {t} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &marks {
            let _ = write!(s, "---|");
        }
        s.push('\n');
        for series in &r.accuracy {
            let _ = write!(s, "| {} |", series.label);
            for t in &marks {
                match series.points.iter().find(|p| p.0 == *t) {
                    Some(p) => {
                        let _ = write!(s, " {:.1}% |", p.1 * 100.0);
                    }
                    None => s.push_str(" |"),
                }
            }
            s.push('\n');
        }
        if let Some((label, a)) = &r.reference {
            let _ = writeln!(s, "\n{label}: {:.1}%.", a * 100.0);
        }
        s.push('\n');
    }
    if !r.layers.is_empty() {
        let _ = writeln!(
            s,
            "## Layers\n\n![firing rates](rates.svg)\n\n![spikes and synaptic operations](spikes.svg)\n"
        );
        let _ = writeln!(
            s,
            "Saturated: at least one spike per step ({limit:.0} Hz). Synaptic operations: spikes × fan-out (the non-zero weights each spike reaches).\n"
        );
        let _ = writeln!(
            s,
            "| layer | neurons | mean rate (Hz) | silent | saturated | spikes per sample | synaptic ops per sample |\n|---|---|---|---|---|---|---|"
        );
        for l in &r.layers {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1}% | {:.2}% | {:.0} | {:.0} |",
                l.name,
                l.rates_hz.len(),
                l.mean_rate(),
                l.silent() * 100.0,
                l.saturated(limit) * 100.0,
                l.spikes_per_sample,
                l.synops_per_sample
            );
        }
        let spikes: f64 = r.layers.iter().map(|l| l.spikes_per_sample).sum();
        let synops: f64 = r.layers.iter().map(|l| l.synops_per_sample).sum();
        let _ = writeln!(
            s,
            "| **all** | | | | | **{spikes:.0}** | **{synops:.0}** |\n"
        );
    }
    if let Some(ras) = &r.raster {
        let _ = writeln!(
            s,
            "## Spike raster: {}\n\n![raster](raster.png)\n\n{} of its {} neurons (those that spiked, evenly spaced), the first {} samples.\n",
            ras.layer,
            ras.shown.len(),
            ras.neurons,
            ras.samples.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_leaves_silent_neurons_out_and_clamps_the_top() {
        let h = histogram(&[0.0, 0.0, 1.0, 5000.0], 1.0, 1000.0, 3);
        assert_eq!(h, vec![0.25, 0.0, 0.25]);
        assert_eq!(decades(3.0, 1000.0), (1.0, 1000.0));
        assert_eq!(decades(0.04, 1010.0), (0.01, 10000.0));
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(si(12_000.0), "12k");
        assert_eq!(si(3_450_000.0), "3.5M");
        assert_eq!(si(250.0), "250");
    }
}
