"""NengoDL 3.6 and snnc on the same Keras file, side by side in one run.

Converts the model with NengoDL's converter (spiking ReLU, the same firing-rate scale and
synapse; max pooling as average pooling, `max_to_avg_pool=True`, since NengoDL has no spiking max
pool) and with snnc (neural max pooling), times both per step at batch 1 and batched on the same
images, checks that NengoDL's neurons really spike, and prints one table.

NengoDL 3.6 needs TensorFlow 2.13 (it imports `keras.engine`, which Keras 2.13 moved to
`keras.src.engine`; the script points the old names at the new modules). Run in a virtual
environment outside the repository, after `cargo build --release -p snnc`:

    python3.11 -m venv /tmp/ndl
    /tmp/ndl/bin/pip install "tensorflow-cpu==2.13.1" "nengo==3.2.0" "nengo-dl==3.6.0" h5py
    /tmp/ndl/bin/python bench/compare_nengodl.py examples/mnist/model.keras \
        examples/mnist/test_images.npy --labels examples/mnist/test_labels.npy

The Keras file may be written by Keras 3 (`.keras` archives, such as the examples'): the script
rebuilds its layer chain in tf.keras 2.13 from `config.json` and loads `model.weights.h5`, then
checks the rebuilt model against the file's own Keras predictions where `--logits` gives them.

The trap it avoids: in tf.keras 2.13 a layer's activation is `tf.keras.activations.relu`, not
`tf.nn.relu`, so `swap_activations={tf.nn.relu: ...}` alone leaves every neuron in rate mode.
The swap is keyed on both, and the script stops if NengoDL's first layer does not spike.
"""
import argparse
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import keras  # noqa: E402  (tf.keras 2.13's package)
import keras.src.engine  # noqa: E402
import keras.src.engine.functional  # noqa: E402

# NengoDL 3.6 imports these by their Keras <= 2.12 names.
sys.modules.setdefault("keras.engine", keras.src.engine)
sys.modules.setdefault("keras.engine.functional", keras.src.engine.functional)
import keras.layers as _kl  # noqa: E402

if not hasattr(_kl, "BatchNormalizationV2"):
    from keras.src.layers.normalization import batch_normalization as _bn
    from keras.src.layers.normalization import batch_normalization_v1 as _bn1

    _kl.BatchNormalizationV1 = _bn1.BatchNormalization
    _kl.BatchNormalizationV2 = _bn.BatchNormalization

import h5py  # noqa: E402
import nengo  # noqa: E402
import nengo_dl  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Keras 3 config keys each rebuilt layer keeps (the rest are Keras 3 only).
KEEP = {
    "Rescaling": ("scale", "offset"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "activation", "use_bias"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "Flatten": (),
    "Dense": ("units", "activation", "use_bias"),
    "Dropout": ("rate",),
    "Activation": ("activation",),
    "ReLU": (),
}


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("2_d", "2d")


def rebuild(path):
    """A tf.keras model with the layers and weights of the Keras 3 archive at `path`."""
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    layers = config["config"]["layers"]
    first = layers[0]
    if first["class_name"] != "InputLayer":
        sys.exit(f"{path}: the first layer is {first['class_name']}, expected an InputLayer")
    shape = first["config"].get("batch_shape") or first["config"].get("batch_input_shape")
    x = inp = tf.keras.Input(shape=tuple(shape[1:]), name=first["config"]["name"])
    counters = {}
    assign = []
    previous = first["config"]["name"]
    for layer in layers[1:]:
        cls, cfg = layer["class_name"], layer["config"]
        if cls not in KEEP:
            sys.exit(f"{path}: layer `{cfg['name']}` is a {cls}; this script rebuilds {sorted(KEEP)}")
        for node in layer.get("inbound_nodes", []):
            # Functional archives: every layer must read the one before it (a chain).
            src = json.dumps(node)
            if previous not in src:
                sys.exit(f"{path}: layer `{cfg['name']}` does not read `{previous}`; only chains are rebuilt")
        kwargs = {k: cfg[k] for k in KEEP[cls] if k in cfg}
        built = getattr(tf.keras.layers, cls)(name=cfg["name"], **kwargs)
        x = built(x)
        base = snake(cls)
        k = counters.get(base, 0)
        counters[base] = k + 1
        group = f"layers/{base}" + (f"_{k}" if k else "")
        if built.weights:
            vars_ = weights[group]["vars"]
            assign.append((built, [np.asarray(vars_[str(i)]) for i in range(len(vars_))]))
        previous = cfg["name"]
    model = tf.keras.Model(inp, x)
    for built, values in assign:
        built.set_weights(values)
    return model


def nengodl_and_snnc(model, images, a, batch):
    """NengoDL's and snnc's seconds per step at minibatch `batch`, each the median of `a.runs`
    timings taken in turn (NengoDL's `predict`, then `snnc bench`, then NengoDL again, ...), so
    that a change in the machine's load reaches both; NengoDL's predictions on `images` over
    `a.steps` steps; and spikes per image and step in NengoDL's first neuron layer."""
    relu = nengo.SpikingRectifiedLinear()
    conv = nengo_dl.Converter(
        model,
        swap_activations={tf.nn.relu: relu, tf.keras.activations.relu: relu},
        scale_firing_rates=a.scale,
        synapse=a.synapse,
        max_to_avg_pool=True,
    )
    ens = [e for e in conv.net.all_ensembles if isinstance(e.neuron_type, nengo.SpikingRectifiedLinear)]
    if not ens:
        sys.exit("NengoDL left every neuron in rate mode: the activation swap did not match")
    with conv.net:
        spike_probe = nengo.Probe(ens[0].neurons)
    inp, out = conv.inputs[model.inputs[0]], conv.outputs[model.outputs[0]]
    n = len(images) - len(images) % batch
    flat = images[:n].reshape(n, 1, -1).astype(np.float32)
    x = np.tile(flat, (1, a.steps, 1))
    threads = 0 if batch > 1 else 1
    with nengo_dl.Simulator(conv.net, minibatch_size=batch, progress_bar=False) as sim:
        sim.predict({inp: x[:batch]})  # builds and warms up
        theirs, ours = [], []
        for _ in range(a.runs):
            t = time.perf_counter()
            sim.predict({inp: x[:batch]})
            theirs.append((time.perf_counter() - t) / a.steps)
            ours.append(snnc_step_time(a.snnc, a.model, a.images, a.scale, a.synapse, batch, a.steps, threads))
        data = sim.predict({inp: x})
    spikes = np.count_nonzero(data[spike_probe]) / (n * a.steps)
    if spikes == 0:
        sys.exit("NengoDL's first neuron layer never spiked (rate mode?)")
    return float(np.median(theirs)), float(np.median(ours)), data[out][:, -1], spikes


def snnc_step_time(snnc, model, images_path, scale, synapse, batch, steps, threads):
    """snnc's µs per step (the JIT's median) from `snnc bench`."""
    cmd = [
        snnc, "bench", model, "--input", images_path, "--spiking",
        "--scale-firing-rates", str(scale), "--synapse", str(synapse),
        "--batch", str(batch), "--steps", str(steps), "--runs", "5",
        "--backend", "jit", "--threads", str(threads),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"jit: setup\s+\S+ ms\s+([0-9.]+) µs/step", out)
    if not m:
        sys.exit(f"unexpected `snnc bench` output:\n{out}")
    return float(m.group(1)) * 1e-6


def snnc_accuracy(snnc, model, images_path, labels_path, scale, synapse, steps, n):
    cmd = [
        snnc, "run", model, "--input", images_path, "--labels", labels_path, "--spiking",
        "--scale-firing-rates", str(scale), "--synapse", str(synapse), "--steps", str(steps),
        "--samples", f"0:{n}", "--readout", "last",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"^accuracy: ([0-9.]+)", out, re.M)
    # "(X µs per sample-step on T threads, batch B)" or, on one thread, "(X µs/step for a batch
    # of B)", which is per minibatch step.
    timing = None
    t = re.search(r"^time: \S+ s\s+\(([0-9.]+) µs per sample-step on \d+ threads, batch (\d+)\)", out, re.M)
    if t:
        timing = (float(t.group(1)), int(t.group(2)))
    t = re.search(r"^time: \S+ s\s+\(([0-9.]+) µs/step for a batch of (\d+)\)", out, re.M)
    if t:
        timing = (float(t.group(1)) / int(t.group(2)), int(t.group(2)))
    return (float(m.group(1)) if m else None), timing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("images")
    ap.add_argument("--labels")
    ap.add_argument("--logits", help="the Keras file's own predictions on the images (.npy)")
    ap.add_argument("--scale", type=float, default=100.0)
    ap.add_argument("--synapse", type=float, default=0.005)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64, help="the batched measurement's minibatch")
    ap.add_argument("--accuracy-images", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5, help="timings of each, taken in turn")
    ap.add_argument("--snnc", default=os.path.join(ROOT, "target/release/snnc"))
    a = ap.parse_args()

    images = np.load(a.images).astype(np.float32)
    model = rebuild(a.model)
    if a.logits:
        keras_logits = np.load(a.logits)[:64]
        rebuilt = model.predict(images[:64], verbose=0)
        err = float(np.max(np.abs(rebuilt - keras_logits)))
        print(f"rebuilt tf.keras {tf.__version__} model vs the file's Keras logits: max |diff| {err:.2e}")
        if err > 1e-3:
            sys.exit("the rebuilt model does not reproduce the file's predictions")

    rows = []
    n_acc = a.accuracy_images - a.accuracy_images % a.batch
    for batch in (1, a.batch):
        imgs = images[: max(batch, n_acc if batch == a.batch else batch)]
        t_ndl, t_snnc, preds, spikes = nengodl_and_snnc(model, imgs, a, batch)
        acc = None
        if a.labels and batch == a.batch:
            labels = np.load(a.labels)[: len(preds)]
            acc = float(np.mean(np.argmax(preds, -1) == labels))
        rows.append((batch, t_ndl, t_snnc, spikes, acc, len(preds)))

    print(
        f"\n{os.path.basename(a.model)}: spiking ReLU, scale {a.scale:g}, synapse {a.synapse:g} s, "
        f"{a.steps} steps; NengoDL {nengo_dl.__version__} on TensorFlow {tf.__version__} "
        f"(max_to_avg_pool), snnc JIT (neural max pooling, all cores when batched)"
    )
    print(f"{'batch':>6} {'NengoDL µs/sample-step':>24} {'snnc µs/sample-step':>21} {'snnc faster':>12}")
    for batch, t_ndl, t_snnc, spikes, _, _ in rows:
        print(
            f"{batch:>6} {t_ndl / batch * 1e6:>24.1f} {t_snnc / batch * 1e6:>21.2f} "
            f"{t_ndl / t_snnc:>11.0f}×"
        )
    print(f"NengoDL's first layer: {rows[0][3]:.0f} spikes per image and step")
    for batch, t_ndl, _, _, acc, n in rows:
        if acc is not None:
            ours, timing = snnc_accuracy(
                a.snnc, a.model, a.images, a.labels, a.scale, a.synapse, a.steps, n
            )
            theirs = f"{acc:.1%}"
            print(
                f"accuracy at step {a.steps} on {n} images: NengoDL {theirs} (average pooling), "
                f"snnc {'?' if ours is None else f'{ours:.1%}'} (max pooling)"
            )
            if timing:
                # `snnc run` over the same images as a data set: its own minibatch (one that fits
                # the cache), spike counting and readouts included, JIT compilation not.
                us, own = timing
                print(
                    f"snnc run on those {n} images (its own minibatch {own}, all cores, spikes "
                    f"counted): {us:.2f} µs per sample-step, {t_ndl / batch * 1e6 / us:.0f}× "
                    f"NengoDL's batch-{batch} figure"
                )


if __name__ == "__main__":
    main()
