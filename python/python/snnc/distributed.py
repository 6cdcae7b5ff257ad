"""Spread a data set over a Dask ``distributed`` cluster (``pip install "snnc[distributed]"``).

The samples are split into chunks of ``chunk_size``; each chunk runs on a worker, which loads
the network from its ``.snn`` bytes once and keeps it. Results are gathered in sample order and
equal a local :meth:`snnc.Simulator.predict` exactly (every minibatch starts from the same
seeded state, whatever samples it holds).

Point ``client`` at a real cluster with ``distributed.Client("tcp://scheduler:8786")``; without
one, an existing default client is used, or a local cluster is started for the call.
"""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, Optional

import numpy as np

from . import Evaluation, Network, Simulator, _input_arrays, _labels, _scored_steps

# Per worker process: networks by the hash of their bytes, and their simulators.
_CACHE: Dict[str, Network] = {}


def _network(data: bytes, key: str) -> Network:
    net = _CACHE.get(key)
    if net is None:
        net = Network.from_bytes(data)
        _CACHE[key] = net
    return net


def _client(client):
    if client is not None:
        return client, None
    from distributed import Client, LocalCluster, default_client

    try:
        return default_client(), None
    except ValueError:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True)
        c = Client(cluster)
        return c, cluster


def _map(net, x, n_steps, client, chunk_size, labels, at, all_steps, sim_kwargs, probes=()):
    inputs = _input_arrays(net, x)
    n = inputs[0].shape[0]
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    data = net.to_bytes()
    key = hashlib.sha256(data).hexdigest()
    c, cluster = _client(client)
    try:
        # A key of its own per call (hash=False): with the default content hash, a second call
        # with the same network reuses the key while the first call's copy is being released,
        # and its tasks fail with "lost dependencies" (seen in CI here; dask/distributed#4612).
        shared = c.scatter(data, broadcast=True, hash=False)
        futures = []
        for lo in range(0, n, chunk_size):
            hi = min(lo + chunk_size, n)
            part = [a[lo:hi] for a in inputs]
            lab = None if labels is None else labels[lo:hi]
            futures.append(
                c.submit(_chunk, shared, key, part, lab, n_steps, sim_kwargs, at, all_steps,
                         list(probes), pure=False)
            )
        return c.gather(futures), n
    finally:
        if cluster is not None:
            c.close()
            cluster.close()


def _chunk(data, key, inputs, labels, n_steps, sim_kwargs, at, all_steps, probes):
    net = _network(data, key)
    names = list(net.inputs)
    with Simulator(net, progress_bar=False, **sim_kwargs) as sim:
        r = sim._run(dict(zip(names, inputs)), n_steps, labels=labels, at=at,
                     all_steps=all_steps, probes=probes)
    return {
        "outputs": dict(r["outputs"]),
        "spikes": dict(r["spikes"]),
        "correct_at": list(r["correct_at"]),
        "samples": r["samples"],
    }


def predict(
    net: Network,
    x: Any,
    n_steps: Optional[int] = None,
    client: Any = None,
    chunk_size: int = 1000,
    all_steps: bool = True,
    minibatch_size: int = 32,
    backend: str = "jit",
    seed: int = 0,
    probes: Optional[Iterable[str]] = None,
) -> Dict[str, np.ndarray]:
    """As :meth:`snnc.Simulator.predict` (``probes`` included), over a Dask cluster. Returns
    ``{output: array}`` in sample order; ``predict.spike_counts`` is not kept, use
    :func:`evaluate` for spikes."""
    kwargs = dict(minibatch_size=minibatch_size, backend=backend, seed=seed)
    if isinstance(probes, str):
        probes = [probes]
    parts, _ = _map(net, x, n_steps, client, chunk_size, None, [], all_steps, kwargs,
                    list(probes or ()))
    return {
        name: np.concatenate([p["outputs"][name] for p in parts], axis=0)
        for name in parts[0]["outputs"]
    }


def evaluate(
    net: Network,
    x: Any,
    y: Any,
    n_steps: int,
    at: Optional[Iterable[int]] = None,
    client: Any = None,
    chunk_size: int = 1000,
    minibatch_size: int = 32,
    backend: str = "jit",
    seed: int = 0,
) -> Evaluation:
    """As :func:`snnc.evaluate`, over a Dask cluster."""
    kwargs = dict(minibatch_size=minibatch_size, backend=backend, seed=seed)
    parts, n = _map(net, x, n_steps, client, chunk_size, _labels(y), _scored_steps(at, n_steps),
                    False, kwargs)
    correct: Dict[int, int] = {}
    for p in parts:
        for step, k in p["correct_at"]:
            correct[step] = correct.get(step, 0) + k
    spikes = {
        pop: np.concatenate([p["spikes"][pop] for p in parts]) for pop in parts[0]["spikes"]
    }
    return Evaluation._of(correct.items(), n, spikes)
