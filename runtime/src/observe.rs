//! What users measure while a simulation runs: spikes per sample and population (from the
//! module's spike outputs, [`OutputKind::Spikes`]), and classification accuracy at chosen steps.
//! Both are called after every step: [`SpikeCounter::observe`] on the simulator,
//! [`AccuracyAt::observe`] on the scored output's values as the readout reports them.

use crate::Simulator;
use crate::linear::nonzeros;
use snnc_ir::{Module, OutputKind, Verified};

/// Spike counts per population and sample of one minibatch, summed over the steps observed.
///
/// A spike output's element holds `count · amplitude / dt`, so a step adds
/// `value · dt / amplitude` rounded to a whole count per element (a signed count for spiking
/// leaky ReLUs, whose spikes may be negative).
#[derive(Clone, Debug)]
pub struct SpikeCounter {
    /// Per population: its output index and `dt / amplitude`.
    outputs: Vec<(usize, f64)>,
    populations: Vec<String>,
    batch: usize,
    /// `[population][sample]`.
    counts: Vec<Vec<f64>>,
    /// With [`SpikeCounter::with_synops`]: per population, each neuron's fan-out, and
    /// `[population][sample]` synaptic operations (spikes × fan-out).
    fan: Vec<Vec<f64>>,
    synops: Vec<Vec<f64>>,
    /// The indices of a spike train's non-zero elements, while it is counted.
    scratch: Vec<u32>,
}

impl SpikeCounter {
    /// A counter for the spike outputs of `m`, run in minibatches of `batch`.
    pub fn new(m: &Module, batch: usize) -> Self {
        let (outputs, populations): (Vec<_>, Vec<_>) = m
            .outputs
            .iter()
            .enumerate()
            .filter_map(|(k, o)| match &o.kind {
                OutputKind::Spikes {
                    population,
                    amplitude,
                } => Some(((k, m.dt / amplitude), population.clone())),
                _ => None,
            })
            .unzip();
        let counts = vec![vec![0.0; batch]; outputs.len()];
        SpikeCounter {
            outputs,
            populations,
            batch,
            counts,
            fan: Vec::new(),
            synops: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Also count synaptic operations: each spike times the fan-out of its neuron (`m`'s
    /// [`snnc_ir::fanout::FanOut`]), in the same pass over the spikes.
    pub fn with_synops(mut self, m: &Verified) -> Self {
        let fan = m.fan_out();
        self.fan = self
            .outputs
            .iter()
            .map(|&(k, _)| fan.of(m.outputs[k].value).to_vec())
            .collect();
        self.synops = vec![vec![0.0; self.batch]; self.outputs.len()];
        self
    }

    /// Per population: its spike output's index and `dt / amplitude` (spikes per unit of value).
    pub fn outputs(&self) -> &[(usize, f64)] {
        &self.outputs
    }

    /// The populations counted, in output order.
    pub fn populations(&self) -> &[String] {
        &self.populations
    }

    /// Whether the module has any spike output.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Add the spikes of the step `sim` just ran: the sums the step made of a population's
    /// spikes while computing them (with [`Simulator::count_in_step`]), else by reading its
    /// spike output.
    pub fn observe(&mut self, sim: &Simulator) {
        for p in 0..self.outputs.len() {
            let k = self.outputs[p].0;
            // Sums the step made while it computed the population, if it made them.
            let (counts, mut synops) = (&mut self.counts[p], self.synops.get_mut(p));
            let want = synops.is_some();
            let taken = sim.tally(k, want, &mut |s, c, o| {
                // A simulator of a larger batch than the counter's: its samples past the
                // counter's are not counted (as reading the output would not).
                if let Some(t) = counts.get_mut(s) {
                    *t += c;
                }
                if let (Some(row), Some(o)) = (synops.as_deref_mut(), o)
                    && let Some(t) = row.get_mut(s)
                {
                    *t += o;
                }
            });
            if !taken {
                self.observe_population(p, sim.output_slice(k));
            }
        }
    }

    /// Add the spikes of population `p`, whose spike output holds `vals` for the whole minibatch.
    fn observe_population(&mut self, p: usize, vals: &[f32]) {
        let per_spike = self.outputs[p].1;
        let per = (vals.len() / self.batch.max(1)).max(1);
        let fan = self.fan.get(p);
        for (s, sample) in vals.chunks(per).enumerate().take(self.batch) {
            let (spikes, synops) = match fan {
                Some(fan) => {
                    let n = sample.len().min(fan.len());
                    count_spikes(&sample[..n], per_spike, Some(&fan[..n]), &mut self.scratch)
                }
                None => count_spikes(sample, per_spike, None, &mut self.scratch),
            };
            self.counts[p][s] += spikes;
            if let Some(row) = self.synops.get_mut(p) {
                row[s] += synops;
            }
        }
    }

    /// `[population][sample]`: synaptic operations since the last [`SpikeCounter::clear`]
    /// (empty without [`SpikeCounter::with_synops`]).
    pub fn synops(&self) -> &[Vec<f64>] {
        &self.synops
    }

    /// `[population][sample]`: spikes since the last [`SpikeCounter::clear`].
    pub fn counts(&self) -> &[Vec<f64>] {
        &self.counts
    }

    /// Start counting again from zero (for the next minibatch).
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| c.fill(0.0));
        self.synops.iter_mut().for_each(|c| c.fill(0.0));
    }
}

/// The spikes an element `v` of a spike output holds, given the output's spikes per unit of value
/// (`dt / amplitude`): a whole number, `v · per_spike` rounded to undo the f32 height's error.
/// Every count of spikes in a run (totals, per-neuron totals, recorded trains) uses this rule.
#[inline]
pub fn spikes_of(v: f32, per_spike: f64) -> f64 {
    round(v as f64 * per_spike)
}

/// The spikes a spike train `x` holds (the sum of [`spikes_of`] over its elements) and, with
/// `fan` (as long as `x`), their synaptic operations (the sum of `|spikes| · fan[i]`). Only the
/// non-zero elements are visited, listed first by [`nonzeros`] without a branch on the data;
/// `scratch` holds the list. The sums are of whole numbers, exact in f64 in any order.
pub fn count_spikes(
    x: &[f32],
    per_spike: f64,
    fan: Option<&[f64]>,
    scratch: &mut Vec<u32>,
) -> (f64, f64) {
    if scratch.len() < x.len() {
        scratch.resize(x.len(), 0);
    }
    let n = nonzeros(x, scratch);
    let (mut spikes, mut synops) = (0.0, 0.0);
    match fan {
        Some(f) => {
            for &i in &scratch[..n] {
                let c = spikes_of(x[i as usize], per_spike);
                spikes += c;
                synops += c.abs() * f[i as usize];
            }
        }
        None => {
            for &i in &scratch[..n] {
                spikes += spikes_of(x[i as usize], per_spike);
            }
        }
    }
    (spikes, synops)
}

/// `x.round()` (half away from zero) without a call into libm where it is an exact integer
/// operation: a step counts a few hundred spikes, each rounded.
fn round(x: f64) -> f64 {
    const EXACT: f64 = (1u64 << 52) as f64;
    let a = x.abs();
    if a.is_nan() || a >= EXACT {
        // Already whole, infinite or NaN.
        return x.round();
    }
    // `a − t` is exact below 2⁵², so the comparison with one half is too.
    let t = a as u64 as f64;
    let r = if a - t >= 0.5 { t + 1.0 } else { t };
    r.copysign(x)
}

/// The index of the largest element (the first of equals); 0 for an empty row.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Correct classifications (argmax of one output against integer labels) at chosen steps,
/// accumulated over minibatches.
#[derive(Clone, Debug)]
pub struct AccuracyAt {
    /// Steps, counted from 1, sorted and without repeats.
    steps: Vec<usize>,
    correct: Vec<usize>,
}

impl AccuracyAt {
    /// Score at each of `steps` (counted from 1).
    pub fn new(steps: &[usize]) -> Self {
        let mut steps = steps.to_vec();
        steps.sort_unstable();
        steps.dedup();
        let correct = vec![0; steps.len()];
        AccuracyAt { steps, correct }
    }

    /// After step `t` (counted from 0) of a minibatch of `batch` samples whose first
    /// `labels.len()` are real: count the correct ones if `t + 1` is a chosen step. `vals` are
    /// the scored output's values for the minibatch, as the readout reports them.
    pub fn observe(&mut self, t: usize, vals: &[f32], batch: usize, labels: &[i64]) {
        let Ok(pos) = self.steps.binary_search(&(t + 1)) else {
            return;
        };
        let per = vals.len() / batch.max(1);
        for (sample, &label) in vals.chunks(per.max(1)).zip(labels) {
            if argmax(sample) as i64 == label {
                self.correct[pos] += 1;
            }
        }
    }

    /// `(step, correct)` for every chosen step.
    pub fn results(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.steps.iter().copied().zip(self.correct.iter().copied())
    }
}

/// The outputs a user reads (values and probes), in order, leaving out spike outputs.
pub fn reported_outputs(m: &Module) -> Vec<usize> {
    (0..m.outputs.len())
        .filter(|&k| !matches!(m.outputs[k].kind, OutputKind::Spikes { .. }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::round;

    #[test]
    fn round_is_f64_round() {
        let half_below = 0.5 - f64::EPSILON / 4.0;
        let mut xs = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            half_below,
            -half_below,
            1.0 + half_below,
            4503599627370495.5,
            4503599627370496.0,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let mut k = 1u64;
        for _ in 0..10_000 {
            k = crate::rng::splitmix64(k);
            // Near whole numbers (spike counts times an f32 height), and anywhere.
            let n = (k % 200) as f64 - 100.0;
            xs.push(n + ((k >> 20) % 1000) as f64 * 1e-9 - 5e-7);
            xs.push(f64::from_bits(k >> 2) * if k & 1 == 0 { 1.0 } else { -1.0 });
        }
        for x in xs {
            assert_eq!(round(x).to_bits(), x.round().to_bits(), "{x:e}");
        }
        assert!(round(f64::NAN).is_nan());
    }
}
