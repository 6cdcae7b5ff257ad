//! Running a whole data set: minibatches (the last one padded, its padding dropped), inputs held
//! or fed step by step, outputs gathered in sample order, spikes counted and accuracy scored
//! on the way. The `snnc` CLI and the Python package both run simulations through [`run`].

use crate::linear::for_each_nonzero;
use crate::observe::{AccuracyAt, SpikeCounter, argmax, reported_outputs, spikes_of};
use crate::{Backend, SimError, Simulator};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use snnc_ir::{Module, OutputKind, Verified};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a data set could not be run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DatasetError {
    /// Setting up or running the simulator failed.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// Not one array per module input.
    #[error("the model has {expected} inputs ({names}), {got} arrays were given")]
    InputCount {
        /// Inputs the module has.
        expected: usize,
        /// Their names.
        names: String,
        /// Arrays given.
        got: usize,
    },
    /// An array whose shape fits neither layout.
    #[error(
        "input `{name}`: shape {got:?} fits neither (n, {want}) held for every step nor (n, steps, {want}) fed step by step"
    )]
    Shape {
        /// Input name.
        name: String,
        /// The input's shape, comma separated.
        want: String,
        /// Shape given.
        got: Vec<usize>,
    },
    /// Inputs with different sample counts.
    #[error("input `{name}` has {got} samples, `{first}` has {want}")]
    Samples {
        /// The input that disagrees.
        name: String,
        /// Its samples.
        got: usize,
        /// The first input.
        first: String,
        /// The first input's samples.
        want: usize,
    },
    /// A step-by-step input whose time axis disagrees with the steps asked for.
    #[error("input `{name}` has {got} steps on axis 1, but {want} steps were asked for")]
    Steps {
        /// Input name.
        name: String,
        /// Its time axis.
        got: usize,
        /// Steps asked for (or another input's time axis).
        want: usize,
    },
    /// No samples.
    #[error("the inputs hold no samples")]
    NoSamples,
    /// Labels for a different number of samples.
    #[error("{got} labels for {want} samples")]
    Labels {
        /// Labels given.
        got: usize,
        /// Samples.
        want: usize,
    },
    /// Accuracy asked for at a step not simulated.
    #[error("accuracy at step {step} is outside the {steps} steps simulated")]
    AccuracyStep {
        /// The step asked for.
        step: usize,
        /// Steps simulated.
        steps: usize,
    },
    /// Accuracy asked for without labels.
    #[error("accuracy at chosen steps needs labels")]
    NoLabels,
    /// Labels given to a module with nothing to score.
    #[error("labels need a model output to score (a value output, not a probe)")]
    NothingToScore,
    /// Zero steps asked for (or a step-by-step input with an empty time axis).
    #[error("the number of steps must be at least 1")]
    ZeroSteps,
    /// An output record too large to allocate.
    #[error(
        "recording output `{output}` needs an array of shape {shape:?} (4 bytes per element), more memory than can be allocated; record fewer samples or steps, or only the last step"
    )]
    TooLarge {
        /// The output.
        output: String,
        /// The record's shape.
        shape: Vec<usize>,
    },
    /// A spike probe that does not name a spike output.
    #[error("spike probe `{0}` does not name a spike output of the module")]
    NotSpikes(String),
    /// The caller's progress callback stopped the run.
    #[error("the simulation was interrupted")]
    Interrupted,
}

/// How a value output is read at each step.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Readout {
    /// Its value at that step.
    #[default]
    Last,
    /// The mean of its values from the first step to that one (a stable answer from a network
    /// without a synapse on its output, whose last step is a single spike count).
    Mean,
    /// The mean of its values over the last `steps` steps (over all of them until there are
    /// that many): the answer without the start-up transient.
    Window {
        /// Steps averaged.
        steps: usize,
    },
    /// Its values through a lowpass filter of time constant `tau` (s) starting from 0: Nengo's
    /// probe synapse (NengoDL's `Probe(synapse=tau)`), set apart from the connections' synapses.
    /// The same zero-order-hold lowpass as the IR's `lowpass`, in f32.
    Filtered {
        /// Time constant (s).
        tau: f64,
    },
}

/// The output filter `filtered` uses when no time constant is given (Nengo's usual 5 ms).
pub const DEFAULT_OUTPUT_SYNAPSE: f64 = 0.005;

/// `last`, `mean`, `window:K` or `filtered[:TAU]` (the CLI's `--readout`, Python's `readout=`).
impl std::str::FromStr for Readout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (head, arg) = match s.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (s, None),
        };
        match (head, arg) {
            ("last", None) => Ok(Readout::Last),
            ("mean", None) => Ok(Readout::Mean),
            ("window", Some(k)) => match k.parse::<usize>() {
                Ok(steps) if steps > 0 => Ok(Readout::Window { steps }),
                _ => Err(format!(
                    "readout `{s}`: the window is a positive number of steps, e.g. window:10"
                )),
            },
            ("filtered", None) => Ok(Readout::Filtered {
                tau: DEFAULT_OUTPUT_SYNAPSE,
            }),
            ("filtered", Some(t)) => match t.parse::<f64>() {
                Ok(tau) if tau > 0.0 && tau.is_finite() => Ok(Readout::Filtered { tau }),
                _ => Err(format!(
                    "readout `{s}`: the filter's time constant is a positive number of seconds, e.g. filtered:0.005"
                )),
            },
            _ => Err(format!(
                "readout `{s}`: expected last, mean, window:K or filtered[:TAU]"
            )),
        }
    }
}

impl std::fmt::Display for Readout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readout::Last => write!(f, "last"),
            Readout::Mean => write!(f, "mean"),
            Readout::Window { steps } => write!(f, "window:{steps}"),
            Readout::Filtered { tau } => write!(f, "filtered:{tau}"),
        }
    }
}

/// One value output's readout over a minibatch: the running state and the value it reads as.
struct ReadState {
    kind: Readout,
    /// `Mean`: the running sum (f64). `Window`: the sum of the values in the ring.
    sum: Vec<f64>,
    /// `Window`: the last `steps` values, oldest overwritten first.
    ring: Vec<Vec<f32>>,
    /// What the output reads as at this step.
    value: Vec<f32>,
    /// `Filtered`: `e^(−dt/τ)`.
    decay: f32,
}

impl ReadState {
    fn new(kind: Readout, len: usize, dt: f64) -> ReadState {
        let ring = match kind {
            Readout::Window { steps } => vec![vec![0.0; len]; steps.max(1)],
            _ => Vec::new(),
        };
        let decay = match kind {
            Readout::Filtered { tau } => snnc_ir::semantics::lowpass_decay(dt, tau),
            _ => 0.0,
        };
        ReadState {
            kind,
            sum: vec![0.0; len],
            ring,
            value: vec![0.0; len],
            decay,
        }
    }

    /// Start a minibatch.
    fn reset(&mut self) {
        self.sum.fill(0.0);
        self.value.fill(0.0);
        self.ring.iter_mut().for_each(|r| r.fill(0.0));
    }

    /// Take the output's values `v` at step `t` (from 0).
    fn observe(&mut self, t: usize, v: &[f32]) {
        match self.kind {
            Readout::Last => self.value.copy_from_slice(v),
            Readout::Mean => {
                let n = (t + 1) as f64;
                for ((s, o), &x) in self.sum.iter_mut().zip(&mut self.value).zip(v) {
                    *s += f64::from(x);
                    *o = (*s / n) as f32;
                }
            }
            Readout::Window { steps } => {
                let k = steps.max(1);
                let slot = &mut self.ring[t % k];
                let n = (t + 1).min(k) as f64;
                for (((s, o), old), &x) in self
                    .sum
                    .iter_mut()
                    .zip(&mut self.value)
                    .zip(slot.iter_mut())
                    .zip(v)
                {
                    *s += f64::from(x) - f64::from(*old);
                    *old = x;
                    *o = (*s / n) as f32;
                }
            }
            Readout::Filtered { .. } => {
                for (o, &x) in self.value.iter_mut().zip(v) {
                    *o = snnc_ir::semantics::lowpass_step(self.decay, x, *o);
                }
            }
        }
    }
}

/// How to run a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// Steps to simulate (default: the time axis of step-by-step inputs, else 1).
    pub steps: Option<usize>,
    /// Samples simulated together (at most the number of samples is used), or 0 for
    /// [`cache_fitting_batch`]'s choice; [`run_with`] uses its simulator's batch instead.
    pub batch: usize,
    /// Backend ([`run_with`] uses its simulator's).
    pub backend: Backend,
    /// Reset seed: every minibatch starts from the states this seed gives (the same for every
    /// sample, so results do not depend on the batch size or on which batch a sample falls in).
    pub seed: u64,
    /// Record every step (`(n, steps, *shape)`) or only the last (`(n, *shape)`).
    pub all_steps: bool,
    /// With labels: also score the first output at these steps (counted from 1).
    pub accuracy_at: Vec<usize>,
    /// Spike outputs to record at every step as spike counts per neuron, `(key, output index)`
    /// (a population's spike probe, `snnc_compiler::probe`), into [`RunResult::spike_probes`].
    pub spike_probes: Vec<(String, usize)>,
    /// Also count spikes per neuron over the whole run ([`RunResult::neuron_spikes`]).
    pub neuron_counts: bool,
    /// How value outputs (not probes) are read at each step: recorded, and scored for accuracy.
    pub readout: Readout,
    /// Also count synaptic operations per sample ([`RunResult::synops`]), in the same pass as
    /// the spikes.
    pub synops: bool,
    /// Worker threads for [`run`] (0: one per core). The samples are split into contiguous
    /// ranges, one per thread, each run with its own simulator (and JIT code) in minibatches of
    /// at most `batch`; results do not depend on the thread count, since no sample's result
    /// depends on its minibatch. [`run_with`] runs on its own simulator's thread.
    pub threads: usize,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            steps: None,
            batch: 0,
            backend: Backend::Jit,
            seed: 0,
            all_steps: false,
            accuracy_at: Vec::new(),
            spike_probes: Vec::new(),
            neuron_counts: false,
            readout: Readout::Last,
            synops: false,
            threads: 0,
        }
    }
}

/// Where a run is, passed to the progress callback after every step (after a minibatch's last
/// step, that minibatch counts as finished).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Samples of the minibatches finished.
    pub samples_done: usize,
    /// All samples.
    pub samples: usize,
    /// Minibatches finished.
    pub batches_done: usize,
    /// All minibatches.
    pub batches: usize,
    /// Steps of the current minibatch run so far.
    pub step: usize,
    /// Steps per minibatch.
    pub steps: usize,
}

/// What a run gives.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The reported outputs (values and probes, not spike counts), by name, in output order:
    /// `(n, steps, *shape)` with [`RunSpec::all_steps`] and for every probe, else `(n, *shape)`.
    pub outputs: Vec<(String, ArrayD<f32>)>,
    /// Per [`RunSpec::spike_probes`] entry: `(key, counts)`, spikes per step and neuron,
    /// `(n, steps, *shape)` (signed for spiking leaky ReLUs).
    pub spike_probes: Vec<(String, ArrayD<i32>)>,
    /// With [`RunSpec::neuron_counts`]: per population (as [`RunResult::spikes`]), the spikes of
    /// each neuron summed over all samples and steps (magnitudes, for signed spikes).
    pub neuron_spikes: Vec<(String, Vec<f64>)>,
    /// Spikes per sample over the whole run, per population (`(population, counts[n])`).
    pub spikes: Vec<(String, Vec<f64>)>,
    /// With [`RunSpec::synops`]: synaptic operations (spikes × fan-out) per sample over the
    /// whole run, per population, as [`RunResult::spikes`].
    pub synops: Vec<(String, Vec<f64>)>,
    /// With labels: correct argmax classifications of the first output at the last step.
    pub correct: Option<usize>,
    /// With labels: `(step, correct)` for every step of [`RunSpec::accuracy_at`].
    pub correct_at: Vec<(usize, usize)>,
    /// Samples.
    pub samples: usize,
    /// Steps per sample.
    pub steps: usize,
    /// Minibatch size used.
    pub batch: usize,
    /// Worker threads used.
    pub threads: usize,
    /// Time spent in simulation (minibatch set-up included, JIT compilation not; with several
    /// threads, the longest thread's).
    pub elapsed: Duration,
}

/// A zeroed record of `shape`, allocated up front: refused, with the size, when it cannot be.
fn allocate<T: Default + Clone>(name: &str, shape: &[usize]) -> Result<Vec<T>, DatasetError> {
    let too_large = || DatasetError::TooLarge {
        output: name.into(),
        shape: shape.to_vec(),
    };
    let len = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&l| l <= isize::MAX as usize / 4)
        .ok_or_else(too_large)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| too_large())?;
    buf.resize(len, T::default());
    Ok(buf)
}

/// An input array checked against its module input: held, or with a time axis.
struct Feed<'a, 'd> {
    data: &'a ArrayViewD<'d, f32>,
    timed: bool,
    /// Elements per sample and step.
    elems: usize,
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Check the inputs and labels; returns the feeds, the sample count and the steps.
fn check<'a, 'd>(
    module: &Module,
    inputs: &'a [ArrayViewD<'d, f32>],
    labels: Option<&[i64]>,
    spec: &RunSpec,
) -> Result<(Vec<Feed<'a, 'd>>, usize, usize), DatasetError> {
    let names: Vec<&str> = module
        .inputs
        .iter()
        .map(|&v| module.value(v).name.as_str())
        .collect();
    if inputs.len() != names.len() {
        return Err(DatasetError::InputCount {
            expected: names.len(),
            names: names.join(", "),
            got: inputs.len(),
        });
    }
    let mut steps = spec.steps;
    let mut n = None;
    let mut feeds = Vec::with_capacity(inputs.len());
    for (k, data) in inputs.iter().enumerate() {
        let shape = &module.value(module.inputs[k]).ty.shape;
        let held = data.ndim() == shape.len() + 1 && data.shape()[1..] == shape[..];
        let timed = data.ndim() == shape.len() + 2 && data.shape()[2..] == shape[..];
        if !held && !timed {
            return Err(DatasetError::Shape {
                name: names[k].into(),
                want: dims(shape),
                got: data.shape().to_vec(),
            });
        }
        if timed {
            let t = data.shape()[1];
            match steps {
                None => steps = Some(t),
                Some(s) if s != t => {
                    return Err(DatasetError::Steps {
                        name: names[k].into(),
                        got: t,
                        want: s,
                    });
                }
                _ => {}
            }
        }
        let samples = data.shape()[0];
        match n {
            None => n = Some(samples),
            Some(want) if want != samples => {
                return Err(DatasetError::Samples {
                    name: names[k].into(),
                    got: samples,
                    first: names[0].into(),
                    want,
                });
            }
            _ => {}
        }
        feeds.push(Feed {
            data,
            timed,
            elems: shape.iter().product(),
        });
    }
    let n = n.unwrap_or(0);
    if n == 0 {
        return Err(DatasetError::NoSamples);
    }
    let steps = steps.unwrap_or(1);
    if steps == 0 {
        return Err(DatasetError::ZeroSteps);
    }
    if let Some(l) = labels
        && l.len() != n
    {
        return Err(DatasetError::Labels {
            got: l.len(),
            want: n,
        });
    }
    if let Some(&step) = spec.accuracy_at.iter().find(|&&c| c == 0 || c > steps) {
        return Err(DatasetError::AccuracyStep { step, steps });
    }
    if !spec.accuracy_at.is_empty() && labels.is_none() {
        return Err(DatasetError::NoLabels);
    }
    if labels.is_some() && !module.outputs.iter().any(|o| o.kind == OutputKind::Value) {
        return Err(DatasetError::NothingToScore);
    }
    Ok((feeds, n, steps))
}

/// The samples and steps a run of `inputs` under `spec` would have, or why it cannot run.
pub fn extent(
    module: &Module,
    inputs: &[ArrayViewD<f32>],
    labels: Option<&[i64]>,
    spec: &RunSpec,
) -> Result<(usize, usize), DatasetError> {
    let (_, n, steps) = check(module, inputs, labels, spec)?;
    Ok((n, steps))
}

/// Copy samples `lo..hi` of a held input (or of step `t` of a timed one) into `buf`, which holds
/// a whole minibatch; the padding samples stay zero.
fn fill(feed: &Feed, lo: usize, hi: usize, t: usize, buf: &mut [f32]) {
    for (b, i) in (lo..hi).enumerate() {
        let sample = feed.data.index_axis(Axis(0), i);
        let sample = if feed.timed {
            sample.index_axis_move(Axis(0), t)
        } else {
            sample
        };
        let dst = &mut buf[b * feed.elems..(b + 1) * feed.elems];
        match sample.as_slice() {
            Some(s) => dst.copy_from_slice(s),
            None => dst.iter_mut().zip(sample.iter()).for_each(|(d, &s)| *d = s),
        }
    }
}

/// Run `module` on every sample of `inputs` (one array per module input, `(n, *shape)` held or
/// `(n, steps, *shape)` per step), in minibatches of `spec.batch` on `spec.backend`. `progress`
/// is called after every step; returning `ControlFlow::Break` stops the run with
/// [`DatasetError::Interrupted`].
///
/// A held input in C order whose minibatch is full is read in place, without a copy.
pub fn run(
    module: &Verified,
    inputs: &[ArrayViewD<f32>],
    labels: Option<&[i64]>,
    spec: &RunSpec,
    progress: &mut dyn FnMut(&Progress) -> ControlFlow<()>,
) -> Result<RunResult, DatasetError> {
    let (_, n, _) = check(module, inputs, labels, spec)?;
    let threads = match spec.threads {
        0 => std::thread::available_parallelism().map_or(1, |t| t.get()),
        t => t,
    };
    // Each thread takes at least a few samples: below that, a second JIT compilation costs more
    // than it saves.
    let threads = threads.min(n.div_ceil(MIN_SAMPLES_PER_THREAD)).max(1);
    let auto;
    let spec = if spec.batch == 0 {
        auto = RunSpec {
            batch: cache_fitting_batch(module, threads),
            ..spec.clone()
        };
        &auto
    } else {
        spec
    };
    if threads == 1 {
        let mut sim = Simulator::new(module, spec.backend, spec.batch.min(n).max(1))?;
        return run_with(&mut sim, inputs, labels, spec, progress);
    }
    run_threaded(module, inputs, labels, spec, progress, threads, n)
}

/// The minibatch [`run`] takes when [`RunSpec::batch`] is 0: as many samples as keep the arenas
/// of all `threads` simulators within a quarter of the last-level cache (between 1 and 32).
///
/// A spiking step streams every state, current and spike train of every sample, so once a
/// minibatch's arenas outgrow the cache it runs at memory speed: on a 2-core machine with a
/// 32 MiB L3 the MNIST example (an arena of 340 KB per sample) was fastest at 16 per thread and
/// 1.7× slower at 64; the Fashion VGG (1.6 MB per sample) at 1-4 and 1.5× slower at 32. Where
/// the system reports no L3 (some virtual machines), the last level it reports (L2) gives small
/// minibatches: slower than they need be, never wrong.
pub fn cache_fitting_batch(module: &Verified, threads: usize) -> usize {
    samples_fitting_cache(module, threads).min(32)
}

/// How many samples' arenas, on each of `threads` threads, fit a quarter of the last-level
/// cache (at least 1): [`cache_fitting_batch`] without its upper bound.
pub fn samples_fitting_cache(module: &Verified, threads: usize) -> usize {
    let arena = snnc_ir::plan::MemoryPlan::new(module)
        .size
        .saturating_mul(4)
        .max(1);
    let budget = last_level_cache().unwrap_or(DEFAULT_LAST_LEVEL_CACHE) / 4;
    (budget / arena.saturating_mul(threads.max(1))).max(1)
}

/// The cache size [`cache_fitting_batch`] assumes where the system does not say.
const DEFAULT_LAST_LEVEL_CACHE: usize = 32 << 20;

/// The size in bytes of the first CPU's last-level data or unified cache, from Linux's `sysfs`.
fn last_level_cache() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut best: Option<(u32, usize)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        if read("type").is_some_and(|t| t.trim() == "Instruction") {
            continue;
        }
        let level = read("level").and_then(|l| l.trim().parse::<u32>().ok());
        let (Some(level), Some(bytes)) = (level, read("size").and_then(|s| cache_size(&s))) else {
            continue;
        };
        if best.is_none_or(|(l, _)| level > l) {
            best = Some((level, bytes));
        }
    }
    best.map(|(_, b)| b)
}

/// A cache size as `sysfs` writes it (`32768K`, `1024K`, `12M`, plain bytes), in bytes; `None`
/// for anything else, zero, or a size that does not fit a `usize`.
fn cache_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = (text[..digits].parse::<usize>().ok()?, &text[digits..]);
    let scale: usize = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&b| b > 0)
}

/// How often, at most, a worker thread of [`run`] reports progress within a minibatch.
const PROGRESS_EVERY: Duration = Duration::from_millis(20);

/// Fewest samples [`run`] gives a worker thread.
const MIN_SAMPLES_PER_THREAD: usize = 4;

/// [`run`] on `threads` worker threads, each on a contiguous range of the samples with its own
/// simulator; their results are joined in sample order. Progress is reported from the calling
/// thread (so a Python callback stays on its thread), summed over the workers; a `Break`
/// stops them all.
fn run_threaded(
    module: &Verified,
    inputs: &[ArrayViewD<f32>],
    labels: Option<&[i64]>,
    spec: &RunSpec,
    progress: &mut dyn FnMut(&Progress) -> ControlFlow<()>,
    threads: usize,
    n: usize,
) -> Result<RunResult, DatasetError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let per = n.div_ceil(threads);
    let ranges: Vec<(usize, usize)> = (0..threads)
        .map(|k| (k * per, ((k + 1) * per).min(n)))
        .filter(|(lo, hi)| lo < hi)
        .collect();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Progress)>();
    let results: Vec<Result<RunResult, DatasetError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(k, &(lo, hi))| {
                let tx = tx.clone();
                let stop = &stop;
                let part: Vec<ArrayViewD<f32>> = inputs
                    .iter()
                    .map(|a| a.slice_axis(ndarray::Axis(0), ndarray::Slice::from(lo..hi)))
                    .collect();
                let part_labels = labels.map(|l| &l[lo..hi]);
                let sub = RunSpec {
                    threads: 1,
                    batch: spec.batch.min(hi - lo).max(1),
                    ..spec.clone()
                };
                scope.spawn(move || {
                    // A message wakes the calling thread: one per minibatch, and within one
                    // at most every `PROGRESS_EVERY` (one per step had cost a tenth of a run
                    // in context switches).
                    let mut sent = Instant::now();
                    let mut report = |p: &Progress| {
                        if p.step == p.steps || sent.elapsed() >= PROGRESS_EVERY {
                            let _ = tx.send((k, *p));
                            sent = Instant::now();
                        }
                        if stop.load(Ordering::Relaxed) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    };
                    let mut sim = Simulator::new(module, sub.backend, sub.batch)?;
                    run_with(&mut sim, &part, part_labels, &sub, &mut report)
                })
            })
            .collect();
        drop(tx);
        let mut latest: Vec<Option<Progress>> = vec![None; ranges.len()];
        for (k, p) in rx {
            latest[k] = Some(p);
            let sum = |f: fn(&Progress) -> usize| latest.iter().flatten().map(f).sum::<usize>();
            let total = Progress {
                samples_done: sum(|p| p.samples_done),
                samples: n,
                batches_done: sum(|p| p.batches_done),
                batches: ranges
                    .iter()
                    .map(|(lo, hi)| (hi - lo).div_ceil(spec.batch.min(hi - lo).max(1)))
                    .sum(),
                step: p.step,
                steps: p.steps,
            };
            if progress(&total).is_break() {
                stop.store(true, Ordering::Relaxed);
            }
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(DatasetError::Interrupted)))
            .collect()
    });
    // The caller asked to stop: the run is interrupted even if every worker happened to finish
    // before it saw the request.
    if stop.load(Ordering::Relaxed) {
        return Err(DatasetError::Interrupted);
    }
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        parts.push(r?);
    }
    // The threads simulate side by side: the longest one's time, which leaves out their JIT
    // compilation as a single thread's run does.
    let elapsed = parts.iter().map(|p| p.elapsed).max().unwrap_or_default();
    let mut joined = join_results(parts)?;
    joined.elapsed = elapsed;
    joined.threads = ranges.len();
    Ok(joined)
}

/// Results of consecutive sample ranges, as one run over all of them.
fn join_results(parts: Vec<RunResult>) -> Result<RunResult, DatasetError> {
    let mut it = parts.into_iter();
    let Some(mut all) = it.next() else {
        return Err(DatasetError::Interrupted);
    };
    for p in it {
        let cat = |a: &ArrayD<f32>, b: &ArrayD<f32>| {
            ndarray::concatenate(ndarray::Axis(0), &[a.view(), b.view()]).expect("same shapes")
        };
        for ((_, a), (_, b)) in all.outputs.iter_mut().zip(&p.outputs) {
            *a = cat(a, b);
        }
        for ((_, a), (_, b)) in all.spike_probes.iter_mut().zip(&p.spike_probes) {
            *a =
                ndarray::concatenate(ndarray::Axis(0), &[a.view(), b.view()]).expect("same shapes");
        }
        for ((_, a), (_, b)) in all.neuron_spikes.iter_mut().zip(&p.neuron_spikes) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        for ((_, a), (_, b)) in all.spikes.iter_mut().zip(&p.spikes) {
            a.extend_from_slice(b);
        }
        for ((_, a), (_, b)) in all.synops.iter_mut().zip(&p.synops) {
            a.extend_from_slice(b);
        }
        all.correct = match (all.correct, p.correct) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        for ((_, a), (_, b)) in all.correct_at.iter_mut().zip(&p.correct_at) {
            *a += b;
        }
        all.samples += p.samples;
        all.batch = all.batch.max(p.batch);
    }
    Ok(all)
}

/// Reported output `j` as the readout gives it: its running mean, or the simulator's value.
fn read<'a>(
    j: usize,
    sim: &'a Simulator,
    states: &'a [Option<ReadState>],
    reported: &[usize],
) -> &'a [f32] {
    match &states[j] {
        Some(r) => &r.value,
        None => sim.output_slice(reported[j]),
    }
}

/// As [`run`], on a simulator already set up (its JIT code is reused from run to run); the last
/// minibatch is padded to the simulator's batch.
pub fn run_with(
    sim: &mut Simulator,
    inputs: &[ArrayViewD<f32>],
    labels: Option<&[i64]>,
    spec: &RunSpec,
    progress: &mut dyn FnMut(&Progress) -> ControlFlow<()>,
) -> Result<RunResult, DatasetError> {
    let batch = sim.batch();
    // Everything read from the module is taken before the simulator runs.
    let module = sim.module();
    let (feeds, n, steps) = check(module, inputs, labels, spec)?;
    let reported = reported_outputs(module);
    // Which outputs are recorded at every step: all with `all_steps`, probes always.
    let every_step: Vec<bool> = reported
        .iter()
        .map(|&k| spec.all_steps || module.outputs[k].kind == OutputKind::Probe)
        .collect();
    let record_shape = |k: usize, all: bool| {
        let ty = module
            .operand_type(module.outputs[k].value)
            .expect("verified");
        let mut shape = vec![n];
        if all {
            shape.push(steps);
        }
        shape.extend_from_slice(&ty.shape);
        shape
    };
    let any_every_step = every_step.contains(&true);
    let out_shapes: Vec<Vec<usize>> = reported
        .iter()
        .zip(&every_step)
        .map(|(&k, &all)| record_shape(k, all))
        .collect();
    let out_elems: Vec<usize> = out_shapes
        .iter()
        .zip(&every_step)
        .map(|(s, &all)| s[if all { 2 } else { 1 }..].iter().product())
        .collect();
    let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(out_shapes.len());
    for (shape, &k) in out_shapes.iter().zip(&reported) {
        outputs.push(allocate(&module.outputs[k].name, shape)?);
    }
    let mut spike_records: Vec<(Vec<usize>, usize, f64, Vec<i32>)> = Vec::new();
    for (key, k) in &spec.spike_probes {
        let OutputKind::Spikes { amplitude, .. } = module
            .outputs
            .get(*k)
            .map(|o| &o.kind)
            .ok_or(DatasetError::NotSpikes(key.clone()))?
        else {
            return Err(DatasetError::NotSpikes(key.clone()));
        };
        let shape = record_shape(*k, true);
        let elems = shape[2..].iter().product();
        let buf = allocate(key, &shape)?;
        spike_records.push((shape, elems, module.dt / amplitude, buf));
    }
    let mut spikes = SpikeCounter::new(module, batch);
    if spec.synops {
        spikes = spikes.with_synops(sim.verified());
    }
    // Populations counted as the step computes them, where the backend can.
    sim.count_in_step(!spikes.is_empty());
    let mut neuron_totals: Vec<Vec<f64>> = if spec.neuron_counts {
        spikes
            .outputs()
            .iter()
            .map(|&(k, _)| vec![0.0; sim.output_slice(k).len() / batch])
            .collect()
    } else {
        Vec::new()
    };
    let output_names: Vec<String> = reported
        .iter()
        .map(|&k| module.outputs[k].name.clone())
        .collect();
    let mut spike_totals = vec![vec![0f64; n]; spikes.populations().len()];
    let mut synops_totals = vec![vec![0f64; n]; spikes.synops().len()];
    // Accuracy is scored on the first value output (never a probe).
    let scored = reported
        .iter()
        .position(|&k| module.outputs[k].kind == OutputKind::Value);
    let mut accuracy = scored.map(|_| AccuracyAt::new(&spec.accuracy_at));
    // The readout of each reported value output other than `Last` (probes are read as they
    // are).
    let mut states: Vec<Option<ReadState>> = reported
        .iter()
        .map(|&k| {
            (spec.readout != Readout::Last && module.outputs[k].kind == OutputKind::Value)
                .then(|| ReadState::new(spec.readout, sim.output_slice(k).len(), module.dt))
        })
        .collect();
    let mut bufs: Vec<Vec<f32>> = feeds.iter().map(|f| vec![0f32; batch * f.elems]).collect();
    let batches = n.div_ceil(batch);
    let start = Instant::now();
    let mut where_ = Progress {
        samples_done: 0,
        samples: n,
        batches_done: 0,
        batches,
        step: 0,
        steps,
    };
    for c in 0..batches {
        let (lo, hi) = (c * batch, ((c + 1) * batch).min(n));
        let real = hi - lo;
        // Held inputs: in place when the minibatch is a contiguous, full slice of the array.
        let in_place: Vec<Option<&[f32]>> = feeds
            .iter()
            .map(|f| {
                (!f.timed && real == batch)
                    .then(|| f.data.as_slice())
                    .flatten()
                    .map(|s| &s[lo * f.elems..hi * f.elems])
            })
            .collect();
        for ((f, buf), place) in feeds.iter().zip(&mut bufs).zip(&in_place) {
            if !f.timed && place.is_none() {
                buf.fill(0.0);
                fill(f, lo, hi, 0, buf);
            }
        }
        sim.reset(spec.seed);
        spikes.clear();
        for r in states.iter_mut().flatten() {
            r.reset();
        }
        for t in 0..steps {
            for (f, buf) in feeds.iter().zip(&mut bufs) {
                if f.timed {
                    fill(f, lo, hi, t, buf);
                }
            }
            let slices: Vec<&[f32]> = bufs
                .iter()
                .zip(&in_place)
                .map(|(b, p)| p.unwrap_or(b))
                .collect();
            sim.step_flat(&slices)?;
            spikes.observe(sim);
            for (&k, r) in reported.iter().zip(&mut states) {
                if let Some(r) = r {
                    r.observe(t, sim.output_slice(k));
                }
            }
            if let (Some(acc), Some(l), Some(j)) = (accuracy.as_mut(), labels, scored) {
                acc.observe(t, read(j, sim, &states, &reported), batch, &l[lo..hi]);
            }
            if any_every_step || t + 1 == steps {
                for (j, ((out, &e), &all)) in outputs
                    .iter_mut()
                    .zip(&out_elems)
                    .zip(&every_step)
                    .enumerate()
                {
                    if !all && t + 1 != steps {
                        continue;
                    }
                    let vals = read(j, sim, &states, &reported);
                    for b in 0..real {
                        let at = if all {
                            ((lo + b) * steps + t) * e
                        } else {
                            (lo + b) * e
                        };
                        out[at..at + e].copy_from_slice(&vals[b * e..(b + 1) * e]);
                    }
                }
            }
            for ((_, k), (_, e, per_spike, out)) in spec.spike_probes.iter().zip(&mut spike_records)
            {
                let (e, vals) = (*e, sim.output_slice(*k));
                for b in 0..real {
                    let at = ((lo + b) * steps + t) * e;
                    for (o, &v) in out[at..at + e].iter_mut().zip(&vals[b * e..(b + 1) * e]) {
                        *o = spikes_of(v, *per_spike) as i32;
                    }
                }
            }
            for (total, &(k, per_spike)) in neuron_totals.iter_mut().zip(spikes.outputs()) {
                let vals = sim.output_slice(k);
                let e = total.len();
                for sample in vals.chunks_exact(e.max(1)).take(real) {
                    // Spike trains are mostly zeros: only the rest is visited.
                    for_each_nonzero(sample, |i, v| total[i] += spikes_of(v, per_spike).abs());
                }
            }
            where_.step = t + 1;
            if t + 1 == steps {
                // The minibatch is done: it counts as finished in this call.
                where_.samples_done = hi;
                where_.batches_done = c + 1;
            }
            if progress(&where_).is_break() {
                return Err(DatasetError::Interrupted);
            }
        }
        for (total, counts) in spike_totals.iter_mut().zip(spikes.counts()) {
            total[lo..hi].copy_from_slice(&counts[..real]);
        }
        for (total, counts) in synops_totals.iter_mut().zip(spikes.synops()) {
            total[lo..hi].copy_from_slice(&counts[..real]);
        }
    }
    sim.count_in_step(false);
    let elapsed = start.elapsed();
    let outputs: Vec<(String, ArrayD<f32>)> = outputs
        .into_iter()
        .zip(out_shapes)
        .zip(output_names)
        .map(|((data, shape), name)| {
            let a = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("sized from the shape");
            (name, a)
        })
        .collect();
    let spike_probes = spec
        .spike_probes
        .iter()
        .zip(spike_records)
        .map(|((key, _), (shape, _, _, data))| {
            let a = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("sized from the shape");
            (key.clone(), a)
        })
        .collect();
    let correct = labels.zip(scored).map(|(l, j)| {
        let (_, first) = &outputs[j];
        let per = out_elems[j];
        let data = first.as_slice().expect("standard layout");
        (0..n)
            .filter(|&i| {
                let at = if every_step[j] {
                    (i * steps + steps - 1) * per
                } else {
                    i * per
                };
                argmax(&data[at..at + per]) as i64 == l[i]
            })
            .count()
    });
    let neuron_spikes = spikes
        .populations()
        .iter()
        .cloned()
        .zip(neuron_totals)
        .collect();
    Ok(RunResult {
        outputs,
        spike_probes,
        neuron_spikes,
        spikes: spikes
            .populations()
            .iter()
            .cloned()
            .zip(spike_totals)
            .collect(),
        synops: spikes
            .populations()
            .iter()
            .cloned()
            .zip(synops_totals)
            .collect(),
        correct,
        correct_at: accuracy
            .filter(|_| labels.is_some())
            .map(|a| a.results().collect())
            .unwrap_or_default(),
        samples: n,
        steps,
        batch,
        threads: 1,
        elapsed,
    })
}

/// Run a module for `steps` steps on `data` (`(n, *input_shape)`, held, one input) in minibatches
/// that fit the cache ([`cache_fitting_batch`]) on the JIT: each value output flat, sample after
/// sample, read as the mean of its values since the first step (for one step, its value), and the
/// spikes per sample over the run.
/// The simulator calibration needs (`snnc_compiler::calibrate::Simulate`).
pub fn run_calibration(
    module: &snnc_ir::Module,
    data: ArrayViewD<f32>,
    steps: usize,
) -> Result<(Vec<Vec<f32>>, f64), String> {
    let v = snnc_ir::verify(module.clone(), snnc_ir::Target::Any)
        .map_err(|e| format!("the calibration module does not verify: {e}"))?;
    let spec = RunSpec {
        steps: Some(steps.max(1)),
        readout: Readout::Mean,
        ..RunSpec::default()
    };
    let r = run(&v, &[data], None, &spec, &mut |_| ControlFlow::Continue(()))
        .map_err(|e| e.to_string())?;
    let spikes = r.spikes.iter().flat_map(|(_, c)| c).sum::<f64>() / r.samples.max(1) as f64;
    let outputs = r
        .outputs
        .into_iter()
        .map(|(_, a)| a.into_raw_vec_and_offset().0)
        .collect();
    Ok((outputs, spikes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array3};

    fn xor() -> Verified {
        let text = include_str!("../../examples/xor/xor_spiking.sir");
        snnc_ir::verify(snnc_ir::parse(text).unwrap(), snnc_ir::Target::Any).unwrap()
    }

    fn inputs(n: usize) -> Array2<f32> {
        Array2::from_shape_fn((n, 2), |(i, j)| ((i >> j) & 1) as f32)
    }

    fn go(m: &Verified, x: &[ArrayViewD<f32>], spec: &RunSpec) -> RunResult {
        run(m, x, None, spec, &mut |_| ControlFlow::Continue(())).unwrap()
    }

    /// Cache sizes as Linux writes them; anything else is no size.
    #[test]
    fn cache_sizes_read_as_sysfs_writes_them() {
        for (text, want) in [
            ("32768K\n", Some(32 << 20)),
            ("1024K", Some(1 << 20)),
            ("48K", Some(48 << 10)),
            ("12M", Some(12 << 20)),
            ("512", Some(512)),
            ("0K", None),
            ("", None),
            ("abc", None),
            ("12 MB", None),
            ("-4K", None),
            ("99999999999999999999G", None),
            ("18446744073709551615G", None),
        ] {
            assert_eq!(cache_size(text), want, "{text:?}");
        }
    }

    /// The cache-fitting minibatch: 1 to 32, smaller for a larger arena or more threads, and
    /// what a run with `batch: 0` uses, with the same results as a fixed minibatch.
    #[test]
    fn the_default_minibatch_fits_the_cache() {
        let small = xor();
        // A 1024×1024 state: a 4 MiB arena per sample.
        let text = "module @big dt=0.001\ninput %x : f32[1024,1024]\n\
            state $v : f32[1024,1024] = zeros\n\
            %s, %v1 = spiking_relu %x, $v {gain=1, amplitude=1} : f32[1024,1024], f32[1024,1024]\n\
            next $v = %v1\noutput \"s\" = %s\n";
        let big = snnc_ir::verify(snnc_ir::parse(text).unwrap(), snnc_ir::Target::Any).unwrap();
        assert_eq!(
            cache_fitting_batch(&small, 1),
            32,
            "a tiny arena takes the cap"
        );
        for threads in [1, 2, 8, 64] {
            let b = cache_fitting_batch(&big, threads);
            assert!((1..=32).contains(&b));
            assert!(b <= cache_fitting_batch(&big, 1) && b <= cache_fitting_batch(&small, threads));
            let arena = snnc_ir::plan::MemoryPlan::new(&big).size * 4;
            let cache = last_level_cache().unwrap_or(DEFAULT_LAST_LEVEL_CACHE);
            assert!(b == 1 || b * arena * threads <= cache / 4);
        }
        let x = inputs(40);
        let spec = |batch| RunSpec {
            steps: Some(20),
            batch,
            threads: 1,
            ..RunSpec::default()
        };
        let (auto, fixed) = (
            go(&small, &[x.view().into_dyn()], &spec(0)),
            go(&small, &[x.view().into_dyn()], &spec(7)),
        );
        assert_eq!(auto.batch, 32);
        assert_eq!(fixed.batch, 7);
        assert_eq!(auto.outputs, fixed.outputs);
        assert_eq!(auto.spikes, fixed.spikes);
    }

    /// Synaptic operations counted in the spike pass equal each neuron's spike count (from the
    /// separate per-neuron count) times its fan-out, per population; the spikes are unchanged.
    #[test]
    fn synops_are_spikes_times_fan_out() {
        // Two spiking populations: `a` drives `b` through a 2×3 dense map, `b` two outputs.
        let text = "module @chain dt=0.001
input %x : f32[2]
const @w : f32[2,3] = [1, 0, 2, 0, 1, 1]
const @u : f32[3,2] = [1, 1, 0, 1, 1, 0]
state $va : f32[2] = zeros
state $vb : f32[3] = zeros

%a, %va1 = spiking_relu %x, $va {gain=300, amplitude=0.001} : f32[2], f32[2]
next $va = %va1
%j = dense %a, @w : f32[3]
%b, %vb1 = spiking_relu %j, $vb {amplitude=0.001} : f32[3], f32[3]
next $vb = %vb1
%y = dense %b, @u : f32[2]
output \"y\" = %y
output spikes \"spikes/a\" = %a {population=\"a\", amplitude=0.001}
output spikes \"spikes/b\" = %b {population=\"b\", amplitude=0.001}
";
        let m = snnc_ir::verify(snnc_ir::parse(text).unwrap(), snnc_ir::Target::Any).unwrap();
        let x = inputs(10);
        let spec = |synops| RunSpec {
            steps: Some(40),
            batch: 4,
            neuron_counts: true,
            synops,
            ..RunSpec::default()
        };
        let plain = go(&m, &[x.view().into_dyn()], &spec(false));
        let r = go(&m, &[x.view().into_dyn()], &spec(true));
        assert_eq!(plain.spikes, r.spikes);
        assert!(plain.synops.iter().all(|(_, c)| c.is_empty()));
        let fan = snnc_ir::fanout::FanOut::new(&m);
        let mut total = 0.0;
        for ((pop, per_sample), (pop2, per_neuron)) in r.synops.iter().zip(&r.neuron_spikes) {
            assert_eq!(pop, pop2);
            let k = m
                .outputs
                .iter()
                .position(|o| matches!(&o.kind, OutputKind::Spikes { population, .. } if population == pop))
                .unwrap();
            let want: f64 = per_neuron
                .iter()
                .zip(fan.of(m.outputs[k].value))
                .map(|(c, f)| c * f)
                .sum();
            let got: f64 = per_sample.iter().sum();
            assert!(
                (got - want).abs() <= 1e-9 * want.max(1.0),
                "{pop}: {got} vs {want}"
            );
            total += got;
        }
        assert!(total > 0.0, "no synaptic operations: the test sees nothing");
    }

    /// The mean readout reports, at each step, the mean of the last-step readout's values up to
    /// it (computed here from the per-step record), in batches of 3 and 10 alike, and scores
    /// accuracy on those means.
    #[test]
    fn mean_readout_averages_the_steps_so_far() {
        let m = xor();
        let x = inputs(10);
        let steps = 20;
        let spec = |batch, readout| RunSpec {
            steps: Some(steps),
            batch,
            all_steps: true,
            readout,
            accuracy_at: vec![5, 20],
            ..RunSpec::default()
        };
        let labels: Vec<i64> = (0..10)
            .map(|i| (i & 1) as i64 ^ ((i >> 1) & 1) as i64)
            .collect();
        let run_l = |batch, readout| {
            run(
                &m,
                &[x.view().into_dyn()],
                Some(&labels),
                &spec(batch, readout),
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap()
        };
        let last = run_l(10, Readout::Last);
        for batch in [3, 10] {
            let mean = run_l(batch, Readout::Mean);
            let (a, b) = (&last.outputs[0].1, &mean.outputs[0].1);
            let mut varies = false;
            for i in 0..10 {
                for k in 0..a.shape()[2] {
                    let mut sum = 0f64;
                    for t in 0..steps {
                        sum += f64::from(a[[i, t, k]]);
                        let want = (sum / (t + 1) as f64) as f32;
                        assert_eq!(b[[i, t, k]], want, "sample {i} step {t} output {k}");
                        varies |= a[[i, t, k]] != want;
                    }
                }
            }
            assert!(
                varies,
                "the mean never differs from the last value: the test sees nothing"
            );
            // Accuracy at step t is the argmax of the mean then.
            for &(t, correct) in &mean.correct_at {
                let want = (0..10)
                    .filter(|&i| {
                        let row: Vec<f32> = (0..a.shape()[2]).map(|k| b[[i, t - 1, k]]).collect();
                        argmax(&row) as i64 == labels[i]
                    })
                    .count();
                assert_eq!(correct, want, "step {t}");
            }
        }
    }

    /// The thread count changes nothing: outputs (every step), spikes per sample, per-neuron
    /// counts, synaptic operations and accuracy equal the single-threaded run's, with odd sample
    /// counts and partial minibatches in each thread's range.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let m = xor();
        let x = inputs(23);
        let labels: Vec<i64> = (0..23).map(|i| (i & 1) as i64).collect();
        let go_t = |threads| {
            let spec = RunSpec {
                steps: Some(15),
                batch: 4,
                all_steps: true,
                accuracy_at: vec![5, 15],
                neuron_counts: true,
                synops: true,
                threads,
                ..RunSpec::default()
            };
            let mut calls = 0;
            let r = run(&m, &[x.view().into_dyn()], Some(&labels), &spec, &mut |p| {
                calls += 1;
                assert!(p.samples_done <= p.samples && p.step <= p.steps);
                ControlFlow::Continue(())
            })
            .unwrap();
            assert!(calls > 0);
            r
        };
        let one = go_t(1);
        for threads in [2, 3, 5] {
            let r = go_t(threads);
            assert_eq!(r.samples, 23);
            assert_eq!(r.outputs, one.outputs, "{threads} threads");
            assert_eq!(r.spikes, one.spikes);
            assert_eq!(r.neuron_spikes, one.neuron_spikes);
            assert_eq!(r.synops, one.synops);
            assert_eq!(r.correct, one.correct);
            assert_eq!(r.correct_at, one.correct_at);
        }
        // A Break from the caller's callback stops every worker.
        let spec = RunSpec {
            steps: Some(15),
            batch: 2,
            threads: 3,
            ..RunSpec::default()
        };
        let r = run(&m, &[x.view().into_dyn()], None, &spec, &mut |_| {
            ControlFlow::Break(())
        });
        assert!(matches!(r, Err(DatasetError::Interrupted)));
    }

    /// `window:K` is the mean of the last K values (of all of them before step K) and
    /// `filtered:TAU` the lowpass `y ← d·y + (1 − d)·x` from 0 with `d = e^(−dt/TAU)`, both
    /// computed here from the `last` record; the parsed spellings print back as given.
    #[test]
    fn window_and_filtered_readouts() {
        let m = xor();
        let x = inputs(10);
        let steps = 12;
        let run_r = |batch, readout| {
            let spec = RunSpec {
                steps: Some(steps),
                batch,
                all_steps: true,
                readout,
                ..RunSpec::default()
            };
            go(&m, &[x.view().into_dyn()], &spec).outputs[0].1.clone()
        };
        // A varying output: feed the inputs step by step, scaled by the step.
        let last = run_r(10, Readout::Last);
        let window: Readout = "window:4".parse().unwrap();
        let filtered: Readout = "filtered:0.002".parse().unwrap();
        assert_eq!(window.to_string(), "window:4");
        assert_eq!(filtered.to_string(), "filtered:0.002");
        assert_eq!(
            "filtered".parse::<Readout>().unwrap(),
            Readout::Filtered { tau: 0.005 }
        );
        for bad in ["window:0", "window", "filtered:-1", "median", "last:3"] {
            assert!(bad.parse::<Readout>().is_err(), "{bad}");
        }
        let d = (-0.001f64 / 0.002).exp() as f32;
        for batch in [3, 10] {
            let w = run_r(batch, window);
            let f = run_r(batch, filtered);
            for i in 0..10 {
                for k in 0..last.shape()[2] {
                    let mut y = 0f32;
                    for t in 0..steps {
                        let lo = t.saturating_sub(3);
                        let sum: f64 = (lo..=t).map(|u| f64::from(last[[i, u, k]])).sum();
                        let want = (sum / (t + 1 - lo) as f64) as f32;
                        assert!((w[[i, t, k]] - want).abs() <= 1e-6 * want.abs().max(1.0));
                        y = d * y + (1.0 - d) * last[[i, t, k]];
                        assert_eq!(f[[i, t, k]], y, "sample {i} step {t}");
                    }
                }
            }
        }
    }

    /// The samples of a data set give the same outputs whatever the minibatch size (a partial
    /// last batch included), whether held or fed step by step, on both backends; the
    /// per-step record ends in the last-step one.
    #[test]
    fn results_do_not_depend_on_batching_layout_or_backend() {
        let m = xor();
        let x = inputs(10);
        let steps = 30;
        let spec = |batch, backend, all_steps| RunSpec {
            steps: Some(steps),
            batch,
            backend,
            all_steps,
            ..RunSpec::default()
        };
        let base = go(&m, &[x.view().into_dyn()], &spec(10, Backend::Interp, true));
        let timed = Array3::from_shape_fn((10, steps, 2), |(i, _, j)| x[[i, j]]);
        for (batch, backend) in [(3, Backend::Interp), (4, Backend::Jit), (10, Backend::Jit)] {
            for feed in [x.view().into_dyn(), timed.view().into_dyn()] {
                let r = go(&m, &[feed], &spec(batch, backend, true));
                assert_eq!(r.outputs, base.outputs, "batch {batch} {backend:?}");
                assert_eq!(r.spikes, base.spikes);
            }
        }
        let last = go(&m, &[x.view().into_dyn()], &spec(4, Backend::Jit, false));
        let every = &base.outputs[0].1;
        assert_eq!(last.outputs[0].1, every.index_axis(Axis(1), steps - 1));
        // The module declares no spike outputs, so nothing is counted.
        assert!(base.spikes.is_empty());
    }

    #[test]
    fn accuracy_is_scored_at_the_chosen_steps() {
        let m = xor();
        let x = inputs(8);
        let labels: Vec<i64> = (0..8).map(|i| ((i & 1) ^ ((i >> 1) & 1)) as i64).collect();
        let spec = RunSpec {
            steps: Some(100),
            batch: 3,
            accuracy_at: vec![1, 100],
            ..RunSpec::default()
        };
        let r = run(
            &m,
            &[x.view().into_dyn()],
            Some(&labels),
            &spec,
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
        assert_eq!(r.correct, Some(8));
        assert_eq!(r.correct_at.last(), Some(&(100, 8)));
    }

    #[test]
    fn bad_inputs_and_interruptions_are_errors() {
        let m = xor();
        let x = inputs(4);
        let spec = RunSpec::default();
        let wrong = Array2::<f32>::zeros((4, 3));
        let e = run(&m, &[wrong.view().into_dyn()], None, &spec, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "input `x`: shape [4, 3] fits neither (n, 2) held for every step nor (n, steps, 2) fed step by step"
        );
        let e = run(
            &m,
            &[x.view().into_dyn()],
            Some(&[0, 1]),
            &spec,
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap_err();
        assert_eq!(e, DatasetError::Labels { got: 2, want: 4 });
        let cont = &mut |_: &Progress| ControlFlow::Continue(());
        let zero = RunSpec {
            steps: Some(0),
            ..RunSpec::default()
        };
        let e = run(&m, &[x.view().into_dyn()], None, &zero, cont).unwrap_err();
        assert_eq!(e, DatasetError::ZeroSteps);
        // Every step recorded for 2^60 steps: refused with the size, before anything runs.
        let huge = RunSpec {
            steps: Some(1 << 60),
            all_steps: true,
            ..RunSpec::default()
        };
        let e = run(&m, &[x.view().into_dyn()], None, &huge, cont).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "recording output `logits` needs an array of shape [4, 1152921504606846976, 2]"
            ),
            "{e}"
        );
        let mut calls = 0;
        let long = RunSpec {
            steps: Some(1000),
            ..RunSpec::default()
        };
        let e = run(&m, &[x.view().into_dyn()], None, &long, &mut |p| {
            calls += 1;
            if p.step == 5 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap_err();
        assert_eq!((e, calls), (DatasetError::Interrupted, 5));
    }
}
