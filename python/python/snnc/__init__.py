"""snnc: compile trained Keras models into spiking neural networks and simulate them fast.

>>> import snnc
>>> net = snnc.convert("model.keras", spiking=True, scale_firing_rates=200)
>>> with snnc.Simulator(net, minibatch_size=32) as sim:
...     out = sim.predict(x, n_steps=60)        # {output name: (n, 60, *shape)}

Everything here is a thin layer over the Rust crates (``snnc._snnc``): reading and converting a
model, simulating it and counting spikes happen there, with the GIL released.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from . import _snnc
from ._snnc import (
    ConversionError,
    InputError,
    Network,
    SimulationError,
    SnncError,
    VerifyError,
    supported_layers,
)

__version__ = _snnc.__version__

__all__ = [
    "ConversionError",
    "Evaluation",
    "InputError",
    "Network",
    "SimulationError",
    "Simulator",
    "SnncError",
    "VerifyError",
    "convert",
    "evaluate",
    "export_nir",
    "load",
    "supported_layers",
]

_SWAP_TARGETS = {"spiking_relu", "spikingrectifiedlinear", "if", "lif"}


def _reduce_network(net: Network):
    return (_network_from_bytes, (net.to_bytes(),))


def _network_from_bytes(data: bytes) -> Network:
    return Network.from_bytes(data)


# Networks pickle as their .snn bytes, so they can be sent to worker processes.
import copyreg  # noqa: E402

copyreg.pickle(Network, _reduce_network)


def load(path: Union[str, os.PathLike], dt: Optional[float] = None) -> Network:
    """Read a network saved with ``Network.save`` (``.snn``), a ``.sir``/``.json`` module, or a
    NIR graph (``.nir``, discretised with forward Euler at ``dt``: by default the graph's own
    ``dt`` metadata, else 1 ms), as is."""
    return _snnc.compile(os.fspath(path), dt=dt)


def export_nir(
    model: Any, path: Union[str, os.PathLike], fold_gains: bool = False, **convert_kwargs: Any
) -> list:
    """Convert ``model`` as ``convert`` does and write it as a NIR graph at ``path``.

    Max pooling is exported as NIR's own circuit (``Conv2d`` maps and ``IF`` units), so the
    conversion runs every pass but ``lower-maxpool`` (and ``fixed-neurons``: NIR's ``IF`` steps
    a float voltage). Returns the export's warnings (which
    layers NIR's consumers cannot reproduce exactly, and why). ``swap_activations={"relu": "if"}``
    with ``synapse=None`` gives an export that NIR consumers reproduce spike for spike while no
    unit needs two spikes in one step. ``fold_gains=True`` moves every ``IF`` node's gain ``r``
    into the weights that feed it (``r = 1`` everywhere, for consumers that ignore ``r``).
    """
    passes = convert_kwargs.pop("passes", None)
    passes = [
        p for p in (passes or _snnc.DEFAULT_PASSES) if p not in ("lower-maxpool", "fixed-neurons")
    ]
    net = convert(model, passes=passes, **convert_kwargs)
    return list(net.warnings) + net.to_nir(os.fspath(path), fold_gains)


def _keras_version(model: Any) -> str:
    top = type(model).__module__.split(".")[0]
    return str(getattr(sys.modules.get(top), "__version__", ""))


def _save_keras(model: Any, directory: str) -> str:
    """Save an in-memory Keras model (Keras 3 or tf.keras 2) as a .keras file; snnc imports
    neither Keras nor TensorFlow itself."""
    path = os.path.join(directory, "model.keras")
    version = _keras_version(model)
    if version.startswith("2.12"):
        # tf.keras 2.12 writes the .keras format only when asked by name.
        model.save(path, save_format="keras_v3")
    else:
        model.save(path)
    return path


def _swap_target(swap_activations: Optional[Mapping[Any, Any]]) -> Optional[str]:
    if not swap_activations:
        return None
    target = None
    for key, value in swap_activations.items():
        name = key if isinstance(key, str) else getattr(key, "__name__", repr(key))
        # "relu", "tf.nn.relu", "tf.keras.activations.relu", or those functions themselves.
        if name.split(".")[-1] != "relu":
            raise ValueError(
                f"swap_activations: only relu can be swapped, not {name!r}"
            )
        v = value if isinstance(value, str) else type(value).__name__
        v = v.lower()
        if v not in _SWAP_TARGETS:
            raise ValueError(
                f"swap_activations: relu can become 'spiking_relu', 'if' or 'lif', not {value!r}"
            )
        target = v if v in ("if", "lif") else "spiking_relu"
    return target


def convert(
    model: Any,
    *,
    spiking: Optional[bool] = None,
    scale_firing_rates: Union[None, float, Mapping[str, float]] = None,
    synapse: Union[None, float, str, Mapping[Any, Optional[float]]] = "default",
    max_pool: str = "neural",
    swap_activations: Optional[Mapping[Any, Any]] = None,
    initial_voltage: Union[str, float] = "uniform",
    dt: Optional[float] = None,
    normalize_rates: Optional[np.ndarray] = None,
    normalize_rule: str = "budget",
    percentile: float = 99.0,
    max_rate: float = 1000.0,
    error_fraction: float = 0.3,
    target_steps: Optional[int] = None,
    target_agreement: float = 0.99,
    passes: Optional[Sequence[str]] = None,
) -> Network:
    """Convert a Keras model (a path to ``.keras``/``.h5``, or an in-memory Keras 3 or tf.keras
    model) into a spiking network, as NengoDL's converter with the same argument names.

    ``model`` may also be a ``.sir``/``.snn``/``.json`` module, converted when any option
    differs from its default.

    - ``spiking``: spiking neurons for the ReLU family. By default (``None``) rate neurons are
      kept, as NengoDL's converter does without ``swap_activations`` and ``snnc run`` without
      ``--spiking``, unless ``swap_activations`` is given (which, as in NengoDL, asks for
      spikes).
    - ``scale_firing_rates``: gain × s on each neuron's input, amplitude ÷ s on its output; a
      float for every layer or ``{layer name: float}``.
    - ``synapse``: lowpass time constant (s) on connections out of neurons, ``None`` for none,
      or a dict by layer name (``{"conv1": None, None: 0.005}``: none out of ``conv1``, 5 ms out
      of the others);
      ``"default"`` is 5 ms when spiking and none otherwise (NengoDL's defaults).
    - ``max_pool``: ``"neural"`` (a circuit of neurons), ``"avg"`` (NengoDL's max_to_avg_pool),
      ``"keep"`` (the exact non-neural op).
    - ``swap_activations``: e.g. ``{"relu": "lif"}`` for Nengo's LIF neurons, ``{"relu": "if"}``
      for integrate-and-fire neurons with signed input (reset by subtraction, no floor on the
      membrane), which work without synapses.
    - ``initial_voltage``: ``"uniform"`` (Nengo's) or one value.
    - ``normalize_rates``: calibration inputs ``(n, *input_shape)``: per-layer scales chosen
      from the rate network's activity (explicit per-layer scales still win).
    - ``target_steps``: with ``normalize_rates``, search the scales by simulating the spiking
      network on the calibration inputs for that many steps, for the fewest spikes at which its
      decisions equal the rate network's on a fraction ``target_agreement`` of them (``snnc run
      --target-steps``). Unless given otherwise, ReLUs become integrate-and-fire neurons
      (``swap_activations={"relu": "if"}``) with no synapse and initial voltage 0.5: read the
      output with ``predict(..., readout="mean")``. ``Network.calibration`` reports the search.
    - ``passes``: the pass pipeline by name (as ``snnc compile --passes``).

    Raises :class:`ConversionError` (naming the file, layer or line) for anything it cannot
    read or convert, :class:`ValueError` for options out of range.
    """
    swap = _swap_target(swap_activations)
    if spiking is None:
        spiking = swap is not None
    scale = None
    layer_scales: list = []
    if isinstance(scale_firing_rates, Mapping):
        layer_scales = [(str(k), float(v)) for k, v in scale_firing_rates.items()]
    elif scale_firing_rates is not None:
        scale = float(scale_firing_rates)
    layer_synapses: list = []
    if isinstance(synapse, Mapping):
        # {layer: tau or None}; the key None (or "default") sets every other layer.
        entries = dict(synapse)
        synapse = entries.pop(None, entries.pop("default", "default"))
        layer_synapses = [(str(k), None if v is None else float(v)) for k, v in entries.items()]
    no_synapse = synapse is None
    if isinstance(synapse, str):
        if synapse != "default":
            raise ValueError(f"synapse must be a time constant, None or 'default', not {synapse!r}")
        synapse_tau = None
    else:
        synapse_tau = None if synapse is None else float(synapse)
    calibration = None
    if normalize_rates is not None:
        calibration = np.ascontiguousarray(normalize_rates, dtype=np.float32)
    kwargs = dict(
        spiking=bool(spiking),
        swap=swap,
        scale=scale,
        layer_scales=layer_scales,
        synapse=synapse_tau,
        no_synapse=no_synapse,
        layer_synapses=layer_synapses,
        # "uniform" is the default; the driver refuses an explicit one without spiking.
        initial_voltage=None if initial_voltage == "uniform" else initial_voltage,
        max_pool=max_pool,
        dt=dt,
        passes=list(passes) if passes is not None else None,
        calibration=calibration,
        normalize_rule=normalize_rule,
        percentile=percentile,
        max_rate=max_rate,
        error_fraction=error_fraction,
        target_steps=target_steps,
        target_agreement=target_agreement,
    )
    if isinstance(model, (str, os.PathLike)):
        return _snnc.compile(os.fspath(model), **kwargs)
    if not hasattr(model, "save"):
        raise TypeError(
            "convert() takes a path (.keras, .h5, .sir, .snn, .json) or a Keras model, "
            f"not {type(model).__name__}"
        )
    with tempfile.TemporaryDirectory(prefix="snnc-") as d:
        return _snnc.compile(_save_keras(model, d), **kwargs)


def _input_arrays(net: Network, x: Any) -> list:
    """One float32 C-order array per network input, in order. Held ``(n, *shape)``, per step
    ``(n, steps, *shape)`` and NengoDL's flat ``(n, steps, prod(shape))`` are accepted; float32
    C-contiguous arrays are passed without a copy."""
    names = list(net.inputs)
    if isinstance(x, Mapping):
        unknown = [k for k in x if k not in net.inputs]
        if unknown:
            raise InputError(
                f"no input named {unknown[0]!r}; the network's inputs are {', '.join(names)}"
            )
        missing = [k for k in names if k not in x]
        if missing:
            raise InputError(f"no data for input {missing[0]!r}")
        arrays = [x[k] for k in names]
    else:
        if len(names) != 1:
            raise InputError(
                f"the network has {len(names)} inputs ({', '.join(names)}); pass a dict by name"
            )
        arrays = [x]
    out = []
    for name, a in zip(names, arrays):
        a = np.asarray(a)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise InputError(f"input {name!r}: dtype {a.dtype} is not numeric")
        a = np.ascontiguousarray(a, dtype=np.float32)
        shape = tuple(net.inputs[name])
        size = math.prod(shape)
        held = a.shape[1:] == shape
        timed = a.ndim == len(shape) + 2 and a.shape[2:] == shape
        if not held and not timed and a.ndim == 3 and a.shape[2] == size and len(shape) != 1:
            a = a.reshape(a.shape[0], a.shape[1], *shape)
        out.append(a)
    return out


class Evaluation(dict):
    """``{step: accuracy}``; ``spikes_per_sample`` gives ``{population: mean spikes}`` and
    ``spike_counts`` ``{population: array (n,)}``."""

    spikes_per_sample: Dict[str, float]
    spike_counts: Dict[str, np.ndarray]

    @classmethod
    def _of(cls, correct_at, n: int, spikes: Mapping[str, np.ndarray]) -> "Evaluation":
        ev = cls({step: k / n for step, k in sorted(correct_at)})
        ev.spike_counts = dict(spikes)
        ev.spikes_per_sample = {k: float(v.mean()) for k, v in ev.spike_counts.items()}
        return ev


def _scored_steps(at: Optional[Iterable[int]], n_steps: int) -> list:
    """The steps ``evaluate`` scores: those of ``at`` and the last."""
    return sorted(set(int(s) for s in (at or [n_steps])) | {int(n_steps)})


def _progress_bar(enabled: Any, total: int):
    """A tqdm bar (notebook-aware) when tqdm is installed and the bar is wanted, else None."""
    if enabled is False or enabled is None:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="sample", desc="snnc")


class Simulator:
    """Simulates one network on minibatches of ``minibatch_size`` samples (JIT-compiled once,
    reused by every call). Use it as a context manager, like NengoDL's.

    ``progress_bar``: ``True`` for a tqdm bar when tqdm is installed (``pip install tqdm``), or
    a callable ``f(samples_done, samples)`` called after every minibatch.

    ``threads``: worker threads for runs without probes (0: one per core). Each thread simulates
    a contiguous range of the samples with its own compiled simulator; results do not depend on
    it. With 1 (the default) every run reuses this simulator's compiled code.
    """

    def __init__(
        self,
        net: Network,
        minibatch_size: int = 32,
        backend: str = "jit",
        seed: int = 0,
        progress_bar: Union[bool, Callable[[int, int], Any]] = True,
        threads: int = 1,
    ):
        if not isinstance(net, Network):
            raise TypeError(f"Simulator takes a snnc.Network, not {type(net).__name__}")
        self.network = net
        self.minibatch_size = int(minibatch_size)
        self.backend = backend
        self.seed = int(seed)
        self.progress_bar = progress_bar
        self.threads = int(threads)
        self._sim = _snnc.Simulator(net, self.minibatch_size, backend, self.threads)
        self._closed = False
        self.spike_counts: Dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free the compiled code and buffers."""
        self._sim = None
        self._closed = True

    def _run(self, x, n_steps, labels=None, at=(), all_steps=True, probes=(), readout="last"):
        if self._closed:
            raise SimulationError("this Simulator is closed")
        inputs = _input_arrays(self.network, x)
        n = inputs[0].shape[0] if inputs and inputs[0].ndim else 0
        callback = None
        bar = None
        if callable(self.progress_bar):
            callback = self.progress_bar
        else:
            bar = _progress_bar(self.progress_bar, n)
            if bar is not None:
                state = {"done": 0}

                def callback(done, total):
                    bar.update(done - state["done"])
                    state["done"] = done

        try:
            r = self._sim.run(
                inputs,
                labels=labels,
                steps=None if n_steps is None else int(n_steps),
                seed=self.seed,
                all_steps=all_steps,
                accuracy_at=list(at),
                progress=callback,
                probes=list(probes),
                readout=readout,
            )
        finally:
            if bar is not None:
                bar.close()
        self.spike_counts = dict(r["spikes"])
        self.seconds = r["seconds"]
        return r

    def predict(
        self,
        x: Any,
        n_steps: Optional[int] = None,
        all_steps: bool = True,
        probes: Optional[Iterable[str]] = None,
        readout: str = "last",
    ) -> Dict[str, np.ndarray]:
        """Run every sample and return ``{output name: array}``: ``(n, n_steps, *shape)``, or
        ``(n, *shape)`` with ``all_steps=False``. ``x`` is an array for a single-input network or
        a dict by input name. A last partial minibatch is padded, and its padding dropped.
        Spike counts per sample are in ``self.spike_counts`` afterwards.

        ``probes`` names layers or IR values to record at every step as well, each returned
        under its name with shape ``(n, n_steps, *shape)``: ``"conv1"`` (a spiking population's
        spikes, as int32 counts per step; otherwise the layer's value), or ``"NAME:VIEW"`` with
        VIEW one of ``spikes``, ``value``, ``voltage``, ``input``, ``synapse`` (the CLI's
        ``--probe``). Probing changes no result. An unknown name raises ``ValueError`` listing
        the names there are.

        ``readout="mean"`` reports each output (not the probes) at each step as the mean of its
        values since the first step instead of its value then; ``"window:K"`` the mean over the
        last K steps; ``"filtered:TAU"`` (or ``"filtered"``, 5 ms) the output through its own
        lowpass of TAU seconds, the probe's synapse (the CLI's ``--readout``)."""
        if isinstance(probes, str):
            probes = [probes]
        r = self._run(x, n_steps, all_steps=all_steps, probes=list(probes or ()), readout=readout)
        return dict(r["outputs"])

    def evaluate(
        self, x: Any, y: Any, n_steps: int, at: Optional[Iterable[int]] = None,
        readout: str = "last",
    ) -> Evaluation:
        """Classification accuracy (argmax of the first output against integer labels ``y``)
        at each step of ``at`` (default: the last), of the output as ``readout`` reads it."""
        r = self._run(x, n_steps, labels=_labels(y), at=_scored_steps(at, n_steps),
                      all_steps=False, readout=readout)
        return Evaluation._of(r["correct_at"], r["samples"], r["spikes"])


def _labels(y: Any) -> list:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"labels must have shape (n,), got {y.shape}")
    if y.size and (not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y != np.floor(y))):
        raise InputError("labels must be non-negative class indices")
    return [int(v) for v in y]


def evaluate(
    net: Network,
    x: Any,
    y: Any,
    n_steps: int,
    at: Optional[Iterable[int]] = None,
    minibatch_size: int = 32,
    backend: str = "jit",
    seed: int = 0,
    progress_bar: Union[bool, Callable[[int, int], Any]] = False,
    readout: str = "last",
) -> Evaluation:
    """``{step: accuracy}`` of ``net`` on ``(x, y)``, with spike counts (see
    :meth:`Simulator.evaluate`)."""
    with Simulator(net, minibatch_size, backend, seed, progress_bar) as sim:
        return sim.evaluate(x, y, n_steps, at, readout=readout)
