"""Tests of the Python package against the `snnc` CLI (the same Rust crates, run as a separate
program), Keras's own outputs, and hand-checked properties."""

import _thread
import os
import pickle
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import snnc

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "examples" / "mnist"
MODEL = MNIST / "model.keras"


def cli() -> Path:
    """The snnc binary `cargo test --workspace` builds (or SNNC_BIN)."""
    if "SNNC_BIN" in os.environ:
        return Path(os.environ["SNNC_BIN"])
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "snnc"
        if p.exists():
            return p
    raise RuntimeError("build the CLI first (cargo build -p snnc) or set SNNC_BIN")


@pytest.fixture(scope="module")
def images():
    return np.load(MNIST / "test_images.npy")[:50]


@pytest.fixture(scope="module")
def labels():
    return np.load(MNIST / "test_labels.npy")[:50]


@pytest.fixture(scope="module")
def spiking_net():
    return snnc.convert(str(MODEL), spiking=True, scale_firing_rates=200)


def run_cli(tmp_path, images, *flags):
    x = tmp_path / "x.npy"
    np.save(x, images)
    out = tmp_path / "out.npz"
    r = subprocess.run(
        [str(cli()), "run", str(MODEL), "--input", str(x), "--output", str(out),
         "--all-steps", "--save-spikes", *flags],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    return dict(np.load(out)), r.stdout


def test_outputs_and_spikes_equal_the_cli_bit_for_bit(tmp_path, images, spiking_net):
    # 50 samples in minibatches of 16: the last one is partial (2 samples).
    want, _ = run_cli(tmp_path, images, "--spiking", "--scale-firing-rates", "200",
                      "--steps", "20", "--batch", "16")
    with snnc.Simulator(spiking_net, minibatch_size=16, progress_bar=False) as sim:
        got = sim.predict(images, n_steps=20)
        spikes = sim.spike_counts
    assert set(got) == {k for k in want if not k.startswith("spikes/")}
    for name, a in got.items():
        assert a.shape == (50, 20, 10)
        assert a.dtype == np.float32
        # The array holds the buffer Rust filled, not a copy.
        assert not a.flags.owndata and type(a.base).__name__ == "PySliceContainer"
        np.testing.assert_array_equal(a, want[name])
    assert set(spikes) == set(spiking_net.populations)
    for pop, counts in spikes.items():
        assert counts.shape == (50,)
        np.testing.assert_array_equal(counts.astype(np.float32), want["spikes/" + pop])
    assert sum(c.sum() for c in spikes.values()) > 50 * 1000, "the network spikes"


def test_probes_equal_the_cli_and_change_no_result(tmp_path, images, spiking_net):
    probes = ["conv1", "dense1:voltage", "dense1:synapse", "flatten"]
    want, _ = run_cli(tmp_path, images[:8], "--spiking", "--scale-firing-rates", "200",
                      "--steps", "10", "--probe", ",".join(probes))
    with snnc.Simulator(spiking_net, minibatch_size=4, progress_bar=False) as sim:
        plain = sim.predict(images[:8], n_steps=10)
        got = sim.predict(images[:8], n_steps=10, probes=probes)
        again = sim.predict(images[:8], n_steps=10)
    assert set(got) == {"logits", *probes}
    np.testing.assert_array_equal(plain["logits"], got["logits"])
    np.testing.assert_array_equal(plain["logits"], again["logits"])
    for name in probes:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got["conv1"].dtype == np.int32 and got["conv1"].shape == (8, 10, 26, 26, 16)
    # A population's spike probe sums to its spike count.
    np.testing.assert_array_equal(got["conv1"].sum(axis=(1, 2, 3, 4)), want["spikes/conv1"])
    with pytest.raises(ValueError, match="no layer, population, value or state is named `nope`"):
        with snnc.Simulator(spiking_net, progress_bar=False) as sim:
            sim.predict(images[:2], n_steps=2, probes=["nope"])


def test_minibatch_size_does_not_change_results(images, spiking_net):
    with snnc.Simulator(spiking_net, minibatch_size=7, progress_bar=False) as a:
        ra = a.predict(images, n_steps=10)
    with snnc.Simulator(spiking_net, minibatch_size=50, progress_bar=False) as b:
        rb = b.predict(images, n_steps=10)
    for k in ra:
        np.testing.assert_array_equal(ra[k], rb[k])


def test_interpreter_agrees_with_the_jit(images, spiking_net):
    outs = []
    for backend in ("jit", "interp"):
        with snnc.Simulator(spiking_net, 25, backend=backend, progress_bar=False) as sim:
            outs.append(sim.predict(images[:25], n_steps=8))
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k])


def test_held_per_step_flat_dict_and_dtypes_agree(images, spiking_net):
    with snnc.Simulator(spiking_net, 16, progress_bar=False) as sim:
        (name,) = spiking_net.inputs
        shape = spiking_net.inputs[name]
        assert shape == (28, 28, 1)
        held = sim.predict(images, n_steps=6)
        steps = np.repeat(images[:, None], 6, axis=1)  # (n, steps, 28, 28, 1), uint8
        per_step = sim.predict(steps)  # n_steps from the time axis
        flat = sim.predict(steps.reshape(50, 6, 28 * 28).astype(np.float64), n_steps=6)
        by_name = sim.predict({name: images.astype(np.int32)}, n_steps=6)
        as_float = sim.predict(np.ascontiguousarray(images, dtype=np.float32), n_steps=6)
    for other in (per_step, flat, by_name, as_float):
        for k in held:
            np.testing.assert_array_equal(held[k], other[k])


def test_last_step_only(images, spiking_net):
    with snnc.Simulator(spiking_net, 16, progress_bar=False) as sim:
        every = sim.predict(images, n_steps=5)
        last = sim.predict(images, n_steps=5, all_steps=False)
    for k in every:
        np.testing.assert_array_equal(every[k][:, -1], last[k])


def test_mean_readout_is_the_running_mean_of_predict(images, labels, spiking_net):
    with snnc.Simulator(spiking_net, 16, progress_bar=False) as sim:
        (last,) = sim.predict(images, n_steps=12).values()
        (mean,) = sim.predict(images, n_steps=12, readout="mean").values()
        acc = sim.evaluate(images, labels, n_steps=12, at=[3, 12], readout="mean")
        with pytest.raises(ValueError, match="readout"):
            sim.predict(images, n_steps=2, readout="median")
    want = np.cumsum(last.astype(np.float64), axis=1) / np.arange(1, 13)[None, :, None]
    np.testing.assert_allclose(mean, want, rtol=1e-6, atol=1e-6)
    assert not np.allclose(mean, last)
    for step, a in acc.items():
        assert a == np.mean(mean[:, step - 1].argmax(axis=1) == labels)


def test_window_and_filtered_readouts(images, spiking_net):
    """`window:K` is the mean of the last K steps and `filtered:TAU` a lowpass from 0 with decay
    e^(-dt/TAU), both recomputed here from the `last` record."""
    with snnc.Simulator(spiking_net, 16, progress_bar=False) as sim:
        (last,) = sim.predict(images, n_steps=10).values()
        (window,) = sim.predict(images, n_steps=10, readout="window:3").values()
        (filt,) = sim.predict(images, n_steps=10, readout="filtered:0.004").values()
        for bad in ("window:0", "filtered:x", "filtered:-1"):
            with pytest.raises(ValueError, match="readout"):
                sim.predict(images, n_steps=2, readout=bad)
    x = last.astype(np.float64)
    c = np.concatenate([np.zeros_like(x[:, :1]), np.cumsum(x, axis=1)], axis=1)
    lo = np.maximum(np.arange(10) - 2, 0)
    want = (c[:, np.arange(1, 11)] - c[:, lo]) / (np.arange(1, 11) - lo)[None, :, None]
    np.testing.assert_allclose(window, want, rtol=1e-5, atol=1e-5)
    d = np.float32(np.exp(-0.001 / 0.004))
    y = np.zeros_like(last[:, 0])
    for t in range(10):
        y = d * y + (np.float32(1) - d) * last[:, t]
        np.testing.assert_array_equal(filt[:, t], y)


def test_threads_change_nothing(images, labels, spiking_net):
    with snnc.Simulator(spiking_net, 8, progress_bar=False) as one:
        a = one.predict(images, n_steps=6)
        acc_a = one.evaluate(images, labels, n_steps=6, at=[3, 6])
        spikes_a = dict(one.spike_counts)
    seen = []

    def progress(done, total):
        seen.append((done, total))

    with snnc.Simulator(spiking_net, 8, progress_bar=progress, threads=2) as two:
        b = two.predict(images, n_steps=6)
        acc_b = two.evaluate(images, labels, n_steps=6, at=[3, 6])
        spikes_b = dict(two.spike_counts)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert acc_a == acc_b
    assert spikes_a.keys() == spikes_b.keys()
    for k in spikes_a:
        np.testing.assert_array_equal(spikes_a[k], spikes_b[k])
    assert seen and seen[-1] == (len(images), len(images))


def test_per_layer_synapses():
    net = snnc.convert(MODEL, spiking=True, synapse={"dense1": 0.002, None: None})
    taus = re.findall(r"lowpass .*\{tau=([0-9.e-]+)\}", net.ir)
    assert taus == ["0.002"], taus
    net = snnc.convert(MODEL, spiking=True, synapse={"pool2": None})
    # Three synapses by default (out of pool1, pool2 and dense1); none out of pool2 now.
    assert len(re.findall(r"= lowpass ", net.ir)) == 2
    assert any("`conv9`" in w for w in snnc.convert(MODEL, spiking=True, synapse={"conv9": None}).warnings)


def test_evaluate_matches_argmax_of_predict_and_the_cli(tmp_path, images, labels, spiking_net):
    acc = snnc.evaluate(spiking_net, images, labels, n_steps=20, at=[5, 10, 20],
                        minibatch_size=16)
    assert sorted(acc) == [5, 10, 20]
    with snnc.Simulator(spiking_net, 16, progress_bar=False) as sim:
        (out,) = sim.predict(images, n_steps=20).values()
    for step, a in acc.items():
        assert a == np.mean(out[:, step - 1].argmax(axis=1) == labels)
    assert acc[20] > 0.9
    # The CLI on all 1000 images and labels, cut to the same 50 by --samples.
    every = np.load(MNIST / "test_images.npy")
    _, stdout = run_cli(tmp_path, every, "--spiking", "--scale-firing-rates", "200",
                        "--steps", "20", "--batch", "16", "--labels",
                        str(MNIST / "test_labels.npy"), "--samples", "0:50",
                        "--accuracy-at", "5,10")
    for step in (5, 10):
        m = re.search(rf"accuracy at step {step}: ([0-9.]+)", stdout)
        assert float(m.group(1)) == pytest.approx(acc[step], abs=1e-4)
    total = sum(acc.spikes_per_sample.values())
    assert total > 1000
    assert set(acc.spike_counts) == set(spiking_net.populations)


def test_in_memory_keras_model_matches_model_predict():
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="out"),
    ])
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    x = rng.normal(size=(40, 6)).astype("float32")
    want = model.predict(x, verbose=0)
    net = snnc.convert(model, spiking=False)
    assert net.inputs and list(net.outputs) == ["out"]
    with snnc.Simulator(net, minibatch_size=16, progress_bar=False) as sim:
        got = sim.predict(x, n_steps=1)["out"][:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Spiking with a high rate approaches the rate network's output.
    spiking = snnc.convert(model, spiking=True, scale_firing_rates=1000, synapse=0.01)
    with snnc.Simulator(spiking, minibatch_size=40, progress_bar=False) as sim:
        s = sim.predict(x, n_steps=200)["out"][:, -50:].mean(axis=1)
    assert np.abs(s - want).mean() < 0.1 * np.abs(want).mean()
    assert sum(c.sum() for c in sim.spike_counts.values()) > 0


def test_temporal_keras_model_runs_one_slice_per_step():
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(1)
    inp = keras.Input((None, 4))
    h = keras.layers.Dense(5, activation="relu", name="h")(inp)
    out = keras.layers.LayerNormalization(name="out")(
        keras.layers.Concatenate(axis=-1, name="cat")([h, inp])
    )
    model = keras.Model(inp, out)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    x = rng.normal(size=(7, 6, 4)).astype("float32")     # 7 samples, 6 time steps
    want = model.predict(x, verbose=0)
    net = snnc.convert(model)
    assert list(net.inputs.values()) == [(4,)]            # one time step's shape
    with snnc.Simulator(net, minibatch_size=4, progress_bar=False) as sim:
        got = sim.predict(x)["out"]                        # steps from the time axis
    assert got.shape == (7, 6, 9)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # A layer that mixes time steps is refused, naming it.
    mixed = keras.Sequential([keras.Input((None, 4)), keras.layers.Conv1D(2, 3, name="over_time")])
    with pytest.raises(snnc.ConversionError, match="`Conv1D` in a temporal model"):
        snnc.convert(mixed)


def test_conversion_options(tmp_path):
    net = snnc.convert(str(MODEL), spiking=True, scale_firing_rates={"conv1": 50, "dense1": 100},
                       synapse=None, max_pool="avg", initial_voltage=0.5,
                       swap_activations={"relu": "spiking_relu"})
    ir = net.ir
    assert "lowpass" not in ir
    assert "max_pool" not in ir
    assert "uniform(0.5, 0.5" in ir
    lif = snnc.convert(str(MODEL), swap_activations={"relu": "lif"})  # spikes, as in NengoDL
    assert " lif " in lif.ir
    assert not snnc.convert(str(MODEL)).populations  # rate neurons by default
    rate = snnc.convert(str(MODEL), spiking=False)
    assert not rate.populations
    cal = np.load(MNIST / "calibration_images.npy")[:100]
    norm = snnc.convert(str(MODEL), spiking=True, normalize_rates=cal)
    assert "gain" in norm.calibration
    assert norm.ir != net.ir
    passes = snnc.convert(str(MODEL), spiking=True, passes=["spikify", "lower-maxpool"])
    assert len(passes.ir) > 0


def test_target_steps_answers_by_its_step(images, labels):
    """``target_steps``: the scales are searched by simulation (the search is reported), the
    neurons are integrate-and-fire without synapses, and with the mean readout the network is
    as accurate at step 8 as the rate network, within two images of fifty."""
    cal = np.load(MNIST / "calibration_images.npy")[:64]
    net = snnc.convert(str(MODEL), spiking=True, normalize_rates=cal, target_steps=8)
    assert "by step 8" in net.calibration and "measured" in net.calibration
    assert "if_neuron" in net.ir and "lowpass" not in net.ir
    rate = snnc.convert(str(MODEL), spiking=False)
    ann = snnc.evaluate(rate, images, labels, 1)[1]
    snn = snnc.evaluate(net, images, labels, 8, readout="mean")[8]
    assert snn >= ann - 0.04, (snn, ann)
    with pytest.raises(ValueError, match="target_steps must be at least 1"):
        snnc.convert(str(MODEL), spiking=True, normalize_rates=cal, target_steps=0)


def test_save_load_and_pickle_round_trip(tmp_path, images, spiking_net):
    path = tmp_path / "m.snn"
    spiking_net.save(path)
    loaded = snnc.load(path)
    unpickled = pickle.loads(pickle.dumps(spiking_net))
    assert loaded.ir == spiking_net.ir == unpickled.ir
    results = []
    for net in (spiking_net, loaded, unpickled):
        with snnc.Simulator(net, 25, progress_bar=False) as sim:
            results.append(sim.predict(images[:25], n_steps=5))
    for r in results[1:]:
        for k in r:
            np.testing.assert_array_equal(r[k], results[0][k])
    # A .snn file is also a model for convert (converted again only if asked).
    assert snnc.convert(str(path), spiking=False).ir == spiking_net.ir


def test_errors_are_python_exceptions_with_the_cli_message(tmp_path, images, spiking_net):
    with pytest.raises(snnc.ConversionError, match="missing.keras"):
        snnc.convert(str(tmp_path / "missing.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(snnc.ConversionError, match="bad.keras"):
        snnc.convert(str(bad))
    with pytest.raises(snnc.ConversionError, match="unknown file type"):
        snnc.convert(str(tmp_path / "model.onnx"))
    with pytest.raises(snnc.VerifyError, match=r"line \d+"):
        snnc.load(ROOT / "tests" / "ir" / "verify" / "errors.sir")
    assert issubclass(snnc.VerifyError, snnc.ConversionError)
    assert issubclass(snnc.InputError, snnc.SimulationError)
    assert issubclass(snnc.SimulationError, snnc.SnncError)
    with pytest.raises(ValueError, match="max_pool"):
        snnc.convert(str(MODEL), max_pool="median")
    with pytest.raises(ValueError, match="scale_firing_rates must be a positive"):
        snnc.convert(str(MODEL), scale_firing_rates=-1)
    with pytest.raises(ValueError, match="relu can become"):
        snnc.convert(str(MODEL), swap_activations={"relu": "izhikevich"})
    with pytest.raises(TypeError):
        snnc.convert(42)
    with snnc.Simulator(spiking_net, 8, progress_bar=False) as sim:
        with pytest.raises(snnc.InputError, match=r"shape \[3, 5\] fits neither"):
            sim.predict(np.zeros((3, 5)), n_steps=2)
        with pytest.raises(snnc.InputError, match="no input named"):
            sim.predict({"nope": images}, n_steps=2)
        with pytest.raises(snnc.InputError, match="labels"):
            sim.evaluate(images, np.zeros(3), n_steps=2)
        with pytest.raises(snnc.InputError, match="at least 1"):
            sim.predict(images, n_steps=0)
        with pytest.raises(snnc.SimulationError, match="more memory than can be allocated"):
            sim.predict(images, n_steps=1 << 50)
        with pytest.raises(snnc.InputError, match="outside the 2 steps"):
            sim.evaluate(images, np.zeros(50), n_steps=2, at=[5])
    with pytest.raises(snnc.SimulationError, match="closed"):
        sim.predict(images, n_steps=1)
    with pytest.raises(ValueError, match="backend"):
        snnc.Simulator(spiking_net, backend="gpu")
    with pytest.raises(snnc.ConversionError):
        snnc.Network.from_bytes(b"junk")


def test_a_weight_declaring_a_huge_shape_is_refused_with_its_size(tmp_path):
    """A legacy .h5 whose bias declares 2^30 elements (stored as empty chunks, so the file stays
    small) is refused before anything is allocated, naming the layer and the size."""
    h5py = pytest.importorskip("h5py")
    import shutil

    path = tmp_path / "huge.h5"
    shutil.copy(ROOT / "tests" / "fixtures" / "keras2" / "activations.h5", path)
    with h5py.File(path, "r+") as f:
        name = "model_weights/dense_10/dense_10/bias:0"
        del f[name]
        f.create_dataset(name, shape=(1 << 18, 1 << 12), dtype="f4", chunks=(1, 1))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(snnc.ConversionError, match=r"dense_10.*\[262144, 4096\] \(1073741824 elements\)"):
        snnc.convert(str(path))
    r = subprocess.run([str(cli()), "compile", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "1073741824 elements" in r.stderr, r.stderr


def test_progress_callback_counts(images, spiking_net):
    calls = []
    with snnc.Simulator(spiking_net, 16, progress_bar=lambda d, t: calls.append((d, t))) as sim:
        sim.predict(images, n_steps=3)
    assert calls == [(16, 50), (32, 50), (48, 50), (50, 50)]


def test_tqdm_progress_bar(images, spiking_net, capsys):
    pytest.importorskip("tqdm")
    with snnc.Simulator(spiking_net, 16, progress_bar=True) as sim:
        sim.predict(images, n_steps=2)
    assert "50/50" in capsys.readouterr().err


def long_run_inputs(images):
    return np.repeat(images, 20, axis=0)  # 1000 samples


def test_the_gil_is_released(images, spiking_net):
    ticks = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    x = long_run_inputs(images)
    with snnc.Simulator(spiking_net, 50, progress_bar=False) as sim:
        t.start()
        start = time.perf_counter()
        sim.predict(x, n_steps=30, all_steps=False)
        elapsed = time.perf_counter() - start
        stop.set()
        t.join()
    # The counting thread ran throughout: about one tick per millisecond when free, one per
    # 50 ms signal check if the run held the GIL.
    assert elapsed > 0.2
    assert ticks[0] > 0.1 * elapsed * 1000, (ticks[0], elapsed)


def test_ctrl_c_stops_a_run_promptly(images, spiking_net):
    # Python's own SIGINT handler, whatever an earlier test or library left installed (with
    # SIG_IGN, `interrupt_main` does nothing and the run is never interrupted).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    x = np.repeat(images, 200, axis=0)  # 10,000 samples: many seconds
    try:
        _run_and_interrupt(x, images, spiking_net)
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_and_interrupt(x, images, spiking_net):
    with snnc.Simulator(spiking_net, 50, progress_bar=False) as sim:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        start = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            sim.predict(x, n_steps=100, all_steps=False)
        elapsed = time.perf_counter() - start
        timer.cancel()
        # The simulator still works afterwards.
        r = sim.predict(images[:5], n_steps=2)
    assert elapsed < 0.3 + 1.0, elapsed
    assert next(iter(r.values())).shape == (5, 2, 10)


def test_dask_results_equal_local_ones(images, labels, spiking_net):
    distributed = pytest.importorskip("distributed")
    from snnc import distributed as sd

    with snnc.Simulator(spiking_net, 8, progress_bar=False) as sim:
        local = sim.predict(images, n_steps=10)
        local_spikes = sim.spike_counts
    local_acc = snnc.evaluate(spiking_net, images, labels, n_steps=10, at=[5, 10])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            remote = sd.predict(spiking_net, images, n_steps=10, client=client, chunk_size=13,
                                minibatch_size=8)
            acc = sd.evaluate(spiking_net, images, labels, n_steps=10, at=[5, 10],
                              client=client, chunk_size=13)
    for k in local:
        np.testing.assert_array_equal(local[k], remote[k])
    assert dict(acc) == dict(local_acc)
    for pop in local_spikes:
        np.testing.assert_array_equal(acc.spike_counts[pop], local_spikes[pop])


def test_readme_python_quick_start_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- python-quickstart -->", 1)[1]
    code = block.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md quick start", "exec"), {})
