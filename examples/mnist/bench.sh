#!/usr/bin/env bash
# Reproduces the benchmark table in the README ("Performance"): the example MNIST CNN (0.73 M
# multiply-adds per sample and step), rate and spiking (scale 200, neural max pooling), at batch 1
# and 64, interpreter and JIT side by side in one process, with held and with varying inputs,
# on the example's test images (a spiking network's cost depends on how much it spikes).
# Run from the repository root: bash examples/mnist/bench.sh   (about two minutes)
set -euo pipefail
cargo build -q --release -p snnc
snnc() { ./target/release/snnc "$@"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
snnc compile examples/mnist/model.keras -o "$out/rate.snn" >/dev/null
snnc compile examples/mnist/model.keras --spiking --scale-firing-rates 200 -o "$out/spiking.snn" >/dev/null
for model in spiking rate; do
  for batch in 1 64; do
    for inputs in held vary; do
      flag=(); [ $inputs = vary ] && flag=(--vary-inputs)
      echo "== $model, batch $batch, inputs $inputs"
      snnc bench "$out/$model.snn" --input examples/mnist/test_images.npy --batch $batch --steps 20 --runs 7 "${flag[@]}" | grep -E "setup|faster"
    done
  done
done
echo "== where the spiking step goes (batch 1)"
snnc bench "$out/spiking.snn" --input examples/mnist/test_images.npy --backend jit --profile | sed -n '/^profile/,$p'
