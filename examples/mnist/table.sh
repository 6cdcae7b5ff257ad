#!/usr/bin/env bash
# Reproduces every number in examples/mnist/README.md's table. Each line runs the example's
# 1000 test images for 100 steps (dt = 1 ms) and prints accuracy at 10/20/30/60/100 steps and
# spikes per image. Run from the repository root: bash examples/mnist/table.sh
set -euo pipefail
cargo build -q --release -p snnc
snnc() { ./target/release/snnc "$@"; }
M=examples/mnist
common=(run $M/model.keras --input $M/test_images.npy --labels $M/test_labels.npy)
spiking=(--spiking --steps 100 --accuracy-at 10,20,30,60,100)
row() {
  local label=$1; shift
  echo "== $label"
  snnc "${common[@]}" "$@" 2>/dev/null | grep -E "^accuracy|^spikes"
}
row "rate (ANN)"
for s in 100 200 400; do
  row "neural max pool, scale $s" "${spiking[@]}" --scale-firing-rates $s
  row "avg pool, scale $s" "${spiking[@]}" --scale-firing-rates $s --max-pool avg
done
row "NengoDL max pool (max of raw spikes), scale 200" "${spiking[@]}" --scale-firing-rates 200 --max-pool keep
for v in uniform 0.5; do
  row "neural, normalize budget (error 0.3), v0 $v" "${spiking[@]}" --normalize-rates $M/calibration_images.npy --initial-voltage $v
  row "neural, normalize percentile p99 at 1000 Hz, v0 $v" "${spiking[@]}" --normalize-rates $M/calibration_images.npy --normalize-rule percentile --initial-voltage $v
done
row "neural, normalize budget (error 0.6), v0 0.5" "${spiking[@]}" --normalize-rates $M/calibration_images.npy --error-fraction 0.6 --initial-voltage 0.5
row "neural, normalize percentile p99 at 500 Hz, v0 0.5" "${spiking[@]}" --normalize-rates $M/calibration_images.npy --normalize-rule percentile --max-rate 500 --initial-voltage 0.5
